//! `anges-train study`: the trade-off study of one dataset and model on one split.
//!
//! Per seed it runs the full fine-tuning, the patience baseline, AN-GES live and MolPeg at each
//! keep ratio (optionally random pruning and AN-GES + MolPeg), each in its own run directory
//! `<study>/seed<N>/<label>/` and each metered as its own job; the later runs reuse the full
//! run's `split.json`. It then replays the full run over the β grid (the frontier), compares
//! every run with the full run of its seed (SPEC §1 trade-off) and writes the report
//! ([`crate::report`]) into the study folder.

use std::path::{Path, PathBuf};

use crate::cli::{FinetuneArgs, MeterMode, PruneMethod, StopPolicy, StudyArgs};
use crate::data::Metric;
use crate::policy::replay::{self, LoggedRun, ReplayError};
use crate::policy::{AngesParams, PolicySpec};
use crate::report::{
    self, EpochPoint, FrontierPoint, ReportError, ReportFiles, StudyReport, StudyRun,
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

/// One planned run: its label and its flags.
fn plan(args: &StudyArgs, seed: u64, dir: &Path) -> Vec<(String, FinetuneArgs)> {
    let base = |label: &str, stop: StopPolicy, prune: PruneMethod, keep: f64| {
        let mut a = args.finetune.clone();
        a.data.seed = seed;
        a.stop.stop = stop;
        a.prune.prune = prune;
        a.prune.keep_ratio = keep;
        a.out = Some(dir.join(format!("seed{seed}")).join(label));
        (label.to_owned(), a)
    };
    let mut runs = vec![
        base("full", StopPolicy::Full, PruneMethod::None, 1.0),
        base("patience", StopPolicy::Patience, PruneMethod::None, 1.0),
        base("anges", StopPolicy::Anges, PruneMethod::None, 1.0),
    ];
    for &r in &args.keep_ratios {
        runs.push(base(
            &format!("molpeg-{r}"),
            StopPolicy::Full,
            PruneMethod::Molpeg,
            r,
        ));
        if args.with_random {
            runs.push(base(
                &format!("random-{r}"),
                StopPolicy::Full,
                PruneMethod::Random,
                r,
            ));
        }
        if args.combine {
            runs.push(base(
                &format!("anges+molpeg-{r}"),
                StopPolicy::Anges,
                PruneMethod::Molpeg,
                r,
            ));
        }
    }
    runs
}

fn check(args: &StudyArgs) -> Result<(), StudyError> {
    if args.finetune.meter.meter == MeterMode::Off {
        return Err(StudyError::Options(
            "a study compares emissions: use --meter auto, daemon or local, not off".into(),
        ));
    }
    if args.seeds.is_empty() {
        return Err(StudyError::Options("--seeds is empty".into()));
    }
    if args.finetune.data.dataset.is_none() {
        return Err(StudyError::Options("--dataset is required".into()));
    }
    if let Some(r) = args.keep_ratios.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
        return Err(StudyError::Options(format!(
            "--keep-ratios: {r} is not in (0, 1]"
        )));
    }
    Ok(())
}

/// Runs the study `args` describes; `command` is the command line recorded in the report.
pub fn run_study(args: &StudyArgs, command: String) -> Result<StudyOutcome, StudyError> {
    check(args)?;
    let dataset = args.finetune.data.dataset.clone().unwrap_or_default();
    let model = serde_json::to_value(args.finetune.model.model)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "model".into());
    let dir = match &args.finetune.out {
        Some(p) => p.clone(),
        None => train::rundir::default_path(Path::new("runs"), &dataset, &format!("{model}-study")),
    };
    let anges = AngesParams {
        alpha: args.finetune.stop.alpha,
        warmup: args.finetune.stop.warmup,
        ema_init: args.finetune.stop.variant.ema_init,
        order: args.finetune.stop.variant.anges_order,
        consecutive: args.finetune.stop.variant.anges_consecutive,
        beta: args.finetune.stop.beta,
    };
    anges.validate().map_err(StudyError::Options)?;

    let mut runs: Vec<StudyRun> = Vec::new();
    let mut frontier: Vec<FrontierPoint> = Vec::new();
    let mut metric = Metric::RocAuc;
    let mut meter = String::new();
    for &seed in &args.seeds {
        let mut full: Option<(LoggedRun, Summary)> = None;
        for (label, mut run_args) in plan(args, seed, &dir) {
            if let Some((log, _)) = &full {
                run_args.data.split_file = Some(log.dir.join("split.json"));
            }
            tracing::info!("study: seed {seed}, run {label}");
            let summary = train::run_finetune(&run_args).map_err(|source| StudyError::Run {
                label: label.clone(),
                seed,
                source: Box::new(source),
            })?;
            let log = LoggedRun::load(&summary.run_dir)?;
            metric = summary.metric;
            if meter.is_empty() {
                meter = summary.meter.clone().unwrap_or_default();
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
            for &beta in &args.frontier_betas {
                let params = AngesParams { beta, ..anges };
                if params.validate().is_err() {
                    continue;
                }
                let out = replay::replay(log, PolicySpec::Anges(params));
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
        seeds: args.seeds.clone(),
        command,
        meter,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn study_args(extra: &[&str]) -> StudyArgs {
        let mut argv = vec!["anges-train", "study", "--dataset", "bbbp"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(crate::cli::Command::Study(s)) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_plan_runs_every_policy_per_seed_in_its_own_folder() {
        let args = study_args(&["--keep-ratios", "0.3,0.5", "--with-random", "--combine"]);
        let labels: Vec<String> = plan(&args, 7, Path::new("/s"))
            .into_iter()
            .map(|(l, a)| {
                assert_eq!(a.data.seed, 7);
                assert_eq!(a.out.unwrap(), Path::new("/s/seed7").join(&l));
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
        let plain = plan(&study_args(&[]), 0, Path::new("/s"));
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[3].1.prune.prune, PruneMethod::Molpeg);
        assert_eq!(plain[2].1.stop.stop, StopPolicy::Anges);
    }

    #[test]
    fn options_are_checked_before_any_run() {
        assert!(check(&study_args(&["--meter", "off"])).is_err());
        assert!(check(&study_args(&["--keep-ratios", "1.5"])).is_err());
        assert!(check(&study_args(&[])).is_ok());
    }
}
