//! One epoch of a run as the run folder logs it: a line of `epochs.jsonl` (an [`EpochRecord`]
//! in JSON) and a row of `epochs.csv` ([`CSV_HEADER`], [`csv_row`]).
//!
//! `anges-train` and the Python package write the same records, so that `anges-train replay` and
//! `summarize` read both; `epochs.jsonl` keeps every metric and cumulative reading at full
//! precision, which is what lets a replay stop where the live run stopped.

use serde::{Deserialize, Serialize};

use crate::emissions::EpochEnergy;
use crate::metrics::EvalMetrics;
use crate::policy::AngesStep;

/// One epoch of a run: a line of `epochs.jsonl` and a row of `epochs.csv`.
///
/// Fields added after the first release carry `#[serde(default)]` so that older logs still
/// replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (training mode, weighted by batch size); NaN
    /// when unknown (a Python loop that logged none), written `null`.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Metrics on the validation part (evaluation mode).
    pub valid: EvalMetrics,
    /// Metrics on the test part (evaluation mode).
    pub test: EvalMetrics,
    /// Whether this epoch's weights are the best on validation so far.
    pub best: bool,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Energy of the epoch, joules (`null` with `--meter off`).
    pub energy_j: Option<f64>,
    /// CO2-eq of the epoch, grams (`null` with `--meter off`).
    pub co2_g: Option<f64>,
    /// Energy since the run started, joules, read after this epoch's work.
    #[serde(default)]
    pub cumulative_j: Option<f64>,
    /// CO2-eq since the run started, grams (`E_i` of AN-GES).
    #[serde(default)]
    pub cumulative_co2_g: Option<f64>,
    /// Where this epoch's energy came from: `daemon`, `local`, or `local-gap` (the daemon was
    /// unreachable and the in-process estimator filled in).
    #[serde(default)]
    pub meter_source: Option<String>,
    /// Whether this epoch's energy came from hardware counters.
    #[serde(default)]
    pub measured: Option<bool>,
    /// A meter fault of this epoch (e.g. no fresh energy), if any.
    #[serde(default)]
    pub meter_fault: Option<String>,
    /// What AN-GES made of this epoch (`--stop anges` only).
    #[serde(default)]
    pub anges: Option<AngesStep>,
    /// Training samples used this epoch (fewer than the training set when pruning).
    #[serde(default)]
    pub samples_used: usize,
    /// MolPeg: seconds spent in the reference model's forward passes this epoch.
    #[serde(default)]
    pub reference_seconds: Option<f64>,
    /// MolPeg: energy of those forward passes, joules (the epoch's energy apportioned by time).
    #[serde(default)]
    pub reference_energy_j: Option<f64>,
}

/// A number, or NaN for `null` (how serde_json writes a NaN).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl EpochRecord {
    /// Fills the meter's fields (energy, CO2, the cumulative figures, their source, whether
    /// measured, the fault) from this epoch's reading; all `None` without a meter.
    pub fn with_energy(self, energy: Option<&EpochEnergy>) -> Self {
        Self {
            energy_j: energy.map(|e| e.energy_j),
            co2_g: energy.map(|e| e.co2_g),
            cumulative_j: energy.map(|e| e.cumulative_j),
            cumulative_co2_g: energy.map(|e| e.cumulative_g),
            meter_source: energy.map(|e| e.source.to_string()),
            measured: energy.map(|e| e.measured),
            meter_fault: energy.and_then(|e| e.fault.clone()),
            ..self
        }
    }
}

/// The header line of `epochs.csv`: one column per field of [`csv_row`].
pub const CSV_HEADER: &str = "epoch,train_loss,valid_loss,valid_roc_auc,valid_prc_auc,valid_rmse,\
valid_mae,test_loss,test_roc_auc,test_prc_auc,test_rmse,test_mae,best,seconds,energy_j,co2_g,\
co2_g_per_kwh,cumulative_j,cumulative_co2_g,meter_source,measured,samples_used,anges_aer,\
anges_ema,anges_decision\n";

/// The grams of CO2-eq charged per kWh in an epoch: the grid intensity × PUE the meter applied
/// to it (a time-series intensity varies from epoch to epoch). `None` without energy.
pub fn grams_per_kwh(r: &EpochRecord) -> Option<f64> {
    match (r.energy_j, r.co2_g) {
        (Some(j), Some(g)) if j > 0.0 => Some(g / (j / 3.6e6)),
        _ => None,
    }
}

/// One [`EpochRecord`] as a line of `epochs.csv` (the columns of [`CSV_HEADER`]).
pub fn csv_row(r: &EpochRecord) -> String {
    let f = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let part = |m: &EvalMetrics| {
        [m.loss, m.roc_auc, m.prc_auc, m.rmse, m.mae]
            .map(f)
            .join(",")
    };
    let decision = r
        .anges
        .and_then(|a| serde_json::to_value(a.decision).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        r.epoch,
        r.train_loss,
        part(&r.valid),
        part(&r.test),
        r.best,
        r.seconds,
        f(r.energy_j),
        f(r.co2_g),
        f(grams_per_kwh(r)),
        f(r.cumulative_j),
        f(r.cumulative_co2_g),
        r.meter_source.as_deref().unwrap_or_default(),
        r.measured.map_or(String::new(), |m| m.to_string()),
        r.samples_used,
        f(r.anges.and_then(|a| a.aer)),
        f(r.anges.and_then(|a| a.ema)),
        decision
    )
}
