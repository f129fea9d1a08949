//! `anges-train evaluate`: how well each family of stopping rules trades accuracy for CO2 on
//! logged full runs, with its parameters chosen on other datasets than the ones it is judged on.
//!
//! Input: full runs (`--stop full`, every epoch metered) found under the given paths. Nothing is
//! trained: every rule is replayed on the logs ([`crate::replay`]).
//!
//! Per run and candidate (one rule with one set of parameters), the candidate's stop delivers
//! the weights of its best validation epoch; against the full run's delivered weights that gives
//! a **loss** (ROC-AUC and PRC-AUC: points, `100 × (full − delivered)`; RMSE and MAE: percent,
//! `100 × (delivered − full) / full`) and **%ΔEmiss** (the log's cumulative CO2 at the stop
//! against its last epoch's).
//!
//! Then, per group of runs (random-init and pre-trained apart) and per family:
//! - **in sample**: every candidate's mean over all the group's runs;
//! - **leave-datasets-out**: for each dataset, the family's candidate is chosen on the other
//!   datasets' runs by one criterion (the most CO2 saved with a mean loss ≤ the tolerance; when
//!   no candidate qualifies, the smallest mean loss), and reported on the held-out dataset's
//!   runs; pooled over the held-out datasets it is the family's held-out figure. Repeated over a
//!   sweep of tolerances it draws the family's held-out frontier;
//! - the **hindsight bound**: per run, the earliest stop whose delivered weights lose at most the
//!   tolerance: no rule saves more at that loss.
//!
//! Layout: [`candidates`] (the families and their grids), [`select`] (outcomes, choice,
//! frontiers), [`output`] (table, CSV, JSON, plot).

use std::path::{Path, PathBuf};

use crate::data::Metric;
use crate::policy::StopPolicy;
use crate::replay::{LoggedRun, ReplayError};
use crate::report::ReportError;

pub mod candidates;
pub mod output;
pub mod select;

pub use candidates::{Candidate, Family, default_families};
pub use select::{
    Evaluation, FamilyEvaluation, FrontierPoint, GroupEvaluation, HeldOut, RunOutcome,
    evaluate_group,
};

/// Why an evaluation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// A run could not be read.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A path could not be searched or an output not written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Nothing to evaluate, or options that cannot work.
    #[error("{0}")]
    Unusable(String),
}

/// What `anges-train evaluate` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateConfig {
    /// Run folders, or folders holding them at any depth.
    pub paths: Vec<PathBuf>,
    /// The loss a choice may cost (points for ROC-AUC, percent for errors): the stated
    /// criterion.
    pub tolerance: f64,
    /// The tolerances whose choices draw the held-out frontiers (the stated one is added).
    pub sweep: Vec<f64>,
    /// The CO2 saving, in percent, the goal asks for at the stated tolerance.
    pub goal_saved_pct: f64,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            tolerance: 1.0,
            sweep: vec![0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0],
            goal_saved_pct: 40.0,
        }
    }
}

impl EvaluateConfig {
    /// Checks the values; the message names the flag.
    pub fn validate(&self) -> Result<(), EvaluateError> {
        let bad = |m: String| Err(EvaluateError::Unusable(m));
        check_paths_and_tolerance(&self.paths, self.tolerance)?;
        if let Some(t) = self.sweep.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
            return bad(format!("--sweep: {t} is not ≥ 0"));
        }
        if !self.goal_saved_pct.is_finite() {
            return bad(format!(
                "--goal-saved {} is not finite",
                self.goal_saved_pct
            ));
        }
        Ok(())
    }

    /// The sweep with the stated tolerance in it, sorted, without duplicates.
    pub fn tolerances(&self) -> Vec<f64> {
        let mut t = self.sweep.clone();
        t.push(self.tolerance);
        t.sort_by(f64::total_cmp);
        t.dedup();
        t
    }
}

/// The checks `evaluate` and `tradeoff` share: at least one run folder, and a `--tolerance`
/// (ROC-AUC points, or the error's units) that is finite and ≥ 0.
pub(crate) fn check_paths_and_tolerance(
    paths: &[PathBuf],
    tolerance: f64,
) -> Result<(), EvaluateError> {
    if paths.is_empty() {
        return Err(EvaluateError::Unusable("no run folder given".into()));
    }
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(EvaluateError::Unusable(format!(
            "--tolerance {tolerance} is not ≥ 0"
        )));
    }
    Ok(())
}

