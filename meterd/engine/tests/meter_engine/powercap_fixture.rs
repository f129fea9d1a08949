//! Acceptance: fixture powercap trees, advanced by the test (with a wrap), give exactly the
//! injected energies, through the sensor and through the whole engine; nested/duplicate zones are
//! not double counted.

use std::time::{Duration, Instant};

use anges_meter_engine::carbon::IntensitySource;
use anges_meter_engine::engine::Engine;
use anges_meter_engine::root::SysRoot;
use anges_meter_engine::sensors::powercap::PowercapSensor;
use anges_meter_engine::sensors::{DomainKind, Provenance, Sensor, SensorChoice};

use crate::common::{powercap_zone, test_config, write};

const MAX: u64 = 262_143_328_850;

/// A two-package machine with core/uncore/psys/mmio zones that must be ignored.
fn fixture(root: &std::path::Path) {
    powercap_zone(root, "intel-rapl:0", "package-0", 1_000_000, MAX);
    powercap_zone(root, "intel-rapl:0:0", "core", 500, MAX);
    powercap_zone(root, "intel-rapl:0:1", "uncore", 500, MAX);
    powercap_zone(root, "intel-rapl:0:2", "dram", 2_000_000, MAX);
    powercap_zone(root, "intel-rapl:1", "package-1", MAX - 3_000_000, MAX);
    powercap_zone(root, "intel-rapl:2", "psys", 77, MAX);
    powercap_zone(root, "intel-rapl-mmio:0", "package-0", 123, MAX);
}

fn set(root: &std::path::Path, dir: &str, uj: u64) {
    write(
        root,
        &format!("sys/class/powercap/{dir}/energy_uj"),
        &format!("{uj}\n"),
    );
}

#[test]
fn sensor_reads_exact_energies_across_a_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    let mut s = PowercapSensor::open(&SysRoot::new(root)).unwrap();
    let ids: Vec<&str> = s.domains().iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["cpu:package-0", "cpu:package-1", "dram:package-0"]);
    assert!(
        s.domains()
            .iter()
            .all(|d| d.provenance == Provenance::Measured)
    );
    assert_eq!(s.domains()[2].kind, DomainKind::Dram);

    let mut out = [0.0; 3];
    s.read(Instant::now(), &mut out).unwrap();
    assert_eq!(out, [0.0, 0.0, 0.0]);
    // +5 J on package 0; package 1 wraps: 3 J to the top then 4 J past zero = 7 J; +0.25 J DRAM.
    set(root, "intel-rapl:0", 6_000_000);
    set(root, "intel-rapl:1", 4_000_000);
    set(root, "intel-rapl:0:2", 2_250_000);
    s.read(Instant::now(), &mut out).unwrap();
    assert_eq!(out, [5.0, 7.0, 0.25]);
    // A garbage value is an error, and the last good cumulative values stay in place.
    write(
        root,
        "sys/class/powercap/intel-rapl:0/energy_uj",
        "garbage\n",
    );
    assert!(s.read(Instant::now(), &mut out).is_err());
    assert_eq!(out, [5.0, 7.0, 0.25]);
    set(root, "intel-rapl:0", 7_000_000);
    s.read(Instant::now(), &mut out).unwrap();
    assert_eq!(out, [6.0, 7.0, 0.25]);
}

#[test]
fn missing_powercap_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let err = PowercapSensor::open(&SysRoot::new(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("powercap absent"), "{err}");
    write(dir.path(), "sys/class/powercap/intel-rapl:0/name", "psys\n");
    let err = PowercapSensor::open(&SysRoot::new(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no intel-rapl package or dram zone"), "{err}");
}

#[test]
fn engine_integrates_injected_energy_with_read_errors_and_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fixture(root);
    // A fixture /proc/stat so the tracker has a machine view (idle machine).
    write(
        root,
        "proc/stat",
        "cpu  0 0 0 100 0 0 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0 0 0\n",
    );
    let mut cfg = test_config(root);
    cfg.sensor = SensorChoice::Powercap;
    cfg.intensity = IntensitySource::Constant(360.0);
    cfg.pue = 1.5;
    let engine = Engine::start(cfg).unwrap();
    let t0 = engine.wait_for_tick(0, Duration::from_secs(5));
    // Step 1: 10 J on package 0, a 7 J wrap on package 1, 1 J DRAM.
    set(root, "intel-rapl:0", 11_000_000);
    set(root, "intel-rapl:1", 4_000_000);
    set(root, "intel-rapl:0:2", 3_000_000);
    engine.wait_for_tick(t0 + 2, Duration::from_secs(5));
    // Step 2: an unreadable counter for a while (errors counted), then 2.5 J more.
    write(root, "sys/class/powercap/intel-rapl:0/energy_uj", "\n");
    let t = engine.tick();
    engine.wait_for_tick(t + 2, Duration::from_secs(5));
    set(root, "intel-rapl:0", 13_500_000);
    let t = engine.tick();
    engine.wait_for_tick(t + 2, Duration::from_secs(5));
    let m = engine.machine();
    let j = |id: &str| m.domains[id].joules;
    assert!((j("cpu:package-0") - 12.5).abs() < 1e-9, "{m:?}");
    assert!((j("cpu:package-1") - 7.0).abs() < 1e-9, "{m:?}");
    assert!((j("dram:package-0") - 1.0).abs() < 1e-9, "{m:?}");
    assert!((m.joules - 20.5).abs() < 1e-9);
    // CO2 = J / 3.6e6 × 360 g/kWh × 1.5.
    assert!(
        (m.grams - 20.5 / 3.6e6 * 360.0 * 1.5).abs() < 1e-12,
        "{}",
        m.grams
    );
    assert_eq!(m.intensity_g_per_kwh, 360.0);
    // No job ran: everything is unattributed, exactly.
    for (id, d) in &m.domains {
        assert!((m.unattributed[id].joules - d.joules).abs() < 1e-12);
    }
    let h = engine.health();
    assert!(h.read_errors > 0, "{h:?}");
    // The counter is read at every accounting tick (six waited for above), not between them.
    assert!(h.samples >= 6, "{h:?}");
    engine.shutdown().unwrap();
    assert!(!engine.health().running);
}
