//! The daemon side of the trainer's meter: this process registered as a job with `anges-meterd`,
//! read fresh after every epoch, and told apart from a daemon that restarted in between.
//!
//! The blocking client reconnects by itself and re-attaches the job by id, so a daemon that
//! restarted between two epochs may answer the next read as if nothing happened — but with totals
//! rewound to its last persisted figure, or without the energy spent while it was down. Such a
//! reading must not be compared with the previous one. To know, the link holds a *canary*: a
//! second, idle connection that has only shaken hands. A daemon process that exits closes it, so
//! "the canary is still open after the read, and was opened before the previous reading" proves
//! that both readings come from one daemon instance. A reading that cannot be proven continuous is
//! reported as [`DaemonObservation::Rebased`]: the ledger fills that epoch locally and re-baselines
//! the daemon there.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anges_common::client::{Client, ClientConfig, ClientError};
use anges_common::codec;
use anges_common::protocol::{ErrorKind, JobId, JobReading, JobTarget, Request, Response};

use super::ledger::{DaemonObservation, Sample};
use super::local::provenance_label;

/// A job reading as a ledger sample.
fn sample_of(r: &JobReading) -> Sample {
    let totals = &r.reading.totals;
    Sample::new(
        totals.joules(),
        totals.grams_co2,
        !totals.domains.is_empty() && totals.all_measured(),
    )
}

/// An idle, handshaken connection to the daemon whose closing reveals that the daemon exited.
#[derive(Debug)]
struct Canary {
    stream: UnixStream,
}

