//! Client library of the meter: a blocking client ([`Client`], for the trainer's synchronous
//! epoch loop) and a Tokio one ([`AsyncClient`]), sharing here their configuration, errors, socket
//! discovery and the decoding of answers.
//!
//! Both clients remember the jobs they registered or re-attached. When the connection drops (the
//! daemon restarted), the next call reconnects with backoff, redoes the handshake, re-attaches
//! every remembered job by id and retries the call if it is idempotent. The daemon persists
//! cumulative totals per job id, so a re-attached job continues from its persisted totals:
//! nothing is lost, nothing is counted twice. A registration is never retried blindly (it may have
//! succeeded before the connection dropped).

#[path = "async.rs"]
pub mod asynchronous;
pub mod blocking;

use std::path::PathBuf;
use std::time::Duration;

pub use asynchronous::AsyncClient;
pub use blocking::Client;

use crate::codec::CodecError;
use crate::paths::{self, SocketCandidate};
use crate::protocol::{
    ErrorKind, JobId, JobReading, JobsPage, MAX_JOBS_PAGE, ProtoError, Reading, Request, Response,
    ServerStats,
};

/// How a client connects and how patient it is.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sockets to try, in order (see [`ClientConfig::discover`]).
    pub candidates: Vec<SocketCandidate>,
    /// Limit for one request/response round trip (a fresh query waits up to one publication).
    pub request_timeout: Duration,
    /// Reconnection attempts after a lost connection before giving up.
    pub reconnect_attempts: u32,
    /// First delay between reconnection attempts; doubled each time up to 1 s.
    pub reconnect_backoff: Duration,
}

impl ClientConfig {
    /// The usual discovery: `--socket` (`flag`), then `ANGES_METER_SOCKET`, then the system
    /// socket, then the user-mode socket under `$XDG_RUNTIME_DIR`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    ///
    /// use anges_common::client::ClientConfig;
    ///
    /// // A `--socket` flag comes first; the other candidates follow it.
    /// let cfg = ClientConfig::discover(Some("/tmp/my-meter.sock".into()));
    /// assert_eq!(cfg.candidates[0].path, Path::new("/tmp/my-meter.sock"));
    /// ```
    pub fn discover(flag: Option<PathBuf>) -> Self {
        let env = paths::socket_from_env();
        let user = paths::user_socket_from_env();
        Self::with_candidates(paths::socket_candidates(
            flag.as_deref(),
            env.as_deref(),
            user.as_deref(),
        ))
    }

    /// A configuration that tries exactly `candidates`.
    pub fn with_candidates(candidates: Vec<SocketCandidate>) -> Self {
        ClientConfig {
            candidates,
            request_timeout: Duration::from_secs(10),
            reconnect_attempts: 20,
            reconnect_backoff: Duration::from_millis(50),
        }
    }

    /// A configuration for one explicit socket path.
    pub fn socket(path: impl Into<PathBuf>) -> Self {
        Self::with_candidates(vec![SocketCandidate {
            path: path.into(),
            origin: paths::SocketOrigin::Flag,
        }])
    }

    /// Bounds reconnection after a lost connection to about `window` of waiting: sets
    /// [`ClientConfig::reconnect_attempts`] to the most attempts whose backoff delays add up to
    /// no more than `window` (at least one). The default, 20 attempts, waits about 16.5 s.
    pub fn set_reconnect_window(&mut self, window: Duration) {
        let mut waited = Duration::ZERO;
        let mut attempts = 0u32;
        while attempts < u32::MAX {
            let delay = self.backoff(attempts);
            if waited + delay > window {
                break;
            }
            waited += delay;
            attempts += 1;
            if delay >= Duration::from_secs(1) {
                // Every further attempt waits the 1 s cap.
                let rest = (window - waited).as_secs();
                attempts = attempts.saturating_add(u32::try_from(rest).unwrap_or(u32::MAX));
                break;
            }
        }
        self.reconnect_attempts = attempts.max(1);
    }

    /// Delay before reconnection attempt `attempt` (0-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(10);
        (self.reconnect_backoff * factor).min(Duration::from_secs(1))
    }
}

