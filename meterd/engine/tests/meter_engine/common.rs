//! Helpers shared by the meterd integration tests: fixture trees and small waits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anges_meter_engine::engine::EngineConfig;
use anges_meter_engine::sensors::detect::GpuSelection;

/// Writes `content` to `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    p
}

/// A powercap zone directory `root/sys/class/powercap/<dir>` with a name, counter and range.
pub fn powercap_zone(root: &Path, dir: &str, name: &str, energy_uj: u64, max_uj: u64) -> PathBuf {
    let base = format!("sys/class/powercap/{dir}");
    write(root, &format!("{base}/name"), &format!("{name}\n"));
    write(
        root,
        &format!("{base}/max_energy_range_uj"),
        &format!("{max_uj}\n"),
    );
    write(
        root,
        &format!("{base}/energy_uj"),
        &format!("{energy_uj}\n"),
    )
}

/// An engine configuration for tests: no GPU, no persistence unless set, fast ticks.
pub fn test_config(root: &Path) -> EngineConfig {
    EngineConfig {
        sysfs_root: root.to_owned(),
        rate_hz: 200,
        attribution_hz: 20.0,
        scan_interval: Duration::from_millis(200),
        gpus: GpuSelection::None,
        ..EngineConfig::default()
    }
}
