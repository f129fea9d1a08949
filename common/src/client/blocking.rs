//! The blocking client, over `std::os::unix::net::UnixStream` with read/write timeouts; for
//! synchronous callers such as the trainer's epoch loop and the `anges-meter` CLI.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{
    ClientConfig, ClientError, DaemonInfo, JobsListing, Session, Update, after_failure,
    check_hello, expect_job, expect_jobs, expect_jobs_page, expect_machine, expect_status,
    expect_subscribed, expect_unregistered, hello,
};
use crate::codec::{self, CodecError, MAX_FRAME};
use crate::protocol::{JobId, JobReading, JobTarget, Reading, Request, Response, ServerStats};

/// A blocking connection to the meter daemon that survives daemon restarts.
///
/// # Examples
///
/// Meter this process as a job and read its totals (here against a stand-in daemon on a socket
/// in a temporary folder; a real client would use [`ClientConfig::discover`]):
///
/// ```
/// # fn fake_daemon(listener: std::os::unix::net::UnixListener) {
/// #     use anges_common::codec::{MAX_FRAME, decode, read_frame, write_frame};
/// #     use anges_common::protocol::*;
/// #     let (mut stream, _) = listener.accept().unwrap();
/// #     let reading = |joules: f64| Reading {
/// #         totals: Totals {
/// #             domains: vec![DomainEnergy { name: "package-0".into(), joules, measured: true }],
/// #             grams_co2: joules * 1e-4,
/// #             ..Totals::default()
/// #         },
/// #         tick: 1,
/// #         health: SamplerHealth::default(),
/// #     };
/// #     let job = |target: JobTarget, joules| JobReading {
/// #         job: JobMeta { id: JobId(1), name: "train".into(), owner_uid: 1000, target },
/// #         reading: reading(joules),
/// #     };
/// #     let pid = JobTarget::Pid(std::process::id());
/// #     let mut buf = Vec::new();
/// #     while read_frame(&mut stream, &mut buf, MAX_FRAME).unwrap() {
/// #         let answer = match decode(&buf).unwrap() {
/// #             Request::Hello { protocol_version } => Response::Hello {
/// #                 protocol_version,
/// #                 daemon_version: "doc".into(),
/// #                 publish_interval_ms: 100,
/// #                 peer_uid: 1000,
/// #             },
/// #             Request::RegisterJob { target, .. } => Response::Job(job(target, 0.0)),
/// #             Request::QueryJob { .. } => Response::Job(job(pid.clone(), 2.5)),
/// #             Request::QueryMachine { .. } => Response::Machine(reading(10.0)),
/// #             Request::UnregisterJob { .. } => Response::Unregistered(job(pid.clone(), 2.5)),
/// #             _ => Response::Error(ProtoError::new(ErrorKind::InvalidRequest, "not here")),
/// #         };
/// #         write_frame(&mut stream, &answer).unwrap();
/// #     }
/// # }
/// # let dir = tempfile::tempdir()?;
/// # let socket = dir.path().join("meter.sock");
/// # let listener = std::os::unix::net::UnixListener::bind(&socket)?;
/// # std::thread::spawn(move || fake_daemon(listener));
/// use anges_common::client::{Client, ClientConfig};
/// use anges_common::protocol::JobTarget;
///
/// let mut client = Client::connect(ClientConfig::socket(&socket))?;
/// let job = client.register_job("train", JobTarget::Pid(std::process::id()))?;
/// // `fresh`: wait for the next publication, so the work done so far is included.
/// let now = client.job(job.job.id, true)?;
/// assert_eq!(now.reading.totals.joules(), 2.5);
/// assert!(client.machine(false)?.totals.joules() >= now.reading.totals.joules());
/// let last = client.unregister_job(job.job.id)?;
/// println!("job {}: {:.4} g CO2-eq", last.job.id, last.reading.totals.grams_co2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    cfg: ClientConfig,
    stream: Option<UnixStream>,
    info: DaemonInfo,
    session: Session,
    buf: Vec<u8>,
}

