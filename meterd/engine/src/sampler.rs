//! The dedicated sampling thread.
//!
//! Sensors that are [`Sensor::sampled`] (integrated from instantaneous readings, e.g. NVML's
//! power samples) are read every `1/rate_hz`; the others (cumulative counters such as RAPL, and
//! the utilisation model) only at accounting ticks, and when no sensor is sampled the thread
//! wakes only for accounting ticks. Wake-ups follow a drift-free monotonic schedule (slot `k` is due at
//! `start + k·period`; a late thread skips the missed slots and counts them as overruns instead of
//! drifting). Each read's energy delta is converted to CO2 at that instant's intensity and
//! accumulated per domain. Every `1/attribution_hz` the accumulated interval is split among the
//! jobs by their CPU-time (or GPU-utilisation) deltas and published under the engine's lock: one
//! "accounting tick". A failed sensor read is counted and logged (1st, 10th, 100th, … time) and
//! retried at the next slot; since sensors report cumulative energy, the next good read carries
//! the missed energy, so the integral is not lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::attribution::{IdlePolicy, cpu_denominator, split};
use crate::carbon::Carbon;
use crate::jobs::{DomainTotals, JobId, JobSource, Tracker, resolve_cgroup};
use crate::root::SysRoot;
use crate::sensors::{DomainInfo, DomainKind, Sensor};
use crate::state::{Shared, unix_now};

/// What the sampler takes of the engine's configuration.
#[derive(Debug, Clone)]
pub(crate) struct SamplerConfig {
    /// Energy sampling rate, Hz.
    pub(crate) rate_hz: u32,
    /// Accounting rate, Hz.
    pub(crate) attribution_hz: f64,
    /// Period of persistence while running.
    pub(crate) persist_interval: Duration,
    /// Idle-power policy.
    pub(crate) idle_policy: IdlePolicy,
    /// Root of procfs/sysfs.
    pub(crate) root: SysRoot,
}

/// Owns everything the thread touches.
pub(crate) struct Sampler {
    sensors: Vec<Box<dyn Sensor>>,
    offsets: Vec<usize>,
    domains: Vec<DomainInfo>,
    cumulative: Vec<f64>,
    last: Vec<f64>,
    pending_joules: Vec<f64>,
    pending_grams: Vec<f64>,
    errors: Vec<u64>,
    carbon: Carbon,
    tracker: Tracker,
    root: SysRoot,
    policy: IdlePolicy,
    period: Duration,
    account_period: Duration,
    persist_interval: Duration,
    /// Whether any sensor wants reads at `rate_hz`; if none does, every wake-up is an
    /// accounting tick and the period is the accounting period.
    sampling: bool,
    generation: u64,
    shared: Arc<Shared>,
}

impl Sampler {
    pub(crate) fn new(
        config: SamplerConfig,
        sensors: Vec<Box<dyn Sensor>>,
        carbon: Carbon,
        tracker: Tracker,
        shared: Arc<Shared>,
    ) -> Self {
        let mut offsets = Vec::new();
        let mut domains = Vec::new();
        for s in &sensors {
            offsets.push(domains.len());
            domains.extend(s.domains().iter().cloned());
        }
        let n = domains.len();
        let errors = vec![0; sensors.len()];
        let sampling = sensors.iter().any(|s| s.sampled());
        let account_period = Duration::from_secs_f64(1.0 / config.attribution_hz);
        let period = if sampling {
            Duration::from_secs_f64(1.0 / f64::from(config.rate_hz))
        } else {
            tracing::info!(
                "no sensor has a counter to sample between accounting ticks: the sampler wakes \
                 at the accounting rate ({} Hz), not at --rate-hz",
                config.attribution_hz
            );
            account_period
        };
        Sampler {
            sensors,
            offsets,
            domains,
            cumulative: vec![0.0; n],
            last: vec![0.0; n],
            pending_joules: vec![0.0; n],
            pending_grams: vec![0.0; n],
            errors,
            carbon,
            tracker,
            root: config.root,
            policy: config.idle_policy,
            period,
            account_period,
            persist_interval: config.persist_interval,
            sampling,
            generation: 0,
            shared,
        }
    }

