//! Saving and restoring cumulative totals so that no figure goes backwards across a restart.
//!
//! Two files in the state directory, both read at start, the newer (by accounting tick) wins:
//!
//! - `state.json`, the durable state: replaced atomically (a temporary file written, `fsync`ed,
//!   renamed over the old one, the directory `fsync`ed), so a restart sees the old or the new
//!   state, never a mix. Written every `persist_interval`, at start and at shutdown ([`save`]).
//! - the publication journal ([`Journal`]): two slot files, `published.0` and `published.1`,
//!   opened once and overwritten in place alternately with the state as it is published (a
//!   header with a sequence number, the length and an FNV-1a hash of the JSON payload; one
//!   `pwrite`, no `fsync`, no new file, no rename). A slot torn by a crash in the middle of a
//!   write fails its hash and the other slot (one publication older) is used. A journal write
//!   survives a crash of the process (`kill -9`, a panic, the OOM killer): it is in the page
//!   cache, which the kernel writes back on its own. Only a power loss or a kernel crash can lose
//!   what was journalled since the latest durable save.
//!
//! The daemon journals the totals at every publication, so published totals never go backwards
//! after a crash and a crash loses at most one publication interval, while it pays for an
//! `fsync` only every `persist_interval` (see `docs/meter.md`, "Persistence"). On start an absent
//! file means a fresh meter; a `state.json` that cannot be parsed is renamed to
//! `state.json.corrupt-<unix seconds>` with an error log line naming both paths, and the meter
//! starts from the journal or from zero (it never silently overwrites the evidence).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
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
/// Saves of one directory must not run concurrently (the engine serialises them).
pub fn save(dir: &Path, state: &State) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(state)?;
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// File names of the journal's two slots.
pub const JOURNAL_SLOTS: [&str; 2] = ["published.0", "published.1"];
/// First bytes of a journal slot.
const JOURNAL_MAGIC: &[u8; 8] = b"ANGESPJ1";
/// Magic, sequence number, payload length, payload hash.
const JOURNAL_HEADER: usize = 32;

/// 64-bit FNV-1a: detects a slot torn by a crash (not an adversary: the directory is the
/// daemon's own).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The publication journal (module doc): two slot files overwritten in place alternately.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    files: [File; 2],
    /// Length of what each slot holds now (to truncate only when a write is shorter).
    lengths: [u64; 2],
    /// The slot the next write goes to.
    next: usize,
    /// Sequence number of the latest write.
    seq: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl Journal {
    /// Opens (creating if needed) the two slots in `dir`, continuing their sequence.
    pub fn open(dir: &Path) -> Result<Self, PersistError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(&path))
        };
        let files = [open(JOURNAL_SLOTS[0])?, open(JOURNAL_SLOTS[1])?];
        let seqs = [0, 1].map(|i| Self::read_slot(&dir.join(JOURNAL_SLOTS[i])).map(|(q, _)| q));
        let lengths = [0, 1].map(|i| files[i].metadata().map_or(0, |m| m.len()));
        // Overwrite the older (or unreadable) slot first.
        let next = match seqs {
            [Some(a), Some(b)] => usize::from(a > b),
            [Some(_), None] => 1,
            _ => 0,
        };
        Ok(Journal {
            dir: dir.to_owned(),
            files,
            lengths,
            next,
            seq: seqs.iter().flatten().copied().max().unwrap_or(0),
            buf: Vec::new(),
        })
    }

    /// Journals `state` into the older slot (one `pwrite`; see the module doc).
    pub fn write(&mut self, state: &State) -> Result<(), PersistError> {
        self.buf.clear();
        self.buf.resize(JOURNAL_HEADER, 0);
        serde_json::to_writer(&mut self.buf, state)?;
        let payload = &self.buf[JOURNAL_HEADER..];
        let (len, hash) = (payload.len() as u64, fnv1a(payload));
        self.seq += 1;
        self.buf[..8].copy_from_slice(JOURNAL_MAGIC);
        self.buf[8..16].copy_from_slice(&self.seq.to_le_bytes());
        self.buf[16..24].copy_from_slice(&len.to_le_bytes());
        self.buf[24..32].copy_from_slice(&hash.to_le_bytes());
        let slot = self.next;
        let path = || self.dir.join(JOURNAL_SLOTS[slot]);
        let file = &self.files[slot];
        file.write_all_at(&self.buf, 0)
            .map_err(|e| io_err(&path())(e))?;
        let written = self.buf.len() as u64;
        if written < self.lengths[slot] {
            file.set_len(written).map_err(|e| io_err(&path())(e))?;
        }
        self.lengths[slot] = written;
        self.next = 1 - slot;
        Ok(())
    }

    /// The newest intact state in `dir`'s journal, if any.
    pub fn latest(dir: &Path) -> Option<State> {
        JOURNAL_SLOTS
            .iter()
            .filter_map(|name| Self::read_slot(&dir.join(name)))
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, state)| state)
    }

    /// A slot's sequence number and state, when it is intact and of this format's version.
    fn read_slot(path: &Path) -> Option<(u64, State)> {
        let bytes = std::fs::read(path).ok()?;
        let header = bytes.get(..JOURNAL_HEADER)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let payload = bytes.get(JOURNAL_HEADER..)?;
        if &header[..8] != JOURNAL_MAGIC
            || word(16) != payload.len() as u64
            || word(24) != fnv1a(payload)
        {
            return None;
        }
        let state: State = serde_json::from_slice(payload).ok()?;
        (state.version == STATE_VERSION).then_some((word(8), state))
    }
}

