//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time).
//!
//! Energy: the device's total-energy counter (mJ since driver load, Volta and newer); on older
//! devices the board power reading (mW) integrated over the sampling interval, still labelled
//! `measured` (it is a measured power). Attribution: per-process SM utilisation samples
//! (`nvmlDeviceGetProcessUtilization`). A missing library is the normal "no GPU" outcome.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::Instant;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::{DomainInfo, DomainKind, GpuProcessUse, Provenance, Sensor, SensorError};

/// Library name loaded by default.
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// How one device's energy is obtained.
#[derive(Debug)]
enum EnergyMode {
    /// Total-energy counter, with its value (mJ) when opened.
    Counter { base_mj: u64 },
    /// Power integration, with the last read instant.
    Power { last: Option<Instant> },
}

#[derive(Debug)]
struct Gpu {
    index: u32,
    mode: EnergyMode,
    joules: f64,
    last_seen_us: u64,
}

/// GPU energy from NVML.
pub struct NvmlSensor {
    nvml: Nvml,
    gpus: Vec<Gpu>,
    domains: Vec<DomainInfo>,
}

impl std::fmt::Debug for NvmlSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSensor")
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

fn nvml_err(what: &str, e: NvmlError) -> SensorError {
    SensorError::Nvml(format!("{what}: {e}"))
}

impl NvmlSensor {
    /// Loads NVML from `library` and opens the selected devices (`None` = all).
    ///
    /// Errors carry the reason for the start-up summary; a missing library reads
    /// "`libnvidia-ml.so.1` not loadable (no NVIDIA driver): …".
    pub fn open(library: &OsStr, selection: Option<&[u32]>) -> Result<Self, SensorError> {
        let nvml = Nvml::builder()
            .lib_path(library)
            .init()
            .map_err(|e| match e {
                NvmlError::LibloadingError(inner) => SensorError::Nvml(format!(
                    "{} not loadable (no NVIDIA driver): {inner}",
                    library.to_string_lossy()
                )),
                NvmlError::DriverNotLoaded => {
                    SensorError::Nvml("NVIDIA driver not loaded (no GPU)".into())
                }
                other => nvml_err("nvmlInit", other),
            })?;
        let count = nvml
            .device_count()
            .map_err(|e| nvml_err("device count", e))?;
        let indices: Vec<u32> = match selection {
            Some(sel) => {
                if let Some(bad) = sel.iter().find(|&&i| i >= count) {
                    return Err(SensorError::Invalid(format!(
                        "GPU index {bad} selected but NVML reports {count} device(s)"
                    )));
                }
                sel.to_vec()
            }
            None => (0..count).collect(),
        };
        if indices.is_empty() {
            return Err(SensorError::Invalid("NVML reports no GPU device".into()));
        }
        let mut gpus = Vec::new();
        let mut domains = Vec::new();
        for index in indices {
            let dev = nvml
                .device_by_index(index)
                .map_err(|e| nvml_err(&format!("device {index}"), e))?;
            let mode = match dev.total_energy_consumption() {
                Ok(base_mj) => EnergyMode::Counter { base_mj },
                Err(NvmlError::NotSupported) => {
                    dev.power_usage()
                        .map_err(|e| nvml_err(&format!("device {index} power"), e))?;
                    EnergyMode::Power { last: None }
                }
                Err(e) => return Err(nvml_err(&format!("device {index} energy"), e)),
            };
            gpus.push(Gpu {
                index,
                mode,
                joules: 0.0,
                last_seen_us: 0,
            });
            domains.push(DomainInfo {
                id: format!("gpu:{index}"),
                kind: DomainKind::Gpu,
                provenance: Provenance::Measured,
            });
        }
        Ok(NvmlSensor {
            nvml,
            gpus,
            domains,
        })
    }

    fn read_one(nvml: &Nvml, gpu: &mut Gpu, now: Instant) -> Result<(), SensorError> {
        let dev = nvml
            .device_by_index(gpu.index)
            .map_err(|e| nvml_err(&format!("device {}", gpu.index), e))?;
        match &mut gpu.mode {
            EnergyMode::Counter { base_mj } => {
                let mj = dev
                    .total_energy_consumption()
                    .map_err(|e| nvml_err(&format!("device {} energy", gpu.index), e))?;
                gpu.joules = gpu.joules.max(mj.saturating_sub(*base_mj) as f64 * 1e-3);
            }
            EnergyMode::Power { last } => {
                let mw = dev
                    .power_usage()
                    .map_err(|e| nvml_err(&format!("device {} power", gpu.index), e))?;
                if let Some(prev) = *last {
                    gpu.joules += f64::from(mw) * 1e-3 * now.duration_since(prev).as_secs_f64();
                }
                *last = Some(now);
            }
        }
        Ok(())
    }
}

impl Sensor for NvmlSensor {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read(&mut self, now: Instant, cumulative: &mut [f64]) -> Result<(), SensorError> {
        let mut first_error = None;
        for (gpu, out) in self.gpus.iter_mut().zip(cumulative.iter_mut()) {
            if let Err(e) = Self::read_one(&self.nvml, gpu, now) {
                first_error.get_or_insert(e);
            }
            *out = gpu.joules;
        }
        first_error.map_or(Ok(()), Err)
    }

    fn gpu_processes(&mut self) -> Vec<GpuProcessUse> {
        let mut out = Vec::new();
        for (domain, gpu) in self.gpus.iter_mut().enumerate() {
            let Ok(dev) = self.nvml.device_by_index(gpu.index) else {
                continue;
            };
            let samples = match dev.process_utilization_stats(gpu.last_seen_us) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(gpu = gpu.index, "process utilisation unavailable: {e}");
                    continue;
                }
            };
            let mut by_pid: HashMap<u32, f64> = HashMap::new();
            for s in samples {
                gpu.last_seen_us = gpu.last_seen_us.max(s.timestamp);
                *by_pid.entry(s.pid).or_default() += f64::from(s.sm_util);
            }
            out.extend(by_pid.into_iter().map(|(pid, sm_util)| GpuProcessUse {
                domain,
                pid,
                sm_util,
            }));
        }
        out
    }
}
