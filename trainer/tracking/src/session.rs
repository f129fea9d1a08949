//! A metered, policed, logged run for any training loop: what the Python package's callbacks
//! (Lightning, Hugging Face) drive, one call per validation.
//!
//! A [`Session`] starts the meter ([`EpochMeter`]: the daemon when one answers, else the
//! in-process engine, as `--meter auto`), and at each [`Session::epoch`] takes a fresh reading
//! that includes the work just done, feeds `(P_i, E_i)` to the stopping [`Policy`] and appends the
//! epoch to the run folder's `epochs.jsonl` and `epochs.csv` — the trainer's [`EpochRecord`], so
//! that `anges-train replay` replays it and stops at the same epoch. [`Session::finish`] ends
//! the meter (unregistering the job), and writes `summary.json` ([`SessionSummary`], which holds
//! the fields `anges-train replay` reads, the run's [`RunLabels`] and its test values, which
//! `anges-train summarize` groups) and the run's row of a CodeCarbon-compatible `emissions.csv`.
//!
//! The folder of a session is refused when it already holds a run's log, unless `overwrite`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::MeterConfig;
use crate::emissions::{
    CarbonInfo, EpochEnergy, EpochMeter, Hardware, MeterError, MeterFinal, MeterOptions, codecarbon,
};
use crate::metrics::{EvalMetrics, Metric};
use crate::policy::{AngesStep, Policy, StopPolicy, StopReason, StopSpec};
use crate::record::{CSV_HEADER, EpochRecord, csv_row};

/// CodeCarbon's `project_name` of the Python package's rows.
pub const PROJECT: &str = "anges";

/// The files a session writes into its folder.
const FILES: &[&str] = &["epochs.jsonl", "epochs.csv", "summary.json", "config.json"];

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The meter could not start.
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// A file of the run folder could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The folder already holds a run.
    #[error(
        "{} already holds a run ({file}); pass overwrite=True to replace it, or use another \
         folder",
        dir.display()
    )]
    Occupied {
        /// The folder.
        dir: PathBuf,
        /// One of its run files.
        file: &'static str,
    },
    /// An epoch was reported after the session finished.
    #[error("the session is finished")]
    Finished,
    /// The CodeCarbon-compatible row could not be written.
    #[error("emissions.csv: {0}")]
    Codecarbon(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a run is, for `anges-train summarize` to group it with others: each label is optional
/// (a run without one is grouped under `unlabelled`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLabels {
    /// The dataset (e.g. `bace`).
    #[serde(default)]
    pub dataset: Option<String>,
    /// The model (e.g. the Lightning module's class name).
    #[serde(default)]
    pub model: Option<String>,
    /// The starting weights: `random`, or the name of the checkpoint fine-tuned.
    #[serde(default)]
    pub init: Option<String>,
}

impl RunLabels {
    /// The longest label accepted, in characters.
    pub const MAX_LEN: usize = 200;

    /// Refuses an empty label, one longer than [`RunLabels::MAX_LEN`] or one holding a control
    /// character (labels become table cells and CSV fields).
    pub fn validate(&self) -> Result<(), String> {
        let named = [
            ("dataset", &self.dataset),
            ("model", &self.model),
            ("init", &self.init),
        ];
        for (name, value) in named {
            let Some(v) = value else { continue };
            if v.trim().is_empty() {
                return Err(format!("{name}={v:?}: a label cannot be empty"));
            }
            if v.chars().count() > Self::MAX_LEN {
                return Err(format!(
                    "{name}: a label has at most {} characters",
                    Self::MAX_LEN
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(format!(
                    "{name}={v:?}: a label cannot hold control characters"
                ));
            }
        }
        Ok(())
    }
}

/// What a session is asked to do.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The run folder (created when missing).
    pub dir: PathBuf,
    /// The metric the validation values are (its direction selects the best epoch).
    pub metric: Metric,
    /// The stopping policy.
    pub stop: StopSpec,
    /// The meter.
    pub meter: MeterConfig,
    /// The meter's tuning ([`MeterOptions::estimated`] in tests).
    pub meter_options: MeterOptions,
    /// The job's name with the meter.
    pub job_name: String,
    /// Replace a run already in `dir`.
    pub overwrite: bool,
    /// What the run is (dataset, model, starting weights), for `anges-train summarize`.
    pub labels: RunLabels,
}

/// One epoch as the session saw it: what [`Session::epoch`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochOutcome {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Stop after this epoch, and why.
    pub stop: Option<StopReason>,
    /// This epoch's weights are the best on validation so far.
    pub best: bool,
    /// The best epoch so far.
    pub best_epoch: Option<usize>,
    /// The AN-GES step (`%ΔPerf`, `%ΔEmiss`, AER, EMA, decision) under AN-GES.
    pub anges: Option<AngesStep>,
    /// The meter's reading after this epoch (`None` with `meter = off`).
    pub energy: Option<EpochEnergy>,
}

