//! Acceptance: the perf_event and NVML paths degrade with the right reason on this machine, and
//! auto-detection falls to the estimate and says why; forced sensors fail start-up with a reason.

use anges_meter_engine::engine::{Engine, EngineConfig, EngineError};
use anges_meter_engine::root::SysRoot;
use anges_meter_engine::sensors::SensorChoice;
use anges_meter_engine::sensors::detect::{GpuSelection, SensorConfig, SourceOutcome, detect};
use anges_meter_engine::sensors::estimate::EstimateModel;
use anges_meter_engine::sensors::nvml::{DEFAULT_LIBRARY, NvmlSensor};
use anges_meter_engine::sensors::perf::PerfSensor;

use crate::common::write;

fn has_power_pmu() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/power/type").exists()
}

#[test]
fn perf_path_reason_on_this_machine() {
    match PerfSensor::open(&SysRoot::default()) {
        Ok(s) => assert!(has_power_pmu(), "perf opened without a power PMU: {s:?}"),
        Err(e) => {
            let e = e.to_string();
            if has_power_pmu() {
                assert!(
                    e.contains("perf_event_open") || e.contains("no energy-pkg"),
                    "{e}"
                );
            } else {
                assert!(e.contains("perf power PMU absent"), "{e}");
            }
        }
    }
}

#[test]
fn perf_fixture_pmu_is_parsed_then_refused_by_the_kernel() {
    // A fake PMU with a type no kernel has: discovery and the perf-event2 builder succeed, the
    // syscall refuses, and the reason names perf_event_open.
    let dir = tempfile::tempdir().unwrap();
    let pmu = "sys/bus/event_source/devices/power";
    write(dir.path(), &format!("{pmu}/type"), "987654\n");
    write(dir.path(), &format!("{pmu}/cpumask"), "0\n");
    write(dir.path(), &format!("{pmu}/format/event"), "config:0-7\n");
    write(
        dir.path(),
        &format!("{pmu}/events/energy-pkg"),
        "event=0x02\n",
    );
    write(
        dir.path(),
        &format!("{pmu}/events/energy-pkg.scale"),
        "2.3283064365386962890625e-10\n",
    );
    let err = PerfSensor::open(&SysRoot::new(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("perf_event_open(energy-pkg, cpu 0)"), "{err}");
}

#[test]
fn nvml_path_reason_on_this_machine() {
    match NvmlSensor::open(DEFAULT_LIBRARY.as_ref(), None) {
        Ok(s) => eprintln!("NVML present here: {s:?}"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("not loadable (no NVIDIA driver)")
                    || e.contains("driver not loaded")
                    || e.contains("no GPU"),
                "{e}"
            );
        }
    }
    let err = NvmlSensor::open("/nonexistent/libnvidia-ml.so.1".as_ref(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/libnvidia-ml.so.1 not loadable (no NVIDIA driver)"),
        "{err}"
    );
}

#[test]
fn auto_falls_to_estimate_and_explains() {
    let d = detect(&SensorConfig {
        choice: SensorChoice::Auto,
        root: SysRoot::default(),
        estimate: EstimateModel::default(),
        gpus: GpuSelection::All,
        nvml_library: DEFAULT_LIBRARY.into(),
    })
    .unwrap();
    let lines: Vec<String> = d.report.iter().map(ToString::to_string).collect();
    assert_eq!(d.report.len(), 4, "{lines:#?}");
    let by = |name: &str| d.report.iter().find(|r| r.source == name).unwrap();
    let readable_rapl = !matches!(by("perf").outcome, SourceOutcome::Skipped { .. })
        || !matches!(by("powercap").outcome, SourceOutcome::Skipped { .. });
    if !readable_rapl {
        assert!(
            matches!(by("estimate").outcome, SourceOutcome::Used { .. }),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("perf: skipped: ")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("powercap: skipped: ")),
            "{lines:#?}"
        );
        assert!(
            d.sensors
                .iter()
                .all(|s| s.name() != "perf" && s.name() != "powercap")
        );
    }
    assert!(matches!(
        by("nvml").outcome,
        SourceOutcome::Used { .. } | SourceOutcome::Skipped { .. }
    ));
}

#[test]
fn forced_sensor_fails_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (choice, needle) in [
        (SensorChoice::Perf, "perf power PMU absent"),
        (SensorChoice::Powercap, "powercap absent"),
        (SensorChoice::Estimate, "/proc/stat"),
    ] {
        let cfg = EngineConfig {
            sensor: choice,
            sysfs_root: dir.path().to_owned(),
            gpus: GpuSelection::None,
            ..EngineConfig::default()
        };
        let err = Engine::start(cfg).unwrap_err();
        assert!(matches!(err, EngineError::Detect(_)), "{err}");
        let text = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(text.contains(needle), "{choice:?}: {text}");
    }
}
