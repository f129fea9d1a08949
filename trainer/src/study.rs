//! `anges-train study`: the trade-off study of one dataset and model on one split.
//!
//! Per seed it trains the full fine-tuning live and derives the stopping policies that do not
//! change the trajectory from its log: the patience baseline and AN-GES are
//! [`replay::replay`]ed on the full run's `epochs.jsonl` rather than trained (the first epochs of a
//! run are bit-identical for the same seed and thread count whatever policy watches them, so the
//! replay stops where the live run would, see below). Only the runs that change the trajectory
//! are trained live: MolPeg (and, with `--with-random`, random pruning) at each keep ratio, each
//! with [`StopSpec::Full`]; AN-GES + MolPeg (`--combine`) is in turn replayed on the log of the
//! live MolPeg run of the same ratio. Every live run has its own run directory
//! `<study>/seed<N>/<label>/` and is metered as its own job; the later runs reuse the full run's
//! `split.json`. A replayed run has no directory of its own: its `run_dir` is the directory of
//! the run it was replayed on, its epochs are that run's truncated at its stop, and its wall
//! time is the sum of that run's per-epoch seconds up to the stop (setup time excluded).
//!
//! `--live-policies` also trains each replayed policy live (label `<label>-live`, e.g.
//! `anges-live`, in its own directory) and checks live = replay: the live run must stop at the
//! replay's stop epoch and deliver its best epoch. A mismatch is a warning and is recorded in the
//! report (`live_matches_replay` of both runs). The validation metric `P_i` is bit-identical
//! between the two; the emissions `E_i` that AN-GES also reads are the meter's, which a second
//! run reproduces only up to its noise, so an AN-GES live run whose `AER_i` sits right at
//! `β·EMA` may stop one epoch away from the replay (patience reads `P_i` alone).
//!
//! Trade-offs (docs/spec.md §1.9) are against the full run F of the same seed, in two ways:
//! - a live run compares its whole charge (`co2_g` of its summary, epochs plus tail) and its
//!   delivered test metric with F's summary;
//! - a replayed run compares the epochs' cumulative CO2 at its stop with F's epochs alone (the
//!   last `cumulative_co2_g` of F's log): a log has no tail, so both sides are epoch-only, as in
//!   `anges-train replay`. For AN-GES + MolPeg that is the MolPeg log's CO2 at the stop against
//!   F's log.
//!
//! The study then replays the full run over the β grid (the frontier) and writes the report
//! ([`crate::report`]) into the study folder.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, FinetuneConfig, MeterMode, PruneMethod};
use crate::data::Metric;
use crate::policy::{AngesParams, StopSpec};
use crate::replay::{self, LoggedRun, Outcome, ReplayError};
use crate::report::{
    self, EpochPoint, FrontierPoint, ReportError, ReportFiles, RunSource, StudyReport, StudyRun,
};
use crate::train::{self, EpochRecord, Summary, TrainError};

/// Why a study could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// Invalid study options.
    #[error("invalid options: {0}")]
    Options(String),
    /// One of the runs failed.
    #[error("run {label} (seed {seed}): {source}")]
    Run {
        /// The run's label.
        label: String,
        /// Its seed.
        seed: u64,
        /// What failed.
        #[source]
        source: Box<TrainError>,
    },
    /// A run's log could not be read back.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl From<ConfigError> for StudyError {
    fn from(e: ConfigError) -> Self {
        Self::Options(e.0)
    }
}

/// What a study produced.
#[derive(Debug)]
pub struct StudyOutcome {
    /// The study folder.
    pub dir: PathBuf,
    /// Everything the report shows.
    pub report: StudyReport,
    /// The files written.
    pub files: ReportFiles,
}

