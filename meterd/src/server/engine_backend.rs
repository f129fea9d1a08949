//! The real engine behind the servers: [`MeterBackend`] for [`Engine`], a field-by-field
//! conversion of the engine's totals and health into the wire protocol's types. Publications use
//! [`Engine::checkpoint`]: one consistent snapshot, saved to the state file before it is shown.

use std::collections::BTreeMap;
use std::time::Duration;

use anges_common::protocol::{self, DomainEnergy, JobMeta, JobTarget, Totals};

use anges_meter_engine::engine::{self, Engine, EngineError};
use anges_meter_engine::jobs::{self, DomainTotals};
use anges_meter_engine::sensors::Provenance;

use super::backend::{BackendError, BackendSnapshot, JobSpec, JobTotals, MeterBackend};

/// Protocol totals from the engine's per-domain map.
fn totals(
    domains: &BTreeMap<String, DomainTotals>,
    grams: f64,
    intensity: f64,
    timestamp_s: f64,
) -> Totals {
    Totals {
        domains: domains
            .iter()
            .map(|(name, d)| DomainEnergy {
                name: name.clone(),
                joules: d.joules,
                measured: d.provenance == Provenance::Measured,
            })
            .collect(),
        grams_co2: grams,
        intensity_g_per_kwh: intensity,
        timestamp_ms: (timestamp_s.max(0.0) * 1000.0) as u64,
    }
}

/// Who a job is, in protocol terms (a cgroup wins over a root PID, as in the engine).
fn job_meta(j: &jobs::JobTotals) -> JobMeta {
    let target = match (&j.spec.cgroup, j.spec.root_pid) {
        (Some(cg), _) => JobTarget::Cgroup(cg.display().to_string()),
        (None, Some(pid)) => JobTarget::Pid(pid),
        (None, None) => JobTarget::Pid(0),
    };
    JobMeta {
        id: j.id,
        name: j.spec.name.clone(),
        owner_uid: j.spec.owner_uid,
        target,
    }
}

fn job_totals(j: &jobs::JobTotals) -> JobTotals {
    JobTotals {
        meta: job_meta(j),
        totals: totals(&j.domains, j.grams, j.intensity_g_per_kwh, j.timestamp),
    }
}

fn machine_totals(m: &jobs::MachineTotals) -> Totals {
    totals(&m.domains, m.grams, m.intensity_g_per_kwh, m.timestamp)
}

fn health(h: &engine::SamplerHealth) -> protocol::SamplerHealth {
    let mut measured = Vec::new();
    let mut estimated = Vec::new();
    for s in &h.sources {
        if s.domains.is_empty() {
            continue;
        }
        if s.domains.iter().any(|(_, p)| *p == Provenance::Measured) {
            measured.push(s.source.clone());
        } else {
            estimated.push(s.source.clone());
        }
    }
    protocol::SamplerHealth {
        ticks: h.ticks,
        last_tick_age_ms: h
            .last_tick_age_s
            .map(|s| (s * 1000.0) as u64)
            .unwrap_or(u64::MAX),
        read_errors: h.read_errors,
        sources_measured: measured,
        sources_estimated: estimated,
    }
}

fn backend_error(e: EngineError) -> BackendError {
    match e {
        EngineError::UnknownJob(id) => BackendError::NoSuchJob(id),
        EngineError::NoSuchTarget(what) => BackendError::NoSuchTarget(what),
        EngineError::Job(why) => BackendError::Rejected(why),
        other => BackendError::Internal(other.to_string()),
    }
}

impl MeterBackend for Engine {
    fn register_job(&self, spec: JobSpec) -> Result<protocol::JobId, BackendError> {
        Engine::register_job(self, spec).map_err(backend_error)
    }

    fn unregister_job(&self, id: protocol::JobId) -> Result<JobTotals, BackendError> {
        Engine::unregister_job(self, id)
            .map(|j| job_totals(&j))
            .map_err(backend_error)
    }

    fn job(&self, id: protocol::JobId) -> Option<JobTotals> {
        Engine::job(self, id).map(|j| job_totals(&j))
    }

    fn jobs(&self) -> Vec<JobTotals> {
        Engine::jobs(self).iter().map(job_totals).collect()
    }

    fn machine(&self) -> Totals {
        machine_totals(&Engine::machine(self))
    }

    fn health(&self) -> protocol::SamplerHealth {
        health(&Engine::health(self))
    }

    /// [`Engine::checkpoint`]: one lock, and the state file holds it before it is published.
    fn publish_snapshot(&self) -> BackendSnapshot {
        let s = Engine::checkpoint(self);
        BackendSnapshot {
            tick: s.tick,
            machine: machine_totals(&s.machine),
            jobs: s.jobs.iter().map(job_totals).collect(),
            health: health(&s.health),
        }
    }

    fn wait_for_tick(&self, after_tick: u64, timeout: Duration) -> u64 {
        Engine::wait_for_tick(self, after_tick, timeout)
    }

    fn tick(&self) -> u64 {
        Engine::tick(self)
    }
}
