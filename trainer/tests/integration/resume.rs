//! `--resume` end to end, through the real binary (CPU, one thread each, as the tests of this
//! file run side by side; BBBP's first 300 rows, 8 epochs):
//! a run killed with SIGKILL in the middle and resumed with the same flags gives the log and the
//! weights of an uninterrupted run, bit for bit — plain fine-tuning with the in-process meter
//! (whose cumulative figures must go on across the restart), and MolPeg pruning (whose reference
//! model and scores are part of the saved state). Misuse gets clear errors: a finished run,
//! other flags, a damaged or missing state, no `--out`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const EPOCHS: usize = 8;

/// `anges-train` on the CPU with one thread (libtorch's threads spin-wait when the parallel
/// tests oversubscribe the cores) over the shared datasets, `out` as its run directory.
fn command(flags: &[&str], out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anges-train"));
    cmd.args(["--dataset", "bbbp", "--max-rows", "300", "--seed", "3"])
        .args(["--epochs", &EPOCHS.to_string()])
        .args(["--device", "cpu", "--threads", "1", "--random-init"])
        .args(flags)
        .arg("--out")
        .arg(out)
        .env("ANGES_DATA_DIR", common::moleculenet_dir())
        .env("ANGES_LOG", "info")
        .env_remove("ANGES_METER_SOCKET");
    cmd
}

fn run(flags: &[&str], out: &Path) -> Output {
    command(flags, out).output().expect("run anges-train")
}

fn succeed(flags: &[&str], out: &Path) -> Output {
    let o = run(flags, out);
    assert!(
        o.status.success(),
        "anges-train {flags:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs and asserts a clean failure (exit 1, no panic); returns stderr.
fn fail(flags: &[&str], out: &Path) -> String {
    let o = run(flags, out);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "anges-train {flags:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

pub(crate) fn epochs(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("epochs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an epoch record"))
        .collect()
}

/// What must agree bit for bit between two runs of the same flags (not time or energy).
pub(crate) fn figures(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            serde_json::json!([
                r["epoch"],
                r["train_loss"],
                r["valid"],
                r["test"],
                r["best"],
                r["samples_used"]
            ])
        })
        .collect()
}

/// Starts the run, kills it (SIGKILL) once it has logged 3 epochs; asserts it was really
/// interrupted: no summary, fewer than all epochs, a saved state.
fn start_and_kill(flags: &[&str], out: &Path) {
    let logged = common::kill_once(command(flags, out), || epochs(out).len(), 3);
    assert!(
        (3..EPOCHS).contains(&logged),
        "interrupted after {logged} of {EPOCHS} epochs"
    );
    assert!(!out.join("summary.json").exists());
    assert!(out.join("resume.safetensors").is_file());
}

/// The `anges.resume` metadata of a state file (safetensors: an 8-byte length, a JSON header).
fn saved_progress(path: &Path) -> Value {
    let data = bytes(path);
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&data[8..8 + n]).unwrap();
    let text = header["__metadata__"]["anges.resume"]
        .as_str()
        .expect("metadata");
    serde_json::from_str(text).unwrap()
}

pub(crate) fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// An interrupted and resumed run against an uninterrupted one with `flags`.
fn resumed_equals_uninterrupted(flags: &[&str]) -> (tempfile::TempDir, tempfile::TempDir) {
    resumed_after(flags, |_| {})
}

/// [`resumed_equals_uninterrupted`], calling `meanwhile` on the interrupted run's folder before
/// it resumes (what an upgrade of anges-train between the two processes would change).
fn resumed_after(
    flags: &[&str],
    meanwhile: impl Fn(&Path),
) -> (tempfile::TempDir, tempfile::TempDir) {
    let straight = tempfile::tempdir().unwrap();
    let broken = tempfile::tempdir().unwrap();
    succeed(flags, straight.path());
    start_and_kill(flags, broken.path());
    meanwhile(broken.path());
    // When the saved epoch is the best so far, a crash between the state's write and the best
    // weights' may leave best.safetensors an epoch behind: simulate it, the resumed run must
    // write them again.
    let progress = saved_progress(&broken.path().join("resume.safetensors"));
    if progress["best_epoch"] == progress["epochs"] {
        std::fs::remove_file(broken.path().join("best.safetensors")).unwrap();
    }
    let out = succeed(&[flags, &["--resume"]].concat(), broken.path());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming"), "{log}");

    let (a, b) = (epochs(straight.path()), epochs(broken.path()));
    assert_eq!(b.len(), EPOCHS);
    let (fa, fb) = (figures(&a), figures(&b));
    if let Some(i) = (0..EPOCHS).find(|&i| fa[i] != fb[i]) {
        panic!(
            "epoch {} differs:\nuninterrupted {}\nresumed       {}",
            i + 1,
            fa[i],
            fb[i]
        );
    }
    for weights in ["final.safetensors", "best.safetensors"] {
        assert!(
            bytes(&straight.path().join(weights)) == bytes(&broken.path().join(weights)),
            "{weights} differs"
        );
    }
    let (sa, sb) = (summary(straight.path()), summary(broken.path()));
    assert_eq!(sa["best_epoch"], sb["best_epoch"]);
    assert_eq!(sa["best_test"], sb["best_test"]);
    assert_eq!(sa["epochs_run"], sb["epochs_run"]);
    // The state goes when the run ends; the CSV log has a row per epoch.
    assert!(!broken.path().join("resume.safetensors").exists());
    let csv = std::fs::read_to_string(broken.path().join("epochs.csv")).unwrap();
    assert_eq!(csv.lines().count(), EPOCHS + 1);
    (straight, broken)
}