/// What a study runs: the configuration its runs share and the policies it compares.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// The runs' shared configuration; the study sets each run's seed, stopping policy,
    /// pruning, split file and folder.
    pub base: FinetuneConfig,
    /// The AN-GES run's parameters (also the β frontier's, but β).
    pub anges: AngesParams,
    /// The patience baseline's patience.
    pub patience: usize,
    /// The patience baseline's minimum improvement.
    pub min_delta: f64,
    /// MolPeg keep ratios (empty: no MolPeg run).
    pub keep_ratios: Vec<f64>,
    /// Also run dynamic random pruning at each keep ratio.
    pub with_random: bool,
    /// Also derive AN-GES combined with MolPeg at each keep ratio.
    pub combine: bool,
    /// Also train every replayed policy live (`<label>-live`) and check that it stops where
    /// its replay does.
    pub live_policies: bool,
    /// Seeds to run and aggregate.
    pub seeds: Vec<u64>,
    /// β grid replayed on each full run.
    pub frontier_betas: Vec<f64>,
}

impl StudyConfig {
    /// Checks the study's options and the policies it will run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.base.meter.mode == MeterMode::Off {
            return Err(ConfigError::new(
                "a study compares emissions: use --meter auto, daemon or local, not off",
            ));
        }
        if self.seeds.is_empty() {
            return Err(ConfigError::new("--seeds is empty"));
        }
        if let Some(r) = self.keep_ratios.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
            return Err(ConfigError(format!("--keep-ratios: {r} is not in (0, 1]")));
        }
        self.anges.validate().map_err(ConfigError)?;
        StopSpec::Patience {
            patience: self.patience,
            min_delta: self.min_delta,
        }
        .validate()
        .map_err(ConfigError)?;
        self.base.validate()
    }
}

/// The label of the full run, the one every other run of its seed is compared with.
const FULL: &str = "full";

/// How one run of the study is obtained.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Trained live with this configuration.
    Train(Box<FinetuneConfig>),
    /// Derived by replaying `stop` on the log of the live run labelled `from` (same seed).
    Replay {
        /// The label of the live run whose log is replayed (planned before this one).
        from: String,
        /// The policy replayed.
        stop: StopSpec,
    },
}

/// One planned run.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    /// Its label in the report.
    label: String,
    /// How it is obtained.
    step: Step,
    /// With `--live-policies`, for a live run of a replayed policy: the label of that replayed
    /// run (planned before this one), which this run must match.
    twin_of: Option<String>,
}

/// The runs of one seed, in order: a replayed run comes after the live run it replays, a live
/// twin after the replayed run it checks.
fn plan(study: &StudyConfig, seed: u64, dir: &Path) -> Vec<Planned> {
    let train = |label: &str, stop: StopSpec, prune: PruneMethod, keep: f64| {
        let mut c = study.base.clone();
        c.data.seed = seed;
        c.stop = stop;
        c.prune.method = prune;
        c.prune.keep_ratio = keep;
        c.out = Some(dir.join(format!("seed{seed}")).join(label));
        Planned {
            label: label.to_owned(),
            step: Step::Train(Box::new(c)),
            twin_of: None,
        }
    };
    // The replayed run `label` of `stop` on the log of `from` and, with `--live-policies`, its
    // live twin (`prune` and `keep` are those of `from`).
    let derived = |label: &str, from: &str, stop: StopSpec, prune: PruneMethod, keep: f64| {
        let mut runs = vec![Planned {
            label: label.to_owned(),
            step: Step::Replay {
                from: from.to_owned(),
                stop,
            },
            twin_of: None,
        }];
        if study.live_policies {
            let mut twin = train(&format!("{label}-live"), stop, prune, keep);
            twin.twin_of = Some(label.to_owned());
            runs.push(twin);
        }
        runs
    };
    let anges = StopSpec::Anges(study.anges);
    let patience = StopSpec::Patience {
        patience: study.patience,
        min_delta: study.min_delta,
    };
    let mut runs = vec![train(FULL, StopSpec::Full, PruneMethod::None, 1.0)];
    runs.extend(derived("patience", FULL, patience, PruneMethod::None, 1.0));
    runs.extend(derived("anges", FULL, anges, PruneMethod::None, 1.0));
    for &r in &study.keep_ratios {
        let molpeg = format!("molpeg-{r}");
        runs.push(train(&molpeg, StopSpec::Full, PruneMethod::Molpeg, r));
        if study.with_random {
            runs.push(train(
                &format!("random-{r}"),
                StopSpec::Full,
                PruneMethod::Random,
                r,
            ));
        }
        if study.combine {
            runs.extend(derived(
                &format!("anges+molpeg-{r}"),
                &molpeg,
                anges,
                PruneMethod::Molpeg,
                r,
            ));
        }
    }
    runs
}

