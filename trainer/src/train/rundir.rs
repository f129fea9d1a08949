//! The run directory of a fine-tuning run and the records written into it.
//!
//! Default `runs/<UTC time>-<dataset>-<model>/` (relative to the working directory), or `--out
//! DIR`. It holds:
//!
//! - `config.json`: the run's configuration (`"config"`, a [`crate::config::FinetuneConfig`]) and
//!   what it resolved to (`"resolved"`: dataset file, tasks, metric, device, weights, data
//!   digest); older runs hold their flags under `"args"` ([`crate::config::legacy`]);
//! - `split.json`: the train/valid/test rows ([`crate::split::Split::write`]);
//! - `epochs.jsonl` and `epochs.csv`: one [`EpochRecord`] per epoch, appended and flushed as
//!   each epoch ends (so a run that dies keeps its log);
//! - `summary.json`: the [`Summary`];
//! - `emissions.csv`: the run's row in CodeCarbon's format ([`crate::emissions::codecarbon`]; not
//!   with `--meter off`);
//! - `best.safetensors` (written at each new best validation epoch) and `final.safetensors`:
//!   the weights;
//! - `resume.safetensors` while the run is going: what `--resume` continues from
//!   ([`super::resume`]); removed when the run ends;
//! - `skipped.csv`, when rows of the input gave no molecule: their line, SMILES and reason.
//!
//! Energy and CO2 fields are `null` with `--meter off`.
//!
//! A run is never destroyed by accident: a fresh run refuses a folder that already holds a
//! run's files ([`check_unused`]) unless told to replace it (`--overwrite`); an empty or new
//! folder is fine. The folder of the run going on in this process is published ([`open_run`])
//! so that an interrupt handler can say how to continue it.

use super::predictions::{BEST_WEIGHTS_FILE, PREDICTOR_FILE, TEST_PREDICTIONS_FILE};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::metrics::EvalMetrics;
use crate::config::{ModelKind, PruneMethod, StopPolicy};
use crate::data::{Metric, Skip, TaskType};
use crate::policy::{StopReason, StopSpec};
use crate::split::Split;
pub use anges_tracking::record::EpochRecord;
#[cfg(test)]
use anges_tracking::record::grams_per_kwh;
use anges_tracking::record::{CSV_HEADER, csv_row};

/// Row counts of a run's data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Data rows of the input file considered (after `--max-rows`).
    pub file_rows: usize,
    /// Rows that gave a usable molecule.
    pub used: usize,
    /// Rows dropped, per reason (featurisation skips by kind, `model-vocabulary` for features
    /// the model's embedding tables cannot hold, and `no-selfies` for molecules SELFIES cannot
    /// express under `--representation selfies`).
    pub dropped: BTreeMap<String, usize>,
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub valid: usize,
    /// Test rows.
    pub test: usize,
}

