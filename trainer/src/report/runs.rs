//! `anges-train summarize`: the results of many fine-tuning runs, mean ± std over seeds.
//!
//! Input: run directories (each with its `summary.json`), found under the paths given, at any
//! depth: the trainer's runs and the Python package's (`anges.Session` and its callbacks, whose
//! summaries carry the labels the user gave: `dataset`, `model`, `init`; a missing label reads
//! `unlabelled`). Runs are grouped by dataset, model, initialisation (random or the
//! checkpoint's file name), stopping policy and pruning; each group gives the test metric at the
//! best-validation epoch (the weights a run delivers) and at the last epoch (what pretrain-gnns
//! reports), with epochs, wall time, energy and CO2. Output: a Markdown table, or JSON / CSV rows. Where a
//! pre-trained group has a random-init twin (same dataset, model and policy), a second table
//! gives what pre-training changed: the difference of the means, with its standard error.
//!
//! A `summary.json` that cannot be read or parsed is skipped with a warning and counted, so one
//! broken folder does not hide the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use anges_tracking::session::SessionSummary;

use super::aggregate::Stat;
use super::{ReportError, metric_name};
use crate::data::Metric;
use crate::train::Summary;

/// Folders deeper than this under a given path are not searched.
const MAX_DEPTH: usize = 8;

/// The run summaries found under some paths, and what could not be read.
#[derive(Debug, Default)]
pub struct FoundRuns {
    /// The trainer's summaries, in path order.
    pub summaries: Vec<Summary>,
    /// The `summary.json` file of each summary, in the same order.
    pub files: Vec<PathBuf>,
    /// The Python package's summaries (`writer: anges`), in path order.
    pub python: Vec<SessionSummary>,
    /// The `summary.json` file of each Python summary, in the same order.
    pub python_files: Vec<PathBuf>,
    /// `(file, why)` of each `summary.json` skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

impl FoundRuns {
    /// Every run found, the trainer's then the Python package's, as [`group_runs`] takes them.
    pub fn rows(&self) -> Vec<RunRow> {
        let trainer = self.summaries.iter().map(RunRow::of_trainer);
        trainer
            .chain(self.python.iter().map(RunRow::of_session))
            .collect()
    }
}

/// What a Python package's summary says it is: its `writer` field.
const PYTHON_WRITER: &str = anges_tracking::session::PROJECT;

/// Reads every `summary.json` under `paths` (a path may also be a run directory itself or a
/// `summary.json`). A path that does not exist is an error; an unreadable summary is skipped.
pub fn find_runs(paths: &[PathBuf]) -> Result<FoundRuns, ReportError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            return Err(ReportError::Read {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            });
        }
        collect_summary_files(path, 0, &mut files)?;
    }
    files.sort();
    files.dedup();
    let mut found = FoundRuns::default();
    for file in files {
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_summary(&text))
        {
            Ok(Parsed::Trainer(summary)) => {
                found.summaries.push(*summary);
                found.files.push(file);
            }
            Ok(Parsed::Python(summary)) => {
                found.python.push(*summary);
                found.python_files.push(file);
            }
            Err(why) => {
                tracing::warn!("skipped {}: {why}", file.display());
                found.skipped.push((file, why));
            }
        }
    }
    Ok(found)
}

/// A `summary.json` of either writer.
enum Parsed {
    Trainer(Box<Summary>),
    Python(Box<SessionSummary>),
}

/// The summary in `text`: the Python package's when its `writer` says so, else the trainer's;
/// the parse error otherwise.
fn parse_summary(text: &str) -> Result<Parsed, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value["writer"].as_str() == Some(PYTHON_WRITER) {
        serde_json::from_value(value)
            .map(|s| Parsed::Python(Box::new(s)))
            .map_err(|e| format!("a run of the Python package whose summary is malformed: {e}"))
    } else {
        serde_json::from_value(value)
            .map(|s| Parsed::Trainer(Box::new(s)))
            .map_err(|e| e.to_string())
    }
}

