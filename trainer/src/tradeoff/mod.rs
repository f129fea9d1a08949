//! `anges-train tradeoff`: what each fine-tuning family (model × starting weights) and each
//! stopping policy costs and keeps, over a campaign of logged full runs — the study's
//! trade-off between performance lost and emissions saved.
//!
//! Input: full runs (`--stop full`, every epoch metered) under the given paths, found and
//! checked as `anges-train evaluate` does ([`crate::evaluate::load_runs`]); runs trained with
//! data pruning (MolPeg, random) are set apart and compared with the full runs of their
//! family. Nothing is trained: the policies are replayed on the logs ([`crate::replay`]).
//!
//! Per **group** (dataset × model × starting weights, its seeds pooled):
//! - the energy of an epoch and of a run, the epoch of the best validation metric;
//! - for each policy — `full`, `patience(P)`, the literal AN-GES rule and the AN-GES default
//!   ([`AngesVariant::DEFAULT`]) — where it stops, the test metric of the weights it delivers
//!   (its best validation epoch up to the stop), its CO2, and `%ΔPerf`, `%ΔEmiss` against the
//!   full run;
//! - for ROC-AUC and PRC-AUC, the **grams of CO2-eq per point above chance**: a run's CO2 over
//!   `100 × (test − 0.5)` of the weights it delivers (none when it does not beat chance).
//!
//! Per **family** (model × pre-trained or random, over its datasets): the same, averaged. The
//! **frontier** puts every family × policy on one plane, mean test metric against mean CO2
//! per run, over the datasets that every family has (so that each point averages the same
//! tasks); the points no other point beats on both axes are its Pareto frontier, and the
//! answer to "which fine-tuning is the most sustainable" is the cheapest point within
//! `--tolerance` of the best mean metric.
//!
//! Layout: this file computes ([`analyse`]); [`output`] shows and writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::data::Metric;
use crate::evaluate::{EvalRun, EvaluateError, check_paths_and_tolerance, load_runs};
use crate::policy::{AngesParams, AngesVariant, StopSpec};
use crate::replay::{self, LoggedRun};
use crate::report::aggregate::Stat;
use crate::report::runs::{RANDOM_INIT, flag_name};

pub mod output;

/// What `anges-train tradeoff` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeoffConfig {
    /// Run folders, or folders holding them at any depth.
    pub paths: Vec<PathBuf>,
    /// Patience of the patience policy (epochs without a validation improvement).
    pub patience: usize,
    /// How far below the best mean metric (ROC-AUC points, or percent of an error) the
    /// frontier's answer may lie.
    pub tolerance: f64,
}

impl Default for TradeoffConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            patience: 10,
            tolerance: 1.0,
        }
    }
}

/// The policies every group is replayed with, in table order.
pub fn policies(patience: usize) -> Vec<(String, StopSpec)> {
    vec![
        ("full".into(), StopSpec::Full),
        (
            format!("patience({patience})"),
            StopSpec::Patience {
                patience,
                min_delta: 0.0,
            },
        ),
        (
            "anges literal".into(),
            StopSpec::Anges(AngesParams::literal()),
        ),
        (
            format!("anges {} (default)", AngesVariant::DEFAULT.name()),
            StopSpec::Anges(AngesVariant::DEFAULT.preset()),
        ),
    ]
}

/// A model with its kind of starting weights: what the frontier compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Family {
    /// `1D` (sequence) or `2D` (graph).
    pub dimension: String,
    /// Model (`gin`, `gcn`, `transformer`, …).
    pub model: String,
    /// `random`, or the file name of the checkpoint the encoder started from.
    pub init: String,
}

impl Family {
    /// `gcn ← gcn_supervised_contextpred`, `gin random` (the checkpoint without its extension).
    pub fn label(&self) -> String {
        if self.init == RANDOM_INIT {
            format!("{} random", self.model)
        } else {
            let stem = std::path::Path::new(&self.init)
                .file_stem()
                .map_or_else(|| self.init.clone(), |s| s.to_string_lossy().into_owned());
            format!("{} ← {stem}", self.model)
        }
    }