/// `summary.json` of a session: the fields `anges-train replay` reads (`metric`, `stop`) and
/// those `anges-train summarize` groups and reports (`dataset`, `model`, `init`, `best_test`,
/// `final_test`), with the trainer's names, and the meter's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// What wrote the run (`anges` for the Python package).
    pub writer: String,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The metric that selected epochs.
    pub metric: Metric,
    /// The stopping policy.
    pub stop: StopPolicy,
    /// The policy with its parameters.
    pub policy: StopSpec,
    /// Why the run ended (`null`: the loop ended without the policy stopping it).
    pub stop_reason: Option<StopReason>,
    /// Epochs reported.
    pub epochs_run: usize,
    /// Epoch of the best validation metric.
    pub best_epoch: Option<usize>,
    /// The best validation metric.
    pub best_valid: Option<f64>,
    /// The test value at the best-validation epoch (the weights a run delivers), when the loop
    /// reported test values.
    #[serde(default)]
    pub best_test: EvalMetrics,
    /// The test value at the last epoch that reported one.
    #[serde(default)]
    pub final_test: EvalMetrics,
    /// What the run is.
    #[serde(flatten, default)]
    pub labels: RunLabels,
    /// Wall-clock seconds from the start of the session to its end.
    pub seconds: f64,
    /// Energy of the whole run, joules: the epochs' plus the tail (`null` unmetered).
    pub energy_j: Option<f64>,
    /// CO2-eq of the whole run, grams.
    pub co2_g: Option<f64>,
    /// Energy charged after the last epoch's reading, joules.
    pub tail_j: Option<f64>,
    /// CO2-eq of that tail, grams.
    pub tail_co2_g: Option<f64>,
    /// The meter (`daemon /run/anges/meterd.sock (measured: perf)`, `local (estimated: …)`).
    pub meter: Option<String>,
    /// Whether every epoch's energy came from hardware counters.
    pub measured: Option<bool>,
    /// Epochs the in-process estimator filled while the daemon was unreachable.
    pub meter_gap_epochs: usize,
    /// The daemon's id of the job (`null` for the in-process meter).
    pub daemon_job: Option<u64>,
    /// The daemon's own final total of the job, joules.
    pub daemon_job_joules: Option<f64>,
    /// The daemon's own final CO2-eq of the job, grams.
    pub daemon_job_grams: Option<f64>,
    /// The carbon intensity and PUE applied.
    pub carbon: Option<CarbonInfo>,
    /// The machine and the meter's sensors.
    pub hardware: Option<Hardware>,
}

/// A run of any training loop, metered, policed and logged.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    meter: Option<EpochMeter>,
    daemon_job: Option<u64>,
    policy: Policy,
    records: Vec<EpochRecord>,
    jsonl: File,
    csv: File,
    started: Instant,
    epoch_started: Instant,
    stopped: Option<StopReason>,
    finished: Option<SessionSummary>,
}

