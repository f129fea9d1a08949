//! `anges-train study`: the trade-off study of one dataset and model on one split.
//!
//! Per seed it runs the full fine-tuning, the patience baseline, AN-GES live and MolPeg at each
//! keep ratio (optionally random pruning and AN-GES + MolPeg), each in its own run directory
//! `<study>/seed<N>/<label>/` and each metered as its own job; the later runs reuse the full
//! run's `split.json`. It then replays the full run over the β grid (the frontier), compares
//! every run with the full run of its seed (the trade-off of docs/spec.md §1.9) and writes the report
//! ([`crate::report`]) into the study folder.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, FinetuneConfig, MeterMode, PruneMethod};
use crate::data::Metric;
use crate::policy::{AngesParams, StopSpec};
use crate::replay::{self, LoggedRun, ReplayError};
use crate::report::{
    self, EpochPoint, FrontierPoint, ReportError, ReportFiles, RunSource, StudyReport, StudyRun,
};
use crate::train::{self, Summary, TrainError};

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
    /// The live AN-GES run's parameters (also the β frontier's, but β).
    pub anges: AngesParams,
    /// The patience baseline's patience.
    pub patience: usize,
    /// The patience baseline's minimum improvement.
    pub min_delta: f64,
    /// MolPeg keep ratios (empty: no MolPeg run).
    pub keep_ratios: Vec<f64>,
    /// Also run dynamic random pruning at each keep ratio.
    pub with_random: bool,
    /// Also run AN-GES combined with MolPeg at each keep ratio.
    pub combine: bool,
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

/// One planned run: its label and its configuration.
fn plan(study: &StudyConfig, seed: u64, dir: &Path) -> Vec<(String, FinetuneConfig)> {
    let base = |label: &str, stop: StopSpec, prune: PruneMethod, keep: f64| {
        let mut c = study.base.clone();
        c.data.seed = seed;
        c.stop = stop;
        c.prune.method = prune;
        c.prune.keep_ratio = keep;
        c.out = Some(dir.join(format!("seed{seed}")).join(label));
        (label.to_owned(), c)
    };
    let anges = StopSpec::Anges(study.anges);
    let patience = StopSpec::Patience {
        patience: study.patience,
        min_delta: study.min_delta,
    };
    let mut runs = vec![
        base("full", StopSpec::Full, PruneMethod::None, 1.0),
        base("patience", patience, PruneMethod::None, 1.0),
        base("anges", anges, PruneMethod::None, 1.0),
    ];
    for &r in &study.keep_ratios {
        runs.push(base(
            &format!("molpeg-{r}"),
            StopSpec::Full,
            PruneMethod::Molpeg,
            r,
        ));
        if study.with_random {
            runs.push(base(
                &format!("random-{r}"),
                StopSpec::Full,
                PruneMethod::Random,
                r,
            ));
        }
        if study.combine {
            runs.push(base(
                &format!("anges+molpeg-{r}"),
                anges,
                PruneMethod::Molpeg,
                r,
            ));
        }
    }
    runs
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
        let mut full: Option<(LoggedRun, Summary)> = None;
        for (label, mut run_config) in plan(study, seed, &dir) {
            if let Some((log, _)) = &full {
                run_config.data.split_file = Some(log.dir.join("split.json"));
            }
            tracing::info!("study: seed {seed}, run {label}");
            let summary = train::run_finetune(&run_config).map_err(|source| StudyError::Run {
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
                .map(|(_, f)| (f.best_test.get(metric), f.co2_g));
            runs.push(study_run(&label, seed, &summary, &log, versus));
            if full.is_none() {
                full = Some((log, summary));
            }
        }
        if let Some((log, _)) = &full {
            for &beta in &study.frontier_betas {
                let params = AngesParams { beta, ..anges };
                if params.validate().is_err() {
                    continue;
                }
                let out = replay::replay(log, StopSpec::Anges(params));
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

/// The report's view of one finished run; `versus` is the full run's (test metric, CO2).
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
        epochs: log
            .epochs
            .iter()
            .map(|r| EpochPoint {
                epoch: r.epoch,
                valid: r.valid.get(s.metric),
                test: r.test.get(s.metric),
                co2_g: r.cumulative_co2_g.unwrap_or(0.0),
                energy_j: r.cumulative_j.unwrap_or(0.0),
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> StudyConfig {
        StudyConfig {
            base: FinetuneConfig::new("bbbp"),
            anges: AngesParams::default(),
            patience: 10,
            min_delta: 0.0,
            keep_ratios: vec![0.5],
            with_random: false,
            combine: false,
            seeds: vec![0],
            frontier_betas: vec![0.2],
        }
    }

    #[test]
    fn the_plan_runs_every_policy_per_seed_in_its_own_folder() {
        let every = StudyConfig {
            keep_ratios: vec![0.3, 0.5],
            with_random: true,
            combine: true,
            ..study()
        };
        let labels: Vec<String> = plan(&every, 7, Path::new("/s"))
            .into_iter()
            .map(|(l, c)| {
                assert_eq!(c.data.seed, 7);
                assert_eq!(c.out.unwrap(), Path::new("/s/seed7").join(&l));
                l
            })
            .collect();
        assert_eq!(
            labels,
            [
                "full",
                "patience",
                "anges",
                "molpeg-0.3",
                "random-0.3",
                "anges+molpeg-0.3",
                "molpeg-0.5",
                "random-0.5",
                "anges+molpeg-0.5"
            ]
        );
        let plain = plan(&study(), 0, Path::new("/s"));
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[3].1.prune.method, PruneMethod::Molpeg);
        assert_eq!(plain[2].1.stop, StopSpec::Anges(AngesParams::default()));
        assert!(matches!(
            plain[1].1.stop,
            StopSpec::Patience { patience: 10, .. }
        ));
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
