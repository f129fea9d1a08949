//! Rate-limited publication of the engine's totals.
//!
//! A dedicated thread waits for the sampler's ticks and, no faster than the configured interval
//! (default 100 ms), takes a [`Snapshot`] of the machine's and every job's totals and publishes
//! it on a `tokio::sync::watch` channel. Every server (socket, D-Bus, Prometheus) reads only
//! published snapshots: unprivileged clients never see the sampler's raw high-rate values (the
//! RAPL power side channel, CVE-2020-8694), queries never touch the sampler's locks, and any
//! number of readers costs the sampler one snapshot per interval.
//!
//! A snapshot is one consistent view (one lock on the engine), and the engine saves the state it
//! was taken from before it is published ([`MeterBackend::publish_snapshot`]): after a crash
//! (`kill -9`) and a restart, no total is ever published smaller than before, and the crash
//! loses at most one publication interval of energy.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anges_common::protocol::{JobId, JobReading, Reading, SamplerHealth, Totals};
use tokio::sync::watch;

use super::backend::{JobTotals, MeterBackend};

/// The totals published at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Sampler tick the totals include.
    pub tick: u64,
    /// The machine's totals.
    pub machine: Totals,
    /// Every job's totals.
    pub jobs: HashMap<JobId, JobTotals>,
    /// Sampler health when published.
    pub health: SamplerHealth,
    /// When it was published.
    pub published: Instant,
}

impl Snapshot {
    /// An empty snapshot (before the first publication).
    pub fn empty() -> Self {
        Snapshot {
            tick: 0,
            machine: Totals::default(),
            jobs: HashMap::new(),
            health: SamplerHealth::default(),
            published: Instant::now(),
        }
    }

    /// Takes a snapshot of `backend` now ([`MeterBackend::publish_snapshot`]: one tick's
    /// figures, already saved by a persisting backend).
    pub fn take(backend: &dyn MeterBackend) -> Self {
        let s = backend.publish_snapshot();
        Snapshot {
            tick: s.tick,
            machine: s.machine,
            jobs: s.jobs.into_iter().map(|j| (j.meta.id, j)).collect(),
            health: s.health,
            published: Instant::now(),
        }
    }

    /// Health as of now: the last tick's age grows while nothing new is published.
    fn health_now(&self) -> SamplerHealth {
        let mut h = self.health.clone();
        let extra = u64::try_from(self.published.elapsed().as_millis()).unwrap_or(u64::MAX);
        h.last_tick_age_ms = h.last_tick_age_ms.saturating_add(extra);
        h
    }

    /// `totals` as a reading of this snapshot.
    pub fn reading(&self, totals: &Totals) -> Reading {
        Reading {
            totals: totals.clone(),
            tick: self.tick,
            health: self.health_now(),
        }
    }

    /// The machine's reading.
    pub fn machine_reading(&self) -> Reading {
        self.reading(&self.machine)
    }

    /// A job's reading, if published.
    pub fn job_reading(&self, id: JobId) -> Option<JobReading> {
        self.jobs.get(&id).map(|j| self.job_reading_of(j))
    }

    /// `job` as a reading of this snapshot.
    pub fn job_reading_of(&self, job: &JobTotals) -> JobReading {
        JobReading {
            job: job.meta.clone(),
            reading: self.reading(&job.totals),
        }
    }
}

/// The publication thread and the channel it feeds.
#[derive(Debug)]
pub struct Publisher {
    rx: watch::Receiver<Arc<Snapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long one `wait_for_tick` call may block, so that stopping is prompt.
const WAIT_SLICE: Duration = Duration::from_millis(200);

impl Publisher {
    /// Starts the publication thread; the first snapshot is taken at once.
    pub fn start(backend: Arc<dyn MeterBackend>, interval: Duration) -> std::io::Result<Self> {
        let first = Snapshot::take(backend.as_ref());
        let (tx, rx) = watch::channel(Arc::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("meter-publish".into())
            .spawn(move || publish_loop(backend.as_ref(), interval, &tx, &thread_stop))?;
        Ok(Publisher {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// A receiver of published snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.rx.clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the publication thread panicked");
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn publish_loop(
    backend: &dyn MeterBackend,
    interval: Duration,
    tx: &watch::Sender<Arc<Snapshot>>,
    stop: &AtomicBool,
) {
    let mut last_tick = tx.borrow().tick;
    let mut last_pub = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let tick = backend.wait_for_tick(last_tick, WAIT_SLICE);
        if tick <= last_tick {
            continue;
        }
        let wait = interval.saturating_sub(last_pub.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let snap = Snapshot::take(backend);
        last_tick = snap.tick;
        last_pub = snap.published;
        tx.send_replace(Arc::new(snap));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use anges_common::protocol::{DomainEnergy, JobMeta, JobTarget};

    use super::super::backend::{BackendError, BackendSnapshot, JobSpec};
    use super::*;

    /// A backend whose sampler ticks between any two calls, like the engine under load; one job
    /// takes all the energy, one joule per tick.
    struct Moving(AtomicU64);

    impl Moving {
        fn next(&self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }

        fn totals(tick: u64) -> Totals {
            Totals {
                domains: vec![DomainEnergy {
                    name: "cpu".into(),
                    joules: tick as f64,
                    measured: false,
                }],
                ..Totals::default()
            }
        }

        fn job(tick: u64) -> JobTotals {
            JobTotals {
                meta: JobMeta {
                    id: JobId(1),
                    name: "all".into(),
                    owner_uid: 0,
                    target: JobTarget::Pid(1),
                },
                totals: Self::totals(tick),
            }
        }
    }

    impl MeterBackend for Moving {
        fn register_job(&self, _: JobSpec) -> Result<JobId, BackendError> {
            Err(BackendError::Rejected("read-only".into()))
        }
        fn unregister_job(&self, id: JobId) -> Result<JobTotals, BackendError> {
            Err(BackendError::NoSuchJob(id))
        }
        fn job(&self, _: JobId) -> Option<JobTotals> {
            Some(Self::job(self.next()))
        }
        fn jobs(&self) -> Vec<JobTotals> {
            vec![Self::job(self.next())]
        }
        fn machine(&self) -> Totals {
            Self::totals(self.next())
        }
        fn health(&self) -> SamplerHealth {
            SamplerHealth {
                ticks: self.next(),
                ..SamplerHealth::default()
            }
        }
        fn wait_for_tick(&self, _: u64, _: Duration) -> u64 {
            self.next()
        }
        fn tick(&self) -> u64 {
            self.next()
        }
        /// Like the engine: everything under one lock, so of one tick.
        fn publish_snapshot(&self) -> BackendSnapshot {
            let tick = self.next();
            BackendSnapshot {
                tick,
                machine: Self::totals(tick),
                jobs: vec![Self::job(tick)],
                health: SamplerHealth {
                    ticks: tick,
                    ..SamplerHealth::default()
                },
            }
        }
    }

    #[test]
    fn a_snapshot_is_of_one_tick() {
        let backend = Moving(AtomicU64::new(0));
        let snap = Snapshot::take(&backend);
        let jobs: f64 = snap.jobs.values().map(|j| j.totals.joules()).sum();
        assert!(
            jobs <= snap.machine.joules(),
            "Σ jobs {jobs} J > machine {} J",
            snap.machine.joules()
        );
        assert_eq!(snap.machine.joules(), snap.tick as f64);
        assert_eq!(snap.health.ticks, snap.tick);
    }
}
