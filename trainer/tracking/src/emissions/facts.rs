//! What a run states about how its emissions were computed: the carbon intensity and PUE with
//! their source ([`CarbonInfo`]), and the machine and the meter's sensors ([`Hardware`]).
//!
//! Both go to `summary.json`, the printed summary, the study report and `emissions.csv`. The
//! hardware is read from `/proc` (and `/proc/driver/nvidia` for GPU models); anything that cannot
//! be read is left empty, never an error: a run is never stopped for its description.

use serde::{Deserialize, Serialize};

use anges_meter_engine::carbon::{Carbon, IntensitySource, JOULES_PER_KWH};

use crate::config::ResolvedCarbon;

/// The carbon intensity and PUE a run's grams were computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonInfo {
    /// Grid intensity, g CO2-eq/kWh, PUE not included: the configured value for a constant or a
    /// region; for a time series or a daemon, what the run's grams work out to (`null` before
    /// any energy, or when the daemon's PUE is unknown).
    pub g_per_kwh: Option<f64>,
    /// `region`, `constant`, `csv` or `daemon`.
    pub source: String,
    /// The region code (`source` = `region`).
    pub region: Option<String>,
    /// One line: `region FR (56 g/kWh)`, `constant 100 g/kWh`, `time series FILE (N points)`,
    /// `the daemon's (…)`.
    pub label: String,
    /// Where the choice came from: `flag`, `default`, the configuration file's path, `daemon`.
    pub origin: String,
    /// Power usage effectiveness (`null`: the daemon's, not known yet).
    pub pue: Option<f64>,
}

impl CarbonInfo {
    /// The figures of the in-process meter, from the resolved options and the engine's
    /// [`Carbon`] (which gives the label and has checked the values).
    pub fn local(resolved: &ResolvedCarbon, carbon: &Carbon) -> Self {
        let (g, source, region) = match &resolved.intensity {
            IntensitySource::Constant(g) => (Some(*g), "constant", None),
            IntensitySource::Region(code) => (
                Some(carbon.intensity_at(0.0)),
                "region",
                Some(code.to_uppercase()),
            ),
            IntensitySource::Csv(_) => (None, "csv", None),
        };
        CarbonInfo {
            g_per_kwh: g,
            source: source.into(),
            region,
            label: carbon.label().to_owned(),
            origin: resolved.intensity_origin.to_string(),
            pue: Some(carbon.pue()),
        }
    }

    /// A daemon's: its latest intensity (g/kWh) as it reported it; its PUE is worked out from
    /// the run's figures at the end ([`CarbonInfo::settle`]).
    pub fn daemon(g_per_kwh: f64) -> Self {
        CarbonInfo {
            g_per_kwh: (g_per_kwh.is_finite() && g_per_kwh >= 0.0).then_some(g_per_kwh),
            source: "daemon".into(),
            region: None,
            label: format!("the meter daemon's ({g_per_kwh} g/kWh at registration)"),
            origin: "daemon".into(),
            pue: None,
        }
    }

    /// Completes what only the run's totals tell: the mean intensity of a time series (with the
    /// PUE known), or the PUE a daemon applied (with its intensity known).
    pub fn settle(&mut self, joules: f64, grams: f64) {
        if !(joules > 0.0 && grams.is_finite()) {
            return;
        }
        let g_per_kwh_with_pue = grams / (joules / JOULES_PER_KWH);
        match (self.g_per_kwh, self.pue) {
            (None, Some(pue)) => self.g_per_kwh = Some(g_per_kwh_with_pue / pue),
            (Some(g), None) if g > 0.0 => self.pue = Some(g_per_kwh_with_pue / g),
            _ => {}
        }
    }

    /// `56 g/kWh (region FR, flag), PUE 1.5`.
    pub fn describe(&self) -> String {
        let g = self
            .g_per_kwh
            .map_or_else(|| "? g/kWh".to_owned(), |g| format!("{g} g/kWh"));
        let pue = self
            .pue
            .map_or_else(|| "the daemon's".to_owned(), |p| format!("{p:.3}"));
        format!("{g} ({}, {}), PUE {pue}", self.label, self.origin)
    }
}