/// The full run of one seed: its log and summary, and its epochs' figures (test metric of the
/// delivered weights, cumulative CO2 after the last epoch) that replayed runs compare with.
struct FullRun {
    log: LoggedRun,
    summary: Summary,
    epochs_only: (Option<f64>, Option<f64>),
}

/// Runs the study `study` describes; `command` is the command line recorded in the report.
pub fn run_study(study: &StudyConfig, command: String) -> Result<StudyOutcome, StudyError> {
    study.validate()?;
    let dataset = study.base.data.dataset.clone();
    let model = study.base.model_name().to_owned();
    let dir = match &study.base.out {
        Some(p) => p.clone(),
        None => train::rundir::default_path(Path::new("runs"), &dataset, &format!("{model}-study")),
    };
    let anges = study.anges;

    let mut runs: Vec<StudyRun> = Vec::new();
    let mut frontier: Vec<FrontierPoint> = Vec::new();
    let mut metric = Metric::RocAuc;
    let mut meter = String::new();
    let mut setting = Vec::new();
    for &seed in &study.seeds {
        let mut full: Option<FullRun> = None;
        // The logs of this seed's live runs, by label.
        let mut logs: Vec<(String, LoggedRun)> = Vec::new();
        for planned in plan(study, seed, &dir) {
            let label = planned.label;
            match planned.step {
                Step::Train(mut run_config) => {
                    if let Some(f) = &full {
                        run_config.data.split_file = Some(f.log.dir.join("split.json"));
                    }
                    tracing::info!("study: seed {seed}, run {label}");
                    let summary =
                        train::run_finetune(&run_config).map_err(|source| StudyError::Run {
                            label: label.clone(),
                            seed,
                            source: Box::new(source),
                        })?;
                    let log = LoggedRun::load(&summary.run_dir)?;
                    metric = summary.metric;
                    if meter.is_empty() {
                        meter = summary.meter.clone().unwrap_or_default();
                        setting = report::setting_of(&summary);
                    }
                    let versus = full
                        .as_ref()
                        .map(|f| (f.summary.best_test.get(metric), f.summary.co2_g));
                    let mut run = study_run(&label, seed, &summary, &log, versus);
                    if let Some(twin) = &planned.twin_of {
                        check_live_matches_replay(&mut runs, &mut run, twin);
                    }
                    runs.push(run);
                    if full.is_none() {
                        let out = replay::replay(&log, StopSpec::Full);
                        full = Some(FullRun {
                            log: log.clone(),
                            summary,
                            epochs_only: (out.test_metric, out.co2_g),
                        });
                    }
                    logs.push((label, log));
                }
                Step::Replay { from, stop } => {
                    let (Some((_, log)), Some(f)) =
                        (logs.iter().find(|(l, _)| *l == from), full.as_ref())
                    else {
                        return Err(StudyError::Replay(ReplayError::Unusable(format!(
                            "study: {label} (seed {seed}) replays {from}, which has no log"
                        ))));
                    };
                    tracing::info!("study: seed {seed}, run {label} replayed on the {from} log");
                    let out = replay::replay(log, stop);
                    runs.push(replayed_run(&label, seed, &from, log, &out, f.epochs_only));
                }
            }
        }
        if let Some(f) = &full {
            for &beta in &study.frontier_betas {
                let params = AngesParams { beta, ..anges };
                if params.validate().is_err() {
                    continue;
                }
                let out = replay::replay(&f.log, StopSpec::Anges(params));
                frontier.push(FrontierPoint {
                    seed,
                    alpha: params.alpha,
                    beta,
                    warmup: params.warmup,
                    stop_epoch: out.stop_epoch,
                    delta_perf_pct: out.delta_perf_pct,
                    delta_emiss_pct: out.delta_emiss_pct,
                });
            }
        }
    }
    let report = StudyReport {
        dataset,
        model,
        metric,
        seeds: study.seeds.clone(),
        command,
        meter,
        setting,
        runs,
        frontier,
    };
    let files = report::write_all(&report, &dir)?;
    Ok(StudyOutcome { dir, report, files })
}

