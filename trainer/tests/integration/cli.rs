//! The `anges-train` binary as a user starts it: it restarts itself once with a bounded OpenMP
//! spin count (libgomp reads it before `main`, so only a new process image can change it),
//! keeps the user's own OpenMP settings, and documents both in `--help`.

use std::process::{Command, Output};

/// Runs `anges-train` on a dataset that does not exist (it fails fast, after logging the
/// runtime line) with the OpenMP variables removed and then `env` set.
fn run_failing_job(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anges-train"));
    cmd.args([
        "--dataset",
        "no-such-dataset",
        "--meter",
        "off",
        // The runtime line is a start-up detail: debug level.
        "-v",
    ])
    .arg("--data-dir")
    .arg(dir.path())
    .env_remove("GOMP_SPINCOUNT")
    .env_remove("OMP_WAIT_POLICY")
    .env_remove("ANGES_LOG")
    .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The libtorch runtime line the binary logs at start-up.
fn runtime_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.contains("libtorch:"))
        .unwrap_or_else(|| panic!("no runtime line in:\n{stderr}"))
        .to_owned()
}

#[test]
fn restarts_with_a_bounded_spin_count() {
    let out = run_failing_job(&[]);
    let line = runtime_line(&out);
    assert!(
        line.contains("OMP_WAIT_POLICY=unset GOMP_SPINCOUNT=1000"),
        "the restarted process should see the bounded spin count: {line}"
    );
    // The restart changes nothing else: the same arguments reach the job, which fails as it
    // would have, naming the dataset.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-dataset"), "{stderr}");
    assert!(!stderr.contains("could not restart"), "{stderr}");
}

#[test]
fn keeps_the_users_openmp_settings() {
    let line = runtime_line(&run_failing_job(&[("OMP_WAIT_POLICY", "PASSIVE")]));
    assert!(
        line.contains("OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=unset"),
        "{line}"
    );
    let line = runtime_line(&run_failing_job(&[("GOMP_SPINCOUNT", "300000")]));
    assert!(
        line.contains("OMP_WAIT_POLICY=unset GOMP_SPINCOUNT=300000"),
        "{line}"
    );
}

#[test]
fn help_explains_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["GOMP_SPINCOUNT=1000", "OMP_WAIT_POLICY", "ANGES_DATA_DIR"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