/// The machine a run was metered on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// CPU model (`/proc/cpuinfo`'s `model name`).
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_count: Option<usize>,
    /// Memory, GB (10⁹ bytes).
    pub ram_total_gb: Option<f64>,
    /// The GPUs the meter metered (their models when the NVIDIA driver names them, else the
    /// meter's domain ids); empty without GPUs.
    pub gpus: Vec<String>,
    /// The meter's sources and whether they measure or estimate (`measured: perf`,
    /// `estimated: estimate`).
    pub sensors: String,
    /// The operating system (`Linux-6.1.0-x86_64`).
    pub os: String,
}

impl Hardware {
    /// Reads this machine's description; `gpu_domains` are the meter's GPU domain ids and
    /// `sensors` its provenance line.
    pub fn detect(gpu_domains: usize, sensors: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == "model name")
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let ram_total_gb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|kib| kib * 1024.0 / 1e9);
        let mut models = nvidia_models();
        models.truncate(gpu_domains);
        let gpus = if models.len() == gpu_domains {
            models
        } else {
            (0..gpu_domains).map(|i| format!("gpu:{i}")).collect()
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = format!(
            "{}-{}-{}",
            capitalised(std::env::consts::OS),
            release.trim(),
            std::env::consts::ARCH
        );
        Hardware {
            cpu_model,
            cpu_count: std::thread::available_parallelism().ok().map(Into::into),
            ram_total_gb,
            gpus,
            sensors,
            os,
        }
    }

    /// `Intel Xeon … (2 CPUs), no GPU; sensors: estimated: estimate`.
    pub fn describe(&self) -> String {
        let cpu = if self.cpu_model.is_empty() {
            "unknown CPU"
        } else {
            &self.cpu_model
        };
        let count = self
            .cpu_count
            .map_or_else(String::new, |n| format!(" ({n} CPUs)"));
        let gpus = if self.gpus.is_empty() {
            "no GPU".to_owned()
        } else {
            self.gpus.join(", ")
        };
        format!("{cpu}{count}, {gpus}; sensors: {}", self.sensors)
    }
}

/// `linux` → `Linux`.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

/// The GPU models the NVIDIA driver lists (`/proc/driver/nvidia/gpus/*/information`), in bus
/// order.
fn nvidia_models() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let info = std::fs::read_to_string(e.path().join("information")).ok()?;
            let model = info
                .lines()
                .find_map(|l| l.strip_prefix("Model:"))?
                .trim()
                .to_owned();
            Some((e.file_name().to_string_lossy().into_owned(), model))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_completes_what_the_totals_tell() {
        // A daemon at 100 g/kWh whose grams say PUE 1.5.
        let mut d = CarbonInfo::daemon(100.0);
        d.settle(3.6e6, 150.0);
        assert!((d.pue.unwrap() - 1.5).abs() < 1e-12);
        // A time series with PUE 2 that averaged 50 g/kWh.
        let mut s = CarbonInfo {
            g_per_kwh: None,
            source: "csv".into(),
            region: None,
            label: "time series".into(),
            origin: "flag".into(),
            pue: Some(2.0),
        };
        s.settle(7.2e6, 200.0);
        assert!((s.g_per_kwh.unwrap() - 50.0).abs() < 1e-12);
        // Nothing to learn without energy.
        let mut none = CarbonInfo::daemon(100.0);
        none.settle(0.0, 0.0);
        assert_eq!(none.pue, None);
    }

    #[test]
    fn hardware_reads_this_machine() {
        let h = Hardware::detect(0, "estimated: estimate".into());
        assert!(h.gpus.is_empty());
        assert!(h.cpu_count.unwrap_or(0) >= 1);
        assert!(h.os.starts_with("Linux-"), "{}", h.os);
        assert!(
            h.describe().contains("no GPU; sensors: estimated"),
            "{}",
            h.describe()
        );
    }
}
