//! Aggregation of a study's runs over seeds: one [`AggregateRow`] per policy label, mean and
//! sample standard deviation of every figure the table shows.

use serde::{Deserialize, Serialize};

use super::{RunSource, StudyReport, StudyRun};

/// Mean and sample standard deviation of the finite values of one figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    /// Mean of the values.
    pub(crate) mean: f64,
    /// Sample standard deviation (n − 1 denominator; 0 with one value).
    pub(crate) std: f64,
    /// How many finite values there were.
    pub(crate) count: usize,
}

impl Stat {
    /// The statistics of the finite values in `values`; `None` when there is none.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Self {
            mean,
            std,
            count: values.len(),
        })
    }

    /// The standard deviation when there are at least two values to spread.
    pub(crate) fn spread(self) -> Option<f64> {
        (self.count > 1).then_some(self.std)
    }
}

/// One policy label aggregated over its seeds (one row of the terminal table and of
/// `aggregate.csv`).
///
/// Means are over the seeds that have a finite value; the standard deviation is the sample one
/// (n − 1 denominator), 0 with a single value. Optional figures are `None` when no seed has a
/// value; the others are NaN in that (degenerate) case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// Policy label.
    pub label: String,
    /// Number of runs (seeds) with this label.
    pub runs: usize,
    /// Mean stop epoch.
    pub stop_epoch_mean: f64,
    /// Standard deviation of the stop epoch.
    pub stop_epoch_std: f64,
    /// Mean test metric of the delivered models.
    pub test_metric_mean: Option<f64>,
    /// Standard deviation of the test metric.
    pub test_metric_std: Option<f64>,
    /// Mean %ΔPerf against the full run of the same seed.
    pub delta_perf_pct_mean: Option<f64>,
    /// Standard deviation of %ΔPerf.
    pub delta_perf_pct_std: Option<f64>,
    /// Mean %ΔEmiss against the full run of the same seed.
    pub delta_emiss_pct_mean: Option<f64>,
    /// Standard deviation of %ΔEmiss.
    pub delta_emiss_pct_std: Option<f64>,
    /// Mean energy, kWh.
    pub kwh_mean: f64,
    /// Standard deviation of the energy, kWh.
    pub kwh_std: f64,
    /// Mean CO2-eq, grams.
    pub co2_g_mean: f64,
    /// Standard deviation of the CO2-eq, grams.
    pub co2_g_std: f64,
    /// Mean wall-clock seconds.
    pub wall_s_mean: f64,
    /// Standard deviation of the wall-clock seconds.
    pub wall_s_std: f64,
    /// Every run of this label was trained live and stopped at the same epoch as the full run of
    /// its seed: they did the same work, so their %ΔEmiss is the meter's run-to-run noise, not a
    /// saving. (A replayed run that reaches the full run's last epoch has exactly its epochs'
    /// emissions: %ΔEmiss 0, no noise.)
    #[serde(default)]
    pub same_epochs_as_full: bool,
}

/// Per-label aggregate over seeds (mean ± sample std; std 0 with one seed).
///
/// Rows come in the order their labels first appear in `report.runs`.
pub fn aggregate(report: &StudyReport) -> Vec<AggregateRow> {
    labels_in_order(&report.runs)
        .into_iter()
        .map(|label| {
            let runs: Vec<&StudyRun> = report.runs.iter().filter(|r| r.label == label).collect();
            let opt = |f: fn(&StudyRun) -> Option<f64>| Stat::of(runs.iter().filter_map(|r| f(r)));
            let num = |f: fn(&StudyRun) -> f64| {
                Stat::of(runs.iter().map(|r| f(r))).unwrap_or(Stat {
                    mean: f64::NAN,
                    std: f64::NAN,
                    count: 0,
                })
            };
            let stop = num(|r| r.stop_epoch as f64);
            let test = opt(|r| r.test_metric);
            let dperf = opt(|r| r.delta_perf_pct);
            let demiss = opt(|r| r.delta_emiss_pct);
            let kwh = num(StudyRun::kwh);
            let co2 = num(|r| r.co2_g);
            let wall = num(|r| r.wall_s);
            let full_stop = |seed: u64| {
                report
                    .runs
                    .iter()
                    .find(|f| f.label == "full" && f.seed == seed)
                    .map(|f| f.stop_epoch)
            };
            let same_epochs_as_full = label != "full"
                && runs.iter().all(|r| {
                    r.source == RunSource::Live && full_stop(r.seed) == Some(r.stop_epoch)
                });
            AggregateRow {
                label: label.to_owned(),
                runs: runs.len(),
                stop_epoch_mean: stop.mean,
                stop_epoch_std: stop.std,
                test_metric_mean: test.map(|s| s.mean),
                test_metric_std: test.map(|s| s.std),
                delta_perf_pct_mean: dperf.map(|s| s.mean),
                delta_perf_pct_std: dperf.map(|s| s.std),
                delta_emiss_pct_mean: demiss.map(|s| s.mean),
                delta_emiss_pct_std: demiss.map(|s| s.std),
                kwh_mean: kwh.mean,
                kwh_std: kwh.std,
                co2_g_mean: co2.mean,
                co2_g_std: co2.std,
                wall_s_mean: wall.mean,
                wall_s_std: wall.std,
                same_epochs_as_full,
            }
        })
        .collect()
}