fn collect_summary_files(
    path: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    let io_err = |source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_file() {
        if path.file_name().is_some_and(|n| n == "summary.json") {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    if depth > MAX_DEPTH || !path.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        collect_summary_files(&entry, depth + 1, out)?;
    }
    Ok(())
}

/// One group of runs (one row of the table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunGroup {
    /// Dataset name.
    pub dataset: String,
    /// Model family (`gin`, `gcn`, `transformer`).
    pub model: String,
    /// `random`, or the file name of the checkpoint the encoder started from.
    pub init: String,
    /// Stopping policy, with the pruning method and keep ratio when pruned (`full`,
    /// `anges+molpeg-0.5`, …).
    pub policy: String,
    /// The metric reported.
    pub metric: Metric,
    /// Number of runs.
    pub runs: usize,
    /// Mean epochs trained.
    pub epochs_mean: f64,
    /// Test metric at the best-validation epoch: mean.
    pub best_test_mean: Option<f64>,
    /// Test metric at the best-validation epoch: sample standard deviation (`None` with fewer
    /// than two runs: one run has no spread to show).
    pub best_test_std: Option<f64>,
    /// Test metric after the last epoch: mean.
    pub final_test_mean: Option<f64>,
    /// Test metric after the last epoch: sample standard deviation (`None` with fewer than two
    /// runs).
    pub final_test_std: Option<f64>,
    /// Mean wall-clock seconds of a run.
    pub seconds_mean: f64,
    /// Mean energy of a run's epochs, joules (runs without a meter left out).
    pub energy_j_mean: Option<f64>,
    /// Mean CO2-eq of a run's epochs, grams.
    pub co2_g_mean: Option<f64>,
}

/// The [`RunGroup::init`] of runs started from random weights.
pub const RANDOM_INIT: &str = "random";

/// The label of a Python package's run that was not given one.
pub const UNLABELLED: &str = "unlabelled";

/// One run as [`group_runs`] groups it, whichever program wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Dataset name.
    pub dataset: String,
    /// Model family or label.
    pub model: String,
    /// `random`, or the starting checkpoint's name.
    pub init: String,
    /// Stopping policy, with the pruning (as [`RunGroup::policy`]).
    pub policy: String,
    /// The metric reported.
    pub metric: Metric,
    /// Epochs trained.
    pub epochs_run: usize,
    /// Test metric at the best-validation epoch.
    pub best_test: Option<f64>,
    /// Test metric after the last epoch.
    pub final_test: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Energy of the run's epochs, joules.
    pub energy_j: Option<f64>,
    /// CO2-eq of the run's epochs, grams.
    pub co2_g: Option<f64>,
}

impl RunRow {
    /// A trainer's run.
    pub fn of_trainer(s: &Summary) -> RunRow {
        RunRow {
            dataset: s.dataset.clone(),
            model: flag_name(&s.model),
            init: init_label(s),
            policy: policy_label(s),
            metric: s.metric,
            epochs_run: s.epochs_run,
            best_test: s.best_test.get(s.metric),
            final_test: s.final_test.get(s.metric),
            seconds: s.seconds,
            energy_j: s.energy_j,
            co2_g: s.co2_g,
        }
    }

    /// A Python package's run, under its labels ([`UNLABELLED`] where it has none).
    pub fn of_session(s: &SessionSummary) -> RunRow {
        let label = |l: &Option<String>| l.clone().unwrap_or_else(|| UNLABELLED.to_owned());
        RunRow {
            dataset: label(&s.labels.dataset),
            model: label(&s.labels.model),
            init: label(&s.labels.init),
            policy: flag_name(&s.stop),
            metric: s.metric,
            epochs_run: s.epochs_run,
            best_test: s.best_test.get(s.metric),
            final_test: s.final_test.get(s.metric),
            seconds: s.seconds,
            energy_j: s.energy_j,
            co2_g: s.co2_g,
        }
    }
}

