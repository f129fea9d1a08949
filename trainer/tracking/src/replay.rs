//! Offline replay (`anges-train replay RUN_DIR`, `anges.replay` in Python): apply stopping policies to a logged run's
//! `(P_i, E_i)` trajectory and measure the trade-off of each stop against the logged run itself
//! (normally a full run).
//!
//! A replayed policy sees exactly what the live one saw (`epochs.jsonl` keeps every metric and
//! cumulative reading at full precision), so replaying a live run with its own parameters stops
//! at the epoch where it stopped.
//!
//! Trade-off (docs/spec.md §1.9), for a green run G against the full run F of the same split and seed:
//! `%ΔPerf = 100·(P_test(G) − P_test(F)) / |P_test(F)|` (sign flipped for lower-is-better) and
//! `%ΔEmiss = 100·(E(G) − E(F)) / E(F)`. `P_test` is the test metric of the weights a run
//! delivers: those of its best validation epoch up to its stop.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metric;
use crate::policy::{AngesParams, Policy, StopPolicy, StopSpec};
use crate::record::EpochRecord;

/// What a replay reads of a run's `summary.json`: the metric that selected its epochs and the
/// policy it ran with. `anges-train`'s whole summary implements it, and so does
/// [`SummaryHead`], the two fields alone, which reads the summary of any run (the trainer's or
/// the Python package's).
pub trait RunSummary: DeserializeOwned {
    /// The metric that selected the run's epochs.
    fn metric(&self) -> Metric;
    /// The stopping policy the run trained with.
    fn stop(&self) -> StopPolicy;
}

/// The two fields of a `summary.json` a replay needs (the other fields are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct SummaryHead {
    /// The metric that selected the run's epochs.
    pub metric: Metric,
    /// The stopping policy.
    pub stop: StopPolicy,
}

impl RunSummary for SummaryHead {
    fn metric(&self) -> Metric {
        self.metric
    }
    fn stop(&self) -> StopPolicy {
        self.stop
    }
}

/// Why a run could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file of the run directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of `epochs.jsonl` or `summary.json` is not what the trainer writes.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for a whole-file document).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The log cannot support the requested replay.
    #[error("{0}")]
    Unusable(String),
}

/// A logged run: its summary (`S`: what of `summary.json` the reader keeps) and its epochs.
#[derive(Debug, Clone)]
pub struct LoggedRun<S = SummaryHead> {
    /// The run directory.
    pub dir: PathBuf,
    /// The metric that selected epochs.
    pub metric: Metric,
    /// Its summary, when the run finished (a run that died has only its epochs).
    pub summary: Option<S>,
    /// Every logged epoch, in order.
    pub epochs: Vec<EpochRecord>,
}

