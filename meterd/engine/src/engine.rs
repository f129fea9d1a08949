//! The meter's public API: [`Engine`], used by the daemon's servers and in-process by the trainer
//! (`--meter local`).
//!
//! ```text
//! Engine::start(EngineConfig) -> Result<Engine, EngineError>   // detects sensors, restores state,
//!                                                              // spawns the sampler thread
//! engine.register_job(JobSpec { name, root_pid, cgroup, owner_uid }) -> Result<JobId, EngineError>
//! engine.unregister_job(JobId) -> Result<JobTotals, EngineError>   // final totals
//! engine.job(JobId) -> Option<JobTotals>      engine.jobs() -> Vec<JobTotals>
//! engine.machine() -> MachineTotals           engine.health() -> SamplerHealth
//! engine.tick() -> u64                        // accounting ticks published so far
//! engine.snapshot() -> EngineSnapshot         // tick, machine, jobs, health under one lock
//! engine.checkpoint() -> EngineSnapshot       // the same, saved to the state dir first
//! engine.wait_for_tick(after, timeout) -> u64 // blocks until tick > after (a "fresh" reading)
//! engine.shutdown() -> Result<(), EngineError> // stops the thread, persists; idempotent
//! ```
//!
//! `Engine` is a cheap `Clone + Send + Sync` handle. Energy is sampled at `rate_hz`; jobs' shares
//! and the published totals are updated at `attribution_hz` (an "accounting tick"). A `JobId` is
//! stable and persisted: after a restart a client re-attaches with the same id, and a job whose
//! processes all exited keeps its final totals (`finished = true`) until unregistered. The engine
//! needs no privilege: without readable counters it estimates and says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::attribution::IdlePolicy;
use crate::carbon::{Carbon, CarbonError, IntensitySource};
use crate::jobs::{
    DomainTotals, JobId, JobSpec, JobTotals, MachineTotals, Tracker, process_start_ticks,
    resolve_cgroup,
};
use crate::persist::{self, PersistError, SavedJob, State};
use crate::root::SysRoot;
use crate::sampler::{Sampler, SamplerConfig};
use crate::sensors::detect::{
    DetectError, GpuSelection, SensorConfig, SourceOutcome, SourceReport, detect,
};
use crate::sensors::estimate::EstimateModel;
use crate::sensors::nvml::DEFAULT_LIBRARY;
use crate::sensors::{DomainInfo, Provenance, SensorChoice};
pub use crate::state::unix_now;
use crate::state::{Accounts, Saves, Shared};

/// Everything the engine needs; built by the daemon's configuration (file and flags) or by the
/// trainer's `--meter` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// CPU source.
    pub sensor: SensorChoice,
    /// Root of procfs/sysfs.
    pub sysfs_root: PathBuf,
    /// Energy sampling rate, Hz (1–1000).
    pub rate_hz: u32,
    /// Accounting (attribution + publication) rate, Hz (≤ `rate_hz`).
    pub attribution_hz: f64,
    /// Interval of full `/proc` scans for job membership.
    pub scan_interval: Duration,
    /// Estimation model.
    pub estimate: EstimateModel,
    /// GPUs to meter.
    pub gpus: GpuSelection,
    /// NVML library name or path.
    pub nvml_library: String,
    /// Carbon intensity source.
    pub intensity: IntensitySource,
    /// Power usage effectiveness (≥ 1).
    pub pue: f64,
    /// Idle-power policy.
    pub idle_policy: IdlePolicy,
    /// Where totals are persisted (`None`: not persisted, e.g. an in-process meter in tests).
    pub state_dir: Option<PathBuf>,
    /// Period of persistence while running.
    pub persist_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            sensor: SensorChoice::Auto,
            sysfs_root: PathBuf::from("/"),
            rate_hz: 100,
            attribution_hz: 10.0,
            scan_interval: Duration::from_secs(5),
            estimate: EstimateModel::default(),
            gpus: GpuSelection::All,
            nvml_library: DEFAULT_LIBRARY.into(),
            intensity: IntensitySource::default(),
            pue: 1.0,
            idle_policy: IdlePolicy::Busy,
            state_dir: None,
            persist_interval: Duration::from_secs(30),
        }
    }
}

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A forced sensor is unavailable.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// No CPU energy source at all.
    #[error("no CPU energy source: {0}")]
    NoSensor(String),
    /// Bad carbon configuration.
    #[error(transparent)]
    Carbon(#[from] CarbonError),
    /// Persistence failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The state directory cannot be written: the meter refuses to start rather than find out
    /// at its first save and lose totals at its next restart.
    #[error(
        "state directory {dir} is not writable, so totals could not survive a restart \
         (fix it or choose another with --state-dir): {source}"
    )]
    StateDir {
        /// The directory.
        dir: PathBuf,
        /// Why the save failed.
        #[source]
        source: PersistError,
    },
    /// Bad configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Job registration refused (bad request).
    #[error("cannot register job: {0}")]
    Job(String),
    /// The job's root process or cgroup does not exist.
    #[error("no such process or cgroup: {0}")]
    NoSuchTarget(String),
    /// No such job.
    #[error("no job with id {0}")]
    UnknownJob(JobId),
    /// The sampler thread could not be spawned or died.
    #[error("sampler thread: {0}")]
    Thread(String),
}