    fn of(run: &EvalRun) -> Self {
        let summary = run.log.summary.as_ref();
        let dimension = summary.map_or("?", |s| if s.model.is_graph() { "2D" } else { "1D" });
        let init = summary
            .and_then(|s| s.pretrained.as_ref())
            .and_then(|p| p.file_name())
            .map_or_else(
                || RANDOM_INIT.to_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
        Family {
            dimension: dimension.to_owned(),
            model: run.model.clone(),
            init,
        }
    }
}

/// A mean with its sample standard deviation over the seeds (`std` is `None` for one run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation, with at least two values.
    pub std: Option<f64>,
}

impl MeanStd {
    /// The finite values' mean and spread; `None` without any.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        Stat::of(values).map(|s| MeanStd {
            mean: s.mean,
            std: s.spread(),
        })
    }

    /// [`MeanStd::of`] of values that are never empty in a group (every run has epochs): NaN
    /// rather than `None` if they ever are.
    fn of_all(values: impl IntoIterator<Item = f64>) -> Self {
        Self::of(values).unwrap_or(MeanStd {
            mean: f64::NAN,
            std: None,
        })
    }
}

/// One policy over one group's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyOutcome {
    /// The policy's label (`full`, `patience(10)`, `anges literal`, …).
    pub policy: String,
    /// Runs where the policy fired before the log's end.
    pub fired: usize,
    /// Epoch trained last.
    pub stop_epoch: MeanStd,
    /// Test metric of the delivered weights.
    pub test: Option<MeanStd>,
    /// CO2-eq up to the stop, grams.
    pub co2_g: Option<MeanStd>,
    /// `%ΔPerf` against the full run (mean over runs).
    pub delta_perf_pct: Option<f64>,
    /// `%ΔEmiss` against the full run (mean over runs).
    pub delta_emiss_pct: Option<f64>,
    /// Test change against the full run in the metric's loss unit (ROC-AUC points, percent of
    /// an error), positive when better (mean over runs).
    pub delta_test: Option<f64>,
    /// Grams of CO2-eq per point of the score above chance (scores only).
    pub co2_per_point: Option<f64>,
}

/// The runs of one dataset × family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupTradeoff {
    /// Dataset.
    pub dataset: String,
    /// Model and starting weights.
    pub family: Family,
    /// Metric that selected epochs and is reported.
    pub metric: Metric,
    /// Runs (seeds).
    pub runs: usize,
    /// Epochs of the full runs.
    pub epochs: MeanStd,
    /// Energy of one epoch, joules (a run's energy over its epochs).
    pub joules_per_epoch: Option<MeanStd>,
    /// Energy of a full run, joules.
    pub joules_per_run: Option<MeanStd>,
    /// Wall-clock seconds of a full run.
    pub seconds_per_run: MeanStd,
    /// Epoch of the best validation metric in the full run.
    pub best_epoch: MeanStd,
    /// Each policy, in [`policies`] order.
    pub policies: Vec<PolicyOutcome>,
}

/// One family over all its datasets: the groups' figures averaged (each dataset weighs the
/// same, whatever its seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyTradeoff {
    /// Model and starting weights.
    pub family: Family,
    /// Its datasets.
    pub datasets: Vec<String>,
    /// Its runs.
    pub runs: usize,
    /// Mean energy of an epoch, joules.
    pub joules_per_epoch: Option<f64>,
    /// Mean energy of a full run, joules.
    pub joules_per_run: Option<f64>,
    /// Mean epoch of the best validation, and the mean fraction of the full run it is at.
    pub best_epoch: f64,
    /// Mean of `best_epoch / epochs`.
    pub best_epoch_fraction: f64,
    /// Per policy (in [`policies`] order): mean stop epoch, `%ΔEmiss` and test change.
    pub policies: Vec<FamilyPolicy>,
}

/// One policy over a family's datasets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyPolicy {
    /// The policy's label.
    pub policy: String,
    /// Mean stop epoch.
    pub stop_epoch: f64,
    /// Mean `%ΔEmiss` against the full runs.
    pub delta_emiss_pct: Option<f64>,
    /// Mean test change against the full runs (loss unit, positive when better).
    pub delta_test: Option<f64>,
    /// Mean grams of CO2-eq per point above chance (scores only).
    pub co2_per_point: Option<f64>,
}

/// A family × policy on the frontier plane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontierPoint {
    /// Model and starting weights.
    pub family: Family,
    /// The policy's label.
    pub policy: String,
    /// Mean test metric over the frontier's datasets (each dataset's mean over seeds).
    pub test: f64,
    /// Mean CO2-eq of a run over the frontier's datasets, grams.
    pub co2_g: f64,
    /// Whether no other point has a better-or-equal metric at a lower-or-equal CO2.
    pub pareto: bool,
}