impl<S: RunSummary> LoggedRun<S> {
    /// Reads `epochs.jsonl` and `summary.json` (or, without a summary, the metric from
    /// `config.json`) of `dir`.
    pub fn load(dir: &Path) -> Result<Self, ReplayError> {
        let read = |name: &str| -> Result<(PathBuf, String), ReplayError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(|source| ReplayError::Io { path, source })
        };
        let (path, text) = read("epochs.jsonl")?;
        let mut epochs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec: EpochRecord = serde_json::from_str(line).map_err(|e| ReplayError::Parse {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            if rec.epoch != epochs.len() + 1 {
                return Err(ReplayError::Parse {
                    path: path.clone(),
                    line: i + 1,
                    message: format!(
                        "epoch {} where {} was expected",
                        rec.epoch,
                        epochs.len() + 1
                    ),
                });
            }
            epochs.push(rec);
        }
        if epochs.is_empty() {
            return Err(ReplayError::Unusable(format!(
                "{}: no epoch logged",
                path.display()
            )));
        }
        let summary = match read("summary.json") {
            Ok((path, text)) => {
                Some(
                    serde_json::from_str::<S>(&text).map_err(|e| ReplayError::Parse {
                        path,
                        line: 0,
                        message: e.to_string(),
                    })?,
                )
            }
            Err(ReplayError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let metric = match &summary {
            Some(s) => s.metric(),
            None => {
                let (path, text) = read("config.json")?;
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| ReplayError::Parse {
                        path: path.clone(),
                        line: 0,
                        message: e.to_string(),
                    })?;
                serde_json::from_value(value["resolved"]["metric"].clone()).map_err(|e| {
                    ReplayError::Parse {
                        path,
                        line: 0,
                        message: format!("resolved.metric: {e}"),
                    }
                })?
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            metric,
            summary,
            epochs,
        })
    }

    /// `true` when every epoch has a cumulative CO2 reading.
    pub fn has_emissions(&self) -> bool {
        self.epochs.iter().all(|e| e.cumulative_co2_g.is_some())
    }
}

/// Where a policy stops on a trajectory, and what that stop delivers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The policy.
    pub policy: StopSpec,
    /// The last epoch trained (the log's last when the policy never fires).
    pub stop_epoch: usize,
    /// `true` when the policy fired (rather than running out of epochs).
    pub fired: bool,
    /// Best validation epoch up to the stop (the weights delivered).
    pub best_epoch: usize,
    /// Test metric of the delivered weights.
    pub test_metric: Option<f64>,
    /// Test metric at the stop epoch.
    pub test_at_stop: Option<f64>,
    /// Cumulative CO2-eq at the stop, grams.
    pub co2_g: Option<f64>,
    /// Cumulative energy at the stop, joules.
    pub energy_j: Option<f64>,
    /// %ΔPerf against the whole logged run.
    pub delta_perf_pct: Option<f64>,
    /// %ΔEmiss against the whole logged run.
    pub delta_emiss_pct: Option<f64>,
}

/// `%ΔPerf` and `%ΔEmiss` of a green run (`test`, `co2`) against the full run.
pub fn tradeoff(
    metric: Metric,
    green: (Option<f64>, Option<f64>),
    full: (Option<f64>, Option<f64>),
) -> (Option<f64>, Option<f64>) {
    let perf = match (green.0, full.0) {
        (Some(g), Some(f)) if f != 0.0 => {
            let diff = if metric.higher_is_better() {
                g - f
            } else {
                f - g
            };
            Some(100.0 * diff / f.abs())
        }
        _ => None,
    };
    let emiss = match (green.1, full.1) {
        (Some(g), Some(f)) if f > 0.0 => Some(100.0 * (g - f) / f),
        _ => None,
    };
    (perf, emiss)
}

/// Runs `spec` over the logged trajectory; the trade-off is against the whole log.
pub fn replay<S>(run: &LoggedRun<S>, spec: StopSpec) -> Outcome {
    replay_within(run, spec, run.epochs.len())
}

/// Runs `spec` over the first `max_epochs` logged epochs (a run given that many epochs: a
/// fixed budget with [`StopSpec::Full`]); the trade-off is against the whole log.
pub fn replay_within<S>(run: &LoggedRun<S>, spec: StopSpec, max_epochs: usize) -> Outcome {
    let epochs = &run.epochs[..max_epochs.clamp(1, run.epochs.len())];
    let mut policy = Policy::new(spec, run.metric.higher_is_better());
    let mut stop = (epochs.len(), false);
    for rec in epochs {
        let verdict = policy.observe(rec.epoch, rec.valid.get(run.metric), rec.cumulative_co2_g);
        if verdict.stop.is_some() {
            stop = (rec.epoch, true);
            break;
        }
    }
    let (stop_epoch, fired) = stop;
    let best_epoch = policy.best_epoch().unwrap_or(stop_epoch);
    let at = |epoch: usize| &run.epochs[epoch - 1];
    let full = delivered(run, run.epochs.len());
    let test_metric = at(best_epoch).test.get(run.metric);
    let co2_g = at(stop_epoch).cumulative_co2_g;
    let (delta_perf_pct, delta_emiss_pct) = tradeoff(run.metric, (test_metric, co2_g), full);
    Outcome {
        policy: spec,
        stop_epoch,
        fired,
        best_epoch,
        test_metric,
        test_at_stop: at(stop_epoch).test.get(run.metric),
        co2_g,
        energy_j: at(stop_epoch).cumulative_j,
        delta_perf_pct,
        delta_emiss_pct,
    }
}