/// One logged full run, as the evaluation sees it.
#[derive(Debug, Clone)]
pub struct EvalRun {
    /// A short name: the run folder's name.
    pub name: String,
    /// Dataset (the unit that is held out).
    pub dataset: String,
    /// Model family.
    pub model: String,
    /// The group it is evaluated in: `random-init` or `pre-trained`, plus the metric when it is
    /// an error (lower is better), since losses in points and in percent do not pool.
    pub init: String,
    /// The log.
    pub log: LoggedRun,
}

/// The loss of `delivered` against `full` in the metric's unit: points for scores in [0, 1]
/// (higher is better), percent of the error for RMSE and MAE.
pub fn loss(metric: Metric, delivered: f64, full: f64) -> f64 {
    if metric.higher_is_better() {
        100.0 * (full - delivered)
    } else {
        100.0 * (delivered - full) / full.abs()
    }
}

/// The unit of [`loss`] for `metric`.
pub fn loss_unit(metric: Metric) -> &'static str {
    if metric.higher_is_better() {
        "points"
    } else {
        "%"
    }
}

/// `(folder, why)` of each run left out.
pub type Skipped = Vec<(PathBuf, String)>;

/// The runs the evaluation can use under `paths`, and `(folder, why)` for each one it skipped
/// (not a full run, unfinished, a missing metric or CO2 reading). Runs trained with data
/// pruning are among them: [`run_evaluate`] sets them aside, `anges-train tradeoff` compares
/// them with the full runs.
pub fn load_runs(paths: &[PathBuf]) -> Result<(Vec<EvalRun>, Skipped), EvaluateError> {
    let found = crate::report::runs::find_runs(paths)?;
    let mut runs = Vec::new();
    let mut skipped = found.skipped;
    for file in found.python_files {
        let why = "a run of the Python package: the evaluation replays anges-train's full runs";
        tracing::warn!("evaluate: skipped {}: {why}", file.display());
        skipped.push((file, why.to_owned()));
    }
    let dirs = found.files.iter().filter_map(|f| f.parent());
    for dir in dirs {
        match usable_run(dir) {
            Ok(run) => runs.push(run),
            Err(why) => {
                tracing::warn!("evaluate: skipped {}: {why}", dir.display());
                skipped.push((dir.to_path_buf(), why));
            }
        }
    }
    Ok((runs, skipped))
}

/// The run in `dir`, or why it cannot be used.
fn usable_run(dir: &Path) -> Result<EvalRun, String> {
    let log = LoggedRun::load(dir).map_err(|e| e.to_string())?;
    let Some(summary) = log.summary.clone() else {
        return Err("no summary.json".into());
    };
    if summary.stop != StopPolicy::Full {
        return Err("not a full run (--stop full): its trajectory ends early".into());
    }
    if !log.has_emissions() {
        return Err("some epochs have no cumulative CO2 reading".into());
    }
    if let Some(rec) = log
        .epochs
        .iter()
        .find(|r| r.valid.get(log.metric).is_none() || r.test.get(log.metric).is_none())
    {
        return Err(format!(
            "epoch {} has no validation or test metric",
            rec.epoch
        ));
    }
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(EvalRun {
        name,
        dataset: summary.dataset,
        model: summary.model.name().to_owned(),
        init: match (
            summary.pretrained.is_some(),
            summary.metric.higher_is_better(),
        ) {
            (true, true) => "pre-trained".into(),
            (false, true) => "random-init".into(),
            (pre, false) => format!(
                "{} {}",
                if pre { "pre-trained" } else { "random-init" },
                crate::report::metric_name(summary.metric)
            ),
        },
        log,
    })
}

