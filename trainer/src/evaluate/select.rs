//! The evaluation proper: every candidate's outcome on every run, the in-sample means, the
//! leave-datasets-out choice per tolerance, the hindsight bound and the frontiers.

use serde::Serialize;

use super::candidates::{Candidate, Family};
use super::{EvalRun, EvaluateConfig, loss, loss_unit};
use crate::policy::{Policy, StopSpec};

/// The whole evaluation: one [`GroupEvaluation`] per kind of initialisation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The stated tolerance (the criterion's maximum mean loss).
    pub tolerance: f64,
    /// The CO2 saving the goal asks for at that tolerance, percent.
    pub goal_saved_pct: f64,
    /// `random-init`, `pre-trained`.
    pub groups: Vec<GroupEvaluation>,
    /// `(folder, why)` of each run left out.
    pub skipped: Vec<(String, String)>,
}

/// One candidate on one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunOutcome {
    /// Last epoch trained.
    pub stop_epoch: usize,
    /// Epoch of the delivered weights.
    pub best_epoch: usize,
    /// Loss against the full run (points or percent, [`loss_unit`]).
    pub loss: f64,
    /// `%ΔPerf` against the full run.
    pub delta_perf_pct: f64,
    /// `%ΔEmiss` against the full run.
    pub delta_emiss_pct: f64,
}

/// Means over some runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Means {
    /// Runs averaged.
    pub runs: usize,
    /// Mean loss.
    pub loss: f64,
    /// Mean `%ΔPerf`.
    pub delta_perf_pct: f64,
    /// Mean `%ΔEmiss`.
    pub delta_emiss_pct: f64,
    /// Mean stop epoch.
    pub stop_epoch: f64,
}

impl Means {
    /// The means of `outcomes` (`None` when there are none).
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a RunOutcome>) -> Option<Self> {
        let mut m = Means {
            runs: 0,
            loss: 0.0,
            delta_perf_pct: 0.0,
            delta_emiss_pct: 0.0,
            stop_epoch: 0.0,
        };
        for o in outcomes {
            m.runs += 1;
            m.loss += o.loss;
            m.delta_perf_pct += o.delta_perf_pct;
            m.delta_emiss_pct += o.delta_emiss_pct;
            m.stop_epoch += o.stop_epoch as f64;
        }
        if m.runs == 0 {
            return None;
        }
        let n = m.runs as f64;
        m.loss /= n;
        m.delta_perf_pct /= n;
        m.delta_emiss_pct /= n;
        m.stop_epoch /= n;
        Some(m)
    }

    /// CO2 saved against the full runs, percent.
    pub fn saved_pct(&self) -> f64 {
        -self.delta_emiss_pct
    }
}

/// One candidate's in-sample figures.
#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    /// The candidate's label.
    pub candidate: String,
    /// Its means over every run of the group.
    pub means: Means,
}

/// A family's choice for one held-out dataset.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOutDataset {
    /// The held-out dataset.
    pub dataset: String,
    /// The candidate chosen on the other datasets.
    pub candidate: String,
    /// Whether it met the tolerance there (else it was the smallest loss).
    pub met_tolerance: bool,
    /// Its means on the other datasets' runs (where it was chosen).
    pub chosen_on: Means,
    /// Its means on the held-out dataset's runs.
    pub held_out: Means,
}

/// A family's leave-datasets-out result at one tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    /// The tolerance of the choice.
    pub tolerance: f64,
    /// Per held-out dataset.
    pub datasets: Vec<HeldOutDataset>,
    /// Pooled over every held-out run.
    pub pooled: Means,
}

/// A point of a frontier: at one tolerance, the pooled mean loss and CO2 change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrontierPoint {
    /// The tolerance.
    pub tolerance: f64,
    /// Mean loss.
    pub loss: f64,
    /// Mean `%ΔEmiss`.
    pub delta_emiss_pct: f64,
}