/// What the daemon said about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The daemon's package version.
    pub daemon_version: String,
    /// Minimum interval between published readings.
    pub publish_interval: Duration,
    /// The uid the daemon sees for this client.
    pub peer_uid: u32,
    /// The socket used, and why it was chosen.
    pub endpoint: SocketCandidate,
}

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No candidate socket accepted a connection.
    #[error("no meter daemon reachable; tried: {}", tried.join("; "))]
    NoDaemon {
        /// Each candidate and why it failed.
        tried: Vec<String>,
    },
    /// The daemon speaks another protocol version.
    #[error("protocol version mismatch: client {client}, daemon {daemon}")]
    VersionMismatch {
        /// Our version.
        client: u32,
        /// The daemon's version.
        daemon: u32,
    },
    /// The daemon answered with an error.
    #[error("daemon: {0}")]
    Daemon(#[from] ProtoError),
    /// No answer within the request timeout.
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    /// The connection dropped and could not be re-established.
    #[error("connection to the daemon lost: {0}")]
    Disconnected(String),
    /// Framing or encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The daemon answered something that does not fit the request.
    #[error("unexpected answer from the daemon: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// `true` when the connection is unusable and a reconnection may help.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Disconnected(_)
                | ClientError::Codec(CodecError::Truncated | CodecError::Io(_))
        )
    }
}

/// Whether a request may be sent again after the connection dropped without an answer.
pub(crate) fn is_idempotent(req: &Request) -> bool {
    !matches!(req, Request::RegisterJob { .. })
}

/// What a failed exchange of `req` means for both clients: whether the connection must be
/// dropped (it was lost, or a timeout left a late answer in flight), and the error to return, or
/// `None` when the request is idempotent and may be retried on a new connection.
pub(crate) fn after_failure(req: &Request, e: ClientError) -> (bool, Option<ClientError>) {
    if e.is_connection_lost() {
        if !is_idempotent(req) {
            return (true, Some(e));
        }
        tracing::warn!(error = %e, "connection to the meter lost; reconnecting");
        return (true, None);
    }
    let late_answer_in_flight = matches!(e, ClientError::Timeout(_));
    (late_answer_in_flight, Some(e))
}

/// The handshake frame.
pub(crate) fn hello() -> Request {
    Request::Hello {
        protocol_version: crate::PROTOCOL_VERSION,
    }
}

/// Checks the daemon's handshake answer.
pub(crate) fn check_hello(
    resp: Response,
    endpoint: &SocketCandidate,
) -> Result<DaemonInfo, ClientError> {
    match resp {
        Response::Hello {
            protocol_version,
            daemon_version,
            publish_interval_ms,
            peer_uid,
        } => {
            if protocol_version != crate::PROTOCOL_VERSION {
                return Err(ClientError::VersionMismatch {
                    client: crate::PROTOCOL_VERSION,
                    daemon: protocol_version,
                });
            }
            Ok(DaemonInfo {
                daemon_version,
                publish_interval: Duration::from_millis(publish_interval_ms),
                peer_uid,
                endpoint: endpoint.clone(),
            })
        }
        other => Err(unexpected_or_error(other)),
    }
}

/// Turns an answer of the wrong kind into the right error.
pub(crate) fn unexpected_or_error(resp: Response) -> ClientError {
    match resp {
        Response::Error(e) => ClientError::Daemon(e),
        other => ClientError::Unexpected(format!("{other:?}")),
    }
}

/// Extracts a job reading (register, reattach, query).
pub(crate) fn expect_job(resp: Response) -> Result<JobReading, ClientError> {
    match resp {
        Response::Job(j) => Ok(j),
        other => Err(unexpected_or_error(other)),
    }
}

/// Extracts a job's final reading (unregister).
pub(crate) fn expect_unregistered(resp: Response) -> Result<JobReading, ClientError> {
    match resp {
        Response::Unregistered(j) => Ok(j),
        other => Err(unexpected_or_error(other)),
    }
}

/// Extracts the machine's reading.
pub(crate) fn expect_machine(resp: Response) -> Result<Reading, ClientError> {
    match resp {
        Response::Machine(r) => Ok(r),
        other => Err(unexpected_or_error(other)),
    }
}

/// Extracts a job list.
pub(crate) fn expect_jobs(resp: Response) -> Result<Vec<JobReading>, ClientError> {
    match resp {
        Response::Jobs(j) => Ok(j),
        other => Err(unexpected_or_error(other)),
    }
}

/// Extracts one page of jobs.
pub(crate) fn expect_jobs_page(resp: Response) -> Result<JobsPage, ClientError> {
    match resp {
        Response::JobsPage(p) => Ok(p),
        other => Err(unexpected_or_error(other)),
    }
}

