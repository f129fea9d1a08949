//! Carbon intensity on the trainer's side and the CodeCarbon-compatible `emissions.csv`, through
//! the real binary: one-epoch GIN runs on BBBP's first 60 rows with the in-process meter
//! (`--meter local`), each reading an empty `--meter-config` so that no `meterd.toml` of the
//! machine or the user changes the figures.
//!
//! Seen failing before the change: the flags did not exist (clap refused `--intensity`), every
//! run used WORLD × PUE 1, and no `emissions.csv` was written.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use anges_common::codecarbon::HEADER;
use serde_json::Value;

/// `anges-train` for one epoch on the CPU with one thread, `flags` added, into `out`.
fn run(flags: &[&str], out: &Path) -> Output {
    let config = out.with_extension("meterd.toml");
    std::fs::write(&config, "").expect("write an empty meterd.toml");
    Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .args(["--dataset", "bbbp", "--max-rows", "60", "--epochs", "1"])
        .args(["--device", "cpu", "--threads", "1", "--random-init"])
        .arg("--meter-config")
        .arg(&config)
        .args(flags)
        .arg("--out")
        .arg(out)
        .env("ANGES_DATA_DIR", common::moleculenet_dir())
        .env("ANGES_LOG", "info")
        .env_remove("ANGES_METER_SOCKET")
        .output()
        .expect("run anges-train")
}

fn succeed(flags: &[&str], out: &Path) -> String {
    let o = run(flags, out);
    assert!(
        o.status.success(),
        "anges-train {flags:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn summary(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary JSON")
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `a ≈ b` within a relative `1e-9` (float rounding of the per-interval integration).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-15
}

/// The grams of a run are its joules at the intensity and PUE given, summary.json and the printed
/// summary say which, and emissions.csv holds the run in CodeCarbon's columns and units; a
/// second run into the same folder (`--overwrite`) appends a row under the one header.
#[test]
fn intensity_and_pue_flags_set_the_grams_and_emissions_csv_follows_codecarbon() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let flags = ["--meter", "local", "--intensity", "100", "--pue", "1.5"];
    let stdout = succeed(&flags, &out);
    let s = summary(&out);
    let (j, g) = (num(&s["energy_j"]), num(&s["co2_g"]));
    assert!(j > 0.0, "the run used energy: {s}");
    assert!(
        close(g, j / 3.6e6 * 100.0 * 1.5),
        "{g} g from {j} J at 100 g/kWh × 1.5"
    );
    let c = &s["carbon"];
    assert_eq!(num(&c["g_per_kwh"]), 100.0, "{c}");
    assert_eq!(num(&c["pue"]), 1.5, "{c}");
    assert_eq!(c["source"], "constant", "{c}");
    assert_eq!(c["origin"], "flag", "{c}");
    // epochs.csv states each epoch's charge per kWh: the intensity × PUE.
    let mut epochs = csv::Reader::from_path(out.join("epochs.csv")).expect("epochs.csv");
    let column = epochs
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "co2_g_per_kwh")
        .expect("a co2_g_per_kwh column");
    for row in epochs.records() {
        let charged: f64 = row.unwrap()[column].parse().expect("a number");
        assert!(
            close(charged, 150.0),
            "{charged} g/kWh charged, not 100 × 1.5"
        );
    }
    let h = &s["hardware"];
    assert!(h["sensors"].as_str().is_some_and(|t| !t.is_empty()), "{h}");
    assert!(
        stdout.contains("carbon intensity: 100 g/kWh (constant 100 g/kWh, flag), PUE 1.500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("starting weights: from scratch"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(out.join("emissions.csv")).expect("emissions.csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], HEADER);
    let columns: Vec<&str> = HEADER.split(',').collect();
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(fields.len(), columns.len(), "{}", lines[1]);
    let field = |name: &str| fields[columns.iter().position(|c| *c == name).unwrap()];
    let value = |name: &str| -> f64 { field(name).parse().unwrap() };
    assert!(close(value("energy_consumed") * 3.6e6, j), "{text}");
    assert!(close(value("emissions") * 1000.0, g), "{text}");
    assert!(
        close(
            value("emissions_rate"),
            value("emissions") / value("duration")
        ),
        "{text}"
    );
    assert!(
        close(
            value("cpu_energy") + value("gpu_energy") + value("ram_energy"),
            value("energy_consumed")
        ),
        "{text}"
    );
    assert!(close(value("duration"), num(&s["seconds"])), "{text}");
    assert!(
        close(
            value("cpu_power"),
            value("cpu_energy") * 3.6e6 / value("duration")
        ),
        "{text}"
    );
    assert_eq!(value("pue"), 1.5);
    assert_eq!(
        (
            field("tracking_mode"),
            field("on_cloud"),
            field("project_name")
        ),
        ("process", "N", "anges-train")
    );
    assert_eq!(field("run_id"), "run");
    // ISO 8601 without a zone, as CodeCarbon writes it.
    let ts = field("timestamp");
    assert_eq!((ts.len(), &ts[4..5], &ts[10..11]), (19, "-", "T"), "{ts}");

    succeed(&[&flags[..], &["--overwrite"]].concat(), &out);
    let text = std::fs::read_to_string(out.join("emissions.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one header, one row per run:\n{text}");
    assert_eq!(lines.iter().filter(|l| **l == HEADER).count(), 1);
}

/// `--region FR` charges the table's figure for France, and says so.
#[test]
fn region_flag_uses_the_tables_intensity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    succeed(&["--meter", "local", "--region", "FR"], &out);
    let s = summary(&out);
    let fr = anges_meter_engine::carbon::region_intensity("FR").unwrap();
    assert_ne!(fr, 481.0, "FR differs from WORLD");
    let (j, g) = (num(&s["energy_j"]), num(&s["co2_g"]));
    assert!(close(g, j / 3.6e6 * fr), "{g} g from {j} J at {fr} g/kWh");
    let c = &s["carbon"];
    assert_eq!(num(&c["g_per_kwh"]), fr, "{c}");
    assert_eq!(
        (&c["source"], &c["region"]),
        (&"region".into(), &"FR".into())
    );
    assert_eq!(num(&c["pue"]), 1.0, "{c}");
}

/// An unknown region fails at once, with the flag and the known codes, before any work (no
/// run folder).
#[test]
fn unknown_region_is_a_clear_error_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(&["--meter", "local", "--region", "XX"], &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("--region") && err.contains("unknown region \"XX\""),
        "{err}"
    );
    assert!(err.contains("FR"), "the known codes are listed: {err}");
    assert!(!out.exists(), "no work was done before the error");
}
