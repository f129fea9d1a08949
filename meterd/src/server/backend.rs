//! The narrow interface the servers need from the measuring engine.
//!
//! The servers (socket, D-Bus, Prometheus, sd-notify) see the engine only through
//! [`MeterBackend`], which mirrors the engine handle's API with the protocol's own types, so the
//! glue between the two is a thin conversion and the servers can be tested against a small
//! backend without sensors.

use std::time::Duration;

use anges_common::protocol::{JobId, JobMeta, SamplerHealth, Totals};

/// What a client asks to meter: the engine's own job description, shared so that the two
/// sides cannot drift apart.
pub use anges_meter_engine::jobs::JobSpec;

/// A job and its cumulative totals.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTotals {
    /// Who the job is.
    pub meta: JobMeta,
    /// Its cumulative totals.
    pub totals: Totals,
}

/// Everything one publication shows, as of one sampler tick.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSnapshot {
    /// The tick the totals include.
    pub tick: u64,
    /// The machine's totals.
    pub machine: Totals,
    /// Every job's totals.
    pub jobs: Vec<JobTotals>,
    /// The sampler's health.
    pub health: SamplerHealth,
}

/// A failure reported by the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No such job.
    #[error("no job {0}")]
    NoSuchJob(JobId),
    /// The job's process or cgroup does not exist.
    #[error("no such process or cgroup: {0}")]
    NoSuchTarget(String),
    /// The engine refused the request (bad input, limit).
    #[error("{0}")]
    Rejected(String),
    /// Anything else.
    #[error("engine failure: {0}")]
    Internal(String),
}

/// The measuring engine as the servers see it.
///
/// Implementations must be cheap to call from async tasks except [`MeterBackend::wait_for_tick`],
/// which blocks and is only called from the server's dedicated publication thread.
pub trait MeterBackend: Send + Sync + 'static {
    /// Starts metering a job; returns its id (stable across restarts).
    fn register_job(&self, spec: JobSpec) -> Result<JobId, BackendError>;
    /// Stops metering a job and returns its final totals.
    fn unregister_job(&self, id: JobId) -> Result<JobTotals, BackendError>;
    /// A job's current totals.
    fn job(&self, id: JobId) -> Option<JobTotals>;
    /// Every job's current totals.
    fn jobs(&self) -> Vec<JobTotals>;
    /// The machine's current totals.
    fn machine(&self) -> Totals;
    /// The sampler's health.
    fn health(&self) -> SamplerHealth;
    /// Blocks until the sampler's tick exceeds `after_tick` or `timeout` passes; returns the
    /// current tick either way.
    fn wait_for_tick(&self, after_tick: u64, timeout: Duration) -> u64;
    /// The sampler's current tick (number of completed sampling intervals).
    fn tick(&self) -> u64;
    /// What the publication thread publishes: the tick, machine, jobs and health of one and the
    /// same tick (so Σ jobs never exceeds the machine by a tick). A backend that persists its
    /// totals saves this very state before returning it, so that nothing published is lost to a
    /// crash of the process and published totals never go backwards after a restart.
    ///
    /// The default composes the separate calls, which is consistent only for a backend that
    /// does not move between them (small test backends); the engine overrides it.
    fn publish_snapshot(&self) -> BackendSnapshot {
        BackendSnapshot {
            tick: self.tick(),
            machine: self.machine(),
            jobs: self.jobs(),
            health: self.health(),
        }
    }
}