/// Compares the live run `live` with the replayed run `twin` of its seed (already in `runs`):
/// both must stop at the same epoch and deliver the same epoch. Records the answer on both, and
/// warns on a mismatch.
fn check_live_matches_replay(runs: &mut [StudyRun], live: &mut StudyRun, twin: &str) {
    let Some(replayed) = runs
        .iter_mut()
        .rev()
        .find(|r| r.seed == live.seed && r.label == twin)
    else {
        return;
    };
    let matches = live.stop_epoch == replayed.stop_epoch && live.best_epoch == replayed.best_epoch;
    if !matches {
        tracing::warn!(
            "study: seed {}: live {} stopped at epoch {} (best {}), its replay at epoch {} (best \
             {}): live ≠ replay",
            live.seed,
            live.label,
            live.stop_epoch,
            live.best_epoch,
            replayed.stop_epoch,
            replayed.best_epoch
        );
    }
    live.live_matches_replay = Some(matches);
    replayed.live_matches_replay = Some(matches);
}

/// The report's view of one finished live run; `versus` is the full run's (test metric, CO2)
/// from its summary (`None` for the full run itself).
fn study_run(
    label: &str,
    seed: u64,
    s: &Summary,
    log: &LoggedRun,
    versus: Option<(Option<f64>, Option<f64>)>,
) -> StudyRun {
    let test_metric = s.best_test.get(s.metric);
    let (delta_perf_pct, delta_emiss_pct) = match versus {
        Some(full) => replay::tradeoff(s.metric, (test_metric, s.co2_g), full),
        None => (None, None),
    };
    StudyRun {
        label: label.to_owned(),
        seed,
        run_dir: s.run_dir.clone(),
        epochs: epoch_points(&log.epochs, s.metric),
        stop_epoch: s.epochs_run,
        best_epoch: s.best_epoch,
        test_metric,
        test_at_stop: s.final_test.get(s.metric),
        energy_j: s.energy_j.unwrap_or(0.0),
        co2_g: s.co2_g.unwrap_or(0.0),
        wall_s: s.seconds,
        measured: s.measured.unwrap_or(false),
        delta_perf_pct,
        delta_emiss_pct,
        source: RunSource::Live,
        replayed_from: None,
        live_matches_replay: None,
    }
}

/// The report's view of the replay `out` on the log `log` of the live run `from`; `full` is the
/// full run's epochs-only (test metric, CO2) of the same seed.
///
/// Everything comes from the log up to the stop: the epochs, the energy and CO2 (the cumulative
/// readings at the stop: no tail, since a log has none), the wall time (the sum of the epochs'
/// seconds: no setup time) and `measured` (every epoch up to the stop measured).
fn replayed_run(
    label: &str,
    seed: u64,
    from: &str,
    log: &LoggedRun,
    out: &Outcome,
    full: (Option<f64>, Option<f64>),
) -> StudyRun {
    let epochs = &log.epochs[..out.stop_epoch.min(log.epochs.len())];
    let (delta_perf_pct, delta_emiss_pct) =
        replay::tradeoff(log.metric, (out.test_metric, out.co2_g), full);
    StudyRun {
        label: label.to_owned(),
        seed,
        run_dir: log.dir.clone(),
        epochs: epoch_points(epochs, log.metric),
        stop_epoch: out.stop_epoch,
        best_epoch: out.best_epoch,
        test_metric: out.test_metric,
        test_at_stop: out.test_at_stop,
        energy_j: out.energy_j.unwrap_or(0.0),
        co2_g: out.co2_g.unwrap_or(0.0),
        wall_s: epochs.iter().map(|e| e.seconds).sum(),
        measured: !epochs.is_empty() && epochs.iter().all(|e| e.measured == Some(true)),
        delta_perf_pct,
        delta_emiss_pct,
        source: RunSource::Replayed,
        replayed_from: Some(from.to_owned()),
        live_matches_replay: None,
    }
}