/// A replay's parameter grid: the policy and the values of its parameters to try (every
/// combination of the listed values; an empty list means the base parameters' value).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayGrid {
    /// The policy replayed.
    pub stop: StopPolicy,
    /// AN-GES: the variant's parameters the grid varies (its order, signal, window, K, …).
    pub anges: AngesParams,
    /// AN-GES α values.
    pub alpha: Vec<f64>,
    /// AN-GES β values.
    pub beta: Vec<f64>,
    /// AN-GES warm-up lengths.
    pub warmup: Vec<usize>,
    /// Patience values.
    pub patience: Vec<usize>,
    /// Patience's minimum improvement.
    pub min_delta: f64,
}

impl Default for ReplayGrid {
    /// The defaults of `anges-train replay`: the default AN-GES variant's parameters.
    fn default() -> Self {
        Self {
            stop: StopPolicy::Anges,
            anges: AngesParams::default(),
            alpha: Vec::new(),
            beta: Vec::new(),
            warmup: Vec::new(),
            patience: vec![10],
            min_delta: 0.0,
        }
    }
}

/// The listed values, or the base value when none is listed.
fn or_base<T: Copy>(values: &[T], base: T) -> Vec<T> {
    if values.is_empty() {
        vec![base]
    } else {
        values.to_vec()
    }
}

/// The policies of a replay's parameter grid (every combination of the listed values).
pub fn grid(args: &ReplayGrid) -> Result<Vec<StopSpec>, ReplayError> {
    let bad = |m: String| ReplayError::Unusable(m);
    let mut specs = Vec::new();
    match args.stop {
        StopPolicy::Full => specs.push(StopSpec::Full),
        StopPolicy::Patience => {
            for &patience in &args.patience {
                let spec = StopSpec::Patience {
                    patience,
                    min_delta: args.min_delta,
                };
                spec.validate().map_err(bad)?;
                specs.push(spec);
            }
        }
        StopPolicy::Anges => {
            let base = args.anges;
            for alpha in or_base(&args.alpha, base.alpha) {
                for beta in or_base(&args.beta, base.beta) {
                    for warmup in or_base(&args.warmup, base.warmup) {
                        let p = AngesParams {
                            alpha,
                            beta,
                            warmup,
                            ..base
                        };
                        p.validate().map_err(bad)?;
                        specs.push(StopSpec::Anges(p));
                    }
                }
            }
        }
    }
    Ok(specs)
}

/// `anges-train replay`: loads the run and replays every policy of the grid.
pub fn run_replay<S: RunSummary>(
    run_dir: &Path,
    args: &ReplayGrid,
) -> Result<(LoggedRun<S>, Vec<Outcome>), ReplayError> {
    let run = LoggedRun::<S>::load(run_dir)?;
    let specs = grid(args)?;
    if matches!(args.stop, StopPolicy::Anges) && !run.has_emissions() {
        return Err(ReplayError::Unusable(format!(
            "{}: some epochs have no cumulative CO2 reading (a run with --meter off?); AN-GES \
             needs them",
            run.dir.display()
        )));
    }
    if let Some(s) = run
        .summary
        .as_ref()
        .filter(|s| s.stop() != StopPolicy::Full)
    {
        tracing::warn!(
            "{} was not a full run (--stop {}): the trade-offs are against its {} epochs",
            run.dir.display(),
            serde_json::to_value(s.stop())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            run.epochs.len()
        );
    }
    let outcomes = specs.into_iter().map(|spec| replay(&run, spec)).collect();
    Ok((run, outcomes))
}