/// Maps a codec failure to a client error, turning socket timeouts into [`ClientError::Timeout`].
fn from_codec(e: CodecError, timeout: Duration) -> ClientError {
    match e {
        CodecError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ClientError::Timeout(timeout)
        }
        other => ClientError::Codec(other),
    }
}

/// One request/response exchange on `stream`; updates met on the way are queued in `session`.
fn exchange(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    session: &mut Session,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    if let Err(e) = codec::write_frame(stream, req) {
        // The daemon may have refused us and closed; its reason is still readable.
        return match read_one(stream, buf, timeout) {
            Ok(resp @ Response::Error(_)) => Ok(resp),
            _ => Err(from_codec(e, timeout)),
        };
    }
    next_response(stream, buf, session, timeout)
}

/// Reads one frame.
fn read_one(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    if !codec::read_frame(stream, buf, MAX_FRAME).map_err(|e| from_codec(e, timeout))? {
        return Err(ClientError::Disconnected(
            "the daemon closed the connection".into(),
        ));
    }
    Ok(codec::decode(buf)?)
}

/// Reads frames until one that is not an update.
fn next_response(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    session: &mut Session,
    timeout: Duration,
) -> Result<Response, ClientError> {
    loop {
        if let Some(resp) = session.sort(read_one(stream, buf, timeout)?) {
            return Ok(resp);
        }
    }
}

/// Connects to the first candidate that answers the handshake and restores `session` on it.
fn open(
    cfg: &ClientConfig,
    session: &mut Session,
    buf: &mut Vec<u8>,
) -> Result<(UnixStream, DaemonInfo), ClientError> {
    let mut tried = Vec::new();
    for candidate in &cfg.candidates {
        let mut stream = match UnixStream::connect(&candidate.path) {
            Ok(s) => s,
            Err(e) => {
                tried.push(format!(
                    "{} ({}): {e}",
                    candidate.path.display(),
                    candidate.origin
                ));
                continue;
            }
        };
        let timeout = cfg.request_timeout;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| ClientError::Codec(CodecError::Io(e)))?;
        let resp = exchange(&mut stream, buf, session, &hello(), timeout)?;
        let info = check_hello(resp, candidate)?;
        tracing::debug!(socket = %candidate.path.display(), origin = %candidate.origin, "connected to the meter");
        for req in session.restore_requests() {
            let resp = exchange(&mut stream, buf, session, &req, timeout)?;
            session.apply_restore_answer(&req, resp)?;
        }
        return Ok((stream, info));
    }
    Err(ClientError::NoDaemon { tried })
}

impl Client {
    /// Connects to the first reachable daemon among `cfg.candidates` and shakes hands.
    pub fn connect(cfg: ClientConfig) -> Result<Self, ClientError> {
        let mut session = Session::default();
        let mut buf = Vec::new();
        let (stream, info) = open(&cfg, &mut session, &mut buf)?;
        Ok(Client {
            cfg,
            stream: Some(stream),
            info,
            session,
            buf,
        })
    }

    /// What the daemon said in the handshake, including the socket used and why.
    pub fn info(&self) -> &DaemonInfo {
        &self.info
    }

    /// Re-establishes the connection with backoff, restoring jobs and subscription.
    fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut last = String::new();
        for attempt in 0..self.cfg.reconnect_attempts.max(1) {
            std::thread::sleep(self.cfg.backoff(attempt));
            match open(&self.cfg, &mut self.session, &mut self.buf) {
                Ok((stream, info)) => {
                    tracing::info!(attempt, "reconnected to the meter");
                    self.stream = Some(stream);
                    self.info = info;
                    return Ok(());
                }
                Err(e @ ClientError::VersionMismatch { .. }) => return Err(e),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ClientError::Disconnected(last))
    }

