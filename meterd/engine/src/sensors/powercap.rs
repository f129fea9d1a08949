//! RAPL through the powercap sysfs interface (`/sys/class/powercap/intel-rapl:*`, also on AMD).
//!
//! Zones used: top-level `intel-rapl:N` zones named `package-*` (CPU package) and their
//! `dram` sub-zones. Not used, to avoid double counting: `core`/`uncore` sub-zones (already inside
//! the package), `psys` (the whole SoC, which contains the packages) and the `intel-rapl-mmio:*`
//! zones (a second view of the same package counter). `energy_uj` wraps at
//! `max_energy_range_uj`; a wrap is unfolded so it never shows as negative or huge energy (this
//! assumes less than one full range passes between two reads: at 100 Hz that is seconds away from
//! any real range, which is hours).

use std::io;
use std::path::Path;
use std::time::Instant;

use super::{DomainInfo, DomainKind, Provenance, Sensor, SensorError};
use crate::root::{ReadableFile, SysRoot, read_parse};

/// Where powercap zones live, relative to the system root.
pub const POWERCAP_DIR: &str = "/sys/class/powercap";

/// One wrapping `energy_uj` counter.
#[derive(Debug)]
struct Zone {
    file: ReadableFile,
    max_uj: u64,
    last_uj: u64,
    total_uj: u128,
}

/// Unfolds a wrapping counter: energy (µJ) between readings `last` and `now` of a counter that
/// wraps at `max`.
pub fn wrapping_delta(last: u64, now: u64, max: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        max.saturating_sub(last).saturating_add(now)
    }
}

/// RAPL energy counters from powercap.
#[derive(Debug)]
pub struct PowercapSensor {
    domains: Vec<DomainInfo>,
    zones: Vec<Zone>,
}

fn zone_kind(dir_name: &str, zone_name: &str) -> Option<(DomainKind, String)> {
    let rest = dir_name.strip_prefix("intel-rapl:")?;
    let mut parts = rest.split(':');
    let package: u32 = parts.next()?.parse().ok()?;
    match (parts.next(), zone_name) {
        (None, name) if name.starts_with("package") => {
            Some((DomainKind::Cpu, format!("cpu:package-{package}")))
        }
        (Some(_), "dram") | (None, "dram") => {
            Some((DomainKind::Dram, format!("dram:package-{package}")))
        }
        _ => None,
    }
}

fn open_zone(dir: &Path) -> Result<Zone, SensorError> {
    let max_uj: u64 = read_parse(&dir.join("max_energy_range_uj"))
        .map_err(|e| SensorError::io(dir.join("max_energy_range_uj").display(), e))?;
    let path = dir.join("energy_uj");
    let mut file = ReadableFile::open(path.clone()).map_err(|e| unreadable(&path, e))?;
    let first = parse_uj(&mut file)?;
    Ok(Zone {
        file,
        max_uj,
        last_uj: first,
        total_uj: 0,
    })
}

fn unreadable(path: &Path, e: io::Error) -> SensorError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        SensorError::Invalid(format!(
            "powercap {} not readable: needs root (since Linux 5.10 energy_uj is 0400)",
            path.display()
        ))
    } else {
        SensorError::io(format!("powercap {}", path.display()), e)
    }
}

fn parse_uj(file: &mut ReadableFile) -> Result<u64, SensorError> {
    let path = file.path().to_owned();
    let text = file.read().map_err(|e| unreadable(&path, e))?;
    text.trim().parse().map_err(|e| {
        SensorError::Invalid(format!(
            "{}: bad counter {:?}: {e}",
            path.display(),
            text.trim()
        ))
    })
}

impl PowercapSensor {
    /// Discovers the RAPL zones under `root` and opens their counters.
    ///
    /// Fails with a reason fit for the start-up summary when there is nothing usable.
    pub fn open(root: &SysRoot) -> Result<Self, SensorError> {
        let base = root.path(POWERCAP_DIR);
        let entries = std::fs::read_dir(&base).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SensorError::Invalid(format!("powercap absent ({} not found)", base.display()))
            } else {
                SensorError::io(base.display(), e)
            }
        })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let Ok(name) = std::fs::read_to_string(dir.join("name")) else {
                continue;
            };
            if let Some((kind, id)) = zone_kind(&dir_name, name.trim()) {
                found.push((id, kind, dir));
            }
        }
        if found.is_empty() {
            return Err(SensorError::Invalid(format!(
                "powercap has no intel-rapl package or dram zone under {}",
                base.display()
            )));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        let mut domains = Vec::new();
        let mut zones = Vec::new();
        for (id, kind, dir) in found {
            zones.push(open_zone(&dir)?);
            domains.push(DomainInfo {
                id,
                kind,
                provenance: Provenance::Measured,
            });
        }
        Ok(PowercapSensor { domains, zones })
    }
}

impl Sensor for PowercapSensor {
    fn name(&self) -> &'static str {
        "powercap"
    }

    fn sampled(&self) -> bool {
        // A cumulative counter: the energy of an accounting interval is the difference of two
        // reads, whatever happens between them; reading it at every accounting tick (10 Hz)
        // loses nothing (a zone wraps after `max_energy_range_uj`, hundreds of kJ).
        false
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read(&mut self, _now: Instant, cumulative: &mut [f64]) -> Result<(), SensorError> {
        let mut first_error = None;
        for (zone, out) in self.zones.iter_mut().zip(cumulative.iter_mut()) {
            match parse_uj(&mut zone.file) {
                Ok(now_uj) => {
                    zone.total_uj += u128::from(wrapping_delta(zone.last_uj, now_uj, zone.max_uj));
                    zone.last_uj = now_uj;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            *out = zone.total_uj as f64 * 1e-6;
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_is_unfolded() {
        assert_eq!(wrapping_delta(10, 25, 100), 15);
        assert_eq!(wrapping_delta(90, 5, 100), 15);
        assert_eq!(wrapping_delta(7, 7, 100), 0);
    }

    #[test]
    fn zone_selection_avoids_double_counting() {
        assert_eq!(
            zone_kind("intel-rapl:0", "package-0").map(|z| z.1),
            Some("cpu:package-0".into())
        );
        assert_eq!(
            zone_kind("intel-rapl:1:2", "dram").map(|z| z.1),
            Some("dram:package-1".into())
        );
        assert!(zone_kind("intel-rapl:0:0", "core").is_none());
        assert!(zone_kind("intel-rapl:0:1", "uncore").is_none());
        assert!(zone_kind("intel-rapl:1", "psys").is_none());
        assert!(zone_kind("intel-rapl-mmio:0", "package-0").is_none());
    }
}
