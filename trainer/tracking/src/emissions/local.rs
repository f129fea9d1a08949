//! The in-process meter: the daemon's own [`Engine`] (same sensors, same accounting, no second
//! implementation) running inside the trainer, metering this process as a job.
//!
//! It is the meter of `--meter local` (and of `auto` without a daemon), and the standby gap filler
//! of `--meter daemon`: then it runs at a low rate and is read at every epoch's end too, so that
//! an epoch the daemon cannot vouch for is still counted.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anges_meter_engine::jobs::JobTotals;
use anges_meter_engine::sensors::{DomainKind, Provenance};
use anges_meter_engine::{Engine, EngineConfig, EngineError, JobId, JobSpec};

use super::ledger::Sample;

/// The uid that owns this process (the job's owner); `u32::MAX` when `/proc` cannot tell.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// A job's cumulative figures as a ledger sample.
pub(crate) fn sample_of(job: &JobTotals) -> Sample {
    let measured = !job.domains.is_empty()
        && job
            .domains
            .values()
            .all(|d| d.provenance == Provenance::Measured);
    Sample::new(job.joules, job.grams, measured)
}

/// "measured: a, b", "estimated: c" or "measured: a; estimated: c", and whether every source with
/// domains is measured.
pub(crate) fn provenance_label(measured: &[String], estimated: &[String]) -> (String, bool) {
    match (measured.is_empty(), estimated.is_empty()) {
        (true, true) => ("no energy source reported".into(), false),
        (false, true) => (format!("measured: {}", measured.join(", ")), true),
        (true, false) => (format!("estimated: {}", estimated.join(", ")), false),
        (false, false) => (
            format!(
                "measured: {}; estimated: {}",
                measured.join(", "),
                estimated.join(", ")
            ),
            false,
        ),
    }
}

/// The in-process meter with this process registered as a job.
#[derive(Debug)]
pub(crate) struct LocalMeter {
    engine: Engine,
    job: JobId,
    provenance: String,
    measured: bool,
    gpu_domains: usize,
    fresh_timeout: Duration,
}

impl LocalMeter {
    /// Starts the engine and registers this process (and its descendants) as `job_name`.
    pub(crate) fn start(config: EngineConfig, job_name: &str) -> Result<Self, EngineError> {
        // Long enough for a couple of accounting ticks, short enough never to stall an epoch.
        let fresh_timeout = Duration::from_secs_f64((3.0 / config.attribution_hz).clamp(0.5, 3.0));
        let engine = Engine::start(config)?;
        let spec = JobSpec {
            name: job_name.to_owned(),
            root_pid: Some(std::process::id()),
            cgroup: None,
            owner_uid: own_uid(),
        };
        let job = match engine.register_job(spec) {
            Ok(job) => job,
            Err(e) => {
                if let Err(stop) = engine.shutdown() {
                    tracing::warn!("stopping the local meter: {stop}");
                }
                return Err(e);
            }
        };
        let mut measured_sources = Vec::new();
        let mut estimated_sources = Vec::new();
        let mut gpu_domains = 0;
        for s in engine.health().sources {
            if s.domains.is_empty() {
                continue;
            }
            gpu_domains += s
                .domains
                .iter()
                .filter(|(id, _)| id.starts_with("gpu:"))
                .count();
            if s.domains.iter().all(|(_, p)| *p == Provenance::Measured) {
                measured_sources.push(s.source);
            } else {
                estimated_sources.push(s.source);
            }
        }
        let (provenance, measured) = provenance_label(&measured_sources, &estimated_sources);
        Ok(LocalMeter {
            engine,
            job,
            provenance,
            measured,
            gpu_domains,
            fresh_timeout,
        })
    }

    /// "measured: powercap", "estimated: estimate", ….
    pub(crate) fn provenance(&self) -> &str {
        &self.provenance
    }

    /// Whether every energy source of the engine is a hardware counter.
    pub(crate) fn measured(&self) -> bool {
        self.measured
    }

    /// How many GPUs the engine meters.
    pub(crate) fn gpu_domains(&self) -> usize {
        self.gpu_domains
    }

    /// The job's energy so far by kind of domain: CPU, memory, GPU, joules.
    pub(crate) fn by_kind(&self) -> Option<[f64; 3]> {
        let job = self.engine.job(self.job)?;
        let mut out = [0.0; 3];
        for d in job.domains.values() {
            let i = match d.kind {
                DomainKind::Cpu => 0,
                DomainKind::Dram => 1,
                DomainKind::Gpu => 2,
            };
            out[i] += d.joules;
        }
        Some(out)
    }

    /// The accounting tick published so far (take it before the work a reading must include).
    pub(crate) fn tick(&self) -> u64 {
        self.engine.tick()
    }

    /// The job's figures now.
    pub(crate) fn current(&self) -> Result<Sample, String> {
        self.engine
            .job(self.job)
            .map(|j| sample_of(&j))
            .ok_or_else(|| format!("the local meter lost job {}", self.job))
    }

    /// The job's figures once an accounting tick later than `after` is published (a reading
    /// that includes everything done before `after` was taken); waits at most a few ticks. When
    /// no tick comes in time, the latest figures with a note saying they are not fresh (they
    /// are cumulative, so what they miss goes to the next reading).
    pub(crate) fn fresh_after(&self, after: u64) -> Result<(Sample, Option<String>), String> {
        let tick = self.engine.wait_for_tick(after, self.fresh_timeout);
        let note = (tick <= after).then(|| {
            format!(
                "the local meter published no accounting tick within {:?}",
                self.fresh_timeout
            )
        });
        Ok((self.current()?, note))
    }

    /// A fresh reading (after the next accounting tick), as [`LocalMeter::fresh_after`].
    pub(crate) fn fresh(&self) -> Result<(Sample, Option<String>), String> {
        self.fresh_after(self.tick())
    }

    /// Unregisters the job, stops the engine and returns the job's final figures.
    pub(crate) fn finish(self) -> Option<Sample> {
        let last = match self.engine.unregister_job(self.job) {
            Ok(j) => Some(sample_of(&j)),
            Err(e) => {
                tracing::warn!("local meter: {e}");
                None
            }
        };
        // `Drop` stops the engine.
        last
    }
}

impl Drop for LocalMeter {
    fn drop(&mut self) {
        if let Err(e) = self.engine.shutdown() {
            tracing::warn!("stopping the local meter: {e}");
        }
    }
}
