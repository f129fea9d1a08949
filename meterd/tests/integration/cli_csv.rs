//! `anges-meter run --csv FILE` (issue 28, item 4): the real CLI meters a command through the
//! real daemon and appends one row of CodeCarbon's `emissions.csv` whose figures agree with what
//! it printed; a second run appends under the same header.

use std::os::unix::fs::PermissionsExt;

use anges_common::codecarbon::HEADER;

use crate::abuse::{ALICE, SystemDaemon, meter_cli};

#[test]
fn run_appends_a_codecarbon_row_per_command() {
    let daemon = SystemDaemon::start("", &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let csv = dir.path().join("emissions.csv");
    for _ in 0..2 {
        let out = meter_cli(ALICE, daemon.socket())
            .args(["run", "--name", "busy", "--csv"])
            .arg(&csv)
            // About a second of CPU: several accounting ticks (10 per second) charge the job.
            .args([
                "--",
                "sh",
                "-c",
                "i=0; while [ $i -lt 800000 ]; do i=$((i+1)); done",
            ])
            .output()
            .expect("run anges-meter");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("g CO2-eq"), "{stderr}");
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], HEADER);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |row: &csv::StringRecord, name: &str| -> f64 {
        let i = header.iter().position(|h| h == name).unwrap();
        row[i]
            .parse()
            .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", &row[i]))
    };
    for row in reader.records() {
        let row = row.unwrap();
        assert_eq!(
            &row[header.iter().position(|h| h == "project_name").unwrap()],
            "anges-meter"
        );
        assert_eq!(
            &row[header.iter().position(|h| h == "run_id").unwrap()],
            "busy"
        );
        let (kwh, kg, s) = (
            col(&row, "energy_consumed"),
            col(&row, "emissions"),
            col(&row, "duration"),
        );
        assert!(kwh > 0.0 && kg > 0.0 && s > 0.0, "{row:?}");
        let parts = col(&row, "cpu_energy") + col(&row, "ram_energy") + col(&row, "gpu_energy");
        assert!((parts - kwh).abs() <= 1e-12 + 1e-9 * kwh, "{row:?}");
        assert!((col(&row, "emissions_rate") - kg / s).abs() <= 1e-15 + 1e-9 * kg / s);
        assert!(col(&row, "pue") >= 1.0);
    }
}
