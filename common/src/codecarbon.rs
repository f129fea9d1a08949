//! A CodeCarbon-compatible `emissions.csv`: one row per run, CodeCarbon 2.x's columns and units,
//! so that tools that read CodeCarbon's files (its dashboard, pandas scripts) read ours.
//!
//! The writer owns the format: the exact [`HEADER`], the units (seconds, kg CO2-eq, kWh, W, GB)
//! and the append rule — like CodeCarbon, [`append`] adds one row to an existing file that has the
//! same header, and writes the header first into a new or empty file. A file with another header
//! is refused rather than mixed with ours. [`EmissionsRow::new`] derives every figure of a row
//! from the run's energies by domain and its grams, so that the columns agree with one another
//! (`energy_consumed` = Σ energies, `emissions_rate` = `emissions` / `duration`).

use std::io::{Read, Write};

pub use crate::time::iso8601_utc;
use std::path::{Path, PathBuf};

/// The header of CodeCarbon 2.x's `emissions.csv`, without the line end.
pub const HEADER: &str = "timestamp,project_name,run_id,duration,emissions,emissions_rate,\
cpu_power,gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,\
country_iso_code,region,cloud_provider,cloud_region,os,python_version,codecarbon_version,\
cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,tracking_mode,\
on_cloud,pue";

/// Joules per kWh.
const JOULES_PER_KWH: f64 = 3.6e6;

/// Whose energy a row counts (CodeCarbon's `tracking_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMode {
    /// The whole machine.
    Machine,
    /// One job's share (a job metered by attribution).
    Process,
}

impl TrackingMode {
    /// `machine` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackingMode::Machine => "machine",
            TrackingMode::Process => "process",
        }
    }
}

/// What a run consumed, by domain: the input of [`EmissionsRow::new`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energies {
    /// Wall-clock seconds of the run.
    pub duration_s: f64,
    /// CPU energy, joules.
    pub cpu_j: f64,
    /// GPU energy, joules.
    pub gpu_j: f64,
    /// Memory (DRAM) energy, joules.
    pub ram_j: f64,
    /// CO2-eq of the whole run, grams (PUE included).
    pub grams: f64,
}

impl Energies {
    /// The energies of a meter reading's `totals` over `duration_s`: each domain goes to the
    /// column its name says (`dram…` → RAM, `gpu…` → GPU, anything else → CPU).
    pub fn of_totals(totals: &crate::protocol::Totals, duration_s: f64) -> Self {
        let mut e = Energies {
            duration_s,
            cpu_j: 0.0,
            gpu_j: 0.0,
            ram_j: 0.0,
            grams: totals.grams_co2,
        };
        for d in &totals.domains {
            let name = d.name.to_ascii_lowercase();
            let column = if name.contains("dram") {
                &mut e.ram_j
            } else if name.contains("gpu") {
                &mut e.gpu_j
            } else {
                &mut e.cpu_j
            };
            *column += d.joules;
        }
        e
    }

    /// The PUE these figures imply at `intensity_g_per_kwh` (1 when they cannot tell).
    pub fn implied_pue(&self, intensity_g_per_kwh: f64) -> f64 {
        let kwh = (self.cpu_j + self.gpu_j + self.ram_j) / JOULES_PER_KWH;
        let pue = self.grams / (kwh * intensity_g_per_kwh);
        if pue.is_finite() && pue >= 1.0 {
            pue
        } else {
            1.0
        }
    }
}