/// Extracts the daemon's counters.
pub(crate) fn expect_status(resp: Response) -> Result<ServerStats, ClientError> {
    match resp {
        Response::Status(s) => Ok(s),
        other => Err(unexpected_or_error(other)),
    }
}

/// A listing of every visible job, fetched page by page ([`Request::ListJobsPage`]) by both
/// clients' `jobs()`.
#[derive(Debug, Default)]
pub(crate) struct JobsListing {
    jobs: Vec<JobReading>,
    after: Option<JobId>,
}

impl JobsListing {
    /// The request for the next page.
    pub fn request(&self) -> Request {
        Request::ListJobsPage {
            after: self.after,
            limit: MAX_JOBS_PAGE,
        }
    }

    /// Adds a page; `true` when it was the last. A cursor that does not move forward is an
    /// error, so that a confused daemon cannot keep a client looping.
    pub fn add(&mut self, page: JobsPage) -> Result<bool, ClientError> {
        self.jobs.extend(page.jobs);
        match page.next {
            None => Ok(true),
            Some(next) if self.after.is_none_or(|a| next > a) => {
                self.after = Some(next);
                Ok(false)
            }
            Some(next) => Err(ClientError::Unexpected(format!(
                "job listing cursor went back from {:?} to {next}",
                self.after
            ))),
        }
    }

    /// `true` when `e`, the answer to the first page, says that the daemon predates paging (it
    /// cannot decode [`Request::ListJobsPage`]): the caller then asks [`Request::ListJobs`].
    pub fn predates_paging(&self, e: &ClientError) -> bool {
        self.after.is_none()
            && self.jobs.is_empty()
            && matches!(e, ClientError::Daemon(p) if p.kind == ErrorKind::Malformed)
    }

    /// The jobs listed so far.
    pub fn into_jobs(self) -> Vec<JobReading> {
        self.jobs
    }
}

/// Extracts the effective subscription period.
pub(crate) fn expect_subscribed(resp: Response) -> Result<Duration, ClientError> {
    match resp {
        Response::Subscribed { period_ms } => Ok(Duration::from_millis(period_ms)),
        other => Err(unexpected_or_error(other)),
    }
}

/// A periodic reading received by a subscribed client.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The job, or `None` for the machine.
    pub job: Option<JobId>,
    /// The reading.
    pub reading: Reading,
}

/// Most updates kept while the client waits for a response; older ones are dropped.
pub(crate) const MAX_PENDING_UPDATES: usize = 64;

/// State both clients keep across reconnections.
#[derive(Debug, Default, Clone)]
pub(crate) struct Session {
    /// Jobs to re-attach after a reconnection.
    pub jobs: Vec<JobId>,
    /// Active subscription to restore: job and period.
    pub subscription: Option<(Option<JobId>, u64)>,
    /// Updates received while waiting for a response.
    pub pending: std::collections::VecDeque<Update>,
}

impl Session {
    /// Remembers a job for re-attachment.
    pub fn remember(&mut self, job: JobId) {
        if !self.jobs.contains(&job) {
            self.jobs.push(job);
        }
    }

    /// Forgets a job (unregistered).
    pub fn forget(&mut self, job: JobId) {
        self.jobs.retain(|j| *j != job);
    }

    /// Splits a frame into an update to queue (returns `None`) or a response to hand back.
    pub fn sort(&mut self, resp: Response) -> Option<Response> {
        match resp {
            Response::Update { job, reading } => {
                if self.pending.len() == MAX_PENDING_UPDATES {
                    self.pending.pop_front();
                }
                self.pending.push_back(Update { job, reading });
                None
            }
            other => Some(other),
        }
    }

    /// The requests that restore this session on a fresh connection (after the handshake).
    pub fn restore_requests(&self) -> Vec<Request> {
        let mut out: Vec<Request> = self
            .jobs
            .iter()
            .map(|&job| Request::Reattach { job })
            .collect();
        if let Some((job, period_ms)) = self.subscription {
            out.push(Request::Subscribe { job, period_ms });
        }
        out
    }