/// The outcome of a run (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Dataset name.
    pub dataset: String,
    /// Model family.
    pub model: ModelKind,
    /// Classification or regression.
    pub task_type: TaskType,
    /// The metric that selects the best epoch (the dataset's first).
    pub metric: Metric,
    /// The stopping policy.
    pub stop: StopPolicy,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Epochs trained.
    pub epochs_run: usize,
    /// Epoch of the best validation metric (1-based; the last epoch when no validation metric
    /// could be computed).
    pub best_epoch: usize,
    /// Validation metrics at the best epoch.
    pub best_valid: EvalMetrics,
    /// Test metrics at the best epoch.
    pub best_test: EvalMetrics,
    /// Training loss of the last epoch.
    pub final_train_loss: f64,
    /// Validation metrics after the last epoch.
    pub final_valid: EvalMetrics,
    /// Test metrics after the last epoch.
    pub final_test: EvalMetrics,
    /// Row counts.
    pub rows: RowCounts,
    /// The checkpoint the encoder started from (`null`: random initialisation).
    pub pretrained: Option<PathBuf>,
    /// Where the starting weights came from: `given` (`--pretrained`), `model-cache`, `default`
    /// (shipped or published), `random-init` (`null` in summaries written before it existed).
    #[serde(default)]
    pub weights_source: Option<super::weights::WeightsSource>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Energy of the whole run in joules, what the meter charged its job: the epochs' (the last
    /// epoch's `cumulative_j`) plus `tail_j` (`null` with `--meter off`). This is `E` of a live
    /// run's trade-off.
    pub energy_j: Option<f64>,
    /// CO2-eq of the whole run in grams, the epochs' plus `tail_co2_g` (`null` with `--meter
    /// off`).
    pub co2_g: Option<f64>,
    /// Energy charged after the last epoch's reading (saving its weights, unregistering), joules;
    /// in no epoch's figures. `null` when the meter's final totals were unknown (then `energy_j`
    /// is the epochs' alone).
    #[serde(default)]
    pub tail_j: Option<f64>,
    /// CO2-eq of that tail, grams.
    #[serde(default)]
    pub tail_co2_g: Option<f64>,
    /// The stopping policy with its parameters.
    #[serde(default)]
    pub policy: Option<StopSpec>,
    /// The meter used (e.g. `daemon /run/anges/meterd.sock (measured: rapl-perf)`).
    #[serde(default)]
    pub meter: Option<String>,
    /// Whether every epoch's energy came from hardware counters.
    #[serde(default)]
    pub measured: Option<bool>,
    /// Epochs whose energy the local estimator filled in while the daemon was unreachable.
    #[serde(default)]
    pub meter_gap_epochs: usize,
    /// The daemon's own final totals of this run's job (joules), from its unregistration
    /// answer; `energy_j` when the daemon metered the run without a gap.
    #[serde(default)]
    pub daemon_job_joules: Option<f64>,
    /// The daemon's own final CO2-eq of this run's job, grams.
    #[serde(default)]
    pub daemon_job_grams: Option<f64>,
    /// Data pruning, when used.
    #[serde(default)]
    pub prune: Option<PruneSummary>,
    /// The carbon intensity (g/kWh and its source) and the PUE the grams were computed with
    /// (`null` with `--meter off`).
    #[serde(default)]
    pub carbon: Option<crate::emissions::CarbonInfo>,
    /// The machine: CPU, GPUs, and the meter's sensors, measured or estimated (`null` with
    /// `--meter off`).
    #[serde(default)]
    pub hardware: Option<crate::emissions::Hardware>,
}

/// What data pruning did over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneSummary {
    /// `molpeg` or `random`.
    pub method: PruneMethod,
    /// Fraction of the training set kept each epoch.
    pub keep_ratio: f64,
    /// Training samples used over all epochs.
    pub samples_used: usize,
    /// Training samples a run without pruning would have used over the same epochs.
    pub samples_full: usize,
    /// MolPeg: seconds in the reference model's forward passes.
    pub reference_seconds: f64,
    /// MolPeg: energy of those passes, joules (apportioned by time).
    pub reference_energy_j: Option<f64>,
}

/// The rows of the input that gave no molecule, in a run directory.
pub const SKIPPED_FILE: &str = "skipped.csv";

/// The files a run writes into its directory: a folder holding any of them holds a run.
const RUN_FILES: &[&str] = &[
    "config.json",
    "split.json",
    "epochs.jsonl",
    "epochs.csv",
    "summary.json",
    BEST_WEIGHTS_FILE,
    "final.safetensors",
    super::resume::STATE_FILE,
    SKIPPED_FILE,
    PREDICTOR_FILE,
    TEST_PREDICTIONS_FILE,
    crate::emissions::codecarbon::FILE,
];

/// The run directory open in this process ([`open_run`]).
static OPEN_RUN: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The directory of the fine-tuning run going on in this process, if any: what an interrupt
/// handler names for `--resume`.
pub fn open_run() -> Option<PathBuf> {
    OPEN_RUN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_open_run(path: Option<&Path>) {
    *OPEN_RUN.lock().unwrap_or_else(|e| e.into_inner()) = path.map(Path::to_owned);
}

/// Refuses to start a fresh run in `out` when it already holds a run's files, unless
/// `overwrite`: the error says what the folder holds and how to continue or replace it. A
/// folder that does not exist yet, or holds none of a run's files, is fine; so is no `out` (a
/// fresh `runs/<time>-…` folder).
pub fn check_unused(out: Option<&Path>, overwrite: bool) -> Result<(), TrainError> {
    let Some(dir) = out else { return Ok(()) };
    if overwrite {
        return Ok(());
    }
    let found: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|name| dir.join(name).exists())
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let shown = dir.display();
    let what = if found.contains(&"summary.json") {
        format!("{shown} holds a finished run ({})", found.join(", "))
    } else if found.contains(&super::resume::STATE_FILE) {
        format!(
            "{shown} holds an interrupted run ({}): continue it with `anges-train --resume \
             {shown}`",
            found.join(", ")
        )
    } else {
        format!("{shown} holds a run's files ({})", found.join(", "))
    };
    Err(TrainError::Options(format!(
        "{what}; to replace it, add --overwrite, or choose another --out (nothing was changed)"
    )))
}

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    jsonl: File,
    csv: File,
}

