//! The run's row of its CodeCarbon-compatible `emissions.csv` ([`anges_common::codecarbon`]):
//! the meter's final figures in CodeCarbon's columns.
//!
//! The run's energy is split into CPU, memory and GPU by the in-process meter's per-domain totals
//! of this process's job ([`MeterFinal::kind_shares`]; all CPU when unknown), so that the three
//! columns add up to `energy_consumed`, the run's whole charge. A job metered by attribution is
//! CodeCarbon's `process` tracking mode. `python_version` and `codecarbon_version` stay empty:
//! the row was written by neither.

use std::path::{Path, PathBuf};

use anges_common::codecarbon::{self, CodecarbonError, EmissionsRow, Energies, TrackingMode};

use super::MeterFinal;

/// The file's name in a run folder.
pub const FILE: &str = "emissions.csv";

/// CodeCarbon's `project_name` of the trainer's rows.
pub const PROJECT: &str = "anges-train";

/// The row of a run that took `seconds` and ended now, metered as `meter` says; `run_id` names
/// it (the run folder's name).
pub fn row(run_id: &str, seconds: f64, meter: &MeterFinal) -> EmissionsRow {
    let (joules, grams) = meter.total();
    let [cpu, ram, gpu] = meter.kind_shares.unwrap_or([1.0, 0.0, 0.0]);
    let energies = Energies {
        duration_s: seconds,
        cpu_j: joules * cpu,
        gpu_j: joules * gpu,
        ram_j: joules * ram,
        grams,
    };
    let carbon = meter.carbon.as_ref();
    let pue = carbon.and_then(|c| c.pue).unwrap_or(1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut r = EmissionsRow::new(
        PROJECT,
        run_id,
        codecarbon::iso8601_utc(now),
        energies,
        TrackingMode::Process,
        pue,
    );
    if let Some(code) = carbon.and_then(|c| c.region.as_deref())
        && code != "WORLD"
    {
        code.clone_into(&mut r.country_iso_code);
    }
    if let Some(h) = &meter.hardware {
        r.os.clone_from(&h.os);
        r.cpu_count = h.cpu_count;
        r.cpu_model.clone_from(&h.cpu_model);
        r.gpu_count = h.gpus.len();
        r.gpu_model = h.gpus.join(", ");
        r.ram_total_size = h.ram_total_gb;
    }
    r
}

/// Appends the run's row to `emissions.csv` in `run_dir` (creating it with its header);
/// returns the file's path.
pub fn append_run(
    run_dir: &Path,
    seconds: f64,
    meter: &MeterFinal,
) -> Result<PathBuf, CodecarbonError> {
    append_run_as(run_dir, PROJECT, seconds, meter)
}

/// [`append_run`] with another CodeCarbon `project_name` (the Python package's `anges`).
pub fn append_run_as(
    run_dir: &Path,
    project: &str,
    seconds: f64,
    meter: &MeterFinal,
) -> Result<PathBuf, CodecarbonError> {
    let path = run_dir.join(FILE);
    let run_id = run_dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut r = row(&run_id, seconds, meter);
    project.clone_into(&mut r.project_name);
    codecarbon::append(&path, &r)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emissions::{CarbonInfo, Hardware};

    #[test]
    fn the_row_splits_the_runs_charge_by_kind() {
        let meter = MeterFinal {
            cumulative_j: 7.2e6,
            cumulative_g: 700.0,
            tail: None,
            daemon_job_joules: None,
            daemon_job_grams: None,
            gap_epochs: 0,
            epochs: 2,
            describe: "local".into(),
            measured: false,
            carbon: Some(CarbonInfo {
                g_per_kwh: Some(56.0),
                source: "region".into(),
                region: Some("FR".into()),
                label: "region FR (56 g/kWh)".into(),
                origin: "flag".into(),
                pue: Some(1.25),
            }),
            hardware: Some(Hardware {
                cpu_count: Some(2),
                gpus: vec!["NVIDIA H100".into()],
                ..Hardware::default()
            }),
            kind_shares: Some([0.5, 0.25, 0.25]),
        };
        let r = row("run-1", 100.0, &meter);
        assert_eq!((r.cpu_energy, r.ram_energy, r.gpu_energy), (1.0, 0.5, 0.5));
        assert_eq!(r.energy_consumed, 2.0);
        assert_eq!(r.emissions, 0.7);
        assert_eq!(r.country_iso_code, "FR");
        assert_eq!((r.gpu_count, r.pue), (1, 1.25));
        assert_eq!(r.tracking_mode, TrackingMode::Process);
    }
}