/// The distinct labels of `runs`, in order of first appearance.
pub(crate) fn labels_in_order(runs: &[StudyRun]) -> Vec<&str> {
    let mut labels: Vec<&str> = Vec::new();
    for run in runs {
        if !labels.contains(&run.label.as_str()) {
            labels.push(&run.label);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{report, run, two_seed_report};

    #[test]
    fn mean_and_sample_std_by_hand() {
        let rows = aggregate(&two_seed_report());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].label, "full");
        let r = &rows[1];
        assert_eq!((r.label.as_str(), r.runs), ("anges", 2));
        assert!((r.stop_epoch_mean - 7.0).abs() < 1e-12);
        // Two values a, b: sample std = |a − b| / √2.
        assert!((r.stop_epoch_std - 2.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((r.test_metric_mean.unwrap() - 0.82).abs() < 1e-12);
        assert!((r.test_metric_std.unwrap() - 0.04 / 2f64.sqrt()).abs() < 1e-12);
        assert!((r.delta_perf_pct_mean.unwrap() + 2.0).abs() < 1e-12);
        assert!((r.delta_emiss_pct_mean.unwrap() + 30.0).abs() < 1e-12);
        assert!((r.delta_emiss_pct_std.unwrap() - 20.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((r.kwh_mean - 1.5).abs() < 1e-12);
        assert!((r.co2_g_mean - 12.0).abs() < 1e-12);
        assert!((r.wall_s_std - 20.0 / 2f64.sqrt()).abs() < 1e-12);
        // The full runs have no deltas.
        assert_eq!(rows[0].delta_perf_pct_mean, None);
        assert_eq!(rows[0].delta_emiss_pct_std, None);
    }

    #[test]
    fn none_and_nan_are_skipped() {
        let mut b = run("patience", 1, 4, None, 3.6e6, 5.0, 50.0);
        b.delta_perf_pct = Some(f64::NAN);
        let mut a = run("patience", 0, 6, Some(0.7), 3.6e6, f64::NAN, 50.0);
        a.delta_perf_pct = Some(-2.5);
        let rows = aggregate(&report(vec![a, b]));
        let r = &rows[0];
        assert_eq!(r.runs, 2);
        // One value left: its mean, std 0.
        assert_eq!(r.test_metric_mean, Some(0.7));
        assert_eq!(r.test_metric_std, Some(0.0));
        assert_eq!(r.delta_perf_pct_mean, Some(-2.5));
        assert_eq!(r.delta_perf_pct_std, Some(0.0));
        assert_eq!(r.delta_emiss_pct_mean, None);
        assert_eq!(r.co2_g_mean, 5.0);
        assert_eq!(r.co2_g_std, 0.0);
    }

    #[test]
    fn one_seed_has_zero_std_and_empty_report_no_rows() {
        let rows = aggregate(&report(vec![run("full", 3, 10, Some(0.9), 1.0, 1.0, 1.0)]));
        assert_eq!(rows[0].test_metric_std, Some(0.0));
        assert_eq!(rows[0].stop_epoch_std, 0.0);
        assert!(aggregate(&report(vec![])).is_empty());
    }
}