impl RunDir {
    /// Creates (or reuses) `out`, or a fresh `runs/<UTC time>-<dataset>-<model>/`, and opens
    /// `epochs.jsonl` and `epochs.csv` (truncated, the CSV with its header).
    pub fn create(out: Option<&Path>, dataset: &str, model: &str) -> Result<Self, TrainError> {
        let path = match out {
            Some(p) => p.to_owned(),
            None => default_path(Path::new("runs"), dataset, model),
        };
        std::fs::create_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        let open = |name: &str| -> Result<File, TrainError> {
            let p = path.join(name);
            File::create(&p).map_err(|e| TrainError::io(&p, e))
        };
        let jsonl = open("epochs.jsonl")?;
        let mut csv = open("epochs.csv")?;
        let csv_path = path.join("epochs.csv");
        csv.write_all(CSV_HEADER.as_bytes())
            .and_then(|()| csv.flush())
            .map_err(|e| TrainError::io(&csv_path, e))?;
        set_open_run(Some(&path));
        Ok(Self { path, jsonl, csv })
    }

    /// Reopens the run directory `path` of an interrupted run (`--resume`) whose first
    /// `epochs` epochs are saved: reads them back from `epochs.jsonl` and rewrites both logs with
    /// exactly those (an epoch logged after the last saved state is dropped: it runs again).
    /// A log with fewer readable epochs than that is an error.
    pub fn reopen(path: &Path, epochs: usize) -> Result<(Self, Vec<EpochRecord>), TrainError> {
        let jsonl_path = path.join("epochs.jsonl");
        let text =
            std::fs::read_to_string(&jsonl_path).map_err(|e| TrainError::io(&jsonl_path, e))?;
        let mut records = Vec::with_capacity(epochs);
        for (i, line) in text.lines().take(epochs).enumerate() {
            let rec: EpochRecord = serde_json::from_str(line).map_err(|e| {
                TrainError::io(
                    &jsonl_path,
                    std::io::Error::other(format!("line {}: {e}", i + 1)),
                )
            })?;
            if rec.epoch != i + 1 {
                return Err(TrainError::io(
                    &jsonl_path,
                    std::io::Error::other(format!("line {} holds epoch {}", i + 1, rec.epoch)),
                ));
            }
            records.push(rec);
        }
        if records.len() < epochs {
            return Err(TrainError::io(
                &jsonl_path,
                std::io::Error::other(format!(
                    "{} epochs logged, the saved state is at epoch {epochs}",
                    records.len()
                )),
            ));
        }
        // Each log is rewritten beside itself and renamed into place: an interruption here
        // leaves the old log or the new one, never a truncated one.
        let mut jsonl_text = String::new();
        let mut csv_text = CSV_HEADER.to_owned();
        for rec in &records {
            let line = serde_json::to_string(rec)
                .map_err(|e| TrainError::io(&jsonl_path, std::io::Error::other(e)))?;
            jsonl_text.push_str(&line);
            jsonl_text.push('\n');
            csv_text.push_str(&csv_row(rec));
        }
        let open = |name: &str, text: &str| -> Result<File, TrainError> {
            let target = path.join(name);
            replace_atomically(&target, |tmp| {
                std::fs::write(tmp, text).map_err(|e| TrainError::io(tmp, e))
            })?;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&target)
                .map_err(|e| TrainError::io(&target, e))
        };
        let jsonl = open("epochs.jsonl", &jsonl_text)?;
        let csv = open("epochs.csv", &csv_text)?;
        let dir = Self {
            path: path.to_owned(),
            jsonl,
            csv,
        };
        set_open_run(Some(path));
        Ok((dir, records))
    }

    /// Removes what an earlier run left in a reused directory (`summary.json`, weights, resume
    /// state, predictions), so that a fresh run interrupted there does not look finished or
    /// resumable. `emissions.csv` stays: the replaced run's emissions happened, and the new run
    /// appends its row under the same header, as CodeCarbon does in its output folder.
    pub fn clear_outputs(&self) -> Result<(), TrainError> {
        for name in [
            "summary.json",
            BEST_WEIGHTS_FILE,
            "final.safetensors",
            super::resume::STATE_FILE,
            SKIPPED_FILE,
            PREDICTOR_FILE,
            TEST_PREDICTIONS_FILE,
        ] {
            let path = self.file(name);
            crate::files::remove_if_present(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `config.json`.
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<(), TrainError> {
        write_json(&self.file("config.json"), config)
    }

    /// Writes `skipped.csv` (columns `line`, `smiles`, `reason`), one row per input row that
    /// gave no molecule; nothing when there is none.
    pub fn write_skipped(&self, skipped: &[Skip]) -> Result<(), TrainError> {
        if skipped.is_empty() {
            return Ok(());
        }
        let path = self.file(SKIPPED_FILE);
        let failed = |e: csv::Error| TrainError::io(&path, std::io::Error::other(e));
        let mut out = csv::Writer::from_path(&path).map_err(failed)?;
        out.write_record(["line", "smiles", "reason"])
            .map_err(failed)?;
        for s in skipped {
            let reason = format!("{}: {}", s.kind.name(), s.message);
            out.write_record([s.line.to_string().as_str(), &s.smiles, &reason])
                .map_err(failed)?;
        }
        out.flush().map_err(|e| TrainError::io(&path, e))
    }

    /// Writes `split.json`.
    pub fn write_split(&self, split: &Split) -> Result<(), TrainError> {
        Ok(split.write(&self.file("split.json"))?)
    }

    /// Appends one epoch to `epochs.jsonl` and `epochs.csv`, flushing both.
    pub fn append_epoch(&mut self, rec: &EpochRecord) -> Result<(), TrainError> {
        let jsonl_path = self.file("epochs.jsonl");
        let line = serde_json::to_string(rec)
            .map_err(|e| TrainError::io(&jsonl_path, std::io::Error::other(e)))?;
        self.jsonl
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.jsonl.flush())
            .map_err(|e| TrainError::io(&jsonl_path, e))?;
        let csv_path = self.file("epochs.csv");
        self.csv
            .write_all(csv_row(rec).as_bytes())
            .and_then(|()| self.csv.flush())
            .map_err(|e| TrainError::io(&csv_path, e))
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, summary: &Summary) -> Result<(), TrainError> {
        write_json(&self.file("summary.json"), summary)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let mut open = OPEN_RUN.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_deref() == Some(self.path.as_path()) {
            *open = None;
        }
    }
}

/// Writes `target` through `write` on a temporary file beside it, then renames it into place
/// ([`crate::files::replace_file`]).
pub(crate) fn replace_atomically(
    target: &Path,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    crate::files::replace_file(target, write, TrainError::io)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(|e| TrainError::io(path, e))
}

/// `<root>/<UTC time>-<dataset>-<model>`, with `-2`, `-3`, … appended if that already exists.
pub(crate) fn default_path(root: &Path, dataset: &str, model: &str) -> PathBuf {
    let clean: String = dataset
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}-{clean}-{model}", utc_stamp(secs));
    let mut path = root.join(&base);
    let mut n = 2;
    while path.exists() {
        path = root.join(format!("{base}-{n}"));
        n += 1;
    }
    path
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC): the ISO 8601 stamp without separators.
fn utc_stamp(secs: u64) -> String {
    let iso = anges_common::time::iso8601_utc(secs as f64);
    format!("{}Z", iso.replace(['-', ':'], ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_412_503), "20261123T054143Z");
    }

    #[test]
    fn default_paths_are_unique_and_clean() {
        let dir = tempfile::tempdir().unwrap();
        let a = default_path(dir.path(), "my data/set", "gin");
        let name = a.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.ends_with("-my_data_set-gin"), "{name}");
        std::fs::create_dir_all(&a).unwrap();
        let b = default_path(dir.path(), "my data/set", "gin");
        assert_ne!(a, b);
    }

    #[test]
    fn folders_holding_a_run_are_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        // A new folder, an empty one, or none given: fine.
        assert!(check_unused(Some(&run), false).is_ok());
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        assert!(check_unused(Some(&run), false).is_ok());
        assert!(check_unused(None, false).is_ok());
        // An interrupted run: refused, pointing at --resume and --overwrite.
        std::fs::write(run.join("config.json"), "{}").unwrap();
        std::fs::write(run.join(crate::train::resume::STATE_FILE), "x").unwrap();
        let err = check_unused(Some(&run), false).unwrap_err().to_string();
        assert!(
            err.contains("interrupted run")
                && err.contains("--resume")
                && err.contains("--overwrite"),
            "{err}"
        );
        // A finished one: refused; --overwrite lets it be replaced.
        std::fs::write(run.join("summary.json"), "{}").unwrap();
        let err = check_unused(Some(&run), false).unwrap_err().to_string();
        assert!(err.contains("finished run"), "{err}");
        assert!(check_unused(Some(&run), true).is_ok());
    }

    #[test]
    fn skipped_rows_are_written_with_their_line_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(Some(dir.path()), "x", "gin").unwrap();
        run.write_skipped(&[]).unwrap();
        assert!(!dir.path().join(SKIPPED_FILE).exists());
        let skip = Skip {
            row: 3,
            line: 5,
            smiles: "C1,CC".into(),
            kind: crate::data::SkipKind::InvalidSmiles,
            message: "unclosed ring".into(),
        };
        run.write_skipped(&[skip]).unwrap();
        let text = std::fs::read_to_string(dir.path().join(SKIPPED_FILE)).unwrap();
        assert_eq!(
            text,
            "line,smiles,reason\n5,\"C1,CC\",invalid-smiles: unclosed ring\n"
        );
    }

    #[test]
    fn epochs_are_appended_to_both_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::create(Some(dir.path()), "bbbp", "gin").unwrap();
        let rec = EpochRecord {
            epoch: 1,
            train_loss: 0.5,
            valid: EvalMetrics {
                roc_auc: Some(0.75),
                ..Default::default()
            },
            test: EvalMetrics::default(),
            best: true,
            seconds: 1.5,
            samples_used: 10,
            ..EpochRecord::default()
        };
        run.append_epoch(&rec).unwrap();
        run.append_epoch(&EpochRecord {
            epoch: 2,
            ..rec.clone()
        })
        .unwrap();
        let jsonl = std::fs::read_to_string(dir.path().join("epochs.jsonl")).unwrap();
        let lines: Vec<EpochRecord> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                rec.clone(),
                EpochRecord {
                    epoch: 2,
                    ..rec.clone()
                }
            ]
        );
        assert!(jsonl.contains("\"energy_j\":null"));
        let csv = std::fs::read_to_string(dir.path().join("epochs.csv")).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].split(',').count(), rows[1].split(',').count());
        assert_eq!(rows[1], "1,0.5,,0.75,,,,,,,,,true,1.5,,,,,,,,10,,,");
        // With energy, the epoch's charge per kWh (intensity × PUE) is stated.
        let charged = EpochRecord {
            energy_j: Some(7.2e6),
            co2_g: Some(300.0),
            ..rec.clone()
        };
        assert_eq!(grams_per_kwh(&charged), Some(150.0));
        assert!(csv_row(&charged).contains(",7200000,300,150,"));

        // Reopened at the first epoch: the second is dropped from both logs, and appending
        // goes on after the first.
        drop(run);
        let (mut again, kept) = RunDir::reopen(dir.path(), 1).unwrap();
        assert_eq!(kept, vec![rec.clone()]);
        again
            .append_epoch(&EpochRecord {
                epoch: 2,
                train_loss: 0.25,
                ..rec.clone()
            })
            .unwrap();
        let jsonl = std::fs::read_to_string(dir.path().join("epochs.jsonl")).unwrap();
        let losses: Vec<f64> = jsonl
            .lines()
            .map(|l| serde_json::from_str::<EpochRecord>(l).unwrap().train_loss)
            .collect();
        assert_eq!(losses, vec![0.5, 0.25]);
        let csv = std::fs::read_to_string(dir.path().join("epochs.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.starts_with("epoch,train_loss,"));
        // A log shorter than the saved state, or out of order, is an error.
        assert!(RunDir::reopen(dir.path(), 3).is_err());
        std::fs::write(
            dir.path().join("epochs.jsonl"),
            jsonl.replace("\"epoch\":1", "\"epoch\":5"),
        )
        .unwrap();
        assert!(RunDir::reopen(dir.path(), 1).is_err());
    }
}