/// The frontier of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frontier {
    /// The metric.
    pub metric: Metric,
    /// The datasets every family of this metric has.
    pub datasets: Vec<String>,
    /// The families compared (those with runs on all of `datasets`).
    pub families: Vec<Family>,
    /// Every family × policy.
    pub points: Vec<FrontierPoint>,
    /// The answer: the index in `points` of the cheapest point within the tolerance of the best
    /// mean metric, and of the best point.
    pub cheapest_within_tolerance: Option<usize>,
    /// Index of the point with the best mean metric.
    pub best: Option<usize>,
}

/// Pruned runs of one group against the full runs of the same family and dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruningOutcome {
    /// Dataset.
    pub dataset: String,
    /// Model and starting weights.
    pub family: Family,
    /// `molpeg` or `random`.
    pub method: String,
    /// Fraction of the training set kept per epoch.
    pub keep_ratio: f64,
    /// Runs.
    pub runs: usize,
    /// Test metric at the best validation epoch.
    pub test: Option<MeanStd>,
    /// CO2-eq of a run, grams.
    pub co2_g: Option<MeanStd>,
    /// Test change against the full runs' mean (loss unit, positive when better).
    pub delta_test: Option<f64>,
    /// `%ΔEmiss` of the mean CO2 against the full runs' mean.
    pub delta_emiss_pct: Option<f64>,
}

/// Everything `anges-train tradeoff` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tradeoff {
    /// Patience of the patience policy.
    pub patience: usize,
    /// The frontier's tolerance.
    pub tolerance: f64,
    /// Per dataset × family, in dataset then family order.
    pub groups: Vec<GroupTradeoff>,
    /// Per family.
    pub families: Vec<FamilyTradeoff>,
    /// One frontier per metric.
    pub frontiers: Vec<Frontier>,
    /// Pruned runs against their full runs.
    pub pruning: Vec<PruningOutcome>,
    /// `(folder, why)` of each run left out.
    pub skipped: Vec<(String, String)>,
}

/// The test change of `test` against `full` in the metric's loss unit, positive when better.
fn gain(metric: Metric, test: f64, full: f64) -> f64 {
    -crate::evaluate::loss(metric, test, full)
}

/// Grams per point above chance of a score; `None` for an error metric or at/below chance.
fn per_point(metric: Metric, co2: Option<f64>, test: Option<f64>) -> Option<f64> {
    let above = 100.0 * (test? - 0.5);
    (metric.higher_is_better() && above > 0.0).then(|| co2.map(|c| c / above))?
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    Stat::of(values).map(|s| s.mean)
}

/// One group's figures.
fn group(dataset: &str, family: Family, runs: &[&LoggedRun], patience: usize) -> GroupTradeoff {
    let metric = runs[0].metric;
    let total_j = |r: &LoggedRun| r.epochs.last().and_then(|e| e.cumulative_j);
    let full_outcomes: Vec<_> = runs
        .iter()
        .map(|r| replay::replay(r, StopSpec::Full))
        .collect();
    let policies = policies(patience)
        .into_iter()
        .map(|(label, spec)| {
            let outcomes: Vec<_> = runs.iter().map(|r| replay::replay(r, spec)).collect();
            let pairs = || outcomes.iter().zip(&full_outcomes);
            PolicyOutcome {
                policy: label,
                fired: outcomes.iter().filter(|o| o.fired).count(),
                stop_epoch: MeanStd::of_all(outcomes.iter().map(|o| o.stop_epoch as f64)),
                test: MeanStd::of(outcomes.iter().filter_map(|o| o.test_metric)),
                co2_g: MeanStd::of(outcomes.iter().filter_map(|o| o.co2_g)),
                delta_perf_pct: mean(outcomes.iter().filter_map(|o| o.delta_perf_pct)),
                delta_emiss_pct: mean(outcomes.iter().filter_map(|o| o.delta_emiss_pct)),
                delta_test: mean(
                    pairs().filter_map(|(o, f)| Some(gain(metric, o.test_metric?, f.test_metric?))),
                ),
                co2_per_point: mean(
                    outcomes
                        .iter()
                        .filter_map(|o| per_point(metric, o.co2_g, o.test_metric)),
                ),
            }
        })
        .collect();
    GroupTradeoff {
        dataset: dataset.to_owned(),
        family,
        metric,
        runs: runs.len(),
        epochs: MeanStd::of_all(runs.iter().map(|r| r.epochs.len() as f64)),
        joules_per_epoch: MeanStd::of(
            runs.iter()
                .filter_map(|r| total_j(r).map(|j| j / r.epochs.len() as f64)),
        ),
        joules_per_run: MeanStd::of(runs.iter().filter_map(|r| total_j(r))),
        seconds_per_run: MeanStd::of_all(
            runs.iter()
                .map(|r| r.epochs.iter().map(|e| e.seconds).sum()),
        ),
        best_epoch: MeanStd::of_all(full_outcomes.iter().map(|o| o.best_epoch as f64)),
        policies,
    }
}

