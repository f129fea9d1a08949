//! Saving and restoring cumulative totals so that no figure goes backwards across a restart.
//!
//! The state file (`state.json` in the state directory) is replaced atomically: a temporary file
//! in the same directory is written, renamed over the old one, so a reader (or a restart) sees the
//! old or the new state, never a mix. A durable save ([`save`]) also `fsync`s the file before the
//! rename and the directory after it; a quick one ([`save_with`] with `durable = false`) does not.
//! A quick save survives a crash of the process (`kill -9`, a panic, the OOM killer): the renamed
//! file is in the page cache, which the kernel writes back on its own. Only a power loss or a
//! kernel crash can lose quick saves made since the latest durable one. The daemon relies on this
//! to save the totals it publishes at every publication (so that published totals never go
//! backwards after a crash, and a crash loses at most one publication interval) while paying for
//! an `fsync` only every `persist_interval` (see `docs/meter.md`, "Persistence"). On start an absent file means a fresh meter; a file that cannot be parsed is renamed
//! to `state.json.corrupt-<unix seconds>` with an error log line naming both paths, and the meter
//! starts from zero (it never silently overwrites the evidence).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::jobs::{DomainTotals, JobId, JobTotals};

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Version of the state format.
pub const STATE_VERSION: u32 = 1;

/// A persisted job: its totals and what pins its root process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedJob {
    /// Cumulative totals.
    pub totals: JobTotals,
    /// Start time (clock ticks after boot) of the root PID when registered.
    pub root_start_ticks: Option<u64>,
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Next job id to hand out.
    pub next_job_id: u64,
    /// Machine per-domain totals.
    pub machine: BTreeMap<String, DomainTotals>,
    /// Unattributed per-domain totals.
    pub unattributed: BTreeMap<String, DomainTotals>,
    /// Registered jobs.
    pub jobs: BTreeMap<JobId, SavedJob>,
    /// Accounting ticks done over the meter's whole life.
    pub tick: u64,
    /// Unix time of the save.
    pub saved_at: f64,
}

/// Persistence failures.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// I/O on the state file or directory.
    #[error("state {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Serialisation failed (a bug, reported rather than panicking).
    #[error("cannot serialise state: {0}")]
    Serialise(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `state` to `dir/state.json` atomically and durably (temp + fsync + rename + fsync dir).
pub fn save(dir: &Path, state: &State) -> Result<(), PersistError> {
    save_with(dir, state, true)
}

/// Writes `state` to `dir/state.json` atomically (temp + rename); with `durable`, also `fsync`s
/// the file and the directory (see the module doc for what a save without it survives). Saves
/// of one directory must not run concurrently (the engine serialises them).
pub fn save_with(dir: &Path, state: &State, durable: bool) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(state)?;
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        if durable {
            f.sync_all().map_err(io_err(&tmp))?;
        }
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// Reads `dir/state.json`. `Ok(None)`: no state yet, or a corrupt file that was moved aside.
pub fn load(dir: &Path) -> Result<Option<State>, PersistError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let problem = match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.version == STATE_VERSION => return Ok(Some(s)),
        Ok(s) => format!(
            "unsupported state version {} (expected {STATE_VERSION})",
            s.version
        ),
        Err(e) => e.to_string(),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join(format!("{STATE_FILE}.corrupt-{stamp}"));
    std::fs::rename(&path, &aside).map_err(io_err(&path))?;
    tracing::error!(
        "state file {} is unreadable ({problem}); moved aside to {}; starting from zero totals",
        path.display(),
        aside.display()
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            version: STATE_VERSION,
            next_job_id: 3,
            machine: BTreeMap::new(),
            unattributed: BTreeMap::new(),
            jobs: BTreeMap::new(),
            tick: 42,
            saved_at: 1.0,
        }
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &state()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{ not json").unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("state.json.corrupt-"), "{aside:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap(),
            b"{ not json"
        );
    }

    #[test]
    fn missing_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }
}
