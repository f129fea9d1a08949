//! A small [`MeterBackend`] for the server tests and the round-trip benchmark: a thread ticks
//! every few milliseconds and adds a fixed energy to the machine and to every job, so readings
//! grow predictably; the sampler can be stalled and resumed. It stands at the engine's edge only:
//! everything above it (publication, socket, D-Bus, clients) is the real code.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anges_common::protocol::{DomainEnergy, JobId, JobMeta, JobTarget, SamplerHealth, Totals};
use anges_meterd::server::{BackendError, JobSpec, JobTotals, MeterBackend, ServerConfig};

/// Machine joules added per tick.
pub const MACHINE_J_PER_TICK: f64 = 1.0;
/// Joules added to each job per tick.
pub const JOB_J_PER_TICK: f64 = 0.1;
/// Constant intensity, g/kWh.
pub const INTENSITY: f64 = 360.0;

#[derive(Default)]
struct State {
    tick: u64,
    machine_j: f64,
    jobs: BTreeMap<JobId, (JobMeta, f64)>,
    next_id: JobId,
}

/// The test backend.
pub struct TestBackend {
    state: Mutex<State>,
    ticked: Condvar,
    stalled: AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn totals(joules: f64) -> Totals {
    Totals {
        domains: vec![DomainEnergy {
            name: "package-0".into(),
            joules,
            measured: true,
        }],
        grams_co2: joules / 3.6e6 * INTENSITY,
        intensity_g_per_kwh: INTENSITY,
        timestamp_ms: now_ms(),
    }
}

impl TestBackend {
    /// A backend ticking every `period`; its thread ends when the backend is dropped.
    pub fn start(period: Duration) -> Arc<Self> {
        let b = Arc::new(TestBackend {
            state: Mutex::new(State {
                next_id: JobId(1),
                ..State::default()
            }),
            ticked: Condvar::new(),
            stalled: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&b);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(period);
                let Some(b) = weak.upgrade() else { return };
                if b.stalled.load(Ordering::Relaxed) {
                    continue;
                }
                let mut s = b.state.lock().unwrap();
                s.tick += 1;
                s.machine_j += MACHINE_J_PER_TICK;
                for (_, j) in s.jobs.values_mut() {
                    *j += JOB_J_PER_TICK;
                }
                drop(s);
                b.ticked.notify_all();
            }
        });
        b
    }

    /// Stops or resumes the sampler.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Number of registered jobs.
    pub fn job_count(&self) -> usize {
        self.state.lock().unwrap().jobs.len()
    }
}

impl MeterBackend for TestBackend {
    fn register_job(&self, spec: JobSpec) -> Result<JobId, BackendError> {
        let target = match (spec.root_pid, spec.cgroup) {
            (Some(p), _) => JobTarget::Pid(p),
            (None, Some(c)) => JobTarget::Cgroup(c.display().to_string()),
            (None, None) => return Err(BackendError::Rejected("no target".into())),
        };
        let mut s = self.state.lock().unwrap();
        let id = s.next_id;
        s.next_id.0 += 1;
        let meta = JobMeta {
            id,
            name: spec.name,
            owner_uid: spec.owner_uid,
            target,
        };
        s.jobs.insert(id, (meta, 0.0));
        Ok(id)
    }

    fn unregister_job(&self, id: JobId) -> Result<JobTotals, BackendError> {
        let mut s = self.state.lock().unwrap();
        let (meta, j) = s.jobs.remove(&id).ok_or(BackendError::NoSuchJob(id))?;
        Ok(JobTotals {
            meta,
            totals: totals(j),
        })
    }

    fn job(&self, id: JobId) -> Option<JobTotals> {
        let s = self.state.lock().unwrap();
        s.jobs.get(&id).map(|(meta, j)| JobTotals {
            meta: meta.clone(),
            totals: totals(*j),
        })
    }

    fn jobs(&self) -> Vec<JobTotals> {
        let s = self.state.lock().unwrap();
        s.jobs
            .values()
            .map(|(meta, j)| JobTotals {
                meta: meta.clone(),
                totals: totals(*j),
            })
            .collect()
    }

    fn machine(&self) -> Totals {
        totals(self.state.lock().unwrap().machine_j)
    }

    fn health(&self) -> SamplerHealth {
        SamplerHealth {
            ticks: self.tick(),
            last_tick_age_ms: 0,
            read_errors: 0,
            sources_measured: vec!["test-rapl".into()],
            sources_estimated: vec![],
        }
    }

    fn wait_for_tick(&self, after_tick: u64, timeout: Duration) -> u64 {
        let s = self.state.lock().unwrap();
        let (s, _) = self
            .ticked
            .wait_timeout_while(s, timeout, |s| s.tick <= after_tick)
            .unwrap();
        s.tick
    }

    fn tick(&self) -> u64 {
        self.state.lock().unwrap().tick
    }
}

/// A server configuration for tests: socket in `dir`, fast publication, no systemd, no D-Bus.
pub fn test_config(dir: &std::path::Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir.join("meterd.sock"));
    cfg.publish_interval = Duration::from_millis(20);
    cfg.socket_activation = false;
    cfg.notify_socket = None;
    cfg.watchdog = None;
    cfg
}