/// One family's evaluation in a group.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyEvaluation {
    /// The family's name.
    pub family: String,
    /// Whether it is a baseline (patience, budgets).
    pub baseline: bool,
    /// Every candidate's means over all the group's runs.
    pub in_sample: Vec<GridRow>,
    /// The candidate chosen on every dataset of the group at the stated tolerance (what a
    /// default would be).
    pub chosen_on_all: String,
    /// Leave-datasets-out, per tolerance of the sweep.
    pub held_out: Vec<HeldOut>,
    /// The per-run outcomes of the held-out choice at the stated tolerance, in the group's run
    /// order.
    pub runs: Vec<Option<RunOutcome>>,
    /// The baselines whose held-out frontier has a point at least as good in both loss and CO2
    /// (and better in one) than this family's held-out point at the stated tolerance.
    pub dominated_by: Vec<String>,
    /// The baselines whose held-out frontier this family's lies on or beyond: every point of
    /// this family's frontier within the baseline's range of losses saves at least as much CO2
    /// as the baseline's frontier (interpolated) at the same loss, and one point at least is in
    /// that range.
    pub beyond: Vec<String>,
    /// Whether its held-out point at the stated tolerance meets the goal (mean loss ≤ the
    /// tolerance and at least the goal's CO2 saved).
    pub meets_goal: bool,
}

impl FamilyEvaluation {
    /// The held-out result at tolerance `t`.
    pub fn at(&self, t: f64) -> Option<&HeldOut> {
        self.held_out.iter().find(|h| h.tolerance == t)
    }

    /// The held-out frontier: one point per tolerance.
    pub fn frontier(&self) -> Vec<FrontierPoint> {
        self.held_out
            .iter()
            .map(|h| FrontierPoint {
                tolerance: h.tolerance,
                loss: h.pooled.loss,
                delta_emiss_pct: h.pooled.delta_emiss_pct,
            })
            .collect()
    }
}

/// The hindsight bound of one run at one tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundRun {
    /// The earliest stop within the tolerance.
    pub stop_epoch: usize,
    /// Its loss.
    pub loss: f64,
    /// Its `%ΔEmiss`.
    pub delta_emiss_pct: f64,
}

/// The bound pooled over the group's runs at one tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    /// The tolerance.
    pub tolerance: f64,
    /// Per run, in the group's run order.
    pub runs: Vec<BoundRun>,
    /// Mean loss.
    pub loss: f64,
    /// Mean `%ΔEmiss`.
    pub delta_emiss_pct: f64,
}

/// A run of a group, as listed in the outputs.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Folder name.
    pub name: String,
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Epochs logged.
    pub epochs: usize,
    /// Test metric of the full run's delivered weights.
    pub full_test: f64,
    /// Its CO2 over the logged epochs, grams.
    pub full_co2_g: f64,
}

/// One group's evaluation (random-init or pre-trained runs).
#[derive(Debug, Clone, Serialize)]
pub struct GroupEvaluation {
    /// `random-init` or `pre-trained`.
    pub init: String,
    /// The unit of the losses (`points`, `%`).
    pub loss_unit: String,
    /// The runs.
    pub runs: Vec<RunInfo>,
    /// The datasets (each held out in turn).
    pub datasets: Vec<String>,
    /// Per family.
    pub families: Vec<FamilyEvaluation>,
    /// The hindsight bound, per tolerance of the sweep.
    pub bound: Vec<Bound>,
    /// The AN-GES variant whose held-out frontier lies beyond patience's with the smallest
    /// held-out loss at the stated tolerance: the default `--stop anges` should have (`None`:
    /// none beats patience, keep the literal rule).
    pub recommended: Option<String>,
}

impl GroupEvaluation {
    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&FamilyEvaluation> {
        self.families.iter().find(|f| f.family == name)
    }

    /// The bound at tolerance `t`.
    pub fn bound_at(&self, t: f64) -> Option<&Bound> {
        self.bound.iter().find(|b| b.tolerance == t)
    }
}

/// The candidate's outcome on `run` against the run's own full trajectory.
pub fn outcome(run: &EvalRun, candidate: &Candidate) -> RunOutcome {
    let full = full_run(run);
    let out = candidate.apply(&run.log);
    let delivered = out.test_metric.unwrap_or(f64::NAN);
    RunOutcome {
        stop_epoch: out.stop_epoch,
        best_epoch: out.best_epoch,
        loss: loss(run.log.metric, delivered, full.0),
        delta_perf_pct: out.delta_perf_pct.unwrap_or(f64::NAN),
        delta_emiss_pct: out.delta_emiss_pct.unwrap_or(f64::NAN),
    }
}

