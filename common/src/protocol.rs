//! The meter's wire protocol: the messages a client and `anges-meterd` exchange over the local
//! socket, encoded with `postcard` inside length-delimited frames (see [`crate::codec`]).
//!
//! A connection opens with [`Request::Hello`] answered by [`Response::Hello`] (or by an
//! [`ErrorKind::VersionMismatch`] error, after which the daemon closes the connection). Both
//! `Hello` variants are the first variant of their enum and must stay so in every protocol
//! version: postcard encodes the variant index first, so any version can decode the other's
//! handshake and report a mismatch instead of garbage.
//!
//! Requests are answered in order, one response each. A subscribed connection additionally
//! receives [`Response::Update`] frames, interleaved with the responses.
//!
//! Compatibility within one [`crate::PROTOCOL_VERSION`]: new variants go at the end of their
//! enum, so that every older message keeps its encoding. A daemon that predates a variant answers
//! it with [`ErrorKind::Malformed`]; the clients fall back where an older request exists
//! ([`Request::ListJobsPage`] falls back to [`Request::ListJobs`]).

use serde::{Deserialize, Serialize};

/// Identifier of a registered job; stable across daemon restarts (the daemon persists it and
/// never reuses one state directory's ids).
///
/// One type for the wire and for the meter's engine. It is `#[serde(transparent)]`, so every
/// format encodes it exactly as the bare `u64` it wraps: the protocol's postcard bytes, the
/// daemon's `state.json` (job ids as map keys) and the D-Bus `t` values are those of a `u64`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    /// The number, honouring width and alignment (`{:>6}` pads like a `u64`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for JobId {
    fn from(id: u64) -> Self {
        JobId(id)
    }
}

impl From<JobId> for u64 {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;

    /// Parses the decimal number (as printed by `Display`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Longest accepted job name, in bytes.
pub const MAX_JOB_NAME: usize = 256;

/// Longest accepted cgroup path, in bytes.
pub const MAX_CGROUP_PATH: usize = 4096;

/// Most jobs in one [`Response::JobsPage`]; a larger `limit` is lowered to it.
pub const MAX_JOBS_PAGE: u32 = 256;

/// Most bytes the jobs of one [`Response::JobsPage`] may take once encoded: a page stops before
/// the job that would cross it, so that the answer always fits in one frame
/// ([`crate::codec::MAX_FRAME`], less room for the variant, the list length and the cursor).
pub const MAX_JOBS_PAGE_BYTES: usize = crate::codec::MAX_FRAME - 1024;

/// What a job is made of: a process tree or a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobTarget {
    /// A root PID and all of its descendants.
    Pid(u32),
    /// A cgroup v2 path relative to the cgroup root (e.g. `user.slice/…/job.scope`).
    Cgroup(String),
}

/// Energy of one domain (CPU package, DRAM, GPU, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEnergy {
    /// Domain name, e.g. `package-0`, `dram-0`, `gpu-0`.
    pub name: String,
    /// Cumulative energy in joules.
    pub joules: f64,
    /// `true` when integrated from a hardware counter, `false` when estimated from utilisation.
    pub measured: bool,
}

/// Cumulative totals of the machine or of one job at one instant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Per-domain cumulative energy.
    pub domains: Vec<DomainEnergy>,
    /// Cumulative CO2-eq in grams (energy × intensity × PUE, integrated over time).
    pub grams_co2: f64,
    /// Carbon intensity used for the latest interval, gCO2eq/kWh.
    pub intensity_g_per_kwh: f64,
    /// Wall-clock time of these totals, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl Totals {
    /// Sum of the domains' energy, joules (0, not −0, when there is no domain yet: Rust's float
    /// sum of nothing is −0.0, which printed as "-0.000 J" before the first tick).
    pub fn joules(&self) -> f64 {
        self.domains.iter().map(|d| d.joules).sum::<f64>() + 0.0
    }

    /// `true` when every domain was measured (no estimate involved).
    pub fn all_measured(&self) -> bool {
        self.domains.iter().all(|d| d.measured)
    }
}