/// The newest saved state of `dir`: `state.json` or the journal, whichever has the later
/// accounting tick. `Ok(None)`: no state yet (or only a corrupt `state.json`, moved aside).
pub fn load(dir: &Path) -> Result<Option<State>, PersistError> {
    let durable = load_state_file(dir)?;
    let journal = Journal::latest(dir);
    Ok(match (durable, journal) {
        (Some(d), Some(j)) if j.tick > d.tick => Some(j),
        (None, Some(j)) => Some(j),
        (d, _) => d,
    })
}

/// Reads `dir/state.json`. `Ok(None)`: no such file, or a corrupt file that was moved aside.
fn load_state_file(dir: &Path) -> Result<Option<State>, PersistError> {
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
    fn the_journal_wins_when_newer_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let at = |tick| State { tick, ..state() };
        save(dir.path(), &at(10)).unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.write(&at(11)).unwrap();
        journal.write(&at(12)).unwrap();
        assert_eq!(load(dir.path()).unwrap().map(|s| s.tick), Some(12));
        // A crash in the middle of the latest write: its slot fails the hash, the other is used.
        let latest = dir.path().join(JOURNAL_SLOTS[1]);
        let mut bytes = std::fs::read(&latest).unwrap();
        let end = bytes.len() - 3;
        bytes[end] ^= 0xff;
        std::fs::write(&latest, &bytes).unwrap();
        assert_eq!(load(dir.path()).unwrap().map(|s| s.tick), Some(11));
        // A durable save newer than the journal wins.
        save(dir.path(), &at(13)).unwrap();
        assert_eq!(load(dir.path()).unwrap().map(|s| s.tick), Some(13));
        // Reopened, the journal continues its sequence in the older slot.
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.write(&at(14)).unwrap();
        assert_eq!(load(dir.path()).unwrap().map(|s| s.tick), Some(14));
        // A shorter write leaves no stale tail behind.
        let mut small = at(15);
        small.jobs.clear();
        journal.write(&small).unwrap();
        journal.write(&small).unwrap();
        assert_eq!(Journal::latest(dir.path()).map(|s| s.tick), Some(15));
    }

    #[test]
    fn missing_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }
}