/// `(test metric of the delivered weights, CO2 at the last epoch)` of the whole log.
fn full_run(run: &EvalRun) -> (f64, f64) {
    let out = crate::replay::replay(&run.log, StopSpec::Full);
    (
        out.test_metric.unwrap_or(f64::NAN),
        out.co2_g.unwrap_or(f64::NAN),
    )
}

/// The hindsight bound of `run` at tolerance `t`: the earliest epoch whose best-validation
/// weights (up to it) lose at most `t` against the full run.
pub fn bound_run(run: &EvalRun, t: f64) -> BoundRun {
    let log = &run.log;
    let (full_test, full_co2) = full_run(run);
    let mut best = Policy::new(StopSpec::Full, log.metric.higher_is_better());
    for rec in &log.epochs {
        best.observe(rec.epoch, rec.valid.get(log.metric), None);
        let best_epoch = best.best_epoch().unwrap_or(rec.epoch);
        let delivered = log.epochs[best_epoch - 1]
            .test
            .get(log.metric)
            .unwrap_or(f64::NAN);
        let l = loss(log.metric, delivered, full_test);
        if l <= t || rec.epoch == log.epochs.len() {
            let co2 = rec.cumulative_co2_g.unwrap_or(f64::NAN);
            return BoundRun {
                stop_epoch: rec.epoch,
                loss: l,
                delta_emiss_pct: 100.0 * (co2 - full_co2) / full_co2,
            };
        }
    }
    // Unreachable for a non-empty log: its last epoch delivers the full run's weights.
    BoundRun {
        stop_epoch: log.epochs.len(),
        loss: 0.0,
        delta_emiss_pct: 0.0,
    }
}

/// The index of the candidate the criterion chooses from `means` (one per candidate): the most
/// CO2 saved among those with a mean loss ≤ `t` (ties: the smaller loss, then the first);
/// when none qualifies, the smallest mean loss. Also whether the choice met `t`.
pub fn choose(means: &[Means], t: f64) -> Option<(usize, bool)> {
    let feasible = means
        .iter()
        .enumerate()
        .filter(|(_, m)| m.loss <= t)
        .min_by(|(_, a), (_, b)| {
            a.delta_emiss_pct
                .total_cmp(&b.delta_emiss_pct)
                .then(a.loss.total_cmp(&b.loss))
        });
    if let Some((i, _)) = feasible {
        return Some((i, true));
    }
    means
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            a.loss
                .total_cmp(&b.loss)
                .then(a.delta_emiss_pct.total_cmp(&b.delta_emiss_pct))
        })
        .map(|(i, _)| (i, false))
}

/// Whether `a` is at least as good as `b` in loss and CO2, and better in one.
fn dominates(a: &FrontierPoint, b: &FrontierPoint) -> bool {
    a.loss <= b.loss
        && a.delta_emiss_pct <= b.delta_emiss_pct
        && (a.loss < b.loss || a.delta_emiss_pct < b.delta_emiss_pct)
}