/// The plots' view of logged epochs.
fn epoch_points(epochs: &[EpochRecord], metric: Metric) -> Vec<EpochPoint> {
    epochs
        .iter()
        .map(|r| EpochPoint {
            epoch: r.epoch,
            valid: r.valid.get(metric),
            test: r.test.get(metric),
            co2_g: r.cumulative_co2_g.unwrap_or(0.0),
            energy_j: r.cumulative_j.unwrap_or(0.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EvalMetrics;

    fn study() -> StudyConfig {
        StudyConfig {
            base: FinetuneConfig::new("bbbp"),
            anges: AngesParams::default(),
            patience: 10,
            min_delta: 0.0,
            keep_ratios: vec![0.5],
            with_random: false,
            combine: false,
            live_policies: false,
            seeds: vec![0],
            frontier_betas: vec![0.2],
        }
    }

    /// `(label, how)` of each planned run: `train <folder>` or `replay <from>`, and `= twin`.
    fn describe(plan: &[Planned], dir: &Path, seed: u64) -> Vec<String> {
        plan.iter()
            .map(|p| {
                let how = match &p.step {
                    Step::Train(c) => {
                        assert_eq!(c.data.seed, seed);
                        assert_eq!(
                            c.out.as_deref(),
                            Some(dir.join(format!("seed{seed}")).join(&p.label).as_path())
                        );
                        "train".to_owned()
                    }
                    Step::Replay { from, .. } => format!("replay {from}"),
                };
                match &p.twin_of {
                    Some(t) => format!("{} {how} = {t}", p.label),
                    None => format!("{} {how}", p.label),
                }
            })
            .collect()
    }

    #[test]
    fn the_plan_trains_what_changes_the_trajectory_and_replays_the_rest() {
        let every = StudyConfig {
            keep_ratios: vec![0.3, 0.5],
            with_random: true,
            combine: true,
            ..study()
        };
        let dir = Path::new("/s");
        assert_eq!(
            describe(&plan(&every, 7, dir), dir, 7),
            [
                "full train",
                "patience replay full",
                "anges replay full",
                "molpeg-0.3 train",
                "random-0.3 train",
                "anges+molpeg-0.3 replay molpeg-0.3",
                "molpeg-0.5 train",
                "random-0.5 train",
                "anges+molpeg-0.5 replay molpeg-0.5",
            ]
        );
        let plain = plan(&study(), 0, dir);
        assert_eq!(plain.len(), 4);
        assert!(matches!(&plain[3].step, Step::Train(c) if c.prune.method == PruneMethod::Molpeg));
        assert_eq!(
            plain[2].step,
            Step::Replay {
                from: FULL.to_owned(),
                stop: StopSpec::Anges(AngesParams::default())
            }
        );
        assert!(matches!(
            plain[1].step,
            Step::Replay {
                stop: StopSpec::Patience { patience: 10, .. },
                ..
            }
        ));
    }

    #[test]
    fn live_policies_add_a_live_twin_after_each_replayed_run() {
        let live = StudyConfig {
            combine: true,
            live_policies: true,
            ..study()
        };
        let dir = Path::new("/s");
        let runs = plan(&live, 0, dir);
        assert_eq!(
            describe(&runs, dir, 0),
            [
                "full train",
                "patience replay full",
                "patience-live train = patience",
                "anges replay full",
                "anges-live train = anges",
                "molpeg-0.5 train",
                "anges+molpeg-0.5 replay molpeg-0.5",
                "anges+molpeg-0.5-live train = anges+molpeg-0.5",
            ]
        );
        // Each twin trains the policy its replay applies, on the same pruning.
        for (i, twin) in runs.iter().enumerate().filter(|(_, r)| r.twin_of.is_some()) {
            let (Step::Replay { stop, from }, Step::Train(c)) = (&runs[i - 1].step, &twin.step)
            else {
                panic!("{twin:?}");
            };
            assert_eq!(c.stop, *stop);
            let pruned = from.starts_with("molpeg");
            assert_eq!(c.prune.method == PruneMethod::Molpeg, pruned, "{from}");
        }
    }

    fn record(epoch: usize, valid: f64, test: f64, co2: f64, seconds: f64) -> EpochRecord {
        let metrics = |v| EvalMetrics {
            roc_auc: Some(v),
            ..Default::default()
        };
        EpochRecord {
            epoch,
            valid: metrics(valid),
            test: metrics(test),
            seconds,
            cumulative_co2_g: Some(co2),
            cumulative_j: Some(co2 * 1000.0),
            measured: Some(true),
            ..Default::default()
        }
    }

    /// A replayed run is the log truncated at the stop, with epoch-only figures against the full
    /// run's epoch-only figures.
    #[test]
    fn a_replayed_run_is_the_log_up_to_its_stop() {
        let log = LoggedRun {
            dir: PathBuf::from("/s/seed0/full"),
            metric: Metric::RocAuc,
            summary: None,
            epochs: vec![
                record(1, 0.7, 0.60, 1.0, 2.0),
                record(2, 0.8, 0.70, 2.0, 3.0),
                record(3, 0.79, 0.75, 3.0, 4.0),
                record(4, 0.78, 0.74, 4.0, 5.0),
                record(5, 0.9, 0.80, 5.0, 6.0),
            ],
        };
        let stop = StopSpec::Patience {
            patience: 2,
            min_delta: 0.0,
        };
        let out = replay::replay(&log, stop);
        let full = replay::replay(&log, StopSpec::Full);
        let run = replayed_run(
            "patience",
            0,
            FULL,
            &log,
            &out,
            (full.test_metric, full.co2_g),
        );
        assert_eq!((run.stop_epoch, run.best_epoch), (4, 2));
        assert_eq!(run.epochs.len(), 4);
        assert_eq!(run.run_dir, log.dir);
        assert_eq!((run.co2_g, run.energy_j, run.wall_s), (4.0, 4000.0, 14.0));
        assert_eq!(run.source, RunSource::Replayed);
        assert_eq!(run.replayed_from.as_deref(), Some(FULL));
        assert!(run.measured);
        // The same figures as `anges-train replay`: −12.5 % perf, −20 % emissions.
        assert_eq!(
            (run.delta_perf_pct, run.delta_emiss_pct),
            (out.delta_perf_pct, out.delta_emiss_pct)
        );
        assert!((run.delta_emiss_pct.unwrap() + 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_live_twin_is_checked_against_its_replay() {
        let replayed = |stop, best| StudyRun {
            stop_epoch: stop,
            best_epoch: best,
            source: RunSource::Replayed,
            ..report::test_support::run("anges", 0, stop, Some(0.8), 1.0, 1.0, 1.0)
        };
        let mut runs = vec![replayed(4, 2)];
        let mut live = StudyRun {
            best_epoch: 2,
            ..report::test_support::run("anges-live", 0, 4, Some(0.8), 1.0, 1.0, 1.0)
        };
        check_live_matches_replay(&mut runs, &mut live, "anges");
        assert_eq!(live.live_matches_replay, Some(true));
        assert_eq!(runs[0].live_matches_replay, Some(true));
        live.stop_epoch = 5;
        check_live_matches_replay(&mut runs, &mut live, "anges");
        assert_eq!(live.live_matches_replay, Some(false));
        assert_eq!(runs[0].live_matches_replay, Some(false));
    }

    #[test]
    fn options_are_checked_before_any_run() {
        let mut off = study();
        off.base.meter.mode = MeterMode::Off;
        assert!(off.validate().is_err());
        let keep = StudyConfig {
            keep_ratios: vec![1.5],
            ..study()
        };
        assert!(keep.validate().is_err());
        let seeds = StudyConfig {
            seeds: vec![],
            ..study()
        };
        assert!(seeds.validate().is_err());
        assert!(study().validate().is_ok());
    }
}
