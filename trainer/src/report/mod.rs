//! Reports of a trade-off study: what `anges-train study` shows and writes.
//!
//! Input: a [`StudyReport`] (the runs of every policy and seed, and the β-grid frontier obtained by
//! replaying the full runs). Output, in a folder: the terminal table, `study.csv`, `study.json`,
//! the plots (`curve.{png,svg}`: validation metric vs cumulative CO2 with each stop marked;
//! `frontier.{png,svg}`: %ΔPerf vs %ΔEmiss over the β grid), and a self-contained `report.html`
//! plus `report.md`.
//!
//! Layout: `aggregate` (mean ± std over seeds), `table` (the terminal table and
//! the cells the documents reuse), `files` (JSON and CSV), `font` (the plots' font), `chart`
//! (one backend-generic drawing function), `plots` (the two plots' contents), `document`
//! (Markdown and HTML), `write` ([`write_all`]), `error` ([`ReportError`]); `runs` summarises
//! many fine-tuning runs over seeds (`anges-train summarize`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::Metric;

pub(crate) mod aggregate;
pub(crate) mod chart;
mod document;
mod error;
pub(crate) mod files;
mod font;
mod glyphs;
pub(crate) mod plots;
pub mod runs;
mod table;
mod write;

pub use aggregate::{AggregateRow, aggregate};
pub use chart::{PLOT_HEIGHT, PLOT_WIDTH};
pub use error::ReportError;
pub use files::StudyCsvRow;
pub use plots::{curve_caption, frontier_caption};
pub use table::table;
pub(crate) use write::save_chart;
pub use write::{ReportFiles, write_all};

/// The display name of `metric` (`ROC-AUC`, `PRC-AUC`, `RMSE`, `MAE`).
pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::RocAuc => "ROC-AUC",
        Metric::PrcAuc => "PRC-AUC",
        Metric::Rmse => "RMSE",
        Metric::Mae => "MAE",
    }
}

/// One epoch of a run, as the plots need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// 1-based epoch.
    pub epoch: usize,
    /// Validation metric after the epoch (`None`: could not be computed).
    pub valid: Option<f64>,
    /// Test metric after the epoch.
    pub test: Option<f64>,
    /// Cumulative CO2-eq of the run after the epoch, grams.
    pub co2_g: f64,
    /// Cumulative energy of the run after the epoch, joules.
    pub energy_j: f64,
}

/// How a run of the study was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunSource {
    /// Trained, in its own run directory, metered as its own job.
    #[default]
    Live,
    /// Not trained: its policy replayed on the log of a live run of the same seed
    /// ([`StudyRun::replayed_from`]), which does not change the trajectory.
    Replayed,
}

/// One fine-tuning run of the study (one policy, one seed), trained live or replayed on the log
/// of a live run ([`RunSource`]).
///
/// The figures of a live run are its summary's: `energy_j` / `co2_g` are its whole charge
/// (epochs plus tail) and `wall_s` its whole wall time. Those of a replayed run are read from the
/// log at its stop: the epochs' cumulative energy and CO2 (a log has no tail) and the sum of the
/// epochs' seconds (no setup time); its deltas compare them with the full run's epochs alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRun {
    /// Policy label: `full`, `patience`, `anges`, `molpeg-0.5`, `random-0.5`, `anges+molpeg-0.5`…
    pub label: String,
    /// Seed of the run.
    pub seed: u64,
    /// The run directory (of a replayed run: that of the run whose log was replayed).
    pub run_dir: PathBuf,
    /// Per-epoch trajectory (of a replayed run: the log's epochs up to the stop).
    pub epochs: Vec<EpochPoint>,
    /// Last epoch trained (where the policy stopped, or the maximum).
    pub stop_epoch: usize,
    /// Epoch of the best validation metric (the weights the run delivers).
    pub best_epoch: usize,
    /// Test metric of the delivered model (best-validation weights up to the stop).
    pub test_metric: Option<f64>,
    /// Test metric of the weights at the stop epoch.
    pub test_at_stop: Option<f64>,
    /// Energy of the run, joules: a live run's whole charge, a replayed run's epochs up to its
    /// stop.
    pub energy_j: f64,
    /// CO2-eq of the run, grams: a live run's whole charge (epochs plus tail), a replayed run's
    /// epochs up to its stop.
    pub co2_g: f64,
    /// Wall-clock seconds of the run: a live run's whole run, a replayed run's epochs up to its
    /// stop (the sum of the logged per-epoch seconds, without the setup).
    pub wall_s: f64,
    /// `true` when every reading came from a hardware counter.
    pub measured: bool,
    /// %ΔPerf against the full run of the same seed (`None` for the full run itself, or when a
    /// metric is missing).
    pub delta_perf_pct: Option<f64>,
    /// %ΔEmiss against the full run of the same seed.
    pub delta_emiss_pct: Option<f64>,
    /// Trained live or replayed (absent from the reports of earlier versions: live).
    #[serde(default)]
    pub source: RunSource,
    /// A replayed run: the label of the live run of the same seed whose log was replayed
    /// (`full`, or `molpeg-0.5` for `anges+molpeg-0.5`).
    #[serde(default)]
    pub replayed_from: Option<String>,
    /// `study --live-policies`, on a replayed run and on its live twin (`<label>-live`): whether
    /// the live run stopped at the replay's stop epoch and delivered its best epoch (`None`:
    /// not checked).
    #[serde(default)]
    pub live_matches_replay: Option<bool>,
}