/// Evaluates every family on the runs of one group.
pub fn evaluate_group(
    init: &str,
    runs: &[&EvalRun],
    families: &[Family],
    config: &EvaluateConfig,
) -> GroupEvaluation {
    let mut datasets: Vec<String> = runs.iter().map(|r| r.dataset.clone()).collect();
    datasets.sort();
    datasets.dedup();
    let tolerances = config.tolerances();
    let stated = config.tolerance;
    let mean_of = |outcomes: &[RunOutcome], keep: &dyn Fn(usize) -> bool| {
        Means::of(
            outcomes
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, o)| o),
        )
    };
    let mut evaluated: Vec<FamilyEvaluation> = families
        .iter()
        .map(|family| {
            // outcomes[c][r]: candidate c on run r.
            let outcomes: Vec<Vec<RunOutcome>> = family
                .candidates
                .iter()
                .map(|c| runs.iter().map(|r| outcome(r, c)).collect())
                .collect();
            let labels: Vec<String> = family.candidates.iter().map(Candidate::label).collect();
            let all: Vec<Means> = outcomes
                .iter()
                .filter_map(|o| mean_of(o, &|_| true))
                .collect();
            let chosen_on_all =
                choose(&all, stated).map_or_else(String::new, |(i, _)| labels[i].clone());
            let mut per_run = vec![None; runs.len()];
            let held_out = tolerances
                .iter()
                .map(|&t| {
                    let mut rows = Vec::new();
                    for dataset in &datasets {
                        let train = |i: usize| runs[i].dataset != *dataset;
                        let test = |i: usize| runs[i].dataset == *dataset;
                        let on_train: Vec<Means> = outcomes
                            .iter()
                            .map(|o| mean_of(o, &train))
                            .collect::<Option<_>>()
                            // A single dataset: nothing to choose on but itself.
                            .unwrap_or_else(|| all.clone());
                        let Some((c, met)) = choose(&on_train, t) else {
                            continue;
                        };
                        if t == stated {
                            for (i, slot) in per_run.iter_mut().enumerate() {
                                if test(i) {
                                    *slot = Some(outcomes[c][i]);
                                }
                            }
                        }
                        if let Some(held) = mean_of(&outcomes[c], &test) {
                            rows.push((
                                HeldOutDataset {
                                    dataset: dataset.clone(),
                                    candidate: labels[c].clone(),
                                    met_tolerance: met,
                                    chosen_on: on_train[c],
                                    held_out: held,
                                },
                                c,
                            ));
                        }
                    }
                    let pooled_runs: Vec<RunOutcome> = rows
                        .iter()
                        .flat_map(|(row, c)| {
                            let c = *c;
                            let dataset = row.dataset.clone();
                            let outcomes = &outcomes;
                            (0..runs.len())
                                .filter(move |&i| runs[i].dataset == dataset)
                                .map(move |i| outcomes[c][i])
                        })
                        .collect();
                    HeldOut {
                        tolerance: t,
                        datasets: rows.into_iter().map(|(row, _)| row).collect(),
                        pooled: Means::of(&pooled_runs).unwrap_or(Means {
                            runs: 0,
                            loss: f64::NAN,
                            delta_perf_pct: f64::NAN,
                            delta_emiss_pct: f64::NAN,
                            stop_epoch: f64::NAN,
                        }),
                    }
                })
                .collect();
            FamilyEvaluation {
                family: family.name.clone(),
                baseline: family.baseline,
                in_sample: labels
                    .into_iter()
                    .zip(all)
                    .map(|(candidate, means)| GridRow { candidate, means })
                    .collect(),
                chosen_on_all,
                held_out,
                runs: per_run,
                dominated_by: Vec::new(),
                beyond: Vec::new(),
                meets_goal: false,
            }
        })
        .collect();
    // Dominance by the baselines' held-out frontiers, and the goal, at the stated tolerance.
    let baselines: Vec<(String, Vec<FrontierPoint>)> = evaluated
        .iter()
        .filter(|f| f.baseline)
        .map(|f| (f.family.clone(), f.frontier()))
        .collect();
    for family in &mut evaluated {
        let Some(point) = family.at(stated).map(|h| FrontierPoint {
            tolerance: stated,
            loss: h.pooled.loss,
            delta_emiss_pct: h.pooled.delta_emiss_pct,
        }) else {
            continue;
        };
        family.dominated_by = baselines
            .iter()
            .filter(|(name, frontier)| {
                *name != family.family && frontier.iter().any(|b| dominates(b, &point))
            })
            .map(|(name, _)| name.clone())
            .collect();
        family.meets_goal = point.loss <= stated && -point.delta_emiss_pct >= config.goal_saved_pct;
        let own = family.frontier();
        family.beyond = baselines
            .iter()
            .filter(|(name, frontier)| *name != family.family && lies_beyond(&own, frontier))
            .map(|(name, _)| name.clone())
            .collect();
    }
    let recommended = recommend(&evaluated, stated);
    let bound = tolerances
        .iter()
        .map(|&t| {
            let per_run: Vec<BoundRun> = runs.iter().map(|r| bound_run(r, t)).collect();
            let n = per_run.len().max(1) as f64;
            Bound {
                tolerance: t,
                loss: per_run.iter().map(|b| b.loss).sum::<f64>() / n,
                delta_emiss_pct: per_run.iter().map(|b| b.delta_emiss_pct).sum::<f64>() / n,
                runs: per_run,
            }
        })
        .collect();
    let metric = runs.first().map(|r| r.log.metric);
    GroupEvaluation {
        init: init.to_owned(),
        loss_unit: metric.map_or("points", loss_unit).to_owned(),
        runs: runs
            .iter()
            .map(|r| {
                let (full_test, full_co2_g) = full_run(r);
                RunInfo {
                    name: r.name.clone(),
                    dataset: r.dataset.clone(),
                    model: r.model.clone(),
                    epochs: r.log.epochs.len(),
                    full_test,
                    full_co2_g,
                }
            })
            .collect(),
        datasets,
        families: evaluated,
        bound,
        recommended,
    }
}