impl Session {
    /// Creates the run folder (refusing one that holds a run unless `overwrite`), writes its
    /// `config.json` and starts the meter.
    pub fn start(config: SessionConfig) -> Result<Session, SessionError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for file in FILES {
            let path = dir.join(file);
            if path.exists() {
                if !config.overwrite {
                    return Err(SessionError::Occupied {
                        dir: dir.clone(),
                        file,
                    });
                }
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let emissions = dir.join(codecarbon::FILE);
        if config.overwrite && emissions.exists() {
            std::fs::remove_file(&emissions).map_err(io(&emissions))?;
        }
        let meter = EpochMeter::start_with(&config.meter, &config.job_name, &config.meter_options)?;
        let daemon_job = meter.as_ref().and_then(EpochMeter::daemon_job);
        let path = dir.join("config.json");
        let recorded = serde_json::json!({
            "writer": PROJECT,
            "stop": config.stop,
            "meter": config.meter,
            "resolved": { "metric": config.metric },
            "labels": config.labels,
        });
        let text = serde_json::to_string_pretty(&recorded).map_err(|e| SessionError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
        let open = |name: &str| {
            let path = dir.join(name);
            File::create(&path).map_err(io(&path))
        };
        let jsonl = open("epochs.jsonl")?;
        let mut csv = open("epochs.csv")?;
        let csv_path = dir.join("epochs.csv");
        csv.write_all(CSV_HEADER.as_bytes())
            .map_err(io(&csv_path))?;
        let higher = config.metric.higher_is_better();
        Ok(Session {
            policy: Policy::new(config.stop, higher),
            meter,
            daemon_job,
            config,
            records: Vec::new(),
            jsonl,
            csv,
            started: Instant::now(),
            epoch_started: Instant::now(),
            stopped: None,
            finished: None,
        })
    }

    /// The meter in one line (`None` unmetered).
    pub fn describe(&self) -> Option<String> {
        self.meter.as_ref().map(EpochMeter::describe)
    }

    /// The daemon's id of the job (`None` for the in-process meter or unmetered).
    pub fn daemon_job(&self) -> Option<u64> {
        self.daemon_job
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Epochs reported so far.
    pub fn epochs(&self) -> usize {
        self.records.len()
    }

    /// Why the policy stopped the run, once it has.
    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }

    /// Reports an epoch that just ended: its validation value of the session's metric (`None`
    /// when it could not be computed), its training loss and test value when known. Reads the
    /// meter (a fresh reading including the epoch's work), feeds the policy and logs the epoch.
    pub fn epoch(
        &mut self,
        valid: Option<f64>,
        train_loss: Option<f64>,
        test: Option<f64>,
    ) -> Result<EpochOutcome, SessionError> {
        if self.finished.is_some() {
            return Err(SessionError::Finished);
        }
        let epoch = self.records.len() + 1;
        let energy = self.meter.as_mut().map(EpochMeter::read_epoch);
        let seconds = self.epoch_started.elapsed().as_secs_f64();
        self.epoch_started = Instant::now();
        let verdict = self
            .policy
            .observe(epoch, valid, energy.as_ref().map(|e| e.cumulative_g));
        let metric = self.config.metric;
        let record = EpochRecord {
            epoch,
            train_loss: train_loss.unwrap_or(f64::NAN),
            valid: metrics_of(metric, valid),
            test: metrics_of(metric, test),
            best: verdict.new_best,
            seconds,
            anges: verdict.anges,
            ..EpochRecord::default()
        }
        .with_energy(energy.as_ref());
        self.append(&record)?;
        self.records.push(record);
        if verdict.stop.is_some() && self.stopped.is_none() {
            self.stopped = verdict.stop;
        }
        Ok(EpochOutcome {
            epoch,
            stop: verdict.stop,
            best: verdict.new_best,
            best_epoch: self.policy.best_epoch(),
            anges: verdict.anges,
            energy,
        })
    }

    fn append(&mut self, rec: &EpochRecord) -> Result<(), SessionError> {
        let path = self.config.dir.join("epochs.jsonl");
        let line = serde_json::to_string(rec).map_err(|e| SessionError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.jsonl
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.jsonl.flush())
            .map_err(io(&path))?;
        let path = self.config.dir.join("epochs.csv");
        self.csv
            .write_all(csv_row(rec).as_bytes())
            .and_then(|()| self.csv.flush())
            .map_err(io(&path))
    }

    /// Ends the session: unregisters the job (the daemon's own final figures come back), writes
    /// `summary.json` and the CodeCarbon-compatible `emissions.csv`. A second call returns the
    /// same summary.
    pub fn finish(&mut self) -> Result<SessionSummary, SessionError> {
        if let Some(s) = &self.finished {
            return Ok(s.clone());
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let meter: Option<MeterFinal> = self.meter.take().map(EpochMeter::finish);
        let metric = self.config.metric;
        let best_epoch = self.policy.best_epoch();
        let best = best_epoch.and_then(|b| self.records.get(b - 1));
        let best_valid = best.and_then(|r| r.valid.get(metric));
        let test_at =
            |r: Option<&EpochRecord>| metrics_of(metric, r.and_then(|r| r.test.get(metric)));
        let last_test = self
            .records
            .iter()
            .rev()
            .find(|r| r.test.get(metric).is_some());
        let total = meter.as_ref().map(MeterFinal::total);
        let summary = SessionSummary {
            writer: PROJECT.to_owned(),
            run_dir: self.config.dir.clone(),
            metric,
            stop: self.config.stop.kind(),
            policy: self.config.stop,
            stop_reason: self.stopped,
            epochs_run: self.records.len(),
            best_epoch,
            best_valid,
            best_test: test_at(best),
            final_test: test_at(last_test),
            labels: self.config.labels.clone(),
            seconds,
            energy_j: total.map(|t| t.0),
            co2_g: total.map(|t| t.1),
            tail_j: meter.as_ref().and_then(|m| m.tail.map(|t| t.energy_j)),
            tail_co2_g: meter.as_ref().and_then(|m| m.tail.map(|t| t.co2_g)),
            meter: meter.as_ref().map(|m| m.describe.clone()),
            measured: meter.as_ref().map(|m| m.measured),
            meter_gap_epochs: meter.as_ref().map_or(0, |m| m.gap_epochs),
            daemon_job: self.daemon_job,
            daemon_job_joules: meter.as_ref().and_then(|m| m.daemon_job_joules),
            daemon_job_grams: meter.as_ref().and_then(|m| m.daemon_job_grams),
            carbon: meter.as_ref().and_then(|m| m.carbon.clone()),
            hardware: meter.as_ref().and_then(|m| m.hardware.clone()),
        };
        let path = self.config.dir.join("summary.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| SessionError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text + "\n").map_err(io(&path))?;
        if let Some(m) = &meter {
            codecarbon::append_run_as(&self.config.dir, PROJECT, seconds, m)
                .map_err(|e| SessionError::Codecarbon(e.to_string()))?;
        }
        self.finished = Some(summary.clone());
        Ok(summary)
    }
}

/// An [`EvalMetrics`] holding `value` as `metric`.
fn metrics_of(metric: Metric, value: Option<f64>) -> EvalMetrics {
    let mut m = EvalMetrics::default();
    let slot = match metric {
        Metric::RocAuc => &mut m.roc_auc,
        Metric::PrcAuc => &mut m.prc_auc,
        Metric::Rmse => &mut m.rmse,
        Metric::Mae => &mut m.mae,
    };
    *slot = value;
    m.tasks_evaluated = usize::from(value.is_some());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeterMode;
    use crate::policy::AngesParams;
    use crate::replay::{LoggedRun, SummaryHead, replay};

    fn config(dir: &Path, stop: StopSpec) -> SessionConfig {
        SessionConfig {
            dir: dir.to_owned(),
            metric: Metric::RocAuc,
            stop,
            meter: MeterConfig {
                mode: MeterMode::Local,
                ..MeterConfig::default()
            },
            meter_options: MeterOptions::estimated(),
            job_name: "session-test".into(),
            overwrite: false,
            labels: RunLabels::default(),
        }
    }

    /// A session under AN-GES (literal, W = 2) stops at the first dip after the warm-up; its log
    /// replays to the same epoch, and its summary and emissions.csv hold the meter's figures,
    /// its labels and the test values at the best and the last epoch.
    #[test]
    fn a_session_stops_logs_and_replays_to_the_same_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let spec = StopSpec::Anges(AngesParams {
            warmup: 2,
            ..AngesParams::literal()
        });
        let labels = RunLabels {
            dataset: Some("bace".into()),
            model: Some("Mlp".into()),
            init: None,
        };
        let mut s = Session::start(SessionConfig {
            labels: labels.clone(),
            ..config(&run, spec)
        })
        .unwrap();
        assert!(s.describe().unwrap().starts_with("local"));
        let valid = [0.60, 0.65, 0.70, 0.72, 0.69, 0.75, 0.80];
        let mut stop = None;
        for v in valid {
            // Some work for the meter to charge.
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed().as_millis() < 150 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
            // A test value at every epoch but the last: the final test is the fourth epoch's.
            let test = (v != 0.69).then_some(v - 0.1);
            let out = s.epoch(Some(v), Some(0.5), test).unwrap();
            assert!(out.energy.as_ref().unwrap().cumulative_j > 0.0);
            if out.stop.is_some() {
                stop = Some(out.epoch);
                break;
            }
        }
        assert_eq!(stop, Some(5), "the dip at epoch 5 stops the literal rule");
        let summary = s.finish().unwrap();
        assert_eq!(summary.stop_reason, Some(StopReason::Anges));
        assert_eq!((summary.epochs_run, summary.best_epoch), (5, Some(4)));
        assert!(summary.energy_j.unwrap() > 0.0 && summary.co2_g.unwrap() > 0.0);
        assert!(summary.meter.as_deref().unwrap().starts_with("local"));
        assert_eq!(summary.labels, labels);
        assert_eq!(summary.best_test.get(Metric::RocAuc), Some(0.72 - 0.1));
        assert_eq!(summary.final_test.get(Metric::RocAuc), Some(0.72 - 0.1));
        let text = std::fs::read_to_string(run.join("summary.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&json["dataset"], &json["init"]),
            (&"bace".into(), &serde_json::Value::Null)
        );
        assert_eq!(
            serde_json::from_str::<SessionSummary>(&text).unwrap(),
            summary
        );
        let log = LoggedRun::<SummaryHead>::load(&run).unwrap();
        assert_eq!(replay(&log, spec).stop_epoch, 5);
        let csv = std::fs::read_to_string(run.join("emissions.csv")).unwrap();
        assert_eq!(csv.lines().count(), 2, "{csv}");
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        assert_eq!((row[1], row[2]), ("anges", "run"), "{csv}");
        assert!(matches!(
            s.epoch(Some(0.9), None, None),
            Err(SessionError::Finished)
        ));
        // The folder now holds a run.
        let err = Session::start(config(&run, spec)).unwrap_err().to_string();
        assert!(err.contains("overwrite=True"), "{err}");
        let mut again = config(&run, spec);
        again.overwrite = true;
        assert!(Session::start(again).is_ok());
    }
}
