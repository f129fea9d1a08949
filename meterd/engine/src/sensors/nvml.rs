//! NVIDIA GPUs through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time).
//!
//! Energy: the device's total-energy counter (mJ since driver load, Volta and newer); on older
//! devices the board power reading (mW) integrated over the sampling interval, still labelled
//! `measured` (it is a measured power). Attribution: per-process SM utilisation samples
//! (`nvmlDeviceGetProcessUtilization`), the latest active ones held for [`SAMPLE_HOLD`] (see
//! there). A missing library is the normal "no GPU" outcome.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

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
    /// The latest per-process use that showed SM activity.
    held: HeldUse,
}

/// How long the latest per-process samples of a GPU that showed SM activity stand for it while
/// NVML reports nothing newer, or only idle samples.
///
/// NVML samples per-process utilisation at the driver's own period, and a sample taken between
/// two kernels reads 0 %; both leave accounting ticks (10 Hz) with no process using the GPU, and
/// such a tick's GPU energy went to nobody. On an H200 (2026-12-04, docs/meter.md) a lone GIN
/// fine-tuning at 13 % mean utilisation was charged 1,079 J of the 2,459 J its GPU drew. Holding
/// the last active samples bridges those gaps; a GPU that shows no activity for longer is idle,
/// and its energy stays unattributed.
pub const SAMPLE_HOLD: Duration = Duration::from_secs(2);

/// The per-process use a GPU's energy is split by (see [`SAMPLE_HOLD`]).
#[derive(Debug, Default)]
struct HeldUse {
    /// SM utilisation by process, of the latest active samples.
    by_pid: Vec<(u32, f64)>,
    /// When they were read.
    at: Option<Instant>,
}

impl HeldUse {
    /// The use to attribute at `now`: `fresh` when it shows SM activity (it becomes the held
    /// use), else the held use while younger than [`SAMPLE_HOLD`], else none (an idle GPU).
    fn current(&mut self, fresh: HashMap<u32, f64>, now: Instant) -> Vec<(u32, f64)> {
        if fresh.values().any(|&u| u > 0.0) {
            let mut by_pid: Vec<(u32, f64)> = fresh.into_iter().collect();
            by_pid.sort_by_key(|&(pid, _)| pid);
            self.by_pid = by_pid;
            self.at = Some(now);
        } else if self
            .at
            .is_none_or(|at| now.saturating_duration_since(at) > SAMPLE_HOLD)
        {
            self.by_pid.clear();
            self.at = None;
        }
        self.by_pid.clone()
    }
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
                held: HeldUse::default(),
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
        let now = Instant::now();
        let mut out = Vec::new();
        for (domain, gpu) in self.gpus.iter_mut().enumerate() {
            let mut fresh: HashMap<u32, f64> = HashMap::new();
            match self
                .nvml
                .device_by_index(gpu.index)
                .and_then(|dev| dev.process_utilization_stats(gpu.last_seen_us))
            {
                Ok(samples) => {
                    for s in samples {
                        gpu.last_seen_us = gpu.last_seen_us.max(s.timestamp);
                        *fresh.entry(s.pid).or_default() += f64::from(s.sm_util);
                    }
                }
                // NVML answers "not found" when no process has a sample since `last_seen_us`.
                Err(e) => tracing::trace!(gpu = gpu.index, "no process utilisation: {e}"),
            }
            out.extend(
                gpu.held
                    .current(fresh, now)
                    .into_iter()
                    .map(|(pid, sm_util)| GpuProcessUse {
                        domain,
                        pid,
                        sm_util,
                    }),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_of(pairs: &[(u32, f64)]) -> HashMap<u32, f64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn active_samples_are_held_through_gaps_and_idle_samples_then_expire() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut held = HeldUse::default();
        // Nothing seen yet: nobody uses the GPU.
        assert!(held.current(use_of(&[]), at(0)).is_empty());
        // Two processes active: their shares, by pid.
        let active = vec![(7, 10.0), (42, 30.0)];
        assert_eq!(
            held.current(use_of(&[(42, 30.0), (7, 10.0)]), at(100)),
            active
        );
        // A tick with no new sample, and one whose samples caught the SMs idle: still theirs.
        assert_eq!(held.current(use_of(&[]), at(200)), active);
        assert_eq!(
            held.current(use_of(&[(7, 0.0), (42, 0.0)]), at(300)),
            active
        );
        // New activity replaces the held shares (a process that stopped drops out).
        assert_eq!(held.current(use_of(&[(42, 5.0)]), at(400)), vec![(42, 5.0)]);
        // Idle for longer than the hold: an idle GPU, whose energy is nobody's.
        let late = 400 + SAMPLE_HOLD.as_millis() as u64 + 1;
        assert!(held.current(use_of(&[(42, 0.0)]), at(late)).is_empty());
        assert!(held.current(use_of(&[]), at(late + 100)).is_empty());
    }
}
