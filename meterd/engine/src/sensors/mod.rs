//! Energy sensors: one [`Sensor`] trait, one module per source.
//!
//! A sensor reports a fixed list of [`DomainInfo`] (CPU package, DRAM, GPU device, …) and, on
//! every [`Sensor::read`], the *cumulative* energy of each domain in joules since the sensor was
//! opened. Counter wrap-around, unit scaling and power integration are the sensor's business, so
//! the sampler only ever sees monotone cumulative figures; a failed read loses nothing because the
//! next successful read still carries the full cumulative value.
//!
//! Sources: [`perf`] (RAPL via the perf_event `power` PMU), [`powercap`] (RAPL via sysfs),
//! [`nvml`] (NVIDIA GPUs), [`estimate`] (a utilisation model when no counter is readable), and
//! [`detect`] which picks among them and explains why.

pub mod detect;
pub mod estimate;
pub mod nvml;
pub mod perf;
pub mod powercap;

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Whether a figure comes from a hardware counter or from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// Read from a hardware energy counter (RAPL, NVML) or a measured power reading.
    Measured,
    /// Computed from utilisation and a power model.
    Estimated,
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provenance::Measured => "measured",
            Provenance::Estimated => "estimated",
        })
    }
}

/// What kind of hardware a domain is; it decides how the domain's energy is attributed to jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// A CPU package (or the whole CPU when estimated): split by CPU time.
    Cpu,
    /// Memory: split by CPU time as well (a proxy for memory traffic).
    Dram,
    /// One GPU device: split by the jobs' processes' utilisation of that device.
    Gpu,
}

/// One energy domain reported by a sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Stable identifier, e.g. `cpu:package-0`, `dram:package-0`, `gpu:0`, `cpu:estimated`.
    pub id: String,
    /// Kind of hardware.
    pub kind: DomainKind,
    /// Measured or estimated.
    pub provenance: Provenance,
}

/// One process's use of one GPU over the last interval, for attribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuProcessUse {
    /// Index into the sensor's [`Sensor::domains`].
    pub domain: usize,
    /// Process id.
    pub pid: u32,
    /// Streaming-multiprocessor utilisation, percent (0–100).
    pub sm_util: f64,
}

/// Errors of sensor reads and opening.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// An I/O error on a named file or device.
    #[error("{what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value that could not be parsed or made no sense.
    #[error("{0}")]
    Invalid(String),
    /// An NVML call failed.
    #[error("NVML: {0}")]
    Nvml(String),
}

impl SensorError {
    /// An I/O error about `what`.
    pub fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        SensorError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// An energy source.
pub trait Sensor: Send {
    /// Short name for logs and health ("perf", "powercap", "estimate", "nvml").
    fn name(&self) -> &'static str;

    /// The domains this sensor reports, in the order of [`Sensor::read`]'s output.
    fn domains(&self) -> &[DomainInfo];

    /// Writes the cumulative energy (J) of every domain since the sensor was opened into
    /// `cumulative` (same length and order as [`Sensor::domains`]). Values never decrease.
    ///
    /// On error every slot still holds a valid cumulative value (the last good one for the
    /// domains that failed), so the caller may integrate them and lose nothing.
    fn read(&mut self, now: Instant, cumulative: &mut [f64]) -> Result<(), SensorError>;

    /// Whether reading this sensor between accounting ticks adds information, so that the
    /// sampler must wake at `rate_hz` for it. A source integrated from instantaneous readings
    /// (NVML's power and utilisation samples) does. A cumulative energy counter (RAPL through
    /// perf or powercap) does not: the energy of an interval is the difference of its reads at
    /// the interval's ends, whatever happens between them, and it wraps only after hundreds of
    /// kJ. Nor does a utilisation model: its energy is linear in the CPU time of the interval,
    /// so one [`Sensor::flush`] per accounting tick gives the same integral as any number of
    /// reads in between. Sensors that are not sampled are read at accounting ticks only, and
    /// when none is sampled the sampler wakes only for accounting ticks (issue 27: each wake-up
    /// at 1 kHz cost more than all the reads it made).
    fn sampled(&self) -> bool {
        true
    }

    /// Brings a sub-sampled source up to `now` (called just before an accounting tick, so that
    /// the energy of the tick covers the same interval as the CPU times it is split by). Sensors
    /// that read their counter on every [`Sensor::read`] need not implement it.
    fn flush(&mut self, _now: Instant) {}

    /// Per-process GPU utilisation since the previous call (GPU sensors only).
    fn gpu_processes(&mut self) -> Vec<GpuProcessUse> {
        Vec::new()
    }
}

/// Which CPU energy source to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SensorChoice {
    /// Try RAPL through perf_event, then powercap, then fall back to estimation.
    #[default]
    Auto,
    /// RAPL through the perf_event `power` PMU (needs CAP_PERFMON or perf_event_paranoid ≤ 0).
    Perf,
    /// RAPL through `/sys/class/powercap/intel-rapl:*` (also used on AMD).
    Powercap,
    /// Estimate from `/proc/stat` utilisation and a TDP/idle model (VMs, containers).
    Estimate,
}