/// One source as seen by health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// Source name.
    pub source: String,
    /// `used`, `skipped` or `not tried`, with the reason/detail.
    pub status: String,
    /// Domains it reports, with provenance.
    pub domains: Vec<(String, Provenance)>,
}

/// The sampler's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerHealth {
    /// Whether the sampler thread is running.
    pub running: bool,
    /// Energy samples taken since start.
    pub samples: u64,
    /// Accounting ticks published (lifetime, persisted).
    pub ticks: u64,
    /// Seconds since the latest accounting tick.
    pub last_tick_age_s: Option<f64>,
    /// Sensor read errors since start (counted, logged, retried).
    pub read_errors: u64,
    /// Sampling slots missed because the thread was late.
    pub overruns: u64,
    /// Configured energy sampling rate.
    pub rate_hz: u32,
    /// Configured accounting rate.
    pub attribution_hz: f64,
    /// Sources, used or not, with why.
    pub sources: Vec<SourceHealth>,
    /// Carbon intensity description.
    pub carbon: String,
}

/// Everything the engine publishes, as of one accounting tick ([`Engine::snapshot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSnapshot {
    /// The accounting tick the totals include.
    pub tick: u64,
    /// The machine's totals.
    pub machine: MachineTotals,
    /// Every job's totals.
    pub jobs: Vec<JobTotals>,
    /// Sampler health.
    pub health: SamplerHealth,
}

/// What a running engine knows from its start on (the shared, mutable part is in
/// [`crate::state::Shared`]).
#[derive(Debug)]
struct Fixed {
    thread: Mutex<Option<JoinHandle<()>>>,
    root: SysRoot,
    sources: Vec<SourceHealth>,
    carbon_label: String,
    pue: f64,
    rate_hz: u32,
    attribution_hz: f64,
}

/// Handle on a running meter. Cheap to clone; all methods take `&self`.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    fixed: Arc<Fixed>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn source_health(report: &[SourceReport], domains: &[DomainInfo]) -> Vec<SourceHealth> {
    report
        .iter()
        .map(|r| {
            let (status, ids) = match &r.outcome {
                SourceOutcome::Used { domains, detail } => {
                    (format!("used {detail}").trim().to_owned(), domains.clone())
                }
                SourceOutcome::Skipped { reason } => (format!("skipped: {reason}"), Vec::new()),
                SourceOutcome::NotTried { reason } => (format!("not tried: {reason}"), Vec::new()),
            };
            SourceHealth {
                source: r.source.into(),
                status,
                domains: ids
                    .into_iter()
                    .map(|id| {
                        let p = domains
                            .iter()
                            .find(|d| d.id == id)
                            .map_or(Provenance::Estimated, |d| d.provenance);
                        (id, p)
                    })
                    .collect(),
            }
        })
        .collect()
}

