//! Estimated CPU and DRAM energy when no counter is readable (VMs, containers, this project's CI).
//!
//! CPU power = idle + (max − idle) × utilisation, with utilisation from `/proc/stat` deltas;
//! DRAM power = installed GB × a per-GB figure. Defaults follow the Cloud Carbon Footprint
//! methodology (per vCPU 0.74 W minimum, 3.5 W maximum; 0.392 W per GB of memory; see
//! `docs/meter.md`). `/proc/stat` moves in clock ticks (10 ms), so it is re-read at most every
//! `refresh` (default 100 ms) and just before every accounting tick ([`Sensor::flush`]); between
//! refreshes the cumulative energy holds still, then the whole elapsed interval is added at once,
//! which keeps the figure monotone and exact over time and aligned with the accounting ticks.
//! Because the model is linear in CPU ticks, reads between accounting ticks add nothing, so the
//! sensor is not sampled ([`Sensor::sampled`]): a meter with only this sensor wakes at the
//! accounting rate, not at `--rate-hz`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{DomainInfo, DomainKind, Provenance, Sensor, SensorError};
use crate::procfs::{MachineCpu, parse_mem_total_gb, parse_proc_stat};
use crate::root::{ReadableFile, SysRoot};

/// Cloud Carbon Footprint's average minimum watts per vCPU.
pub const DEFAULT_IDLE_WATTS_PER_CPU: f64 = 0.74;
/// Cloud Carbon Footprint's average maximum watts per vCPU.
pub const DEFAULT_MAX_WATTS_PER_CPU: f64 = 3.5;
/// Cloud Carbon Footprint's memory coefficient, W per GB.
pub const DEFAULT_DRAM_WATTS_PER_GB: f64 = 0.392;

/// Parameters of the power model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EstimateModel {
    /// CPU power at full load, W (default: 3.5 W × logical CPUs).
    pub cpu_max_watts: Option<f64>,
    /// CPU power when idle, W (default: 0.74 W × logical CPUs).
    pub cpu_idle_watts: Option<f64>,
    /// DRAM power per GB installed, W/GB (0 disables the DRAM domain).
    pub dram_watts_per_gb: f64,
    /// How often `/proc/stat` is re-read, milliseconds.
    pub refresh_ms: u64,
}

impl Default for EstimateModel {
    fn default() -> Self {
        EstimateModel {
            cpu_max_watts: None,
            cpu_idle_watts: None,
            dram_watts_per_gb: DEFAULT_DRAM_WATTS_PER_GB,
            refresh_ms: 100,
        }
    }
}

/// The model's resolved figures, for the start-up summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedModel {
    /// Logical CPUs seen in `/proc/stat`.
    pub cpus: u32,
    /// Full-load CPU power, W.
    pub cpu_max_watts: f64,
    /// Idle CPU power, W.
    pub cpu_idle_watts: f64,
    /// Installed memory, GB.
    pub mem_gb: f64,
    /// Constant DRAM power, W.
    pub dram_watts: f64,
}

/// Utilisation-model sensor.
#[derive(Debug)]
pub struct EstimateSensor {
    stat: ReadableFile,
    model: ResolvedModel,
    refresh: Duration,
    domains: Vec<DomainInfo>,
    last_cpu: MachineCpu,
    last_time: Instant,
    cpu_joules: f64,
    dram_joules: f64,
}

fn read_stat(file: &mut ReadableFile) -> Result<MachineCpu, SensorError> {
    let path = file.path().display().to_string();
    let text = file.read().map_err(|e| SensorError::io(&path, e))?;
    parse_proc_stat(text).ok_or_else(|| SensorError::Invalid(format!("{path}: no `cpu ` line")))
}

