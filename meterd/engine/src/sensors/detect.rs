//! Picks the energy sources and explains the choice.
//!
//! CPU: `auto` tries perf_event RAPL, then powercap RAPL, then the estimate; a forced choice
//! (`--sensor perf|powercap|estimate`) fails start-up with the reason instead of falling back.
//! GPU: NVML, independently; a missing library is the normal "no GPU" outcome. Every source tried
//! or skipped gets one [`SourceReport`] line for the start-up summary.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::estimate::{EstimateModel, EstimateSensor};
use super::nvml::NvmlSensor;
use super::perf::PerfSensor;
use super::powercap::PowercapSensor;
use super::{Sensor, SensorChoice, SensorError};
use crate::root::SysRoot;

/// Which GPUs to meter (like `CUDA_VISIBLE_DEVICES`, by NVML index).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GpuSelection {
    /// Every device NVML reports.
    #[default]
    All,
    /// Do not load NVML.
    None,
    /// These NVML indices.
    Indices(Vec<u32>),
}

impl std::str::FromStr for GpuSelection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" | "" => Ok(GpuSelection::All),
            "none" => Ok(GpuSelection::None),
            list => list
                .split(',')
                .map(|p| {
                    p.trim().parse::<u32>().map_err(|_| {
                        format!(
                            "bad GPU list {s:?}: expected \"all\", \"none\" or indices like \"0,2\""
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(GpuSelection::Indices),
        }
    }
}

impl TryFrom<String> for GpuSelection {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<GpuSelection> for String {
    fn from(g: GpuSelection) -> String {
        match g {
            GpuSelection::All => "all".into(),
            GpuSelection::None => "none".into(),
            GpuSelection::Indices(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// What the detector needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorConfig {
    /// CPU source choice.
    pub choice: SensorChoice,
    /// Root of procfs/sysfs.
    pub root: SysRoot,
    /// Estimation model.
    pub estimate: EstimateModel,
    /// GPU selection.
    pub gpus: GpuSelection,
    /// NVML library name or path.
    pub nvml_library: String,
}

/// The outcome for one source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceOutcome {
    /// In use, with its domains and a detail line.
    Used {
        /// Domain ids.
        domains: Vec<String>,
        /// Human detail (model figures, …).
        detail: String,
    },
    /// Tried and not usable.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not tried (an earlier source was found, or another was forced).
    NotTried {
        /// Why.
        reason: String,
    },
}

/// One line of the start-up summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReport {
    /// `perf`, `powercap`, `estimate` or `nvml`.
    pub source: &'static str,
    /// What happened.
    pub outcome: SourceOutcome,
}

impl fmt::Display for SourceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            SourceOutcome::Used { domains, detail } => {
                write!(f, "{}: using [{}]", self.source, domains.join(", "))?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            SourceOutcome::Skipped { reason } => write!(f, "{}: skipped: {reason}", self.source),
            SourceOutcome::NotTried { reason } => write!(f, "{}: not tried: {reason}", self.source),
        }
    }
}

/// The opened sensors and the summary.
pub struct Detection {
    /// Sensors in use (CPU first, then GPU).
    pub sensors: Vec<Box<dyn Sensor>>,
    /// One line per source.
    pub report: Vec<SourceReport>,
}

impl fmt::Debug for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detection")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Why start-up could not get the sensor it was told to use.
#[derive(Debug, thiserror::Error)]
#[error("--sensor {choice:?} unavailable: {source}")]
pub struct DetectError {
    /// The forced choice.
    pub choice: SensorChoice,
    /// The reason.
    #[source]
    pub source: SensorError,
}

fn used(sensor: &dyn Sensor, detail: String) -> SourceOutcome {
    SourceOutcome::Used {
        domains: sensor.domains().iter().map(|d| d.id.clone()).collect(),
        detail,
    }
}

fn open_cpu(
    kind: SensorChoice,
    cfg: &SensorConfig,
) -> Result<(Box<dyn Sensor>, String), SensorError> {
    match kind {
        SensorChoice::Perf => Ok((Box::new(PerfSensor::open(&cfg.root)?), String::new())),
        SensorChoice::Powercap => Ok((Box::new(PowercapSensor::open(&cfg.root)?), String::new())),
        SensorChoice::Estimate | SensorChoice::Auto => {
            let s = EstimateSensor::open(&cfg.root, &cfg.estimate)?;
            let m = s.model();
            let detail = format!(
                "{} CPUs, {:.1} W idle to {:.1} W full load; DRAM {:.1} GB = {:.1} W",
                m.cpus, m.cpu_idle_watts, m.cpu_max_watts, m.mem_gb, m.dram_watts
            );
            Ok((Box::new(s), detail))
        }
    }
}

fn source_name(kind: SensorChoice) -> &'static str {
    match kind {
        SensorChoice::Perf => "perf",
        SensorChoice::Powercap => "powercap",
        SensorChoice::Estimate | SensorChoice::Auto => "estimate",
    }
}

/// Opens the CPU source(s) and GPUs according to `cfg`.
pub fn detect(cfg: &SensorConfig) -> Result<Detection, DetectError> {
    let order = [
        SensorChoice::Perf,
        SensorChoice::Powercap,
        SensorChoice::Estimate,
    ];
    let mut report = Vec::new();
    let mut sensors: Vec<Box<dyn Sensor>> = Vec::new();
    for kind in order {
        let name = source_name(kind);
        if !sensors.is_empty() {
            report.push(SourceReport {
                source: name,
                outcome: SourceOutcome::NotTried {
                    reason: "an earlier CPU source is in use".into(),
                },
            });
            continue;
        }
        if cfg.choice != SensorChoice::Auto && cfg.choice != kind {
            report.push(SourceReport {
                source: name,
                outcome: SourceOutcome::NotTried {
                    reason: format!("--sensor {} forced", source_name(cfg.choice)),
                },
            });
            continue;
        }
        match open_cpu(kind, cfg) {
            Ok((sensor, detail)) => {
                report.push(SourceReport {
                    source: name,
                    outcome: used(sensor.as_ref(), detail),
                });
                sensors.push(sensor);
            }
            Err(source) if cfg.choice != SensorChoice::Auto => {
                return Err(DetectError {
                    choice: cfg.choice,
                    source,
                });
            }
            Err(e) => report.push(SourceReport {
                source: name,
                outcome: SourceOutcome::Skipped {
                    reason: e.to_string(),
                },
            }),
        }
    }
    let selection = match &cfg.gpus {
        GpuSelection::None => None,
        GpuSelection::All => Some(None),
        GpuSelection::Indices(v) => Some(Some(v.as_slice())),
    };
    match selection {
        None => report.push(SourceReport {
            source: "nvml",
            outcome: SourceOutcome::NotTried {
                reason: "GPUs disabled (gpus = \"none\")".into(),
            },
        }),
        Some(sel) => match NvmlSensor::open(cfg.nvml_library.as_ref(), sel) {
            Ok(s) => {
                report.push(SourceReport {
                    source: "nvml",
                    outcome: used(&s, String::new()),
                });
                sensors.push(Box::new(s));
            }
            Err(e) => report.push(SourceReport {
                source: "nvml",
                outcome: SourceOutcome::Skipped {
                    reason: e.to_string(),
                },
            }),
        },
    }
    Ok(Detection { sensors, report })
}