/// The sampler's health, attached to every reading.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SamplerHealth {
    /// Sampling ticks since the daemon started.
    pub ticks: u64,
    /// Age of the last tick when the reading was published, milliseconds; `u64::MAX` before the
    /// first tick.
    pub last_tick_age_ms: u64,
    /// Sensor read errors since the daemon started.
    pub read_errors: u64,
    /// Sources read from hardware counters (e.g. `rapl-perf`, `nvml`).
    pub sources_measured: Vec<String>,
    /// Sources estimated from utilisation.
    pub sources_estimated: Vec<String>,
}

/// What a client receives: totals plus the publication tick and the sampler's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The cumulative totals.
    pub totals: Totals,
    /// Sampler tick these totals include (monotonic within one daemon run).
    pub tick: u64,
    /// Sampler health at publication.
    pub health: SamplerHealth,
}

/// Who a job is and who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    /// The job's id.
    pub id: JobId,
    /// Human-readable name given at registration.
    pub name: String,
    /// Uid of the client that registered it.
    pub owner_uid: u32,
    /// What the job is made of.
    pub target: JobTarget,
}

/// A job and its cumulative reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReading {
    /// The job.
    pub job: JobMeta,
    /// Its cumulative reading.
    pub reading: Reading,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Handshake; must be the first frame. Keep as variant 0 forever.
    Hello {
        /// The client's [`crate::PROTOCOL_VERSION`].
        protocol_version: u32,
    },
    /// Register a new job owned by the caller.
    RegisterJob {
        /// Human-readable name (at most [`MAX_JOB_NAME`] bytes).
        name: String,
        /// Root PID (must belong to the caller unless root) or cgroup.
        target: JobTarget,
    },
    /// Re-attach to a job registered earlier (e.g. before a daemon restart).
    Reattach {
        /// The job's id.
        job: JobId,
    },
    /// Stop metering a job; the answer carries its final totals.
    UnregisterJob {
        /// The job's id.
        job: JobId,
    },
    /// A job's cumulative reading.
    QueryJob {
        /// The job's id.
        job: JobId,
        /// Wait for the next publication so that work done just before the call is included.
        fresh: bool,
    },
    /// The machine's cumulative reading.
    QueryMachine {
        /// Wait for the next publication (see [`Request::QueryJob`]).
        fresh: bool,
    },
    /// Jobs visible to the caller.
    ListJobs,
    /// Receive [`Response::Update`] frames periodically.
    Subscribe {
        /// A job, or `None` for the machine.
        job: Option<JobId>,
        /// Period in milliseconds; raised to the daemon's publication interval if below it.
        period_ms: u64,
    },
    /// One page of the jobs visible to the caller, by increasing id; answered with
    /// [`Response::JobsPage`]. Unlike [`Request::ListJobs`], whose single answer must fit in one
    /// frame (about 600 jobs), any number of jobs can be listed page by page.
    ListJobsPage {
        /// Only jobs with a larger id (the previous page's `next`); `None` for the first page.
        after: Option<JobId>,
        /// Most jobs wanted, 1..=[`MAX_JOBS_PAGE`] (0 and larger values are clamped).
        limit: u32,
    },
    /// The daemon's aggregate counters; answered with [`Response::Status`].
    Status,
}

/// Kinds of error the daemon reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Protocol versions differ; the connection is closed.
    VersionMismatch,
    /// The first frame was not `Hello`; the connection is closed.
    HandshakeRequired,
    /// A frame could not be decoded as a request.
    Malformed,
    /// A frame exceeded the size limit; the connection is closed.
    FrameTooLarge,
    /// The caller may not do this (PID or job of another user).
    PermissionDenied,
    /// No job with that id (or not visible to the caller).
    NoSuchJob,
    /// No process with that PID, or no such cgroup.
    NoSuchTarget,
    /// The request is well-formed but its content is invalid (empty name, …).
    InvalidRequest,
    /// Too many requests per second from this connection.
    RateLimited,
    /// A bound was reached (connections, subscriptions, jobs).
    LimitReached,
    /// A fresh reading did not arrive in time (the sampler may be stalled).
    Timeout,
    /// The daemon failed internally.
    Internal,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::VersionMismatch => "protocol version mismatch",
            ErrorKind::HandshakeRequired => "handshake required",
            ErrorKind::Malformed => "malformed request",
            ErrorKind::FrameTooLarge => "frame too large",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::NoSuchJob => "no such job",
            ErrorKind::NoSuchTarget => "no such process or cgroup",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::LimitReached => "limit reached",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// An error reported by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ProtoError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Details for a human.
    pub message: String,
}

