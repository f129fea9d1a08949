//! RAPL through the perf_event dynamic `power` PMU (the primary CPU source).
//!
//! Discovery reads `/sys/bus/event_source/devices/power/{type,cpumask,format,events/energy-*}`
//! (through `perf-event2`'s [`Dynamic`] builder, which also reads `.scale`). One counter is opened
//! per event and per CPU listed in `cpumask` (one CPU per package/die) with pid = −1. RAPL
//! rejects the default exclude flags, so kernel and hypervisor are included. Opening needs
//! CAP_PERFMON (or `perf_event_paranoid` ≤ 0); a refusal is reported as the reason to skip.
//!
//! Events used: `energy-pkg` (CPU package) and `energy-ram` (DRAM). `energy-cores` and
//! `energy-gpu` are inside the package and `energy-psys` contains it, so they are skipped.

use std::path::Path;
use std::time::Instant;

use perf_event::Counter;
use perf_event::events::Dynamic;

use super::{DomainInfo, DomainKind, Provenance, Sensor, SensorError};
use crate::root::SysRoot;

/// Where the power PMU lives, relative to the system root.
pub const POWER_PMU_DIR: &str = "/sys/bus/event_source/devices/power";

struct PerfCounter {
    counter: Counter,
    scale: f64,
    base: u64,
    last_joules: f64,
}

/// RAPL energy counters read through perf_event.
pub struct PerfSensor {
    domains: Vec<DomainInfo>,
    counters: Vec<PerfCounter>,
}

impl std::fmt::Debug for PerfSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfSensor")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// Parses a kernel CPU list such as `0`, `0,28` or `0-1,4`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, SensorError> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || SensorError::Invalid(format!("bad cpu list {text:?}"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

fn paranoid_level(root: &SysRoot) -> String {
    std::fs::read_to_string(root.path("/proc/sys/kernel/perf_event_paranoid"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn open_counter(
    pmu: &Path,
    event: &str,
    cpu: usize,
    root: &SysRoot,
) -> Result<PerfCounter, SensorError> {
    let mut builder = Dynamic::builder(pmu)
        .map_err(|e| SensorError::io(format!("perf power PMU {}", pmu.display()), e))?;
    builder
        .event(event)
        .map_err(|e| SensorError::io(format!("perf event {event}"), e))?;
    let scale = builder
        .scale()
        .map_err(|e| SensorError::io(format!("perf {event}.scale"), e))?
        .unwrap_or(1.0);
    let dynamic = builder
        .build()
        .map_err(|e| SensorError::Invalid(format!("perf event {event}: {e}")))?;
    let mut counter = perf_event::Builder::new(dynamic)
        .any_pid()
        .one_cpu(cpu)
        .include_kernel()
        .include_hv()
        .build()
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => SensorError::Invalid(format!(
                "perf_event_open({event}, cpu {cpu}) denied: needs CAP_PERFMON or \
                 perf_event_paranoid <= 0 (it is {})",
                paranoid_level(root)
            )),
            _ => SensorError::io(format!("perf_event_open({event}, cpu {cpu})"), e),
        })?;
    counter
        .enable()
        .map_err(|e| SensorError::io(format!("enable perf {event}"), e))?;
    let raw = counter
        .read()
        .map_err(|e| SensorError::io(format!("read perf {event}"), e))?;
    Ok(PerfCounter {
        counter,
        scale,
        base: raw,
        last_joules: 0.0,
    })
}

impl PerfSensor {
    /// Discovers the power PMU under `root` and opens its counters.
    pub fn open(root: &SysRoot) -> Result<Self, SensorError> {
        let pmu = root.path(POWER_PMU_DIR);
        if !pmu.join("type").exists() {
            return Err(SensorError::Invalid(format!(
                "perf power PMU absent ({} not found)",
                pmu.display()
            )));
        }
        let cpumask = std::fs::read_to_string(pmu.join("cpumask"))
            .map_err(|e| SensorError::io(format!("{}/cpumask", pmu.display()), e))?;
        let cpus = parse_cpu_list(&cpumask)?;
        let mut domains = Vec::new();
        let mut counters = Vec::new();
        for (event, kind, prefix) in [
            ("energy-pkg", DomainKind::Cpu, "cpu"),
            ("energy-ram", DomainKind::Dram, "dram"),
        ] {
            if !pmu.join("events").join(event).exists() {
                continue;
            }
            for (package, &cpu) in cpus.iter().enumerate() {
                counters.push(open_counter(&pmu, event, cpu, root)?);
                domains.push(DomainInfo {
                    id: format!("{prefix}:package-{package}"),
                    kind,
                    provenance: Provenance::Measured,
                });
            }
        }
        if counters.is_empty() {
            return Err(SensorError::Invalid(format!(
                "perf power PMU has no energy-pkg/energy-ram event under {}/events",
                pmu.display()
            )));
        }
        Ok(PerfSensor { domains, counters })
    }
}

impl Sensor for PerfSensor {
    fn name(&self) -> &'static str {
        "perf"
    }

    fn sampled(&self) -> bool {
        // A 64-bit cumulative counter: read at every accounting tick, as powercap.
        false
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read(&mut self, _now: Instant, cumulative: &mut [f64]) -> Result<(), SensorError> {
        let mut first_error = None;
        for (c, out) in self.counters.iter_mut().zip(cumulative.iter_mut()) {
            match c.counter.read() {
                Ok(raw) => {
                    c.last_joules = c
                        .last_joules
                        .max(raw.saturating_sub(c.base) as f64 * c.scale)
                }
                Err(e) => {
                    first_error.get_or_insert(SensorError::io("read perf RAPL counter", e));
                }
            }
            *out = c.last_joules;
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0\n").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,28").unwrap(), vec![0, 28]);
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("x").is_err());
    }
}