fn init_label(s: &Summary) -> String {
    match &s.pretrained {
        None => RANDOM_INIT.to_owned(),
        Some(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

/// A flag value as the user types it (`full`, `molpeg`, `gin`, …).
pub(crate) fn flag_name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

fn policy_label(s: &Summary) -> String {
    let stop = flag_name(&s.stop);
    match &s.prune {
        None => stop,
        Some(p) => format!("{stop}+{}-{}", flag_name(&p.method), p.keep_ratio),
    }
}

/// Groups `runs` (see the module doc; runs of one label set reporting different metrics are
/// not averaged together), in dataset, model, initialisation, policy and metric order.
pub fn group_runs(runs: &[RunRow]) -> Vec<RunGroup> {
    type Key = (String, String, String, String, Metric);
    let mut groups: BTreeMap<Key, Vec<&RunRow>> = BTreeMap::new();
    for r in runs {
        let key = (
            r.dataset.clone(),
            r.model.clone(),
            r.init.clone(),
            r.policy.clone(),
            r.metric,
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((dataset, model, init, policy, metric), runs)| {
            let stat =
                |f: &dyn Fn(&RunRow) -> Option<f64>| Stat::of(runs.iter().filter_map(|s| f(s)));
            let best = stat(&|s| s.best_test);
            let last = stat(&|s| s.final_test);
            let mean = |f: &dyn Fn(&RunRow) -> Option<f64>| stat(f).map(|st| st.mean);
            RunGroup {
                dataset,
                model,
                init,
                policy,
                metric,
                runs: runs.len(),
                epochs_mean: mean(&|s| Some(s.epochs_run as f64)).unwrap_or(f64::NAN),
                best_test_mean: best.map(|s| s.mean),
                best_test_std: best.and_then(Stat::spread),
                final_test_mean: last.map(|s| s.mean),
                final_test_std: last.and_then(Stat::spread),
                seconds_mean: mean(&|s| Some(s.seconds)).unwrap_or(f64::NAN),
                energy_j_mean: mean(&|s| s.energy_j),
                co2_g_mean: mean(&|s| s.co2_g),
            }
        })
        .collect()
}

/// How a metric's values are shown: ROC-AUC and PRC-AUC in percent with one decimal, as the
/// literature does; RMSE and MAE in the targets' units with three (an ESOL RMSE is ≈ 1.2).
fn shown(metric: Metric) -> (f64, usize) {
    if metric.higher_is_better() {
        (100.0, 1)
    } else {
        (1.0, 3)
    }
}

/// `mean ± std` (`signed`: with the mean's sign) of `metric`'s values as [`shown`]; `–` without
/// a mean.
fn mean_std(mean: Option<f64>, std: Option<f64>, metric: Metric, signed: bool) -> String {
    let (scale, p) = shown(metric);
    let m = match mean {
        None => return "–".to_owned(),
        Some(m) if signed => format!("{:+.p$}", m * scale),
        Some(m) => format!("{:.p$}", m * scale),
    };
    match std {
        Some(s) => format!("{m} ± {:.p$}", s * scale),
        None => m,
    }
}

/// The groups as a Markdown table. ROC-AUC and PRC-AUC are shown in percent, as the literature
/// does; RMSE and MAE in the targets' units.
pub fn markdown(groups: &[RunGroup]) -> String {
    let mut out = String::from(
        "| dataset | model | init | policy | runs | epochs | test at best valid | test at last epoch | \
         s/run | kJ/run | g CO2-eq/run |\n|---|---|---|---|---:|---:|---|---|---:|---:|---:|\n",
    );
    for g in groups {
        let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "–".to_owned(), f);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} {} | {} | {:.0} | {} | {} |\n",
            g.dataset,
            g.model,
            g.init,
            g.policy,
            g.runs,
            g.epochs_mean,
            mean_std(g.best_test_mean, g.best_test_std, g.metric, false),
            metric_name(g.metric),
            mean_std(g.final_test_mean, g.final_test_std, g.metric, false),
            g.seconds_mean,
            opt(g.energy_j_mean, |j| format!("{:.1}", j / 1e3)),
            opt(g.co2_g_mean, |c| format!("{c:.3}")),
        ));
    }
    out
}