impl ProtoError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProtoError {
            kind,
            message: message.into(),
        }
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Handshake answer. Keep as variant 0 forever.
    Hello {
        /// The daemon's [`crate::PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The daemon's package version.
        daemon_version: String,
        /// Minimum interval between published readings, milliseconds.
        publish_interval_ms: u64,
        /// Uid the daemon sees for this connection (from `SO_PEERCRED`).
        peer_uid: u32,
    },
    /// A job was registered or re-attached.
    Job(JobReading),
    /// A job was unregistered; its final reading.
    Unregistered(JobReading),
    /// The machine's reading.
    Machine(Reading),
    /// Jobs visible to the caller.
    Jobs(Vec<JobReading>),
    /// A subscription started.
    Subscribed {
        /// Effective period, milliseconds.
        period_ms: u64,
    },
    /// A periodic reading of a subscription.
    Update {
        /// The job, or `None` for the machine.
        job: Option<JobId>,
        /// The reading.
        reading: Reading,
    },
    /// The request failed.
    Error(ProtoError),
    /// One page of jobs (answer to [`Request::ListJobsPage`]).
    JobsPage(JobsPage),
    /// The daemon's aggregate counters (answer to [`Request::Status`]).
    Status(ServerStats),
}

/// One page of a job listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsPage {
    /// The jobs, by increasing id.
    pub jobs: Vec<JobReading>,
    /// The cursor of the next page (`after` of the next [`Request::ListJobsPage`]), `None` when
    /// this page is the last.
    pub next: Option<JobId>,
}

/// Daemon-wide counters since the daemon started, summed over every client.
///
/// Every client may read them: they are aggregates, like the `STATUS=` line that
/// `systemctl status` shows to any local user, and say nothing about who is connected or what
/// another uid does. Per-uid breakdowns are deliberately not served (they would tell a user who
/// else uses the meter and how).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerStats {
    /// Socket connections open now.
    pub open_connections: u64,
    /// Socket connections accepted since start.
    pub accepted: u64,
    /// Connections refused by a bound (too many in all or for one uid).
    pub refused: u64,
    /// Requests answered.
    pub requests: u64,
    /// Frames that could not be decoded, or were too large.
    pub bad_frames: u64,
    /// Times a connection over its request budget was held back.
    pub rate_limited: u64,
    /// Subscription updates dropped because a client did not read.
    pub dropped_updates: u64,
    /// Connections closed because a request frame took longer than the frame timeout.
    pub frame_timeouts: u64,
    /// Connections without subscriptions closed after the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed for staying over their request budget.
    pub throttle_closes: u64,
    /// Subscriptions refused by a bound (per connection, per uid or in all).
    pub refused_subscriptions: u64,
}

/// One of [`ServerStats`]' figures: its `snake_case` name (as the field), a one-line
/// description, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Name, as the field.
    pub name: &'static str,
    /// What it counts (the Prometheus help text).
    pub help: &'static str,
    /// Its value.
    pub value: u64,
}