/// One row of `emissions.csv`, in CodeCarbon's units. Empty strings and `None` are written as
/// empty fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionsRow {
    /// End of the run, ISO 8601 (`2024-05-27T11:31:35`, UTC; [`iso8601_utc`]).
    pub timestamp: String,
    /// The project (e.g. `anges-train`).
    pub project_name: String,
    /// The run's identifier (e.g. its folder's name).
    pub run_id: String,
    /// Seconds.
    pub duration: f64,
    /// kg CO2-eq.
    pub emissions: f64,
    /// kg CO2-eq per second.
    pub emissions_rate: f64,
    /// Mean CPU power over the run, W.
    pub cpu_power: f64,
    /// Mean GPU power over the run, W.
    pub gpu_power: f64,
    /// Mean memory power over the run, W.
    pub ram_power: f64,
    /// CPU energy, kWh.
    pub cpu_energy: f64,
    /// GPU energy, kWh.
    pub gpu_energy: f64,
    /// Memory energy, kWh.
    pub ram_energy: f64,
    /// Σ of the energies, kWh.
    pub energy_consumed: f64,
    /// Country of the grid intensity, when known.
    pub country_name: String,
    /// Its code, when known.
    pub country_iso_code: String,
    /// Sub-national region, when known.
    pub region: String,
    /// Cloud provider (empty: not on a cloud).
    pub cloud_provider: String,
    /// Cloud region.
    pub cloud_region: String,
    /// Operating system (e.g. `Linux-6.1.0-x86_64`).
    pub os: String,
    /// Python version (empty for a program that is not Python).
    pub python_version: String,
    /// CodeCarbon version (empty: the row was not written by CodeCarbon).
    pub codecarbon_version: String,
    /// Logical CPUs.
    pub cpu_count: Option<usize>,
    /// CPU model name.
    pub cpu_model: String,
    /// GPUs metered.
    pub gpu_count: usize,
    /// GPU model name(s).
    pub gpu_model: String,
    /// Longitude, when known.
    pub longitude: Option<f64>,
    /// Latitude, when known.
    pub latitude: Option<f64>,
    /// Memory of the machine, GB.
    pub ram_total_size: Option<f64>,
    /// Whose energy the row counts.
    pub tracking_mode: TrackingMode,
    /// Whether the run was on a cloud (`false` is written `N`).
    pub on_cloud: bool,
    /// Power usage effectiveness the emissions include.
    pub pue: f64,
}

impl EmissionsRow {
    /// A row with the figures derived from `energies` (kWh, W, kg, kg/s; the powers and the
    /// rate are 0 for a run of no duration) and every descriptive field empty.
    pub fn new(
        project_name: impl Into<String>,
        run_id: impl Into<String>,
        timestamp: impl Into<String>,
        energies: Energies,
        tracking_mode: TrackingMode,
        pue: f64,
    ) -> Self {
        let d = energies.duration_s;
        let per_second = |x: f64| if d > 0.0 { x / d } else { 0.0 };
        let kwh = |j: f64| j / JOULES_PER_KWH;
        let emissions = energies.grams / 1000.0;
        EmissionsRow {
            timestamp: timestamp.into(),
            project_name: project_name.into(),
            run_id: run_id.into(),
            duration: d,
            emissions,
            emissions_rate: per_second(emissions),
            cpu_power: per_second(energies.cpu_j),
            gpu_power: per_second(energies.gpu_j),
            ram_power: per_second(energies.ram_j),
            cpu_energy: kwh(energies.cpu_j),
            gpu_energy: kwh(energies.gpu_j),
            ram_energy: kwh(energies.ram_j),
            energy_consumed: kwh(energies.cpu_j + energies.gpu_j + energies.ram_j),
            country_name: String::new(),
            country_iso_code: String::new(),
            region: String::new(),
            cloud_provider: String::new(),
            cloud_region: String::new(),
            os: String::new(),
            python_version: String::new(),
            codecarbon_version: String::new(),
            cpu_count: None,
            cpu_model: String::new(),
            gpu_count: 0,
            gpu_model: String::new(),
            longitude: None,
            latitude: None,
            ram_total_size: None,
            tracking_mode,
            on_cloud: false,
            pue,
        }
    }

    /// The row as one CSV line (with its line end), fields quoted where CSV needs it.
    pub fn to_csv_line(&self) -> String {
        let num = |v: f64| v.to_string();
        let opt = |v: Option<f64>| v.map_or_else(String::new, num);
        let fields = [
            quote(&self.timestamp),
            quote(&self.project_name),
            quote(&self.run_id),
            num(self.duration),
            num(self.emissions),
            num(self.emissions_rate),
            num(self.cpu_power),
            num(self.gpu_power),
            num(self.ram_power),
            num(self.cpu_energy),
            num(self.gpu_energy),
            num(self.ram_energy),
            num(self.energy_consumed),
            quote(&self.country_name),
            quote(&self.country_iso_code),
            quote(&self.region),
            quote(&self.cloud_provider),
            quote(&self.cloud_region),
            quote(&self.os),
            quote(&self.python_version),
            quote(&self.codecarbon_version),
            self.cpu_count.map_or_else(String::new, |c| c.to_string()),
            quote(&self.cpu_model),
            self.gpu_count.to_string(),
            quote(&self.gpu_model),
            opt(self.longitude),
            opt(self.latitude),
            opt(self.ram_total_size),
            self.tracking_mode.as_str().to_owned(),
            if self.on_cloud { "Y" } else { "N" }.to_owned(),
            num(self.pue),
        ];
        let mut line = fields.join(",");
        line.push('\n');
        line
    }
}