/// A pre-trained group against the random-init group of the same dataset, model and policy:
/// what starting from the checkpoint changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitComparison {
    /// Dataset name.
    pub dataset: String,
    /// Model family.
    pub model: String,
    /// Stopping policy (with pruning), as in [`RunGroup::policy`].
    pub policy: String,
    /// The checkpoint's file name.
    pub init: String,
    /// The metric compared.
    pub metric: Metric,
    /// Runs of the pre-trained and of the random-init group.
    pub runs: (usize, usize),
    /// Mean test metric at the best-validation epoch, pre-trained minus random init (positive:
    /// pre-training helped, for a higher-is-better metric).
    pub best_test_delta: Option<f64>,
    /// Its standard error, `sqrt(s1²/n1 + s2²/n2)` (`None` when a group has one run).
    pub best_test_delta_se: Option<f64>,
    /// The same after the last epoch.
    pub final_test_delta: Option<f64>,
    /// Its standard error.
    pub final_test_delta_se: Option<f64>,
}

/// Every pre-trained group that has a random-init group of the same dataset, model and policy,
/// compared with it.
pub fn init_comparisons(groups: &[RunGroup]) -> Vec<InitComparison> {
    let random: BTreeMap<(&str, &str, &str), &RunGroup> = groups
        .iter()
        .filter(|g| g.init == RANDOM_INIT)
        .map(|g| ((g.dataset.as_str(), g.model.as_str(), g.policy.as_str()), g))
        .collect();
    let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    let se = |a: Option<f64>, na: usize, b: Option<f64>, nb: usize| {
        Some(((a? * a?) / na as f64 + (b? * b?) / nb as f64).sqrt())
    };
    groups
        .iter()
        .filter(|g| g.init != RANDOM_INIT)
        .filter_map(|g| {
            let r = random.get(&(g.dataset.as_str(), g.model.as_str(), g.policy.as_str()))?;
            Some(InitComparison {
                dataset: g.dataset.clone(),
                model: g.model.clone(),
                policy: g.policy.clone(),
                init: g.init.clone(),
                metric: g.metric,
                runs: (g.runs, r.runs),
                best_test_delta: delta(g.best_test_mean, r.best_test_mean),
                best_test_delta_se: se(g.best_test_std, g.runs, r.best_test_std, r.runs),
                final_test_delta: delta(g.final_test_mean, r.final_test_mean),
                final_test_delta_se: se(g.final_test_std, g.runs, r.final_test_std, r.runs),
            })
        })
        .collect()
}

/// The comparisons as a Markdown table, in points for ROC-AUC and PRC-AUC (empty when there is
/// none).
pub fn comparison_markdown(comparisons: &[InitComparison]) -> String {
    if comparisons.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "| dataset | model | policy | pre-trained from | runs (pre-trained / random) | Δ test at best \
         valid | Δ test at last epoch |\n|---|---|---|---|---|---|---|\n",
    );
    for c in comparisons {
        let signed = |d: Option<f64>, se: Option<f64>| mean_std(d, se, c.metric, true);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} {} | {} |\n",
            c.dataset,
            c.model,
            c.policy,
            c.init,
            c.runs.0,
            c.runs.1,
            signed(c.best_test_delta, c.best_test_delta_se),
            metric_name(c.metric),
            signed(c.final_test_delta, c.final_test_delta_se),
        ));
    }
    out
}