impl Canary {
    /// Connects to `path` and shakes hands (each step bounded by `timeout`).
    fn open(path: &Path, timeout: Duration) -> Result<Self, String> {
        let mut stream =
            UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let hello = Request::Hello {
            protocol_version: anges_common::PROTOCOL_VERSION,
        };
        codec::write_frame(&mut stream, &hello).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        if !codec::read_frame(&mut stream, &mut buf, codec::MAX_FRAME).map_err(|e| e.to_string())? {
            return Err("the meter closed the connection".into());
        }
        match codec::decode::<Response>(&buf).map_err(|e| e.to_string())? {
            Response::Hello { .. } => {}
            other => return Err(format!("unexpected handshake answer: {other:?}")),
        }
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Canary { stream })
    }

    /// `false` once the daemon closed the connection (it exited), without blocking.
    fn alive(&mut self) -> bool {
        let mut buf = [0u8; 512];
        // The daemon sends nothing unasked; anything there is drained, in bounded steps.
        for _ in 0..64 {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// This process registered as a job with the daemon.
#[derive(Debug)]
pub(crate) struct DaemonLink {
    client: Client,
    job: JobId,
    name: String,
    socket: PathBuf,
    canary: Option<Canary>,
    canary_timeout: Duration,
    canary_warned: bool,
    provenance: String,
    measured: bool,
    intensity: f64,
}

impl DaemonLink {
    /// Connects as `cfg` says and registers this process as `job_name`; returns the link and the
    /// job's reading at registration.
    pub(crate) fn connect(
        cfg: ClientConfig,
        job_name: &str,
    ) -> Result<(Self, Sample), ClientError> {
        // The watch connection only shakes hands: a second is plenty, and it bounds the stall
        // when a hung daemon accepts connections without answering.
        let canary_timeout = cfg.request_timeout.min(Duration::from_secs(1));
        let mut client = Client::connect(cfg)?;
        let socket = client.info().endpoint.path.clone();
        // Opened before the registration, so that the registration reading is provably from the
        // daemon instance the canary watches.
        let canary = match Canary::open(&socket, canary_timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "cannot hold a watch connection to the meter ({e}); a daemon restart that \
                     the client hides will only be noticed if the totals go back"
                );
                None
            }
        };
        let reading = client.register_job(job_name, JobTarget::Pid(std::process::id()))?;
        let health = &reading.reading.health;
        let (provenance, measured) =
            provenance_label(&health.sources_measured, &health.sources_estimated);
        let link = DaemonLink {
            client,
            job: reading.job.id,
            name: job_name.to_owned(),
            socket,
            canary_warned: canary.is_none(),
            canary,
            canary_timeout,
            provenance,
            measured,
            intensity: reading.reading.totals.intensity_g_per_kwh,
        };
        Ok((link, sample_of(&reading)))
    }

    /// The socket in use.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The job's id with the daemon (it changes if the daemon lost the job and it was
    /// re-registered).
    pub(crate) fn job(&self) -> JobId {
        self.job
    }

    /// "measured: rapl-perf", … as the daemon said at registration.
    pub(crate) fn provenance(&self) -> &str {
        &self.provenance
    }

    /// Whether every source of the daemon is a hardware counter.
    pub(crate) fn measured(&self) -> bool {
        self.measured
    }

    /// The grid intensity the daemon used at registration, gCO2eq/kWh.
    pub(crate) fn intensity(&self) -> f64 {
        self.intensity
    }

    fn open_canary(&mut self) -> Option<Canary> {
        match Canary::open(&self.socket, self.canary_timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                if !self.canary_warned {
                    tracing::warn!("cannot hold a watch connection to the meter: {e}");
                    self.canary_warned = true;
                }
                None
            }
        }
    }

    /// Registers the job again after the daemon lost it (`why`).
    fn reregister(&mut self, why: String) -> Result<(JobReading, Option<String>), ClientError> {
        let reading = self
            .client
            .register_job(&self.name, JobTarget::Pid(std::process::id()))?;
        let why = format!("{why}; re-registered as job {}", reading.job.id);
        tracing::info!("{why}");
        self.job = reading.job.id;
        Ok((reading, Some(why)))
    }

    /// The job's reading (`fresh`: the next publication), re-registering the job when the daemon
    /// no longer has it; the second value says why the reading starts a new series.
    fn query(&mut self, fresh: bool) -> Result<(JobReading, Option<String>), ClientError> {
        match self.client.job(self.job, fresh) {
            Ok(r) if r.job.target == JobTarget::Pid(std::process::id()) => Ok((r, None)),
            Ok(r) => self.reregister(format!(
                "the meter's job {} is no longer this process (it is {:?})",
                self.job, r.job.target
            )),
            Err(ClientError::Daemon(e)) if e.kind == ErrorKind::NoSuchJob => {
                self.reregister(format!("the meter lost job {}", self.job))
            }
            Err(e) => Err(e),
        }
    }

    /// A reading of the job classified for the ledger: with `fresh`, one that includes the work
    /// done so far (the next publication); without, the daemon's latest publication.
    pub(crate) fn observe(&mut self, fresh: bool) -> DaemonObservation {
        let had_canary = self.canary.is_some();
        if !had_canary {
            self.canary = self.open_canary();
        }
        let opened_now = !had_canary && self.canary.is_some();
        let read = self.query(fresh);
        let alive = self.canary.as_mut().map(Canary::alive);
        let (reading, mut why) = match read {
            Ok(x) => x,
            Err(e) => {
                if alive == Some(false) {
                    self.canary = None;
                }
                return DaemonObservation::Failed(e.to_string());
            }
        };
        let mut sample = sample_of(&reading);
        match alive {
            // The watch connection is younger than the previous reading: it cannot vouch for it.
            Some(true) if opened_now && why.is_none() => {
                why = Some("re-attached to the meter".into());
            }
            Some(true) => {}
            Some(false) => {
                // The daemon that served the previous reading exited since; this reading may be
                // from either instance. Watch the new one, then take the baseline from it.
                self.canary = self.open_canary();
                match self.query(false) {
                    Ok((r, w)) => {
                        sample = sample_of(&r);
                        let mut text = "the meter restarted since the previous epoch".to_owned();
                        if let Some(w) = w.or(why) {
                            text = format!("{text}; {w}");
                        }
                        why = Some(text);
                    }
                    Err(e) => {
                        return DaemonObservation::Failed(format!(
                            "the meter restarted since the previous epoch: {e}"
                        ));
                    }
                }
            }
            // No watch connection possible: continuity is assumed (the ledger still catches
            // totals that go back).
            None => {}
        }
        match why {
            None => DaemonObservation::Continuous(sample),
            Some(why) => DaemonObservation::Rebased { sample, why },
        }
    }

    /// Unregisters the job and returns the daemon's final figures for it.
    pub(crate) fn finish(mut self) -> Result<Sample, String> {
        self.client
            .unregister_job(self.job)
            .map(|r| sample_of(&r))
            .map_err(|e| e.to_string())
    }
}