/// A family's figures over its groups.
fn family(family: &Family, groups: &[&GroupTradeoff]) -> FamilyTradeoff {
    let over = |f: &dyn Fn(&GroupTradeoff) -> Option<f64>| mean(groups.iter().filter_map(|g| f(g)));
    let policies = groups[0]
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| FamilyPolicy {
            policy: p.policy.clone(),
            stop_epoch: over(&|g| Some(g.policies[i].stop_epoch.mean)).unwrap_or(f64::NAN),
            delta_emiss_pct: over(&|g| g.policies[i].delta_emiss_pct),
            delta_test: over(&|g| g.policies[i].delta_test),
            co2_per_point: over(&|g| g.policies[i].co2_per_point),
        })
        .collect();
    FamilyTradeoff {
        family: family.clone(),
        datasets: groups.iter().map(|g| g.dataset.clone()).collect(),
        runs: groups.iter().map(|g| g.runs).sum(),
        joules_per_epoch: over(&|g| g.joules_per_epoch.map(|m| m.mean)),
        joules_per_run: over(&|g| g.joules_per_run.map(|m| m.mean)),
        best_epoch: over(&|g| Some(g.best_epoch.mean)).unwrap_or(f64::NAN),
        best_epoch_fraction: over(&|g| Some(g.best_epoch.mean / g.epochs.mean)).unwrap_or(f64::NAN),
        policies,
    }
}

/// The frontier of the groups of one metric, over the datasets all their families share.
fn frontier(metric: Metric, groups: &[&GroupTradeoff], tolerance: f64) -> Option<Frontier> {
    let families: BTreeSet<&Family> = groups.iter().map(|g| &g.family).collect();
    let datasets_of = |f: &Family| -> BTreeSet<&str> {
        groups
            .iter()
            .filter(|g| &g.family == f)
            .map(|g| g.dataset.as_str())
            .collect()
    };
    let common = families
        .iter()
        .map(|f| datasets_of(f))
        .reduce(|a, b| a.intersection(&b).copied().collect())?;
    if common.is_empty() {
        return None;
    }
    let mut points = Vec::new();
    for f in &families {
        let members: Vec<&&GroupTradeoff> = groups
            .iter()
            .filter(|g| &g.family == *f && common.contains(g.dataset.as_str()))
            .collect();
        for (i, p) in members[0].policies.iter().enumerate() {
            let test = mean(
                members
                    .iter()
                    .filter_map(|g| g.policies[i].test.map(|t| t.mean)),
            );
            let co2 = mean(
                members
                    .iter()
                    .filter_map(|g| g.policies[i].co2_g.map(|c| c.mean)),
            );
            if let (Some(test), Some(co2_g)) = (test, co2) {
                points.push(FrontierPoint {
                    family: (*f).clone(),
                    policy: p.policy.clone(),
                    test,
                    co2_g,
                    pareto: false,
                });
            }
        }
    }
    let better = |a: f64, b: f64| {
        if metric.higher_is_better() {
            a >= b
        } else {
            a <= b
        }
    };
    for i in 0..points.len() {
        let p = &points[i];
        let beaten = points.iter().enumerate().any(|(j, q)| {
            j != i
                && better(q.test, p.test)
                && q.co2_g <= p.co2_g
                && (q.test != p.test || q.co2_g < p.co2_g)
        });
        points[i].pareto = !beaten;
    }
    let best = (0..points.len()).reduce(|a, b| {
        if better(points[a].test, points[b].test) {
            a
        } else {
            b
        }
    });
    let cheapest_within_tolerance = best.and_then(|b| {
        (0..points.len())
            .filter(|&i| gain(metric, points[i].test, points[b].test) >= -tolerance)
            .min_by(|&a, &b| points[a].co2_g.total_cmp(&points[b].co2_g))
    });
    Some(Frontier {
        metric,
        datasets: common.into_iter().map(str::to_owned).collect(),
        families: families.into_iter().cloned().collect(),
        points,
        cheapest_within_tolerance,
        best,
    })
}