#[test]
fn a_killed_run_resumes_bit_identically_and_its_meter_goes_on() {
    let flags = ["--meter", "local"];
    let (_straight, broken) = resumed_equals_uninterrupted(&flags);
    // Energy: every epoch metered, the cumulative figures never go back across the restart and
    // end at the summary's total; the run's seconds cover both processes.
    let records = epochs(broken.path());
    let cumulative: Vec<f64> = records
        .iter()
        .map(|r| r["cumulative_j"].as_f64().expect("metered"))
        .collect();
    assert!(
        cumulative.windows(2).all(|w| w[1] >= w[0]),
        "{cumulative:?}"
    );
    let increments: f64 = records
        .iter()
        .map(|r| r["energy_j"].as_f64().unwrap())
        .sum();
    let s = summary(broken.path());
    // The run's total is its epochs' plus what the meter charged after the last one.
    let tail = s["tail_j"]
        .as_f64()
        .expect("the local meter's final totals");
    let total = s["energy_j"].as_f64().unwrap();
    assert!(
        tail >= 0.0 && tail < 0.5 * total,
        "tail {tail} J of {total} J"
    );
    assert!(total > 0.0 && (total - tail - cumulative[EPOCHS - 1]).abs() < 1e-9);
    assert!(
        (increments + tail - total).abs() < 1e-6 * total,
        "{increments} + {tail} vs {total}"
    );
    let epoch_seconds: f64 = records.iter().map(|r| r["seconds"].as_f64().unwrap()).sum();
    assert!(s["seconds"].as_f64().unwrap() >= epoch_seconds);

    // Misuse: the run has finished now.
    let err = fail(&["--meter", "local", "--resume"], broken.path());
    assert!(err.contains("has finished"), "{err}");
}

/// Also a run interrupted under an earlier anges-train, whose `config.json` recorded the flags
/// as given (`"args"`, nested by flag group) rather than the resolved configuration: the resumed
/// run migrates it, accepts the same flags and refuses others.
#[test]
fn a_killed_molpeg_run_resumes_bit_identically_even_from_the_older_config_layout() {
    let flags = ["--meter", "off", "--prune", "molpeg", "--keep-ratio", "0.5"];
    let (_straight, broken) = resumed_after(&flags, |dir| {
        let path = dir.join("config.json");
        let new: Value = serde_json::from_slice(&bytes(&path)).unwrap();
        let old = first_layout(&new);
        std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        // What the migration reads must still tell other flags apart.
        let other = [
            "--meter",
            "off",
            "--prune",
            "molpeg",
            "--keep-ratio",
            "0.3",
            "--resume",
        ];
        let err = fail(&other, dir);
        assert!(err.contains("prune.keep_ratio: 0.5 then, 0.3 now"), "{err}");
    });
    let config: Value = serde_json::from_slice(&bytes(&broken.path().join("config.json"))).unwrap();
    assert!(
        config.get("args").is_some(),
        "the run's own file is left as it was"
    );
}

/// `config.json` as anges-train wrote it before the configuration types: the flags under
/// `"args"` (for a run with the default `--stop full`).
fn first_layout(new: &Value) -> Value {
    let c = &new["config"];
    let mut model = c["model"].clone();
    model["threads"] = c["compute"]["threads"].clone();
    serde_json::json!({
        "args": {
            "data": c["data"],
            "model": model,
            "train": c["train"],
            "stop": {
                "stop": "full", "alpha": 0.9, "beta": 0.2, "warmup": 5,
                "variant": {"ema_init": 0.001, "anges_order": "update-then-compare",
                            "anges_consecutive": 1},
                "patience": 10, "min_delta": 0.0
            },
            "prune": c["prune"],
            "meter": c["meter"],
            "out": c["out"],
        },
        "resolved": new["resolved"],
    })
}

#[test]
fn resume_refuses_other_flags_a_damaged_or_missing_state_and_no_out() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--meter", "off"];
    start_and_kill(&flags, dir.path());
    // Other flags: each difference named; nothing of the run is touched.
    let before = bytes(&dir.path().join("epochs.jsonl"));
    let err = fail(&["--meter", "off", "--lr", "0.01", "--resume"], dir.path());
    assert!(err.contains("train.lr: 0.001 then, 0.01 now"), "{err}");
    assert_eq!(bytes(&dir.path().join("epochs.jsonl")), before);
    // Other data behind the same flags: a copy of BBBP with one label flipped, given with
    // --data-dir (a flag that may change on resume), is refused, the run left as it was.
    let data = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(common::moleculenet_dir().join("BBBP.csv")).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    assert!(lines[0].ends_with(",p_np"), "{}", lines[0]);
    let (smiles, label) = lines[1].rsplit_once(',').expect("smiles,p_np");
    lines[1] = format!("{smiles},{}", if label == "1" { "0" } else { "1" });
    std::fs::write(data.path().join("BBBP.csv"), lines.join("\n") + "\n").unwrap();
    let other_data = [
        "--meter",
        "off",
        "--resume",
        "--data-dir",
        path(data.path()),
    ];
    let err = fail(&other_data, dir.path());
    assert!(
        err.contains("does not hold the data the run started on"),
        "{err}"
    );
    assert_eq!(bytes(&dir.path().join("epochs.jsonl")), before);
    // A damaged state: a clear error naming the file.
    let state = dir.path().join("resume.safetensors");
    let good = bytes(&state);
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let err = fail(&["--meter", "off", "--resume"], dir.path());
    assert!(err.contains("resume.safetensors"), "{err}");
    // No saved state.
    std::fs::remove_file(&state).unwrap();
    let err = fail(&["--meter", "off", "--resume"], dir.path());
    assert!(err.contains("no resume.safetensors"), "{err}");
    // --resume needs --out (a usage error from the argument parser).
    let o = Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .args(["--dataset", "bbbp", "--resume"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}