/// The saving of `frontier` at `loss`, interpolated between its points sorted by loss (`None`
/// outside its range of losses).
fn saved_at(frontier: &[FrontierPoint], loss: f64) -> Option<f64> {
    let mut points: Vec<(f64, f64)> = frontier
        .iter()
        .filter(|p| p.loss.is_finite() && p.delta_emiss_pct.is_finite())
        .map(|p| (p.loss, -p.delta_emiss_pct))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    points.dedup_by(|b, a| a.0 == b.0);
    let (first, last) = (points.first()?, points.last()?);
    if loss < first.0 || loss > last.0 {
        return None;
    }
    if points.len() == 1 {
        return Some(first.1);
    }
    points.windows(2).find_map(|w| {
        let ((l0, s0), (l1, s1)) = (w[0], w[1]);
        (loss >= l0 && loss <= l1).then(|| s0 + (s1 - s0) * (loss - l0) / (l1 - l0))
    })
}

/// Whether `own` lies on or beyond `baseline` (see [`FamilyEvaluation::beyond`]).
pub fn lies_beyond(own: &[FrontierPoint], baseline: &[FrontierPoint]) -> bool {
    let mut compared = 0;
    for p in own {
        if let Some(theirs) = saved_at(baseline, p.loss) {
            compared += 1;
            if -p.delta_emiss_pct < theirs - 1e-9 {
                return false;
            }
        }
    }
    compared > 0
}

/// The AN-GES variant to recommend as the default: among the variants whose held-out frontier
/// lies beyond the patience baseline's, the one with the smallest held-out loss at tolerance
/// `t` (ties: the most CO2 saved); `None` when no variant beats patience.
fn recommend(families: &[FamilyEvaluation], t: f64) -> Option<String> {
    families
        .iter()
        .filter(|f| !f.baseline && f.beyond.iter().any(|b| b == "patience"))
        .filter_map(|f| f.at(t).map(|h| (f, h.pooled)))
        .min_by(|(_, a), (_, b)| {
            a.loss
                .total_cmp(&b.loss)
                .then(a.delta_emiss_pct.total_cmp(&b.delta_emiss_pct))
        })
        .map(|(f, _)| f.family.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(loss: f64, saved: f64) -> FrontierPoint {
        FrontierPoint {
            tolerance: 0.0,
            loss,
            delta_emiss_pct: -saved,
        }
    }

    fn means(loss: f64, saved: f64) -> Means {
        Means {
            runs: 1,
            loss,
            delta_perf_pct: -loss,
            delta_emiss_pct: -saved,
            stop_epoch: 1.0,
        }
    }

    #[test]
    fn the_criterion_saves_most_within_the_tolerance_else_loses_least() {
        let m = [means(0.5, 10.0), means(0.9, 30.0), means(1.5, 60.0)];
        assert_eq!(choose(&m, 1.0), Some((1, true)));
        assert_eq!(choose(&m, 0.2), Some((0, false)));
        assert_eq!(choose(&m, 2.0), Some((2, true)));
        assert_eq!(choose(&[], 1.0), None);
    }

    #[test]
    fn beyond_compares_at_equal_loss_by_interpolation() {
        // The baseline saves 20 % at loss 1 and 40 % at loss 2: 30 % at loss 1.5.
        let baseline = [point(1.0, 20.0), point(2.0, 40.0)];
        assert!(lies_beyond(&[point(1.5, 31.0)], &baseline));
        assert!(!lies_beyond(&[point(1.5, 29.0)], &baseline));
        // One point below the baseline's frontier is enough to fail.
        assert!(!lies_beyond(
            &[point(1.5, 31.0), point(1.9, 35.0)],
            &baseline
        ));
        // Nothing in the baseline's range of losses: nothing shown.
        assert!(!lies_beyond(&[point(3.0, 90.0)], &baseline));
    }
}
