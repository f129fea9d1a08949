//! A run is never lost, through the real binary (CPU, one thread, BBBP's first 60 rows): a
//! folder that holds a run is refused, left byte for byte as it was, unless `--overwrite`;
//! Ctrl-C says how to continue; `anges-train --resume DIR` alone continues the run from its own
//! record to what `--resume` with the run's flags in full gives, and refuses a flag that
//! contradicts the record, even one given at its default value.
//!
//! Seen failing before the change: the second run into a finished run's folder exited 0 and
//! replaced its logs; Ctrl-C exited 130 without a word; `--resume DIR` was a usage error.

use crate::common;
use crate::resume::{bytes, epochs, figures, summary};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The run's flags but its length and folder.
const FLAGS: &[&str] = &[
    "--dataset",
    "bbbp",
    "--max-rows",
    "60",
    "--seed",
    "1",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--random-init",
    "--meter",
    "off",
];

/// `anges-train FLAGS… extra…` with the shared datasets and no meter socket from outside.
fn command(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anges-train"));
    cmd.args(extra)
        .env("ANGES_DATA_DIR", common::moleculenet_dir())
        .env("ANGES_LOG", "info")
        .env_remove("ANGES_METER_SOCKET");
    cmd
}

/// The run's flags with `--epochs epochs --out dir` and `extra`.
fn run_args(epochs: usize, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
    args.extend(["--epochs".into(), epochs.to_string(), "--out".into()]);
    args.push(dir.to_str().expect("a UTF-8 temporary path").to_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn output(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(&args).output().expect("run anges-train")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn succeed(args: &[String]) -> Output {
    let o = output(args);
    assert!(o.status.success(), "{args:?} failed:\n{}", stderr(&o));
    o
}

/// Runs and asserts a clean refusal (exit 1, no panic); returns stderr.
fn refused(args: &[String]) -> String {
    let o = output(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Every file of `dir` (flat) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes(&e.path()),
            )
        })
        .collect()
}

#[test]
fn a_folder_holding_a_run_is_refused_unless_overwritten() {
    // An existing empty folder is fine to use.
    let dir = tempfile::tempdir().unwrap();
    succeed(&run_args(1, dir.path(), &[]));
    let before = snapshot(dir.path());
    assert!(before.contains_key("summary.json"), "{:?}", before.keys());

    // The same command again: refused, nothing touched.
    let err = refused(&run_args(1, dir.path(), &[]));
    assert!(
        err.contains("holds a finished run") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(
        snapshot(dir.path()) == before,
        "the refused run changed the folder"
    );

    // --overwrite replaces it.
    succeed(&run_args(2, dir.path(), &["--overwrite"]));
    assert_eq!(epochs(dir.path()).len(), 2);
    assert_ne!(snapshot(dir.path()), before);
}

/// Starts the run of `args`, waits until it has saved a state, and sends it SIGINT as Ctrl-C
/// would; returns its output.
fn interrupt(args: &[String], dir: &Path) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start anges-train");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !dir.join("resume.safetensors").is_file() {
        assert!(Instant::now() < deadline, "no saved state in 5 minutes");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    child.wait_with_output().expect("reap")
}

#[test]
fn ctrl_c_says_how_to_continue_and_resume_dir_alone_finishes_the_run() {
    const EPOCHS: usize = 30;
    let root = tempfile::tempdir().unwrap();
    let (alone, full) = (root.path().join("alone"), root.path().join("full"));
    let out = interrupt(&run_args(EPOCHS, &alone, &[]), &alone);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let hint = format!("; continue with: anges-train --resume {}", alone.display());
    assert!(
        err.contains("interrupted after epoch ") && err.contains(&hint),
        "{err}"
    );
    let saved = epochs(&alone).len();
    assert!(saved < EPOCHS && !alone.join("summary.json").exists());

    // The same command again does not destroy the interrupted run: it points at --resume.
    let state = bytes(&alone.join("resume.safetensors"));
    let err = refused(&run_args(EPOCHS, &alone, &[]));
    assert!(
        err.contains("interrupted run") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(bytes(&alone.join("resume.safetensors")), state);

    // Flags that contradict the record are refused, one given at its default value too.
    std::fs::create_dir(&full).unwrap();
    for (name, data) in snapshot(&alone) {
        std::fs::write(full.join(name), data).unwrap();
    }
    let dir = alone.to_str().unwrap().to_owned();
    for (flags, said) in [
        (["--lr", "0.01"], "train.lr: 0.001 then, 0.01 now"),
        (["--epochs", "100"], "train.epochs: 30 then, 100 now"),
    ] {
        let args: Vec<String> = ["--resume", &dir, flags[0], flags[1]]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let err = refused(&args);
        assert!(err.contains(said), "{err}");
    }
    assert_eq!(bytes(&alone.join("resume.safetensors")), state);

    // `--resume DIR` alone (not even the data folder's variable) against the flags in full.
    let o = command(&["--resume", &dir])
        .env_remove("ANGES_DATA_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "--resume DIR:\n{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    succeed(&run_args(EPOCHS, &full, &["--resume"]));
    let (a, b) = (epochs(&alone), epochs(&full));
    assert_eq!(a.len(), EPOCHS);
    assert_eq!(figures(&a), figures(&b));
    assert!(bytes(&alone.join("final.safetensors")) == bytes(&full.join("final.safetensors")));
    assert_eq!(summary(&alone)["best_test"], summary(&full)["best_test"]);
    assert!(saved >= 1);
}