impl ServerStats {
    /// Every figure, in field order: the one list every front end (CLI, D-Bus, Prometheus)
    /// reads, so that they name and describe them alike.
    pub fn counters(&self) -> [Counter; 11] {
        let c = |name, help, value| Counter { name, help, value };
        [
            c(
                "open_connections",
                "Socket connections open now.",
                self.open_connections,
            ),
            c(
                "accepted",
                "Socket connections accepted since start.",
                self.accepted,
            ),
            c(
                "refused",
                "Connections refused by a bound of the socket server.",
                self.refused,
            ),
            c(
                "requests",
                "Requests answered on the socket.",
                self.requests,
            ),
            c(
                "bad_frames",
                "Frames that could not be decoded or were too large.",
                self.bad_frames,
            ),
            c(
                "rate_limited",
                "Times a connection over its request budget was held back.",
                self.rate_limited,
            ),
            c(
                "dropped_updates",
                "Subscription updates dropped because a client did not read.",
                self.dropped_updates,
            ),
            c(
                "frame_timeouts",
                "Connections closed because a frame took longer than the frame timeout.",
                self.frame_timeouts,
            ),
            c(
                "idle_timeouts",
                "Connections without subscriptions closed after the idle timeout.",
                self.idle_timeouts,
            ),
            c(
                "throttle_closes",
                "Connections closed for staying over their request budget.",
                self.throttle_closes,
            ),
            c(
                "refused_subscriptions",
                "Subscriptions refused by a bound (per connection, per uid or in all).",
                self.refused_subscriptions,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_variant_zero_on_both_sides() {
        let req = postcard::to_stdvec(&Request::Hello {
            protocol_version: 7,
        })
        .unwrap();
        assert_eq!(req, [0, 7]);
        let resp = postcard::to_stdvec(&Response::Hello {
            protocol_version: 7,
            daemon_version: String::new(),
            publish_interval_ms: 100,
            peer_uid: 0,
        })
        .unwrap();
        assert_eq!(&resp[..2], &[0, 7]);
    }

    #[test]
    fn job_id_encodes_as_a_bare_u64() {
        for id in [0, 1, 127, 128, 300, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                postcard::to_stdvec(&JobId(id)).unwrap(),
                postcard::to_stdvec(&id).unwrap(),
                "{id}"
            );
            let back: JobId = postcard::from_bytes(&postcard::to_stdvec(&id).unwrap()).unwrap();
            assert_eq!(back, JobId(id));
        }
        // Inside messages too: the bytes of the former `type JobId = u64` encoding.
        assert_eq!(
            postcard::to_stdvec(&Request::QueryJob {
                job: JobId(300),
                fresh: true
            })
            .unwrap(),
            [4, 0xac, 0x02, 1]
        );
        assert_eq!(
            postcard::to_stdvec(&Response::Update {
                job: Some(JobId(5)),
                reading: Reading {
                    totals: Totals::default(),
                    tick: 2,
                    health: SamplerHealth::default(),
                },
            })
            .unwrap()[..3],
            [6, 1, 5]
        );
    }

    #[test]
    fn new_variants_come_last_and_old_encodings_stay() {
        // ListJobs keeps its index (6); the additions follow Subscribe (7).
        assert_eq!(postcard::to_stdvec(&Request::ListJobs).unwrap(), [6]);
        assert_eq!(
            postcard::to_stdvec(&Request::ListJobsPage {
                after: Some(JobId(3)),
                limit: 10
            })
            .unwrap(),
            [8, 1, 3, 10]
        );
        assert_eq!(postcard::to_stdvec(&Request::Status).unwrap(), [9]);
        let page = Response::JobsPage(JobsPage {
            jobs: vec![],
            next: None,
        });
        assert_eq!(postcard::to_stdvec(&page).unwrap(), [8, 0, 0]);
        let status = postcard::to_stdvec(&Response::Status(ServerStats::default())).unwrap();
        assert_eq!(status[0], 9);
        let names: Vec<_> = ServerStats::default()
            .counters()
            .iter()
            .map(|c| c.name)
            .collect();
        assert!(names.contains(&"bad_frames") && names.contains(&"dropped_updates"));
    }

    #[test]
    fn job_id_prints_and_parses_like_a_u64() {
        assert_eq!(
            format!("{}|{:>4}|{:<4}|", JobId(7), JobId(7), JobId(7)),
            "7|   7|7   |"
        );
        assert_eq!("42".parse::<JobId>().unwrap(), JobId(42));
        assert!("x".parse::<JobId>().is_err());
        assert_eq!(u64::from(JobId(9)), 9);
    }

    #[test]
    fn totals_sum_domains() {
        let t = Totals {
            domains: vec![
                DomainEnergy {
                    name: "package-0".into(),
                    joules: 2.5,
                    measured: true,
                },
                DomainEnergy {
                    name: "gpu-0".into(),
                    joules: 1.5,
                    measured: false,
                },
            ],
            ..Totals::default()
        };
        assert_eq!(t.joules(), 4.0);
        assert!(!t.all_measured());
        // No domain yet (before the first tick): plus zero, so that it prints "0.000".
        let empty = Totals::default().joules();
        assert!(empty == 0.0 && empty.is_sign_positive(), "{empty:?}");
        assert_eq!(format!("{:.3}", Totals::default().joules()), "0.000");
    }
}