fn validate(cfg: &EngineConfig) -> Result<(), EngineError> {
    if !(1..=1000).contains(&cfg.rate_hz) {
        return Err(EngineError::Config(format!(
            "rate_hz must be 1..=1000, got {}",
            cfg.rate_hz
        )));
    }
    if !(cfg.attribution_hz > 0.0 && cfg.attribution_hz <= f64::from(cfg.rate_hz)) {
        return Err(EngineError::Config(format!(
            "attribution_hz must be in (0, rate_hz = {}], got {}",
            cfg.rate_hz, cfg.attribution_hz
        )));
    }
    if cfg.persist_interval.is_zero() {
        return Err(EngineError::Config("persist_interval must be > 0".into()));
    }
    Ok(())
}

fn restore(
    state_dir: Option<&PathBuf>,
    root: &SysRoot,
) -> Result<(State, BTreeMap<JobId, Option<u64>>), EngineError> {
    let fresh = State {
        version: persist::STATE_VERSION,
        next_job_id: 1,
        machine: BTreeMap::new(),
        unattributed: BTreeMap::new(),
        jobs: BTreeMap::new(),
        tick: 0,
        saved_at: 0.0,
    };
    let Some(dir) = state_dir else {
        return Ok((fresh, BTreeMap::new()));
    };
    let Some(mut state) = persist::load(dir)? else {
        tracing::info!("no saved totals in {}; starting from zero", dir.display());
        return Ok((fresh, BTreeMap::new()));
    };
    let mut starts = BTreeMap::new();
    for (id, job) in &mut state.jobs {
        let alive = match (
            &job.totals.spec.cgroup,
            job.totals.spec.root_pid,
            job.root_start_ticks,
        ) {
            (Some(cg), _, _) => resolve_cgroup(root, cg).join("cpu.stat").exists(),
            (None, Some(pid), Some(start)) => process_start_ticks(root, pid) == Some(start),
            _ => false,
        };
        if !alive {
            job.totals.finished = true;
        }
        starts.insert(*id, job.root_start_ticks);
    }
    tracing::info!(
        "restored totals from {} (saved at {:.0}, {} job(s), {:.3} J machine)",
        dir.display(),
        state.saved_at,
        state.jobs.len(),
        state.machine.values().map(|d| d.joules).sum::<f64>()
    );
    Ok((state, starts))
}

fn sum(domains: &BTreeMap<String, DomainTotals>) -> (f64, f64) {
    domains
        .values()
        .fold((0.0, 0.0), |(j, g), d| (j + d.joules, g + d.grams))
}

