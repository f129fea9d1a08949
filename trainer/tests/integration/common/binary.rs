//! Running the real `anges-train` binary from the tests that drive it end to end (pre-training,
//! SELFIES): one place for the command line, the environment and the success or clean-failure
//! checks.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `anges-train` with `args` on the CPU with two threads, its caches in `cache`, the shared
/// datasets, info logs, and no meter socket inherited from the environment.
pub fn anges_train(args: &[&str], cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anges-train"));
    command
        .args(args)
        .args(["--device", "cpu", "--threads", "2"])
        .env("ANGES_CACHE_DIR", cache)
        .env("ANGES_DATA_DIR", super::moleculenet_dir())
        .env("ANGES_LOG", "info")
        .env_remove("ANGES_METER_SOCKET");
    command
}

/// The standard error of `out`, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `command` (started from `args`, named in the messages) and asserts it succeeded.
pub fn succeed(mut command: Command, args: &[&str]) -> Output {
    let out = command.output().expect("run anges-train");
    assert!(
        out.status.success(),
        "anges-train {args:?} failed:\n{}",
        stderr(&out)
    );
    out
}

/// Runs `command` (started from `args`) and asserts it failed cleanly: exit status 1, no
/// panic; returns its standard error.
pub fn fail(mut command: Command, args: &[&str]) -> String {
    let out = command.output().expect("run anges-train");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "anges-train {args:?}:\n{err}");
    assert!(
        !err.contains("panicked"),
        "anges-train {args:?} panicked:\n{err}"
    );
    err
}

/// The JSON document at `path`.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