/// Writes the groups to `path` as CSV (a header row, then one row per group; empty cells for
/// missing values).
pub fn write_csv(groups: &[RunGroup], path: &Path) -> Result<(), ReportError> {
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut csv = csv::Writer::from_path(path).map_err(csv_err)?;
    for g in groups {
        csv.serialize(g).map_err(csv_err)?;
    }
    csv.flush().map_err(|e| ReportError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::summary_json;

    /// Writes `text` as `<root>/<name>/summary.json`.
    fn write_summary(root: &Path, name: &str, text: &str) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("summary.json"), text).unwrap();
    }

    #[test]
    fn pre_trained_groups_are_compared_with_their_random_init_twin() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| write_summary(dir.path(), name, text);
        let pre = Some("/m/gin_attrmask.safetensors");
        write("bbbp-r0", &summary_json("BBBP", None, 0.60, 0.64));
        write("bbbp-r1", &summary_json("BBBP", None, 0.70, 0.66));
        write("bbbp-p0", &summary_json("BBBP", pre, 0.72, 0.70));
        write("bbbp-p1", &summary_json("BBBP", pre, 0.78, 0.70));
        // No random-init twin: not compared.
        write("bace-p0", &summary_json("BACE", pre, 0.80, 0.78));
        let found = find_runs(&[dir.path().to_path_buf()]).unwrap();
        let compared = init_comparisons(&group_runs(&found.rows()));
        assert_eq!(compared.len(), 1, "{compared:?}");
        let c = &compared[0];
        assert_eq!(
            (c.dataset.as_str(), c.init.as_str()),
            ("BBBP", "gin_attrmask.safetensors")
        );
        assert_eq!(c.runs, (2, 2));
        // Means 0.75 and 0.65; sample stds 0.0424 and 0.0707: se = sqrt(.0018/2 + .005/2).
        assert!((c.best_test_delta.unwrap() - 0.10).abs() < 1e-12);
        let se = (0.0018f64 / 2.0 + 0.005 / 2.0).sqrt();
        assert!((c.best_test_delta_se.unwrap() - se).abs() < 1e-9);
        assert!((c.final_test_delta.unwrap() - 0.05).abs() < 1e-12);
        let table = comparison_markdown(&compared);
        assert!(
            table.contains(
                "| BBBP | gin | full | gin_attrmask.safetensors | 2 / 2 | +10.0 ± 5.8 ROC-AUC | +5.0 ± 1.0 |"
            ),
            "{table}"
        );
        assert_eq!(comparison_markdown(&[]), "");
    }

    #[test]
    fn groups_seeds_and_skips_broken_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| write_summary(dir.path(), name, text);
        write("bbbp-s0", &summary_json("BBBP", None, 0.60, 0.64));
        write("bbbp-s1", &summary_json("BBBP", None, 0.70, 0.66));
        write(
            "nested/bbbp-pre-s0",
            &summary_json("BBBP", Some("/m/gcn_contextpred.pth"), 0.7, 0.7),
        );
        write("bace-s0", &summary_json("BACE", None, 0.80, 0.78));
        write("broken", "{\"dataset\": ");
        write("python", "{\"writer\": \"anges\", \"metric\": \"roc-auc\"}");
        let found = find_runs(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(found.summaries.len(), 4);
        assert_eq!(found.skipped.len(), 2, "{:?}", found.skipped);
        assert!(
            found.skipped[1]
                .1
                .contains("Python package whose summary is malformed"),
            "{:?}",
            found.skipped
        );
        assert!(
            !found.skipped[0].1.contains("Python"),
            "{:?}",
            found.skipped
        );
        let groups = group_runs(&found.rows());
        let labels: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.dataset.as_str(), g.init.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("BACE", "random"),
                ("BBBP", "gcn_contextpred.pth"),
                ("BBBP", "random")
            ]
        );
        let bbbp = &groups[2];
        assert_eq!(bbbp.runs, 2);
        assert!((bbbp.best_test_mean.unwrap() - 0.65).abs() < 1e-12);
        assert!((bbbp.best_test_std.unwrap() - 0.05 * 2f64.sqrt()).abs() < 1e-9);
        assert!((bbbp.final_test_mean.unwrap() - 0.65).abs() < 1e-12);
        let table = markdown(&groups);
        assert!(
            table.contains(
                "| BBBP | gin | random | full | 2 | 100 | 65.0 ± 7.1 ROC-AUC | 65.0 ± 1.4 |"
            ),
            "{table}"
        );
        // One run has a mean and no spread: no "± 0.0" that reads as a measured agreement.
        assert_eq!(groups[0].best_test_std, None);
        assert!(
            table.contains("| BACE | gin | random | full | 1 | 100 | 80.0 ROC-AUC | 78.0 |"),
            "{table}"
        );
        let csv_path = dir.path().join("runs.csv");
        write_csv(&groups, &csv_path).unwrap();
        let csv = std::fs::read_to_string(&csv_path).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(
            csv.starts_with("dataset,model,init,policy,metric,runs,"),
            "{csv}"
        );
        assert!(find_runs(&[dir.path().join("missing")]).is_err());
    }

    /// Errors keep three decimals (an ESOL RMSE is ≈ 1.2), AUCs one decimal of a percent.
    #[test]
    fn regression_errors_are_shown_with_three_decimals() {
        let row = |rmse: f64| RunRow {
            dataset: "ESOL".into(),
            model: "gcn".into(),
            init: RANDOM_INIT.into(),
            policy: "full".into(),
            metric: Metric::Rmse,
            epochs_run: 100,
            best_test: Some(rmse),
            final_test: Some(rmse + 0.01),
            seconds: 70.0,
            energy_j: None,
            co2_g: None,
        };
        let table = markdown(&group_runs(&[row(1.258), row(1.262)]));
        assert!(
            table.contains("| 1.260 ± 0.003 RMSE | 1.270 ± 0.003 |"),
            "{table}"
        );
        assert_eq!(mean_std(Some(0.0123), None, Metric::RocAuc, true), "+1.2");
    }

    /// Runs the Python package writes (through the same `Session` as `anges.Session`) are
    /// grouped by their labels beside the trainer's, with their test values.
    #[test]
    fn python_package_runs_are_grouped_by_their_labels() {
        use anges_tracking::session::RunLabels;

        let dir = tempfile::tempdir().unwrap();
        let session = |name: &str, labels: RunLabels, tests: [f64; 3]| {
            // The best validation is the second epoch's.
            let epochs: Vec<(f64, f64)> = [0.70, 0.80, 0.75].into_iter().zip(tests).collect();
            crate::test_support::python_run(&dir.path().join(name), labels, &epochs);
        };
        let bace = |init: &str| RunLabels {
            dataset: Some("bace".into()),
            model: Some("Mlp".into()),
            init: Some(init.into()),
        };
        session("py-r0", bace("random"), [0.60, 0.70, 0.72]);
        session("py-r1", bace("random"), [0.62, 0.74, 0.70]);
        session("py-p0", bace("chemberta"), [0.70, 0.80, 0.78]);
        session("py-unlabelled", RunLabels::default(), [0.5, 0.5, 0.5]);
        write_summary(
            dir.path(),
            "trainer",
            &summary_json("bace", None, 0.80, 0.78),
        );
        let found = find_runs(&[dir.path().to_path_buf()]).unwrap();
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
        assert_eq!((found.summaries.len(), found.python.len()), (1, 4));
        let groups = group_runs(&found.rows());
        let keys: Vec<(&str, &str, &str, &str)> = groups
            .iter()
            .map(|g| {
                (
                    g.dataset.as_str(),
                    g.model.as_str(),
                    g.init.as_str(),
                    g.policy.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                ("bace", "Mlp", "chemberta", "full"),
                ("bace", "Mlp", "random", "full"),
                ("bace", "gin", "random", "full"),
                ("unlabelled", "unlabelled", "unlabelled", "full"),
            ]
        );
        let random = &groups[1];
        assert_eq!((random.runs, random.epochs_mean), (2, 3.0));
        assert!((random.best_test_mean.unwrap() - 0.72).abs() < 1e-12);
        assert!((random.final_test_mean.unwrap() - 0.71).abs() < 1e-12);
        assert!(random.energy_j_mean.is_some_and(|j| j >= 0.0));
        let compared = init_comparisons(&groups);
        assert_eq!(compared.len(), 1, "{compared:?}");
        assert!((compared[0].best_test_delta.unwrap() - 0.08).abs() < 1e-12);
    }
}