    /// Applies the daemon's answer to one of [`Session::restore_requests`]: a job the daemon no
    /// longer knows is forgotten with a warning; any other error ends the reconnection.
    pub fn apply_restore_answer(
        &mut self,
        req: &Request,
        resp: Response,
    ) -> Result<(), ClientError> {
        match resp {
            Response::Error(e) if e.kind == ErrorKind::NoSuchJob => {
                if let Request::Reattach { job } = *req {
                    tracing::warn!(
                        job = job.0,
                        "the daemon no longer knows this job; forgetting it"
                    );
                    self.forget(job);
                }
                Ok(())
            }
            Response::Error(e) => Err(ClientError::Daemon(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorKind, SamplerHealth, Totals};

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = ClientConfig::socket("/tmp/x.sock");
        assert_eq!(cfg.backoff(0), Duration::from_millis(50));
        assert_eq!(cfg.backoff(1), Duration::from_millis(100));
        assert_eq!(cfg.backoff(30), Duration::from_secs(1));
    }

    #[test]
    fn reconnect_window_bounds_the_attempts() {
        let mut cfg = ClientConfig::socket("/tmp/x.sock");
        cfg.set_reconnect_window(Duration::from_millis(500));
        assert_eq!(cfg.reconnect_attempts, 3); // 50 + 100 + 200 ms
        cfg.set_reconnect_window(Duration::ZERO);
        assert_eq!(cfg.reconnect_attempts, 1);
        cfg.set_reconnect_window(Duration::from_secs_f64(16.55));
        assert_eq!(cfg.reconnect_attempts, 20);
        cfg.set_reconnect_window(Duration::MAX);
        assert_eq!(cfg.reconnect_attempts, u32::MAX);
    }

    #[test]
    fn version_mismatch_is_typed() {
        let endpoint = ClientConfig::socket("/tmp/x.sock").candidates[0].clone();
        let err = check_hello(
            Response::Hello {
                protocol_version: crate::PROTOCOL_VERSION + 1,
                daemon_version: "x".into(),
                publish_interval_ms: 100,
                peer_uid: 0,
            },
            &endpoint,
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::VersionMismatch { .. }));
        let err = check_hello(
            Response::Error(ProtoError::new(ErrorKind::VersionMismatch, "old")),
            &endpoint,
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::Daemon(e) if e.kind == ErrorKind::VersionMismatch));
    }

    #[test]
    fn session_restores_jobs_and_subscription_and_bounds_updates() {
        let mut s = Session::default();
        s.remember(JobId(3));
        s.remember(JobId(3));
        s.remember(JobId(5));
        s.forget(JobId(3));
        s.subscription = Some((Some(JobId(5)), 200));
        assert_eq!(
            s.restore_requests(),
            vec![
                Request::Reattach { job: JobId(5) },
                Request::Subscribe {
                    job: Some(JobId(5)),
                    period_ms: 200
                }
            ]
        );
        let reading = Reading {
            totals: Totals::default(),
            tick: 1,
            health: SamplerHealth::default(),
        };
        for _ in 0..MAX_PENDING_UPDATES + 5 {
            assert!(
                s.sort(Response::Update {
                    job: None,
                    reading: reading.clone()
                })
                .is_none()
            );
        }
        assert_eq!(s.pending.len(), MAX_PENDING_UPDATES);
        assert!(s.sort(Response::Jobs(vec![])).is_some());
    }

    #[test]
    fn listing_follows_the_cursor_and_refuses_to_go_back() {
        let mut l = JobsListing::default();
        assert_eq!(
            l.request(),
            Request::ListJobsPage {
                after: None,
                limit: MAX_JOBS_PAGE
            }
        );
        let old = ClientError::Daemon(ProtoError::new(ErrorKind::Malformed, "unknown variant"));
        assert!(l.predates_paging(&old));
        let page = |next: Option<u64>| JobsPage {
            jobs: vec![],
            next: next.map(JobId),
        };
        assert!(!l.add(page(Some(5))).unwrap());
        assert!(!l.predates_paging(&old));
        assert!(matches!(
            l.request(),
            Request::ListJobsPage {
                after: Some(JobId(5)),
                ..
            }
        ));
        assert!(l.add(page(Some(5))).is_err());
        assert!(l.add(page(None)).unwrap());
    }

    #[test]
    fn registration_is_not_retried() {
        assert!(!is_idempotent(&Request::RegisterJob {
            name: "x".into(),
            target: crate::protocol::JobTarget::Pid(1)
        }));
        assert!(is_idempotent(&Request::QueryMachine { fresh: true }));
    }
}