/// Pruned runs grouped by dataset × family × method × ratio, against the full runs.
fn pruning(pruned: &[&EvalRun], full: &[GroupTradeoff]) -> Vec<PruningOutcome> {
    let mut by: BTreeMap<(String, Family, String, String), Vec<&EvalRun>> = BTreeMap::new();
    for run in pruned {
        let Some(prune) = run.log.summary.as_ref().and_then(|s| s.prune.as_ref()) else {
            continue;
        };
        let method = flag_name(&prune.method);
        let key = (
            run.dataset.clone(),
            Family::of(run),
            method,
            prune.keep_ratio.to_string(),
        );
        by.entry(key).or_default().push(run);
    }
    by.into_iter()
        .map(|((dataset, family, method, _ratio), runs)| {
            let metric = runs[0].log.metric;
            let summaries = || runs.iter().filter_map(|r| r.log.summary.as_ref());
            let test = MeanStd::of(summaries().filter_map(|s| s.best_test.get(metric)));
            let co2 = MeanStd::of(summaries().filter_map(|s| s.co2_g));
            let reference = full
                .iter()
                .find(|g| g.dataset == dataset && g.family == family)
                .and_then(|g| g.policies.first());
            PruningOutcome {
                delta_test: test
                    .zip(reference.and_then(|r| r.test))
                    .map(|(t, f)| gain(metric, t.mean, f.mean)),
                delta_emiss_pct: co2
                    .zip(reference.and_then(|r| r.co2_g))
                    .map(|(c, f)| 100.0 * (c.mean - f.mean) / f.mean),
                dataset,
                family,
                method,
                keep_ratio: runs[0]
                    .log
                    .summary
                    .as_ref()
                    .and_then(|s| s.prune.as_ref())
                    .map_or(f64::NAN, |p| p.keep_ratio),
                runs: runs.len(),
                test,
                co2_g: co2,
            }
        })
        .collect()
}