/// The replay's table: one row per policy.
pub fn format_table<S>(run: &LoggedRun<S>, outcomes: &[Outcome]) -> String {
    let f = |v: Option<f64>, prec: usize| v.map_or_else(|| "n/a".into(), |v| format!("{v:.prec$}"));
    let mut out = format!(
        "{} ({} epochs logged, metric {:?}; test metric of the best-validation weights)\n",
        run.dir.display(),
        run.epochs.len(),
        run.metric
    );
    out.push_str(&format!(
        "{:<36} {:>5} {:>5} {:>8} {:>9} {:>9} {:>11}\n",
        "policy", "stop", "best", "test", "%ΔPerf", "%ΔEmiss", "g CO2-eq"
    ));
    for o in outcomes {
        out.push_str(&format!(
            "{:<36} {:>4}{} {:>5} {:>8} {:>9} {:>9} {:>11}\n",
            o.policy.label(),
            o.stop_epoch,
            if o.fired { "*" } else { " " },
            o.best_epoch,
            f(o.test_metric, 4),
            f(o.delta_perf_pct, 2),
            f(o.delta_emiss_pct, 2),
            f(o.co2_g, 5)
        ));
    }
    out.push_str("* = the policy fired; otherwise it ran to the last logged epoch\n");
    out
}

