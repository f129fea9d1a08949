//! Helpers for the end-to-end tests: locating the workspace's binaries and shared inputs.
//!
//! The tests run the real `anges-meterd` and `anges-train` executables that Cargo built for the
//! same profile as the test itself (`target/<profile>/`). When one is missing (e.g. only this
//! package's tests were asked for), it is built with the same Cargo and profile first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Failure to find or build a workspace binary.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The test executable's own path could not be read.
    #[error("cannot locate the test executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// Building the missing binary failed.
    #[error("building {bin} failed: {detail}")]
    Build {
        /// The binary that was being built.
        bin: String,
        /// What went wrong.
        detail: String,
    },
}

/// `target/<profile>` of the running test executable (`target/<profile>/deps/<test>`).
pub fn profile_dir() -> Result<PathBuf, LocateError> {
    let exe = std::env::current_exe().map_err(LocateError::CurrentExe)?;
    let deps = exe.parent().unwrap_or(Path::new("."));
    Ok(deps.parent().unwrap_or(deps).to_path_buf())
}

/// Path of the workspace binary `bin` from package `package`, built for this test's profile.
pub fn binary(package: &str, bin: &str) -> Result<PathBuf, LocateError> {
    let dir = profile_dir()?;
    let path = dir.join(bin);
    if path.is_file() {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", bin]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| LocateError::Build {
        bin: bin.to_owned(),
        detail: e.to_string(),
    })?;
    if !status.success() || !path.is_file() {
        return Err(LocateError::Build {
            bin: bin.to_owned(),
            detail: format!("cargo: {status}"),
        });
    }
    Ok(path)
}

/// The repository root (parent of this package's folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(".."))
        .to_path_buf()
}

/// `../shared` beside the repository: datasets, checkpoints and corpora the tests read.
pub fn shared_dir() -> PathBuf {
    repo_root()
        .parent()
        .unwrap_or(Path::new(".."))
        .join("shared")
}