    /// Sends `req` and extracts the answer, reconnecting (and retrying idempotent requests) when
    /// the connection was lost.
    fn call<T>(
        &mut self,
        req: Request,
        extract: fn(Response) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        loop {
            if self.stream.is_none() {
                self.reconnect()?;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match exchange(
                stream,
                &mut self.buf,
                &mut self.session,
                &req,
                self.cfg.request_timeout,
            ) {
                Ok(resp) => return extract(resp),
                Err(e) => {
                    let (drop_connection, fail) = after_failure(&req, e);
                    if drop_connection {
                        self.stream = None;
                    }
                    if let Some(e) = fail {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Registers a job (a process tree or a cgroup) owned by the caller.
    pub fn register_job(
        &mut self,
        name: &str,
        target: JobTarget,
    ) -> Result<JobReading, ClientError> {
        let job = self.call(
            Request::RegisterJob {
                name: name.to_owned(),
                target,
            },
            expect_job,
        )?;
        self.session.remember(job.job.id);
        Ok(job)
    }

    /// Re-attaches to a job registered earlier (e.g. by a previous run of this program).
    pub fn reattach(&mut self, job: JobId) -> Result<JobReading, ClientError> {
        let out = self.call(Request::Reattach { job }, expect_job)?;
        self.session.remember(job);
        Ok(out)
    }

    /// Stops metering a job and returns its final reading.
    pub fn unregister_job(&mut self, job: JobId) -> Result<JobReading, ClientError> {
        let out = self.call(Request::UnregisterJob { job }, expect_unregistered)?;
        self.session.forget(job);
        Ok(out)
    }

    /// A job's cumulative reading; `fresh` waits for the next publication.
    pub fn job(&mut self, job: JobId, fresh: bool) -> Result<JobReading, ClientError> {
        self.call(Request::QueryJob { job, fresh }, expect_job)
    }

    /// The machine's cumulative reading; `fresh` waits for the next publication.
    pub fn machine(&mut self, fresh: bool) -> Result<Reading, ClientError> {
        self.call(Request::QueryMachine { fresh }, expect_machine)
    }

    /// Every job visible to the caller, by id, fetched page by page (any number of jobs; a
    /// daemon that predates paging is asked for the whole list at once).
    pub fn jobs(&mut self) -> Result<Vec<JobReading>, ClientError> {
        let mut listing = JobsListing::default();
        loop {
            match self.call(listing.request(), expect_jobs_page) {
                Ok(page) => {
                    if listing.add(page)? {
                        return Ok(listing.into_jobs());
                    }
                }
                Err(e) if listing.predates_paging(&e) => {
                    return self.call(Request::ListJobs, expect_jobs);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The daemon's aggregate counters (connections, requests, bad frames, rate-limited
    /// requests, refused connections, dropped updates).
    pub fn status(&mut self) -> Result<ServerStats, ClientError> {
        self.call(Request::Status, expect_status)
    }

    /// Subscribes to periodic readings of `job` (or the machine); returns the effective period.
    pub fn subscribe(
        &mut self,
        job: Option<JobId>,
        period: Duration,
    ) -> Result<Duration, ClientError> {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let effective = self.call(Request::Subscribe { job, period_ms }, expect_subscribed)?;
        let effective_ms = u64::try_from(effective.as_millis()).unwrap_or(u64::MAX);
        self.session.subscription = Some((job, effective_ms));
        Ok(effective)
    }

    /// The next periodic reading of the subscription (blocks up to the request timeout).
    pub fn next_update(&mut self) -> Result<Update, ClientError> {
        loop {
            if let Some(u) = self.session.pending.pop_front() {
                return Ok(u);
            }
            if self.stream.is_none() {
                self.reconnect()?;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match read_one(stream, &mut self.buf, self.cfg.request_timeout) {
                Ok(Response::Update { job, reading }) => return Ok(Update { job, reading }),
                Ok(Response::Error(e)) => return Err(ClientError::Daemon(e)),
                Ok(other) => {
                    return Err(ClientError::Unexpected(format!("{other:?}")));
                }
                Err(e) if e.is_connection_lost() => {
                    self.stream = None;
                    tracing::warn!(error = %e, "subscription lost; reconnecting");
                }
                Err(e) => return Err(e),
            }
        }
    }
}