/// Test metric of the best validation epoch among the first `epochs`, and the cumulative CO2
/// after them: what a run that ran `epochs` epochs delivers.
fn delivered<S>(run: &LoggedRun<S>, epochs: usize) -> (Option<f64>, Option<f64>) {
    let mut policy = Policy::new(StopSpec::Full, run.metric.higher_is_better());
    for rec in &run.epochs[..epochs] {
        policy.observe(rec.epoch, rec.valid.get(run.metric), None);
    }
    let best = policy.best_epoch().unwrap_or(epochs);
    (
        run.epochs[best - 1].test.get(run.metric),
        run.epochs[epochs - 1].cumulative_co2_g,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EvalMetrics;
    use crate::policy::{Anges, AngesParams, AngesVariant, Decision};
    use proptest::prelude::*;

    fn record(epoch: usize, valid: f64, test: f64, co2: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            valid: EvalMetrics {
                roc_auc: Some(valid),
                ..Default::default()
            },
            test: EvalMetrics {
                roc_auc: Some(test),
                ..Default::default()
            },
            cumulative_co2_g: Some(co2),
            cumulative_j: Some(co2 * 1000.0),
            ..Default::default()
        }
    }

    fn logged(traj: &[(f64, f64, f64)]) -> LoggedRun {
        LoggedRun {
            dir: PathBuf::from("."),
            metric: Metric::RocAuc,
            summary: None,
            epochs: traj
                .iter()
                .enumerate()
                .map(|(i, &(v, t, e))| record(i + 1, v, t, e))
                .collect(),
        }
    }

    #[test]
    fn tradeoff_by_hand() {
        let (p, e) = tradeoff(
            Metric::RocAuc,
            (Some(0.72), Some(5.0)),
            (Some(0.8), Some(20.0)),
        );
        assert!((p.unwrap() + 10.0).abs() < 1e-12 && (e.unwrap() + 75.0).abs() < 1e-12);
        // Lower is better: an RMSE of 1.1 against 1.0 is a 10 % loss.
        let (p, _) = tradeoff(Metric::Rmse, (Some(1.1), None), (Some(1.0), None));
        assert!((p.unwrap() + 10.0).abs() < 1e-12);
        assert_eq!(
            tradeoff(Metric::RocAuc, (None, Some(1.0)), (Some(0.5), Some(0.0))),
            (None, None)
        );
    }

    #[test]
    fn replay_delivers_the_best_weights_up_to_the_stop() {
        // Patience 2: best valid at epoch 2 (0.8); epochs 3, 4 stale → stop at 4.
        let run = logged(&[
            (0.7, 0.60, 1.0),
            (0.8, 0.70, 2.0),
            (0.79, 0.75, 3.0),
            (0.78, 0.74, 4.0),
            (0.9, 0.80, 5.0),
        ]);
        let out = replay(
            &run,
            StopSpec::Patience {
                patience: 2,
                min_delta: 0.0,
            },
        );
        assert_eq!((out.stop_epoch, out.fired, out.best_epoch), (4, true, 2));
        assert_eq!(
            (out.test_metric, out.test_at_stop),
            (Some(0.70), Some(0.74))
        );
        // Full run delivers epoch 5 (test 0.80, 5 g): %ΔPerf = −12.5, %ΔEmiss = −20.
        assert!((out.delta_perf_pct.unwrap() + 12.5).abs() < 1e-9);
        assert!((out.delta_emiss_pct.unwrap() + 20.0).abs() < 1e-9);
        let full = replay(&run, StopSpec::Full);
        assert_eq!((full.stop_epoch, full.fired), (5, false));
        assert_eq!(full.delta_emiss_pct, Some(0.0));
    }

    #[test]
    fn logs_with_gaps_in_epochs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [record(1, 0.5, 0.5, 1.0), record(3, 0.5, 0.5, 2.0)]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.path().join("epochs.jsonl"), lines).unwrap();
        let err = LoggedRun::<SummaryHead>::load(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("epochs.jsonl:2") && err.contains("epoch 3"),
            "{err}"
        );
        std::fs::write(dir.path().join("epochs.jsonl"), "{not json\n").unwrap();
        assert!(LoggedRun::<SummaryHead>::load(dir.path()).is_err());
    }

    fn trajectory() -> impl Strategy<Value = Vec<(f64, f64, f64)>> {
        // Valid metric in [0.4, 1], test anything, and positive (sometimes zero) increments of E
        // (a zero exercises the meter-fault path).
        prop::collection::vec(
            (
                0.4f64..1.0,
                0.4f64..1.0,
                prop_oneof![Just(0.0), 0.01f64..5.0],
            ),
            1..60,
        )
        .prop_map(|steps| {
            let mut e = 0.0;
            steps
                .into_iter()
                .map(|(v, t, de)| {
                    e += de;
                    (v, t, e)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// For every variant, the live rule, fed epoch by epoch and stopped at its first Stop,
        /// and the replay of the full log agree; and the replay of the live run's own (truncated) log stops at the
        /// same epoch.
        #[test]
        fn replay_and_live_decisions_agree(
            traj in trajectory(),
            alpha in 0.05f64..=1.0,
            beta in -0.5f64..1.5,
            warmup in 0usize..8,
            variant in 0usize..AngesVariant::ALL.len(),
        ) {
            let base = AngesVariant::ALL[variant].preset();
            let params = AngesParams { alpha, beta, warmup, ..base };
            let mut live = Anges::new(params, true);
            let mut live_stop = None;
            for (i, &(v, _, e)) in traj.iter().enumerate() {
                if live.observe(i + 1, Some(v), Some(e)).decision == Decision::Stop {
                    live_stop = Some(i + 1);
                    break;
                }
            }
            let run = logged(&traj);
            let out = replay(&run, StopSpec::Anges(params));
            prop_assert_eq!(out.fired, live_stop.is_some());
            prop_assert_eq!(out.stop_epoch, live_stop.unwrap_or(traj.len()));
            let own_log = logged(&traj[..out.stop_epoch]);
            let again = replay(&own_log, StopSpec::Anges(params));
            prop_assert_eq!(again.stop_epoch, out.stop_epoch);
            prop_assert_eq!(again.fired, out.fired);
        }
    }
}
