//! `anges-train summarize`: the results of many fine-tuning runs, mean ± std over seeds.
//!
//! Input: run directories (each with its `summary.json`), found under the paths given, at any
//! depth. Runs are grouped by dataset, model, initialisation (random or the checkpoint's file
//! name), stopping policy and pruning; each group gives the test metric at the best-validation
//! epoch (the weights a run delivers) and at the last epoch (what pretrain-gnns reports), with
//! epochs, wall time, energy and CO2. Output: a Markdown table, or JSON / CSV rows. Where a
//! pre-trained group has a random-init twin (same dataset, model and policy), a second table
//! gives what pre-training changed: the difference of the means, with its standard error.
//!
//! A `summary.json` that cannot be read or parsed is skipped with a warning and counted, so one
//! broken folder does not hide the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::aggregate::Stat;
use super::{ReportError, metric_name};
use crate::data::Metric;
use crate::train::Summary;

/// Folders deeper than this under a given path are not searched.
const MAX_DEPTH: usize = 8;

/// The run summaries found under some paths, and what could not be read.
#[derive(Debug, Default)]
pub struct FoundRuns {
    /// The summaries, in path order.
    pub summaries: Vec<Summary>,
    /// The `summary.json` file of each summary, in the same order.
    pub files: Vec<PathBuf>,
    /// `(file, why)` of each `summary.json` skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

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
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Summary>(&text).map_err(|e| why_not(&text, e)));
        match parsed {
            Ok(summary) => {
                found.summaries.push(summary);
                found.files.push(file);
            }
            Err(why) => {
                tracing::warn!("skipped {}: {why}", file.display());
                found.skipped.push((file, why));
            }
        }
    }
    Ok(found)
}

/// Why a `summary.json` is not a trainer's: the parse error, or that the Python package wrote it
/// (its summaries have no dataset, model or split to group by).
fn why_not(text: &str, e: serde_json::Error) -> String {
    let writer = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["writer"].as_str().map(str::to_owned));
    match writer {
        Some(w) => format!(
            "a run of the Python package ({w}), which summarize does not read yet (it has no \
             dataset, model or split to group by); anges-train replay reads it"
        ),
        None => e.to_string(),
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

/// Groups `summaries` (see the module doc), in dataset, model, initialisation and policy order.
pub fn group_runs(summaries: &[Summary]) -> Vec<RunGroup> {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&Summary>> = BTreeMap::new();
    for s in summaries {
        let key = (
            s.dataset.clone(),
            flag_name(&s.model),
            init_label(s),
            policy_label(s),
        );
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|((dataset, model, init, policy), runs)| {
            let metric = runs[0].metric;
            let stat =
                |f: &dyn Fn(&Summary) -> Option<f64>| Stat::of(runs.iter().filter_map(|s| f(s)));
            let best = stat(&|s| s.best_test.get(metric));
            let last = stat(&|s| s.final_test.get(metric));
            let mean = |f: &dyn Fn(&Summary) -> Option<f64>| stat(f).map(|st| st.mean);
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

fn mean_std(mean: Option<f64>, std: Option<f64>, scale: f64) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{:.1} ± {:.1}", m * scale, s * scale),
        (Some(m), None) => format!("{:.1}", m * scale),
        _ => "–".to_owned(),
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
        let scale = if g.metric.higher_is_better() {
            100.0
        } else {
            1.0
        };
        let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "–".to_owned(), f);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} {} | {} | {:.0} | {} | {} |\n",
            g.dataset,
            g.model,
            g.init,
            g.policy,
            g.runs,
            g.epochs_mean,
            mean_std(g.best_test_mean, g.best_test_std, scale),
            metric_name(g.metric),
            mean_std(g.final_test_mean, g.final_test_std, scale),
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
        let scale = if c.metric.higher_is_better() {
            100.0
        } else {
            1.0
        };
        let signed = |d: Option<f64>, se: Option<f64>| match (d, se) {
            (Some(d), Some(se)) => format!("{:+.1} ± {:.1}", d * scale, se * scale),
            (Some(d), None) => format!("{:+.1}", d * scale),
            _ => "–".to_owned(),
        };
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
        let compared = init_comparisons(&group_runs(&found.summaries));
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
            found.skipped[1].1.contains("Python package (anges)"),
            "{:?}",
            found.skipped
        );
        assert!(
            !found.skipped[0].1.contains("Python"),
            "{:?}",
            found.skipped
        );
        let groups = group_runs(&found.summaries);
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
}
