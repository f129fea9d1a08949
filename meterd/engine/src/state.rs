//! The state the engine's handle ([`crate::engine::Engine`]) and the sampler thread
//! (`crate::sampler`) share: the [`Accounts`] behind one lock, the condition variable that
//! announces accounting ticks, the stop flag and the lock-free counters.
//!
//! Both sides depend on this module and it depends on neither, so the module graph is one-way:
//! `engine → sampler → state` and `engine → state`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::jobs::JobId;
use crate::persist::{self, PersistError, State};

/// Mutable state behind the engine's lock: the persisted totals and what goes with them.
#[derive(Debug)]
pub(crate) struct Accounts {
    /// Cumulative totals (what is persisted).
    pub(crate) state: State,
    /// Start time of each job's root process when registered (pins the PID).
    pub(crate) root_starts: BTreeMap<JobId, Option<u64>>,
    /// Bumped on every job registration or removal; the sampler resyncs its tracker on change.
    pub(crate) generation: u64,
    /// When the latest accounting tick was published.
    pub(crate) last_tick: Option<Instant>,
    /// Whether the sampler thread is running.
    pub(crate) running: bool,
    /// Grid intensity of the latest interval, g/kWh.
    pub(crate) intensity: f64,
    /// Unix time of the latest accounting tick.
    pub(crate) timestamp: f64,
}

/// Bookkeeping of the state file's saves; its lock serialises them.
#[derive(Debug)]
pub(crate) struct Saves {
    /// When the latest durable (fsync'ed) save was made.
    pub(crate) last_durable: Instant,
    /// Failed saves so far (for rate-limited logging).
    pub(crate) failures: u64,
    /// The publication journal, opened at the first quick save.
    pub(crate) journal: Option<persist::Journal>,
}

/// What the engine's handle and the sampler thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The accounts, under the engine's one lock.
    pub(crate) accounts: Mutex<Accounts>,
    /// Notified at every accounting tick and when the sampler stops.
    pub(crate) cond: Condvar,
    /// Set to stop the sampler.
    pub(crate) stop: AtomicBool,
    /// Energy samples taken (atomic: the sampler does not take the lock per sample).
    pub(crate) samples: AtomicU64,
    /// Sensor read errors.
    pub(crate) read_errors: AtomicU64,
    /// Missed sampling slots.
    pub(crate) overruns: AtomicU64,
    /// Where totals are persisted (`None`: not persisted).
    pub(crate) state_dir: Option<PathBuf>,
    /// Serialises saves, so the file's successive contents follow the accounts' order.
    pub(crate) saves: Mutex<Saves>,
    /// Longest time between durable saves.
    pub(crate) persist_interval: Duration,
}

impl Shared {
    /// Locks the accounts.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Accounts> {
        // A panic while holding the lock cannot corrupt plain numbers; keep serving.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the current state durably (called by the sampler and at shutdown).
    pub(crate) fn persist(&self) -> Result<(), PersistError> {
        self.save_view(true, |_| ()).1
    }

    /// Takes `view` of the accounts and a copy of the state under one lock, then saves that
    /// state before returning the view: whatever the caller shows of the view is already saved.
    /// The save is durable (`state.json`) when `durable` or when the latest durable save is
    /// older than `persist_interval`; otherwise it goes to the publication journal, which
    /// survives a crash of the process but not a power loss (see [`crate::persist`]).
    pub(crate) fn save_view<T>(
        &self,
        durable: bool,
        view: impl FnOnce(&Accounts) -> T,
    ) -> (T, Result<(), PersistError>) {
        let Some(dir) = &self.state_dir else {
            return (view(&self.lock()), Ok(()));
        };
        let mut saves = self.saves.lock().unwrap_or_else(|p| p.into_inner());
        let (out, mut state) = {
            let l = self.lock();
            (view(&l), l.state.clone())
        };
        state.saved_at = unix_now();
        let durable = durable || saves.last_durable.elapsed() >= self.persist_interval;
        let result = if durable {
            persist::save(dir, &state)
        } else {
            let journal = match saves.journal.take() {
                Some(j) => Ok(j),
                None => persist::Journal::open(dir),
            };
            journal.and_then(|mut j| {
                let written = j.write(&state);
                saves.journal = Some(j);
                written
            })
        };
        match &result {
            Ok(()) if durable => saves.last_durable = Instant::now(),
            Ok(()) => {}
            Err(e) => {
                saves.failures += 1;
                if saves.failures.is_power_of_two() {
                    tracing::error!(
                        failures = saves.failures,
                        "cannot save totals; published totals may go backwards after a crash: {e}"
                    );
                }
            }
        }
        (out, result)
    }
}

/// Unix time now, seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