impl EstimateSensor {
    /// Opens `/proc/stat` and `/proc/meminfo` under `root` and resolves the model.
    pub fn open(root: &SysRoot, model: &EstimateModel) -> Result<Self, SensorError> {
        let mut stat = ReadableFile::open(root.path("/proc/stat"))
            .map_err(|e| SensorError::io(root.path("/proc/stat").display(), e))?;
        let first = read_stat(&mut stat)?;
        let cpus = first.cpus.max(1);
        let meminfo = root.path("/proc/meminfo");
        let mem_gb = std::fs::read_to_string(&meminfo)
            .ok()
            .and_then(|t| parse_mem_total_gb(&t))
            .unwrap_or(0.0);
        let resolved = ResolvedModel {
            cpus,
            cpu_max_watts: model
                .cpu_max_watts
                .unwrap_or(DEFAULT_MAX_WATTS_PER_CPU * f64::from(cpus)),
            cpu_idle_watts: model
                .cpu_idle_watts
                .unwrap_or(DEFAULT_IDLE_WATTS_PER_CPU * f64::from(cpus)),
            mem_gb,
            dram_watts: mem_gb * model.dram_watts_per_gb.max(0.0),
        };
        if !(resolved.cpu_idle_watts >= 0.0 && resolved.cpu_max_watts >= resolved.cpu_idle_watts) {
            return Err(SensorError::Invalid(format!(
                "estimate model needs 0 <= idle ({}) <= max ({}) watts",
                resolved.cpu_idle_watts, resolved.cpu_max_watts
            )));
        }
        let mut domains = vec![DomainInfo {
            id: "cpu:estimated".into(),
            kind: DomainKind::Cpu,
            provenance: Provenance::Estimated,
        }];
        if resolved.dram_watts > 0.0 {
            domains.push(DomainInfo {
                id: "dram:estimated".into(),
                kind: DomainKind::Dram,
                provenance: Provenance::Estimated,
            });
        }
        Ok(EstimateSensor {
            stat,
            model: resolved,
            refresh: Duration::from_millis(model.refresh_ms),
            domains,
            last_cpu: first,
            last_time: Instant::now(),
            cpu_joules: 0.0,
            dram_joules: 0.0,
        })
    }

    /// The resolved model figures.
    pub fn model(&self) -> ResolvedModel {
        self.model
    }

    fn refresh(&mut self, now: Instant) -> Result<(), SensorError> {
        let dt = now.saturating_duration_since(self.last_time).as_secs_f64();
        let cpu = read_stat(&mut self.stat)?;
        let total = cpu.total.saturating_sub(self.last_cpu.total);
        let busy = cpu.busy.saturating_sub(self.last_cpu.busy);
        let util = if total > 0 {
            (busy as f64 / total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let m = &self.model;
        self.cpu_joules += (m.cpu_idle_watts + (m.cpu_max_watts - m.cpu_idle_watts) * util) * dt;
        self.dram_joules += m.dram_watts * dt;
        self.last_cpu = cpu;
        self.last_time = now;
        Ok(())
    }
}

impl Sensor for EstimateSensor {
    fn name(&self) -> &'static str {
        "estimate"
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn sampled(&self) -> bool {
        // Energy = idle·Δt + (max − idle)·busy/total·Δt: linear in the interval's CPU ticks, so
        // reads between accounting ticks (which flush) would change nothing but the cost.
        false
    }

    fn flush(&mut self, now: Instant) {
        // Below one clock tick (10 ms) /proc/stat has nothing new; an error is retried by read.
        if now.saturating_duration_since(self.last_time) >= Duration::from_millis(10) {
            let _ = self.refresh(now);
        }
    }

    fn read(&mut self, now: Instant, cumulative: &mut [f64]) -> Result<(), SensorError> {
        let result = if now.saturating_duration_since(self.last_time) >= self.refresh {
            self.refresh(now)
        } else {
            Ok(())
        };
        if let Some(c) = cumulative.first_mut() {
            *c = self.cpu_joules;
        }
        if let Some(d) = cumulative.get_mut(1) {
            *d = self.dram_joules;
        }
        result
    }
}