/// `anges-train evaluate`: loads the runs, evaluates every family per group.
pub fn run_evaluate(config: &EvaluateConfig) -> Result<Evaluation, EvaluateError> {
    config.validate()?;
    let (all, mut skipped) = load_runs(&config.paths)?;
    // A pruned run trains on a subset each epoch: its trajectory is not what a stopping rule
    // would cut short on a full run, so it is not evaluated with them.
    let (pruned, runs): (Vec<EvalRun>, Vec<EvalRun>) = all
        .into_iter()
        .partition(|r| r.log.summary.as_ref().is_some_and(|s| s.prune.is_some()));
    for run in pruned {
        tracing::warn!(
            "evaluate: skipped {}: trained with data pruning",
            run.log.dir.display()
        );
        skipped.push((run.log.dir, "trained with data pruning (--prune)".into()));
    }
    if runs.is_empty() {
        return Err(EvaluateError::Unusable(format!(
            "no usable full run under {} ({} skipped)",
            config
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            skipped.len()
        )));
    }
    let families = default_families(runs.iter().map(|r| r.log.epochs.len()).max().unwrap_or(1));
    let mut inits: Vec<String> = runs.iter().map(|r| r.init.clone()).collect();
    inits.sort();
    inits.dedup();
    let groups = inits
        .iter()
        .map(|init| {
            let members: Vec<&EvalRun> = runs.iter().filter(|r| &r.init == init).collect();
            evaluate_group(init, &members, &families, config)
        })
        .collect();
    Ok(Evaluation {
        tolerance: config.tolerance,
        goal_saved_pct: config.goal_saved_pct,
        groups,
        skipped: skipped
            .into_iter()
            .map(|(p, why)| (p.display().to_string(), why))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_and_folders_without_full_runs_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let config = |tolerance: f64, paths: Vec<PathBuf>| EvaluateConfig {
            paths,
            tolerance,
            ..EvaluateConfig::default()
        };
        let err = run_evaluate(&config(-1.0, vec![dir.path().to_owned()])).unwrap_err();
        assert!(err.to_string().contains("--tolerance"), "{err}");
        let err = run_evaluate(&config(1.0, vec![])).unwrap_err();
        assert!(err.to_string().contains("no run folder"), "{err}");
        let err = run_evaluate(&config(1.0, vec![dir.path().join("missing")])).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        // A run folder whose summary cannot be used is a counted skip, not a failure of the
        // others; with nothing left the error says how many were skipped.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("summary.json"), "{ not json").unwrap();
        let err = run_evaluate(&config(1.0, vec![dir.path().to_owned()])).unwrap_err();
        assert!(err.to_string().contains("no usable full run"), "{err}");
        assert!(err.to_string().contains("1 skipped"), "{err}");
        // The evaluation replays the trainer's runs only, and says so of the Python package's.
        let python = dir.path().join("python");
        let labels = anges_tracking::session::RunLabels::default();
        crate::test_support::python_run(&python, labels, &[(0.7, 0.6), (0.8, 0.7)]);
        let (runs, skipped) = load_runs(std::slice::from_ref(&python)).unwrap();
        assert!(runs.is_empty());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].1.contains("Python package"), "{skipped:?}");
    }

    #[test]
    fn pruned_runs_are_set_aside_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("bace-molpeg");
        std::fs::create_dir(&run).unwrap();
        let mut summary: serde_json::Value =
            serde_json::from_str(&crate::test_support::summary_json("BACE", None, 0.7, 0.7))
                .unwrap();
        summary["prune"] = serde_json::json!({"method": "molpeg", "keep_ratio": 0.5,
            "samples_used": 5, "samples_full": 10, "reference_seconds": 1.0,
            "reference_energy_j": null});
        std::fs::write(run.join("summary.json"), summary.to_string()).unwrap();
        let epochs: Vec<String> = (1..=3)
            .map(|e| {
                let rec = crate::test_support::epoch_record(e, 0.7, 0.7, e as f64);
                serde_json::to_string(&rec).unwrap()
            })
            .collect();
        std::fs::write(run.join("epochs.jsonl"), epochs.join("\n")).unwrap();
        let (loaded, _) = load_runs(&[dir.path().to_owned()]).unwrap();
        assert_eq!(loaded.len(), 1, "usable, as tradeoff needs it");
        let config = EvaluateConfig {
            paths: vec![dir.path().to_owned()],
            ..EvaluateConfig::default()
        };
        let err = run_evaluate(&config).unwrap_err();
        assert!(err.to_string().contains("1 skipped"), "{err}");
    }

    #[test]
    fn losses_are_points_for_scores_and_percent_for_errors() {
        assert!((loss(Metric::RocAuc, 0.70, 0.72) - 2.0).abs() < 1e-9);
        assert!((loss(Metric::Rmse, 1.1, 1.0) - 10.0).abs() < 1e-9);
        assert_eq!(loss_unit(Metric::PrcAuc), "points");
        assert_eq!(loss_unit(Metric::Mae), "%");
    }
}