/// `anges-train tradeoff`: loads the runs and computes every figure.
pub fn analyse(config: &TradeoffConfig) -> Result<Tradeoff, EvaluateError> {
    check_paths_and_tolerance(&config.paths, config.tolerance)?;
    if config.patience == 0 {
        return Err(EvaluateError::Unusable("--patience must be ≥ 1".into()));
    }
    let (runs, skipped) = load_runs(&config.paths)?;
    let (pruned, full): (Vec<&EvalRun>, Vec<&EvalRun>) = runs
        .iter()
        .partition(|r| r.log.summary.as_ref().is_some_and(|s| s.prune.is_some()));
    if full.is_empty() {
        return Err(EvaluateError::Unusable(format!(
            "no usable full run without pruning under the given paths ({} skipped, {} pruned)",
            skipped.len(),
            pruned.len()
        )));
    }
    let mut by_group: BTreeMap<(String, Family), Vec<&LoggedRun>> = BTreeMap::new();
    for run in &full {
        by_group
            .entry((run.dataset.clone(), Family::of(run)))
            .or_default()
            .push(&run.log);
    }
    let groups: Vec<GroupTradeoff> = by_group
        .into_iter()
        .map(|((dataset, fam), logs)| group(&dataset, fam, &logs, config.patience))
        .collect();
    let family_names: BTreeSet<&Family> = groups.iter().map(|g| &g.family).collect();
    let families = family_names
        .iter()
        .map(|f| {
            let members: Vec<&GroupTradeoff> = groups.iter().filter(|g| &g.family == *f).collect();
            family(f, &members)
        })
        .collect();
    let metrics: BTreeSet<Metric> = groups.iter().map(|g| g.metric).collect();
    let frontiers = metrics
        .into_iter()
        .filter_map(|m| {
            let members: Vec<&GroupTradeoff> = groups.iter().filter(|g| g.metric == m).collect();
            frontier(m, &members, config.tolerance)
        })
        .collect();
    let pruning = pruning(&pruned, &groups);
    Ok(Tradeoff {
        patience: config.patience,
        tolerance: config.tolerance,
        groups,
        families,
        frontiers,
        pruning,
        skipped: skipped
            .into_iter()
            .map(|(p, why)| (p.display().to_string(), why))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{logged_run, summary_json};

    fn family(model: &str, init: &str) -> Family {
        Family {
            dimension: "2D".into(),
            model: model.into(),
            init: init.into(),
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn each_policy_is_replayed_and_its_figures_follow_by_hand() {
        // A: best valid at epoch 2 (test 0.70); patience 1 stops at 3 (3 g of 4).
        let a = logged_run(&[
            (0.70, 0.60, 1.0),
            (0.80, 0.70, 2.0),
            (0.75, 0.72, 3.0),
            (0.78, 0.74, 4.0),
        ]);
        // B: improves every epoch; patience never fires.
        let b = logged_run(&[
            (0.6, 0.55, 2.0),
            (0.7, 0.65, 4.0),
            (0.8, 0.75, 6.0),
            (0.9, 0.85, 8.0),
        ]);
        let g = group("BACE", family("gcn", RANDOM_INIT), &[&a, &b], 1);
        assert_eq!(g.runs, 2);
        // 4 kJ and 8 kJ over 4 epochs each.
        assert!(close(g.joules_per_epoch.map(|m| m.mean), 1500.0));
        assert!(close(g.joules_per_run.map(|m| m.mean), 6000.0));
        assert!(close(Some(g.best_epoch.mean), 3.0));
        let labels: Vec<&str> = g.policies.iter().map(|p| p.policy.as_str()).collect();
        assert_eq!(
            labels,
            [
                "full",
                "patience(1)",
                "anges literal",
                "anges plateau (default)"
            ]
        );
        let full = &g.policies[0];
        assert!(close(full.test.map(|m| m.mean), 0.775));
        assert!(close(full.delta_test, 0.0) && close(full.delta_emiss_pct, 0.0));
        // Grams per point above chance: 4 / 20 and 8 / 35.
        assert!(close(full.co2_per_point, (0.2 + 8.0 / 35.0) / 2.0));
        let patience = &g.policies[1];
        assert_eq!(patience.fired, 1);
        assert!(close(Some(patience.stop_epoch.mean), 3.5));
        assert!(close(patience.delta_emiss_pct, -12.5));
        assert!(close(patience.delta_test, 0.0));
        // The literal rule's warm-up (5 epochs) outlasts these 4-epoch logs.
        assert_eq!(g.policies[2].fired, 0);
    }

    fn policy(label: &str, test: f64, co2: f64) -> PolicyOutcome {
        PolicyOutcome {
            policy: label.into(),
            fired: 0,
            stop_epoch: MeanStd {
                mean: 1.0,
                std: None,
            },
            test: MeanStd::of([test]),
            co2_g: MeanStd::of([co2]),
            delta_perf_pct: None,
            delta_emiss_pct: None,
            delta_test: None,
            co2_per_point: None,
        }
    }

    fn made(dataset: &str, family: Family, policies: Vec<PolicyOutcome>) -> GroupTradeoff {
        let one = MeanStd {
            mean: 1.0,
            std: None,
        };
        GroupTradeoff {
            dataset: dataset.into(),
            family,
            metric: Metric::RocAuc,
            runs: 1,
            epochs: one,
            joules_per_epoch: None,
            joules_per_run: None,
            seconds_per_run: one,
            best_epoch: one,
            policies,
        }
    }

    #[test]
    fn the_frontier_averages_the_shared_datasets_and_answers_within_the_tolerance() {
        let (x, y, z) = (
            family("gin", RANDOM_INIT),
            family("gcn", "gcn_supervised_contextpred.pth"),
            family("transformer", RANDOM_INIT),
        );
        let groups = [
            made(
                "BACE",
                x.clone(),
                vec![policy("full", 0.80, 1.0), policy("lit", 0.70, 0.2)],
            ),
            made(
                "BBBP",
                x.clone(),
                vec![policy("full", 0.70, 3.0), policy("lit", 0.60, 0.4)],
            ),
            made(
                "BACE",
                y.clone(),
                vec![policy("full", 0.76, 0.5), policy("lit", 0.74, 0.1)],
            ),
            made(
                "BBBP",
                y.clone(),
                vec![policy("full", 0.73, 0.5), policy("lit", 0.70, 0.1)],
            ),
            // Only on BACE: the frontier keeps to the datasets every family has.
            made(
                "BACE",
                z.clone(),
                vec![policy("full", 0.90, 9.0), policy("lit", 0.50, 5.0)],
            ),
        ];
        let refs: Vec<&GroupTradeoff> = groups.iter().collect();
        let fr = frontier(Metric::RocAuc, &refs, 1.0).unwrap();
        assert_eq!(fr.datasets, ["BACE"]);
        assert_eq!(fr.points.len(), 6);
        let at = |f: &Family, p: &str| {
            fr.points
                .iter()
                .position(|q| &q.family == f && q.policy == p)
                .unwrap()
        };
        // Pareto on BACE: y lit (0.74, 0.1), y full (0.76, 0.5), x full (0.80, 1.0),
        // z full (0.90, 9.0); x lit (0.70, 0.2) and z lit (0.50, 5.0) are beaten.
        let pareto: Vec<bool> = [
            at(&y, "lit"),
            at(&y, "full"),
            at(&x, "full"),
            at(&z, "full"),
            at(&x, "lit"),
            at(&z, "lit"),
        ]
        .iter()
        .map(|&i| fr.points[i].pareto)
        .collect();
        assert_eq!(pareto, [true, true, true, true, false, false]);
        assert_eq!(fr.best, Some(at(&z, "full")));
        // Within 1 point of 0.90 only z full itself, and the answer says so.
        assert_eq!(fr.cheapest_within_tolerance, Some(at(&z, "full")));
        let text = output::answer(&fr, 1.0).unwrap();
        assert!(text.contains("is also the cheapest"), "{text}");
        // Without z, both datasets count: y lit (0.72, 0.1 g) is within 3.5 points of the best,
        // x full (0.75, 2 g).
        let fr = frontier(Metric::RocAuc, &refs[..4], 3.5).unwrap();
        assert_eq!(fr.datasets, ["BACE", "BBBP"]);
        let i = fr.cheapest_within_tolerance.unwrap();
        assert_eq!(
            (&fr.points[i].family, fr.points[i].policy.as_str()),
            (&y, "lit")
        );
        assert!((fr.points[i].test - 0.72).abs() < 1e-12);
        let text = output::answer(&fr, 3.5).unwrap();
        assert!(
            text.contains("gcn ← gcn_supervised_contextpred with lit"),
            "{text}"
        );
        assert!(text.contains("20.0× less CO2"), "{text}");
        // Families that share no dataset have no frontier.
        assert!(frontier(Metric::RocAuc, &[&groups[1], &groups[4]], 1.0).is_none());
    }

    #[test]
    fn pruned_runs_are_compared_with_the_full_runs_of_their_family() {
        let full = logged_run(&[(0.7, 0.70, 1.0), (0.8, 0.80, 2.0)]);
        let groups = [group("BACE", family("gin", RANDOM_INIT), &[&full], 10)];
        let pruned = |best: f64, co2: f64| {
            let mut v: serde_json::Value =
                serde_json::from_str(&summary_json("BACE", None, best, best)).unwrap();
            v["co2_g"] = co2.into();
            v["prune"] = serde_json::json!({"method": "molpeg", "keep_ratio": 0.5,
                "samples_used": 5, "samples_full": 10, "reference_seconds": 1.0,
                "reference_energy_j": null});
            let mut log = logged_run(&[(0.7, best, co2)]);
            log.summary = Some(serde_json::from_value(v).unwrap());
            EvalRun {
                name: "p".into(),
                dataset: "BACE".into(),
                model: "gin".into(),
                init: "random-init".into(),
                log,
            }
        };
        let runs = [pruned(0.78, 1.0), pruned(0.74, 1.4)];
        let out = pruning(&runs.iter().collect::<Vec<_>>(), &groups);
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(
            (p.method.as_str(), p.keep_ratio, p.runs),
            ("molpeg", 0.5, 2)
        );
        assert_eq!(p.family, family("gin", RANDOM_INIT));
        // Mean test 0.76 against 0.80: −4 points; mean 1.2 g against 2 g: −40 %.
        assert!(close(p.delta_test, -4.0));
        assert!(close(p.delta_emiss_pct, -40.0));
    }
}