    /// The thread body: runs until the engine's stop flag is set, then accounts and persists.
    pub(crate) fn run(mut self) {
        let start = Instant::now();
        self.read_sensors(start, true);
        self.pending_joules.iter_mut().for_each(|p| *p = 0.0);
        self.pending_grams.iter_mut().for_each(|p| *p = 0.0);
        self.account(start);
        let mut slot: u64 = 0;
        let mut next_account = start + self.account_period;
        let mut next_persist = start + self.persist_interval;
        while !self.shared.stop.load(Ordering::SeqCst) {
            slot += 1;
            let mut due = start + self.period.mul_f64(slot as f64);
            let now = Instant::now();
            if now > due + self.period {
                let behind = now.duration_since(start).as_secs_f64() / self.period.as_secs_f64();
                let new_slot = behind.floor() as u64 + 1;
                self.shared
                    .overruns
                    .fetch_add(new_slot - slot, Ordering::Relaxed);
                slot = new_slot;
                due = start + self.period.mul_f64(slot as f64);
            }
            while Instant::now() < due && !self.shared.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
            }
            let now = Instant::now();
            let accounting = !self.sampling || now >= next_account;
            if accounting {
                self.sensors.iter_mut().for_each(|s| s.flush(now));
            }
            self.read_sensors(now, accounting);
            if accounting {
                self.account(now);
                next_account += self.account_period;
                if next_account < now {
                    next_account = now + self.account_period;
                }
            }
            if now >= next_persist {
                if let Err(e) = self.shared.persist() {
                    tracing::error!("cannot persist totals: {e}");
                }
                next_persist = now + self.persist_interval;
            }
        }
        let now = Instant::now();
        self.sensors.iter_mut().for_each(|s| s.flush(now));
        self.read_sensors(now, true);
        self.account(now);
        self.shared.lock().running = false;
        self.shared.cond.notify_all();
    }

    /// Reads the sampled sensors, and every sensor when `all` (an accounting tick).
    fn read_sensors(&mut self, now: Instant, all: bool) {
        let wall = unix_now();
        let mut failed = 0;
        for (s, sensor) in self.sensors.iter_mut().enumerate() {
            if !all && !sensor.sampled() {
                continue;
            }
            let range = self.offsets[s]..self.offsets[s] + sensor.domains().len();
            if let Err(e) = sensor.read(now, &mut self.cumulative[range.clone()]) {
                failed += 1;
                self.errors[s] += 1;
                let n = self.errors[s];
                if n.is_power_of_two() || n % 1000 == 0 {
                    tracing::warn!(
                        sensor = sensor.name(),
                        errors = n,
                        "sensor read failed (retrying): {e}"
                    );
                }
            }
            for d in range {
                let delta = (self.cumulative[d] - self.last[d]).max(0.0);
                self.last[d] = self.last[d].max(self.cumulative[d]);
                self.pending_joules[d] += delta;
                self.pending_grams[d] += self.carbon.grams(delta, wall);
            }
        }
        self.shared.samples.fetch_add(1, Ordering::Relaxed);
        if failed > 0 {
            self.shared.read_errors.fetch_add(failed, Ordering::Relaxed);
        }
    }

    fn sync_jobs(&mut self) {
        let wanted = {
            let l = self.shared.lock();
            if l.generation == self.generation {
                return;
            }
            self.generation = l.generation;
            l.state
                .jobs
                .iter()
                .filter(|(_, j)| !j.totals.finished)
                .map(|(id, j)| {
                    let source = match (&j.totals.spec.cgroup, j.totals.spec.root_pid) {
                        (Some(cg), _) => JobSource::Cgroup(resolve_cgroup(&self.root, cg)),
                        (None, pid) => JobSource::Tree {
                            root_pid: pid.unwrap_or(0),
                            start_ticks: j.root_start_ticks.unwrap_or(u64::MAX),
                        },
                    };
                    (*id, source)
                })
                .collect::<Vec<_>>()
        };
        self.tracker.sync(&wanted);
    }

    /// One accounting tick: split the pending interval among jobs and publish.
    fn account(&mut self, now: Instant) {
        self.sync_jobs();
        let cpu = self.tracker.sample(now);
        let ids: Vec<JobId> = cpu.jobs.iter().map(|j| j.id).collect();
        let cpu_weights: Vec<f64> = cpu.jobs.iter().map(|j| j.cpu_seconds).collect();
        let cpu_denom = cpu_denominator(self.policy, cpu.busy_seconds, cpu.capacity_seconds);
        let index: HashMap<JobId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut gpu_weights: HashMap<usize, (Vec<f64>, f64)> = HashMap::new();
        for (s, sensor) in self.sensors.iter_mut().enumerate() {
            for u in sensor.gpu_processes() {
                let entry = gpu_weights
                    .entry(self.offsets[s] + u.domain)
                    .or_insert_with(|| (vec![0.0; ids.len()], 0.0));
                entry.1 += u.sm_util;
                if let Some(&i) = self.tracker.job_of_pid(u.pid).and_then(|j| index.get(&j)) {
                    entry.0[i] += u.sm_util;
                }
            }
        }
        let no_gpu = (vec![0.0; ids.len()], 0.0);
        let n = self.domains.len();
        let mut job_joules = vec![vec![0.0; ids.len()]; n];
        let mut job_grams = vec![vec![0.0; ids.len()]; n];
        let mut rest_joules = vec![0.0; n];
        let mut rest_grams = vec![0.0; n];
        for d in 0..n {
            let (weights, denom) = match self.domains[d].kind {
                DomainKind::Cpu | DomainKind::Dram => (&cpu_weights, cpu_denom),
                DomainKind::Gpu => {
                    let g = gpu_weights.get(&d).unwrap_or(&no_gpu);
                    (&g.0, g.1)
                }
            };
            rest_joules[d] = split(self.pending_joules[d], weights, denom, &mut job_joules[d]);
            rest_grams[d] = split(self.pending_grams[d], weights, denom, &mut job_grams[d]);
        }
        let wall = unix_now();
        let intensity = self.carbon.intensity_at(wall);
        let mut l = self.shared.lock();
        let l = &mut *l;
        for (d, info) in self.domains.iter().enumerate() {
            add(
                &mut l.state.machine,
                info,
                self.pending_joules[d],
                self.pending_grams[d],
            );
            let mut orphan_j = 0.0;
            let mut orphan_g = 0.0;
            for (i, id) in ids.iter().enumerate() {
                match l.state.jobs.get_mut(id) {
                    Some(job) => add(
                        &mut job.totals.domains,
                        info,
                        job_joules[d][i],
                        job_grams[d][i],
                    ),
                    None => {
                        orphan_j += job_joules[d][i];
                        orphan_g += job_grams[d][i];
                    }
                }
            }
            add(
                &mut l.state.unattributed,
                info,
                rest_joules[d] + orphan_j,
                rest_grams[d] + orphan_g,
            );
        }
        l.state.tick += 1;
        let tick = l.state.tick;
        for j in &cpu.jobs {
            if let Some(job) = l.state.jobs.get_mut(&j.id) {
                let t = &mut job.totals;
                t.cpu_seconds += j.cpu_seconds;
                t.finished |= j.finished;
            }
        }
        for job in l.state.jobs.values_mut() {
            let t = &mut job.totals;
            if !t.finished || t.tick + 1 == tick {
                (t.joules, t.grams) = t
                    .domains
                    .values()
                    .fold((0.0, 0.0), |(a, b), d| (a + d.joules, b + d.grams));
                t.intensity_g_per_kwh = intensity;
                t.timestamp = wall;
                t.tick = tick;
            }
        }
        l.intensity = intensity;
        l.timestamp = wall;
        l.last_tick = Some(now);
        self.pending_joules.iter_mut().for_each(|p| *p = 0.0);
        self.pending_grams.iter_mut().for_each(|p| *p = 0.0);
        self.shared.cond.notify_all();
    }
}

fn add(
    map: &mut std::collections::BTreeMap<String, DomainTotals>,
    info: &DomainInfo,
    joules: f64,
    grams: f64,
) {
    let e = map.entry(info.id.clone()).or_insert(DomainTotals {
        kind: info.kind,
        provenance: info.provenance,
        joules: 0.0,
        grams: 0.0,
    });
    e.provenance = info.provenance;
    e.joules += joules;
    e.grams += grams;
}