/// A field as CSV writes it: quoted (quotes doubled) when it holds a comma, a quote or a line
/// break; line breaks become spaces first, so that a row is always one line.
fn quote(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.contains([',', '"']) {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
        out
    } else {
        s
    }
}

/// Why a row could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum CodecarbonError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists with another first line than [`HEADER`].
    #[error(
        "{path}: its header is not CodeCarbon 2.x's emissions.csv header (found {found:?}); \
         not appending to it: move it away or name another file"
    )]
    OtherHeader {
        /// The file.
        path: PathBuf,
        /// Its first line (at most 512 bytes of it).
        found: String,
    },
}

/// Appends `row` to the CSV file `path`: after the header when the file is new or empty, else
/// after the rows already there when its first line is [`HEADER`]; any other file is refused.
pub fn append(path: &Path, row: &EmissionsRow) -> Result<(), CodecarbonError> {
    let io = |source| CodecarbonError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    // The first line, bounded: the header is far shorter than the limit.
    let mut head = Vec::new();
    (&mut file)
        .take(HEADER.len() as u64 + 2)
        .read_to_end(&mut head)
        .map_err(io)?;
    let mut text = String::new();
    if head.is_empty() {
        text.push_str(HEADER);
        text.push('\n');
    } else {
        let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        let first = first.trim_end_matches('\r');
        if first != HEADER {
            return Err(CodecarbonError::OtherHeader {
                path: path.to_owned(),
                found: first.chars().take(512).collect(),
            });
        }
        // A file whose last row lacks its line end gets one before ours.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 && !ends_with_newline(&mut file, len).map_err(io)? {
            text.push('\n');
        }
    }
    text.push_str(&row.to_csv_line());
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(io)
}

/// Whether the last byte of `file` (of length `len` > 0) is a line end.
fn ends_with_newline(file: &mut std::fs::File, len: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> EmissionsRow {
        let mut r = EmissionsRow::new(
            "anges-train",
            "run,1",
            iso8601_utc(1_716_809_495.7),
            Energies {
                duration_s: 10.0,
                cpu_j: 3.6e6,
                gpu_j: 0.0,
                ram_j: 1.8e6,
                grams: 720.0,
            },
            TrackingMode::Process,
            1.5,
        );
        r.cpu_model = "Intel(R) \"Xeon\"".into();
        r.cpu_count = Some(2);
        r
    }

    #[test]
    fn header_has_codecarbons_31_columns() {
        assert_eq!(HEADER.split(',').count(), 31);
        assert!(HEADER.starts_with("timestamp,project_name,run_id,duration,emissions,"));
        assert!(HEADER.ends_with(",tracking_mode,on_cloud,pue"));
    }

    #[test]
    fn units_follow_codecarbon() {
        let r = row();
        assert_eq!(r.timestamp, "2024-05-27T11:31:35");
        assert_eq!(r.energy_consumed, 1.5);
        assert_eq!((r.cpu_energy, r.ram_energy), (1.0, 0.5));
        assert_eq!((r.cpu_power, r.ram_power), (360_000.0, 180_000.0));
        assert_eq!(r.emissions, 0.72);
        assert_eq!(r.emissions_rate, 0.072);
        let line = r.to_csv_line();
        // Quoted where CSV needs it, one line, as many fields as the header.
        assert!(line.contains(",\"run,1\","), "{line}");
        assert!(line.contains(",\"Intel(R) \"\"Xeon\"\"\","), "{line}");
        assert!(line.ends_with(",process,N,1.5\n"), "{line}");
        assert_eq!(line.lines().count(), 1);
        let zero = EmissionsRow::new(
            "p",
            "r",
            "t",
            Energies::default(),
            TrackingMode::Machine,
            1.0,
        );
        assert_eq!((zero.emissions_rate, zero.cpu_power), (0.0, 0.0));
    }

    #[test]
    fn appends_keep_one_header_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emissions.csv");
        append(&path, &row()).unwrap();
        append(&path, &row()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], lines[2]);
        // A last row without its line end is completed before the next one.
        std::fs::write(&path, format!("{HEADER}\n{}", lines[1])).unwrap();
        append(&path, &row()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        let other = dir.path().join("other.csv");
        std::fs::write(&other, "timestamp,project_name\nx,y\n").unwrap();
        let err = append(&other, &row()).unwrap_err();
        assert!(matches!(err, CodecarbonError::OtherHeader { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "timestamp,project_name\nx,y\n"
        );
    }
}
