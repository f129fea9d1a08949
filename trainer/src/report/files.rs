//! The data files of a report: `study.json` (the whole [`StudyReport`]), `study.csv` (one
//! [`StudyCsvRow`] per run, all seeds) and `aggregate.csv` (one
//! [`AggregateRow`](super::AggregateRow) per label).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::aggregate::aggregate;
use super::error::ReportError;
use super::{RunSource, StudyReport, StudyRun};

/// One row of `study.csv`: every scalar field of a [`StudyRun`] (the per-epoch trajectory is in
/// `study.json`), plus the energy in kWh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyCsvRow {
    /// Policy label.
    pub label: String,
    /// Seed of the run.
    pub seed: u64,
    /// The run directory.
    pub run_dir: String,
    /// Last epoch trained.
    pub stop_epoch: usize,
    /// Epoch of the best validation metric.
    pub best_epoch: usize,
    /// Test metric of the delivered model.
    pub test_metric: Option<f64>,
    /// Test metric of the weights at the stop epoch.
    pub test_at_stop: Option<f64>,
    /// Energy, joules.
    pub energy_j: f64,
    /// Energy, kWh.
    pub kwh: f64,
    /// CO2-eq, grams.
    pub co2_g: f64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Whether every reading came from a hardware counter.
    pub measured: bool,
    /// %ΔPerf against the full run of the same seed.
    pub delta_perf_pct: Option<f64>,
    /// %ΔEmiss against the full run of the same seed.
    pub delta_emiss_pct: Option<f64>,
    /// `live` or `replayed`.
    pub source: RunSource,
    /// A replayed run: the label of the run whose log was replayed.
    pub replayed_from: Option<String>,
    /// `--live-policies`: whether the live run and the replay agree (empty: not checked).
    pub live_matches_replay: Option<bool>,
}

impl StudyCsvRow {
    /// The CSV header: the field names, in order.
    pub const HEADER: [&'static str; 17] = [
        "label",
        "seed",
        "run_dir",
        "stop_epoch",
        "best_epoch",
        "test_metric",
        "test_at_stop",
        "energy_j",
        "kwh",
        "co2_g",
        "wall_s",
        "measured",
        "delta_perf_pct",
        "delta_emiss_pct",
        "source",
        "replayed_from",
        "live_matches_replay",
    ];
}

/// The header of `aggregate.csv`: the fields of [`AggregateRow`](super::AggregateRow), in order.
const AGGREGATE_HEADER: [&str; 17] = [
    "label",
    "runs",
    "stop_epoch_mean",
    "stop_epoch_std",
    "test_metric_mean",
    "test_metric_std",
    "delta_perf_pct_mean",
    "delta_perf_pct_std",
    "delta_emiss_pct_mean",
    "delta_emiss_pct_std",
    "kwh_mean",
    "kwh_std",
    "co2_g_mean",
    "co2_g_std",
    "wall_s_mean",
    "wall_s_std",
    "same_epochs_as_full",
];

impl From<&StudyRun> for StudyCsvRow {
    fn from(run: &StudyRun) -> Self {
        Self {
            label: run.label.clone(),
            seed: run.seed,
            run_dir: run.run_dir.display().to_string(),
            stop_epoch: run.stop_epoch,
            best_epoch: run.best_epoch,
            test_metric: run.test_metric,
            test_at_stop: run.test_at_stop,
            energy_j: run.energy_j,
            kwh: run.kwh(),
            co2_g: run.co2_g,
            wall_s: run.wall_s,
            measured: run.measured,
            delta_perf_pct: run.delta_perf_pct,
            delta_emiss_pct: run.delta_emiss_pct,
            source: run.source,
            replayed_from: run.replayed_from.clone(),
            live_matches_replay: run.live_matches_replay,
        }
    }
}

/// Writes `report` (a study report, an evaluation, …) as pretty-printed JSON at `path`.
pub(crate) fn write_json<T: Serialize>(report: &T, path: &Path) -> Result<(), ReportError> {
    let file = File::create(path).map_err(|e| ReportError::io(path, e))?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, report).map_err(|source| ReportError::Json {
        path: path.to_owned(),
        source,
    })?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(|e| ReportError::io(path, e))
}

/// Writes `rows` as a CSV file at `path`, under `header` (written even without rows).
pub(crate) fn write_csv<T: Serialize>(
    header: &[&str],
    rows: impl IntoIterator<Item = T>,
    path: &Path,
) -> Result<(), ReportError> {
    let csv_err = |source| ReportError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(csv_err)?;
    writer.write_record(header).map_err(csv_err)?;
    for row in rows {
        writer.serialize(row).map_err(csv_err)?;
    }
    writer.flush().map_err(|e| ReportError::io(path, e))
}

/// Writes `study.csv`: one row per run, all seeds, in the order of `report.runs`.
pub(crate) fn write_study_csv(report: &StudyReport, path: &Path) -> Result<(), ReportError> {
    write_csv(
        &StudyCsvRow::HEADER,
        report.runs.iter().map(StudyCsvRow::from),
        path,
    )
}

/// Writes `aggregate.csv`: one row per label.
pub(crate) fn write_aggregate_csv(report: &StudyReport, path: &Path) -> Result<(), ReportError> {
    write_csv(&AGGREGATE_HEADER, aggregate(report), path)
}

/// Writes `text` at `path`.
pub(crate) fn write_text(text: &str, path: &Path) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::io(path, e))
}

/// A file-name-safe form of a name (lower-case ASCII letters and digits, `-` for the rest).
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{report, run};

    /// The header serde would write for `row`.
    fn serde_header<T: Serialize>(row: T) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.serialize(row).unwrap();
        let bytes = writer.into_inner().unwrap();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn headers_match_the_serialised_fields() {
        let r = report(vec![run("full", 0, 3, Some(0.5), 1.0, 1.0, 1.0)]);
        assert_eq!(
            serde_header(StudyCsvRow::from(&r.runs[0])),
            StudyCsvRow::HEADER.join(",")
        );
        assert_eq!(serde_header(&aggregate(&r)[0]), AGGREGATE_HEADER.join(","));
    }

    #[test]
    fn empty_csv_still_has_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.csv");
        write_study_csv(&report(vec![]), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end(), StudyCsvRow::HEADER.join(","));
    }
}