impl Engine {
    /// Detects sensors, restores persisted totals, logs the start-up summary and spawns the
    /// sampler thread.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        validate(&config)?;
        let root = SysRoot::new(&config.sysfs_root);
        let carbon = Carbon::new(&config.intensity, config.pue)?;
        let detection = detect(&SensorConfig {
            choice: config.sensor,
            root: root.clone(),
            estimate: config.estimate.clone(),
            gpus: config.gpus.clone(),
            nvml_library: config.nvml_library.clone(),
        })?;
        for line in &detection.report {
            tracing::info!("sensor {line}");
        }
        let domains: Vec<DomainInfo> = detection
            .sensors
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .collect();
        if !domains
            .iter()
            .any(|d| d.kind != crate::sensors::DomainKind::Gpu)
        {
            let reasons: Vec<String> = detection.report.iter().map(ToString::to_string).collect();
            return Err(EngineError::NoSensor(reasons.join("; ")));
        }
        if domains
            .iter()
            .any(|d| d.provenance == Provenance::Estimated)
        {
            let why: Vec<String> = detection
                .report
                .iter()
                .filter_map(|r| match &r.outcome {
                    SourceOutcome::Skipped { reason } if r.source != "nvml" => {
                        Some(format!("{}: {reason}", r.source))
                    }
                    _ => None,
                })
                .collect();
            let why = if why.is_empty() {
                "--sensor estimate".to_owned()
            } else {
                why.join("; ")
            };
            tracing::warn!("CPU energy is ESTIMATED, not measured: {why}");
        }
        tracing::info!(
            "carbon intensity: {} × PUE {}",
            carbon.label(),
            carbon.pue()
        );
        let (state, root_starts) = restore(config.state_dir.as_ref(), &root)?;
        if let Some(dir) = &config.state_dir {
            // Saving the restored state at once checks that the directory is writable now, not at
            // the first periodic save.
            persist::save(dir, &state).map_err(|source| EngineError::StateDir {
                dir: dir.clone(),
                source,
            })?;
        }
        let now_wall = unix_now();
        let shared = Arc::new(Shared {
            accounts: Mutex::new(Accounts {
                intensity: carbon.intensity_at(now_wall),
                timestamp: now_wall,
                state,
                root_starts,
                generation: 1,
                last_tick: None,
                running: true,
            }),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            samples: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            state_dir: config.state_dir.clone(),
            saves: Mutex::new(Saves {
                last_durable: Instant::now(),
                failures: 0,
                journal: None,
            }),
            persist_interval: config.persist_interval,
        });
        let fixed = Arc::new(Fixed {
            thread: Mutex::new(None),
            sources: source_health(&detection.report, &domains),
            carbon_label: carbon.label().to_owned(),
            pue: config.pue,
            rate_hz: config.rate_hz,
            attribution_hz: config.attribution_hz,
            root: root.clone(),
        });
        let tracker = Tracker::new(root.clone(), config.scan_interval);
        let sampler = Sampler::new(
            SamplerConfig {
                rate_hz: config.rate_hz,
                attribution_hz: config.attribution_hz,
                persist_interval: config.persist_interval,
                idle_policy: config.idle_policy,
                root,
            },
            detection.sensors,
            carbon,
            tracker,
            Arc::clone(&shared),
        );
        let handle = std::thread::Builder::new()
            .name("anges-sampler".into())
            .spawn(move || sampler.run())
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        *fixed.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        tracing::info!(
            "sampler running at {} Hz, accounting at {} Hz, idle policy {:?}",
            config.rate_hz,
            config.attribution_hz,
            config.idle_policy
        );
        Ok(Engine { shared, fixed })
    }

    /// Registers a job. A root PID must exist now (its start time pins it against PID reuse); a
    /// cgroup must have a `cpu.stat`. CPU time and energy count from the next accounting tick.
    pub fn register_job(&self, spec: JobSpec) -> Result<JobId, EngineError> {
        let root = &self.fixed.root;
        let mut start = None;
        match (&spec.cgroup, spec.root_pid) {
            (None, None) => return Err(EngineError::Job("give a root PID or a cgroup".into())),
            (Some(cg), _) => {
                let dir = resolve_cgroup(root, cg);
                if !dir.join("cpu.stat").exists() && !dir.join("cpuacct.usage").exists() {
                    return Err(EngineError::NoSuchTarget(format!(
                        "{} has no cpu.stat",
                        dir.display()
                    )));
                }
            }
            (None, Some(_)) => {}
        }
        if let Some(pid) = spec.root_pid {
            start = Some(
                process_start_ticks(root, pid)
                    .ok_or_else(|| EngineError::NoSuchTarget(format!("process {pid}")))?,
            );
        }
        let mut l = self.shared.lock();
        let id = JobId(l.state.next_job_id);
        l.state.next_job_id += 1;
        let totals = JobTotals {
            id,
            spec,
            finished: false,
            cpu_seconds: 0.0,
            domains: BTreeMap::new(),
            joules: 0.0,
            grams: 0.0,
            intensity_g_per_kwh: l.intensity,
            timestamp: l.timestamp,
            tick: l.state.tick,
        };
        l.state.jobs.insert(
            id,
            SavedJob {
                totals,
                root_start_ticks: start,
            },
        );
        l.root_starts.insert(id, start);
        l.generation += 1;
        Ok(id)
    }

    /// Removes a job and returns its final totals.
    pub fn unregister_job(&self, id: JobId) -> Result<JobTotals, EngineError> {
        let mut l = self.shared.lock();
        let job = l
            .state
            .jobs
            .remove(&id)
            .ok_or(EngineError::UnknownJob(id))?;
        l.root_starts.remove(&id);
        l.generation += 1;
        Ok(job.totals)
    }

    /// A job's cumulative totals.
    pub fn job(&self, id: JobId) -> Option<JobTotals> {
        self.shared
            .lock()
            .state
            .jobs
            .get(&id)
            .map(|j| j.totals.clone())
    }

    /// All jobs' cumulative totals.
    pub fn jobs(&self) -> Vec<JobTotals> {
        self.shared
            .lock()
            .state
            .jobs
            .values()
            .map(|j| j.totals.clone())
            .collect()
    }

    /// The machine's cumulative totals, with the unattributed remainder.
    pub fn machine(&self) -> MachineTotals {
        self.machine_of(&self.shared.lock())
    }

    fn machine_of(&self, l: &Accounts) -> MachineTotals {
        let (joules, grams) = sum(&l.state.machine);
        MachineTotals {
            domains: l.state.machine.clone(),
            unattributed: l.state.unattributed.clone(),
            joules,
            grams,
            intensity_g_per_kwh: l.intensity,
            pue: self.fixed.pue,
            timestamp: l.timestamp,
            tick: l.state.tick,
        }
    }

    /// Sampler health.
    pub fn health(&self) -> SamplerHealth {
        self.health_of(&self.shared.lock())
    }

    fn health_of(&self, l: &Accounts) -> SamplerHealth {
        SamplerHealth {
            running: l.running,
            samples: self.shared.samples.load(Ordering::Relaxed),
            ticks: l.state.tick,
            last_tick_age_s: l.last_tick.map(|t| t.elapsed().as_secs_f64()),
            read_errors: self.shared.read_errors.load(Ordering::Relaxed),
            overruns: self.shared.overruns.load(Ordering::Relaxed),
            rate_hz: self.fixed.rate_hz,
            attribution_hz: self.fixed.attribution_hz,
            sources: self.fixed.sources.clone(),
            carbon: self.fixed.carbon_label.clone(),
        }
    }

    fn snapshot_of(&self, l: &Accounts) -> EngineSnapshot {
        EngineSnapshot {
            tick: l.state.tick,
            machine: self.machine_of(l),
            jobs: l.state.jobs.values().map(|j| j.totals.clone()).collect(),
            health: self.health_of(l),
        }
    }

    /// The tick, the machine's and every job's totals and the health, all of one accounting
    /// tick (one lock), so that Σ jobs never includes a tick the machine's totals do not.
    pub fn snapshot(&self) -> EngineSnapshot {
        self.snapshot_of(&self.shared.lock())
    }

    /// [`Engine::snapshot`], after saving the state it was taken from to the state directory
    /// (when there is one): a caller that publishes the snapshot publishes only totals that a
    /// restart after a crash of the process restores, so published totals never go backwards.
    /// The save is `fsync`ed once per `persist_interval` (see [`crate::persist`]); a failed save
    /// is logged (rate-limited) and the snapshot is returned anyway.
    pub fn checkpoint(&self) -> EngineSnapshot {
        self.shared.save_view(false, |l| self.snapshot_of(l)).0
    }

    /// Accounting ticks published so far (persisted, so it continues across restarts).
    pub fn tick(&self) -> u64 {
        self.shared.lock().state.tick
    }

    /// Blocks until an accounting tick later than `after` is published (or `timeout`, or the
    /// engine stops) and returns the current tick. `wait_for_tick(engine.tick(), t)` gives a
    /// reading that includes everything done before the call.
    pub fn wait_for_tick(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut l = self.shared.lock();
        while l.state.tick <= after && l.running {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            l = self
                .shared
                .cond
                .wait_timeout(l, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        l.state.tick
    }

    /// Stops the sampler (after a last accounting tick) and persists. Idempotent.
    pub fn shutdown(&self) -> Result<(), EngineError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let handle = self
            .fixed
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            h.thread().unpark();
            h.join()
                .map_err(|_| EngineError::Thread("sampler thread panicked".into()))?;
        }
        self.shared.persist()?;
        Ok(())
    }
}