impl StudyRun {
    /// Energy in kWh.
    pub fn kwh(&self) -> f64 {
        self.energy_j / 3.6e6
    }
}

/// One point of the frontier: an AN-GES parameter set replayed on a logged full run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// Seed of the full run replayed.
    pub seed: u64,
    /// α of the replay.
    pub alpha: f64,
    /// β of the replay.
    pub beta: f64,
    /// Warm-up of the replay.
    pub warmup: usize,
    /// Epoch where the replayed rule stops (the full run's last epoch when it never fires).
    pub stop_epoch: usize,
    /// %ΔPerf of the replayed stop against the full run.
    pub delta_perf_pct: Option<f64>,
    /// %ΔEmiss of the replayed stop against the full run.
    pub delta_emiss_pct: Option<f64>,
}

/// Everything a study report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// Dataset name.
    pub dataset: String,
    /// Model family (`gin`, `gcn`, `transformer`).
    pub model: String,
    /// The metric compared (validation selects, test reports).
    pub metric: Metric,
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// The exact command line that produced the study.
    pub command: String,
    /// Where the energy came from (e.g. `daemon (measured)`, `local (estimated)`).
    pub meter: String,
    /// How the figures were obtained, as `(what, value)` lines of the report's setting: the
    /// carbon intensity with its source and the PUE, the hardware and its sensors, the starting
    /// weights ([`setting_of`]).
    #[serde(default)]
    pub setting: Vec<(String, String)>,
    /// Every run, all seeds.
    pub runs: Vec<StudyRun>,
    /// The replayed β grid.
    pub frontier: Vec<FrontierPoint>,
}

/// The setting lines a run's summary states: carbon intensity and PUE, hardware and sensors
/// (both when metered), starting weights.
pub fn setting_of(summary: &crate::train::Summary) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(c) = &summary.carbon {
        out.push(("Carbon intensity".to_owned(), c.describe()));
    }
    if let Some(h) = &summary.hardware {
        out.push(("Hardware".to_owned(), h.describe()));
    }
    let weights = summary
        .pretrained
        .as_ref()
        .map_or_else(|| "from scratch".to_owned(), |p| p.display().to_string());
    out.push(("Starting weights".to_owned(), weights));
    out
}

/// Builders of synthetic reports for the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A run of `label` and `seed` that trained `stop` epochs (validation rising towards 0.8,
    /// CO2 growing linearly to `co2_g`), delivering `test`.
    pub(crate) fn run(
        label: &str,
        seed: u64,
        stop: usize,
        test: Option<f64>,
        energy_j: f64,
        co2_g: f64,
        wall_s: f64,
    ) -> StudyRun {
        let epochs = (1..=stop)
            .map(|e| EpochPoint {
                epoch: e,
                valid: Some(0.8 - 0.3 / e as f64),
                test: Some(0.78 - 0.3 / e as f64),
                co2_g: co2_g * e as f64 / stop as f64,
                energy_j: energy_j * e as f64 / stop as f64,
            })
            .collect();
        StudyRun {
            label: label.to_owned(),
            seed,
            run_dir: PathBuf::from(format!("runs/{label}-{seed}")),
            epochs,
            stop_epoch: stop,
            best_epoch: stop,
            test_metric: test,
            test_at_stop: test,
            energy_j,
            co2_g,
            wall_s,
            measured: false,
            delta_perf_pct: None,
            delta_emiss_pct: None,
            source: RunSource::Live,
            replayed_from: None,
            live_matches_replay: None,
        }
    }

    /// A BBBP / gin / ROC-AUC report of `runs` (seeds in order of appearance, no frontier).
    pub(crate) fn report(runs: Vec<StudyRun>) -> StudyReport {
        let mut seeds = Vec::new();
        for r in &runs {
            if !seeds.contains(&r.seed) {
                seeds.push(r.seed);
            }
        }
        StudyReport {
            dataset: "BBBP".to_owned(),
            model: "gin".to_owned(),
            metric: Metric::RocAuc,
            seeds,
            command: "anges-train study --dataset bbbp".to_owned(),
            meter: "local (estimated)".to_owned(),
            setting: vec![("Starting weights".to_owned(), "from scratch".to_owned())],
            runs,
            frontier: Vec::new(),
        }
    }

    /// Two seeds of `full` and `anges` with hand-picked figures (the aggregate and table tests).
    pub(crate) fn two_seed_report() -> StudyReport {
        let mut a0 = run("anges", 0, 6, Some(0.80), 3.6e6, 10.0, 100.0);
        let mut a1 = run("anges", 1, 8, Some(0.84), 7.2e6, 14.0, 120.0);
        a0.delta_perf_pct = Some(-1.0);
        a1.delta_perf_pct = Some(-3.0);
        a0.delta_emiss_pct = Some(-40.0);
        a1.delta_emiss_pct = Some(-20.0);
        report(vec![
            run("full", 0, 10, Some(0.81), 3.6e6, 20.0, 200.0),
            a0,
            run("full", 1, 10, Some(0.85), 3.6e6, 20.0, 200.0),
            a1,
        ])
    }
}
