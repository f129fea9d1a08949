//! The local stream socket: framing, handshake, peer credentials, bounds.
//!
//! Built on `tokio::net::UnixListener` directly rather than the `interprocess` crate: on Linux
//! `interprocess` only wraps the same Unix-domain sockets, and it would hide what this server
//! needs from them (`SO_PEERCRED` through `peer_cred()`, adopting a socket-activated listener,
//! file modes and ownership of the socket path), so it adds nothing here.
//!
//! Each connection has one reader task (one request at a time, in order) that writes its answers
//! itself, and one task per subscription. Everything is bounded: connections (in all and per uid),
//! frame size (checked before allocating; the buffer grows only as payload bytes arrive),
//! subscriptions (per connection, per uid and in all), requests per second per connection (token
//! bucket: back-pressure, the reader stops reading a connection over its budget, and closes one
//! that stays over it), malformed frames per connection, time to complete the handshake, time
//! from the first to the last byte of a frame, time a connection without subscriptions may stay
//! silent, and time to write a frame. A client that stops reading fills only its own socket
//! buffer: its periodic updates are dropped (counted) and, once a write stalls past the limit, the
//! connection is closed. Readers never touch the sampler: they read published snapshots.
//!
//! Every daemon-wide pool a client can fill (connections, subscriptions; jobs in
//! [`super::service`]) has a per-uid share, so that one uid cannot exhaust it; root is exempt
//! (it can stop the daemon anyway, and the admin's tools must never be locked out).
//!
//! Refusals and bad input are logged as rate-limited summaries ([`Incidents`]): at most one line
//! per kind per [`SUMMARY_PERIOD`], with the counts per uid, so that an attack cannot flood the
//! journal and still leaves a trace.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anges_common::PROTOCOL_VERSION;
use anges_common::codec::{self, CodecError};
use anges_common::protocol::{ErrorKind, JobId, ProtoError, Request, Response, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use super::access::Peer;
use super::service::Service;
use super::until_stopped;

/// Bounds of the socket server.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Most simultaneous connections of one non-root uid.
    pub max_connections_per_uid: usize,
    /// Largest accepted frame payload, bytes (at most [`codec::MAX_FRAME`]).
    pub max_frame: usize,
    /// Sustained requests per second per connection.
    pub requests_per_sec: f64,
    /// Burst of requests per connection above the sustained rate.
    pub request_burst: f64,
    /// Most subscriptions of one connection.
    pub max_subscriptions_per_conn: usize,
    /// Most subscriptions in all.
    pub max_subscriptions: usize,
    /// Most subscriptions of one non-root uid (its share of `max_subscriptions`).
    pub max_subscriptions_per_uid: usize,
    /// Malformed frames tolerated on one connection before it is closed.
    pub max_bad_frames: u32,
    /// Time a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a frame may take to be written before the connection is closed.
    pub write_timeout: Duration,
    /// Time from the first byte of a request frame to its last before the connection is closed.
    pub frame_timeout: Duration,
    /// Time a connection without subscriptions may stay silent between requests before it is
    /// closed (clients reconnect transparently on their next call).
    pub idle_timeout: Duration,
    /// Time a connection may stay over its request budget (held back each time) before it is
    /// closed.
    pub throttle_close_after: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            max_connections: 4096,
            max_connections_per_uid: 512,
            max_frame: codec::MAX_FRAME,
            requests_per_sec: 2000.0,
            request_burst: 500.0,
            max_subscriptions_per_conn: 4,
            max_subscriptions: 1024,
            max_subscriptions_per_uid: 128,
            max_bad_frames: 8,
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            throttle_close_after: Duration::from_secs(10),
        }
    }
}

/// Counters of the socket server, for logs, status and metrics.
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused by a bound.
    pub refused: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Frames that could not be decoded, or were too large.
    pub bad_frames: AtomicU64,
    /// Times a connection over its request budget was held back (its reader paused until the
    /// budget allowed the next request).
    pub rate_limited: AtomicU64,
    /// Subscription updates dropped because a client did not read.
    pub dropped_updates: AtomicU64,
    /// Connections closed because a request frame took longer than the frame timeout.
    pub frame_timeouts: AtomicU64,
    /// Connections without subscriptions closed after the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Connections closed for staying over their request budget.
    pub throttle_closes: AtomicU64,
    /// Subscriptions refused by a bound (per connection, per uid or in all).
    pub refused_subscriptions: AtomicU64,
}

impl SocketStats {
    /// The counters as the protocol serves them (`Status`, D-Bus `Counters`, metrics).
    pub fn server_stats(&self) -> ServerStats {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            open_connections: u64::try_from(self.open.load(Ordering::Relaxed)).unwrap_or(u64::MAX),
            accepted: n(&self.accepted),
            refused: n(&self.refused),
            requests: n(&self.requests),
            bad_frames: n(&self.bad_frames),
            rate_limited: n(&self.rate_limited),
            dropped_updates: n(&self.dropped_updates),
            frame_timeouts: n(&self.frame_timeouts),
            idle_timeouts: n(&self.idle_timeouts),
            throttle_closes: n(&self.throttle_closes),
            refused_subscriptions: n(&self.refused_subscriptions),
        }
    }
}

/// Binds the socket at `path`: creates the parent directory, replaces a stale socket (one that
/// no daemon answers on), refuses to replace a live one or a non-socket file, then sets the
/// file's mode and group.
pub fn bind(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> io::Result<std::os::unix::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another daemon is serving {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug)]
struct RateLimiter {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Takes a token: `None` when one was there, otherwise how long to wait before asking
    /// again. The wait covers a batch of tokens ([`THROTTLE_BATCH`] of the rate, within the
    /// burst), so that a flooding connection costs a few wake-ups per second, not one per request.
    fn take(&mut self) -> Option<Duration> {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        let batch = (self.rate * THROTTLE_BATCH.as_secs_f64()).clamp(1.0, self.burst.max(1.0));
        let wait = (batch - self.tokens) / self.rate;
        Some(Duration::try_from_secs_f64(wait).unwrap_or(THROTTLE_BATCH))
    }
}

/// Time's worth of tokens a connection over its budget waits for before its next request.
const THROTTLE_BATCH: Duration = Duration::from_millis(50);

/// Period of the incident summaries.
pub const SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// Uids named in one summary line; the others are counted together.
const SUMMARY_UIDS: usize = 8;

/// What a connection did wrong, or what was refused to it, for the summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// A connection refused by the connection bounds.
    Refused,
    /// A malformed, oversized or out-of-order frame (or no handshake in time).
    Malformed,
    /// A request frame that took longer than the frame timeout.
    Stalled,
    /// A client that stopped reading its answers or updates.
    Unread,
    /// A connection closed for staying over its request budget.
    Throttled,
    /// A subscription refused by a bound.
    SubscriptionRefused,
}

impl Incident {
    const ALL: [Incident; 6] = [
        Incident::Refused,
        Incident::Malformed,
        Incident::Stalled,
        Incident::Unread,
        Incident::Throttled,
        Incident::SubscriptionRefused,
    ];

    /// The start of its summary line (followed by the count).
    fn what(self) -> (&'static str, &'static str) {
        match self {
            Incident::Refused => ("refused", "connections"),
            Incident::Malformed => ("closed", "connections for malformed input"),
            Incident::Stalled => ("closed", "connections stalled in the middle of a frame"),
            Incident::Unread => ("closed", "connections that stopped reading"),
            Incident::Throttled => (
                "closed",
                "connections that stayed over their request budget",
            ),
            Incident::SubscriptionRefused => ("refused", "subscriptions"),
        }
    }
}

/// Counts of one kind of incident since its last summary line.
#[derive(Debug, Default)]
struct Tally {
    count: u64,
    /// The first [`SUMMARY_UIDS`] uids seen, with their counts.
    by_uid: Vec<(u32, u64)>,
    /// Incidents of other uids.
    others: u64,
    last_line: Option<Instant>,
}

impl Tally {
    fn add(&mut self, uid: u32) {
        self.count += 1;
        if let Some(e) = self.by_uid.iter_mut().find(|(u, _)| *u == uid) {
            e.1 += 1;
        } else if self.by_uid.len() < SUMMARY_UIDS {
            self.by_uid.push((uid, 1));
        } else {
            self.others += 1;
        }
    }

    /// Logs the summary line and starts a new period.
    fn emit(&mut self, kind: Incident, period: Duration) {
        let (verb, noun) = kind.what();
        let mut uids: Vec<String> = self
            .by_uid
            .iter()
            .map(|(u, n)| format!("uid {u}: {n}"))
            .collect();
        if self.others > 0 {
            uids.push(format!("other uids: {}", self.others));
        }
        tracing::warn!(
            "{verb} {} {noun} in the last {} s ({})",
            self.count,
            period.as_secs(),
            uids.join(", ")
        );
        *self = Tally {
            last_line: Some(Instant::now()),
            ..Tally::default()
        };
    }
}

/// Rate-limited summaries of refusals and bad input: the first incident of a kind is logged at
/// once, the following ones at most once per period, as counts per uid.
#[derive(Debug)]
pub struct Incidents {
    period: Duration,
    tallies: Mutex<[Tally; Incident::ALL.len()]>,
}

impl Incidents {
    /// Summaries at most once per `period` per kind.
    pub fn new(period: Duration) -> Self {
        Incidents {
            period,
            tallies: Mutex::default(),
        }
    }

    /// Counts an incident of `uid`; logs the summary if the kind's period is over.
    pub fn record(&self, kind: Incident, uid: u32) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let t = &mut tallies[kind as usize];
        t.add(uid);
        if t.last_line.is_none_or(|l| l.elapsed() >= self.period) {
            t.emit(kind, self.period);
        }
    }

    /// Logs the summaries whose period is over; called every period.
    pub fn flush(&self) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        for kind in Incident::ALL {
            let t = &mut tallies[kind as usize];
            if t.count > 0 && t.last_line.is_none_or(|l| l.elapsed() >= self.period) {
                t.emit(kind, self.period);
            }
        }
    }
}

/// Open connections per uid, released by [`UidGuard`].
#[derive(Debug, Default)]
struct UidCounts(Mutex<HashMap<u32, usize>>);

/// One connection's place in [`UidCounts`].
struct UidGuard {
    counts: Arc<UidCounts>,
    uid: u32,
}

impl UidCounts {
    fn acquire(self: &Arc<Self>, uid: u32, max: usize) -> Option<UidGuard> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(uid).or_insert(0);
        if uid != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(UidGuard {
            counts: self.clone(),
            uid,
        })
    }
}

impl Drop for UidGuard {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

/// Shared state of the socket server.
struct Ctx {
    service: Service,
    limits: SocketLimits,
    stats: Arc<SocketStats>,
    per_uid: Arc<UidCounts>,
    subscriptions: Arc<Semaphore>,
    subs_per_uid: Arc<UidCounts>,
    incidents: Incidents,
    shutdown: watch::Receiver<bool>,
}

/// Serves `listener` until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    service: Service,
    limits: SocketLimits,
    stats: Arc<SocketStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let ctx = Arc::new(Ctx {
        service,
        subscriptions: Arc::new(Semaphore::new(limits.max_subscriptions)),
        limits,
        stats,
        per_uid: Arc::default(),
        subs_per_uid: Arc::default(),
        incidents: Incidents::new(SUMMARY_PERIOD),
        shutdown: shutdown.clone(),
    });
    let mut summaries = tokio::time::interval(SUMMARY_PERIOD);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = until_stopped(&mut shutdown) => break,
            _ = summaries.tick() => ctx.incidents.flush(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => accept(stream, &ctx, &connections),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Checks credentials and bounds of a new connection and starts serving it.
fn accept(stream: UnixStream, ctx: &Arc<Ctx>, connections: &Arc<Semaphore>) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "SO_PEERCRED failed; closing the connection");
            return;
        }
    };
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    let policy = ctx.service.policy();
    let peer = Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid,
        groups: pid.map(|p| policy.groups_of(p)).unwrap_or_default(),
    };
    let permit = connections.clone().try_acquire_owned().ok();
    let guard = ctx
        .per_uid
        .acquire(peer.uid, ctx.limits.max_connections_per_uid);
    let (Some(permit), Some(guard)) = (permit, guard) else {
        ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        ctx.incidents.record(Incident::Refused, peer.uid);
        let write_timeout = ctx.limits.write_timeout;
        tokio::spawn(refuse(stream, write_timeout));
        return;
    };
    ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(connection(stream, ctx.clone(), peer, permit, guard));
}

/// Tells a refused client why, best effort, and closes.
async fn refuse(mut stream: UnixStream, write_timeout: Duration) {
    let resp = Response::Error(ProtoError::new(
        ErrorKind::LimitReached,
        "too many connections",
    ));
    if let Ok(frame) = codec::encode(&resp) {
        let _ = tokio::time::timeout(write_timeout, stream.write_all(&frame)).await;
    }
    // Take the client's handshake before closing, so that its write does not fail before it
    // reads why it was refused.
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
}

/// Encodes a response as a frame; an answer too large for one frame becomes an error.
fn frame_of(resp: &Response) -> Option<Vec<u8>> {
    match codec::encode(resp) {
        Ok(f) => Some(f),
        Err(CodecError::TooLarge { len, .. }) => {
            tracing::warn!(len, "answer too large for one frame");
            codec::encode(&error(
                ErrorKind::LimitReached,
                format!("the answer ({len} bytes) exceeds the frame limit"),
            ))
            .ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an answer");
            None
        }
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(ProtoError::new(kind, message))
}

/// The write side of a connection, shared by the reader (answers, written inline: no task hop
/// on the request path) and the subscription tasks (updates). An answer that cannot be written
/// within the write timeout kills the connection. An update is written only if it can go at
/// once: one that finds the writer busy, or the client's socket buffer full, is dropped and
/// counted rather than queued, so a client that stops reading costs at most its socket buffer
/// and never delays its own answers behind stale updates. A buffer that stays full for the
/// write timeout kills the connection too, so a client that only subscribes and stops reading
/// is closed as well.
#[derive(Clone)]
struct Writer {
    end: Arc<tokio::sync::Mutex<WriteEnd>>,
    timeout: Duration,
    dead: Arc<Notify>,
    is_dead: Arc<AtomicBool>,
    ctx: Arc<Ctx>,
    uid: u32,
}

/// The socket's write half and, while the client's buffer is full, since when it has been.
struct WriteEnd {
    half: OwnedWriteHalf,
    full_since: Option<Instant>,
}

impl Writer {
    fn new(half: OwnedWriteHalf, ctx: Arc<Ctx>, uid: u32) -> Self {
        Writer {
            end: Arc::new(tokio::sync::Mutex::new(WriteEnd {
                half,
                full_since: None,
            })),
            timeout: ctx.limits.write_timeout,
            dead: Arc::default(),
            is_dead: Arc::default(),
            ctx,
            uid,
        }
    }

    /// Closes a connection whose client stopped reading.
    fn kill_unread(&self) {
        self.ctx.incidents.record(Incident::Unread, self.uid);
        self.kill();
    }

    fn kill(&self) {
        self.is_dead.store(true, Ordering::Relaxed);
        self.dead.notify_one();
    }

    async fn killed(&self) {
        self.dead.notified().await;
    }

    /// Writes all of `frame`, waiting for buffer space up to the write timeout.
    async fn write(&self, end: &mut WriteEnd, frame: &[u8]) -> bool {
        match tokio::time::timeout(self.timeout, end.half.write_all(frame)).await {
            Ok(Ok(())) => {
                end.full_since = None;
                true
            }
            Ok(Err(_)) => {
                self.kill();
                false
            }
            Err(_) => {
                self.kill_unread();
                false
            }
        }
    }

    /// Writes an answer; `false` when the connection is dead.
    async fn send(&self, resp: &Response) -> bool {
        if self.is_dead.load(Ordering::Relaxed) {
            return false;
        }
        let Some(frame) = frame_of(resp) else {
            return false;
        };
        let mut end = self.end.lock().await;
        self.write(&mut end, &frame).await
    }

    /// Writes an update if it can go at once: `Some(false)` when it was dropped (writer busy,
    /// buffer full), `None` when the connection is dead.
    async fn offer(&self, frame: &[u8]) -> Option<bool> {
        if self.is_dead.load(Ordering::Relaxed) {
            return None;
        }
        let Ok(mut end) = self.end.try_lock() else {
            return Some(false);
        };
        match end.half.try_write(frame) {
            Ok(n) if n == frame.len() => {
                end.full_since = None;
                Some(true)
            }
            // Part of the frame is out: the rest must follow, or the stream loses its framing.
            Ok(n) => self.write(&mut end, &frame[n..]).await.then_some(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *end.full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.timeout {
                    self.kill_unread();
                    None
                } else {
                    Some(false)
                }
            }
            Err(_) => {
                self.kill();
                None
            }
        }
    }
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
}

/// How reading the next request frame ended.
enum Read {
    /// A whole frame is in the buffer.
    Frame,
    /// The client closed the connection between frames.
    Eof,
    /// No frame started within the idle timeout.
    Idle,
    /// A frame started but did not complete within the frame timeout.
    Stalled,
}

/// Capacity a connection's read buffer keeps between frames; a larger frame's buffer is released.
const KEEP_CAPACITY: usize = 4 * 1024;

/// Most bytes the buffer grows by before they arrive.
const READ_CHUNK: usize = 4 * 1024;

/// Reads the next frame into `buf`: waits up to `idle` (forever when `None`) for its first byte,
/// then up to `frame_timeout` for the rest. The buffer grows as payload bytes arrive, never to the
/// announced length up front, so a client that announces a large frame and stalls costs nothing.
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    max: usize,
    idle: Option<Duration>,
    frame_timeout: Duration,
) -> Result<Read, CodecError> {
    buf.clear();
    if buf.capacity() > KEEP_CAPACITY {
        buf.shrink_to(KEEP_CAPACITY);
    }
    let mut prefix = [0u8; codec::PREFIX_LEN];
    let first = rd.read(&mut prefix[..1]);
    let n = match idle {
        Some(idle) => match tokio::time::timeout(idle, first).await {
            Ok(n) => n?,
            Err(_) => return Ok(Read::Idle),
        },
        None => first.await?,
    };
    if n == 0 {
        return Ok(Read::Eof);
    }
    let rest = async {
        rd.read_exact(&mut prefix[1..]).await?;
        let len = codec::check_prefix(prefix, max)?;
        while buf.len() < len {
            let want = len - buf.len();
            buf.reserve(want.min(READ_CHUNK));
            let limit = u64::try_from(want).unwrap_or(u64::MAX);
            if (&mut *rd).take(limit).read_buf(buf).await? == 0 {
                return Err(CodecError::Truncated);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(frame_timeout, rest).await {
        Ok(Ok(())) => Ok(Read::Frame),
        Ok(Err(CodecError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(CodecError::Truncated)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Read::Stalled),
    }
}

/// Serves one connection until it closes, misbehaves past the bounds, or the server stops.
async fn connection(
    stream: UnixStream,
    ctx: Arc<Ctx>,
    peer: Peer,
    _permit: OwnedSemaphorePermit,
    _uid: UidGuard,
) {
    ctx.stats.open.fetch_add(1, Ordering::Relaxed);
    let (mut rd, wr) = stream.into_split();
    let uid = peer.uid;
    let mut conn = Conn {
        ctx: ctx.clone(),
        peer,
        writer: Writer::new(wr, ctx.clone(), uid),
        handshaken: false,
        bad: 0,
        limiter: RateLimiter::new(ctx.limits.requests_per_sec, ctx.limits.request_burst),
        over_budget: None,
        subs: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut shutdown = ctx.shutdown.clone();
    let limits = &ctx.limits;
    loop {
        let res = if conn.handshaken {
            conn.subs.retain(|s| !s.is_finished());
            let idle = conn.subs.is_empty().then_some(limits.idle_timeout);
            let read = read_frame(
                &mut rd,
                &mut buf,
                limits.max_frame,
                idle,
                limits.frame_timeout,
            );
            tokio::select! {
                r = read => r,
                _ = conn.writer.killed() => break,
                _ = until_stopped(&mut shutdown) => break,
            }
        } else {
            // The whole handshake, first byte included, within the handshake timeout.
            let read = read_frame(
                &mut rd,
                &mut buf,
                limits.max_frame,
                None,
                limits.frame_timeout,
            );
            tokio::select! {
                r = tokio::time::timeout(limits.handshake_timeout, read) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(uid, "handshake timed out");
                        ctx.incidents.record(Incident::Malformed, uid);
                        break;
                    }
                },
                _ = conn.writer.killed() => break,
                _ = until_stopped(&mut shutdown) => break,
            }
        };
        match res {
            Ok(Read::Frame) => {}
            Ok(Read::Eof) => break,
            Ok(Read::Idle) => {
                tracing::debug!(uid, "idle connection closed");
                ctx.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(Read::Stalled) => {
                ctx.stats.frame_timeouts.fetch_add(1, Ordering::Relaxed);
                ctx.incidents.record(Incident::Stalled, uid);
                break;
            }
            Err(CodecError::TooLarge { len, max }) => {
                ctx.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                ctx.incidents.record(Incident::Malformed, uid);
                let msg = format!("frame of {len} bytes exceeds the {max}-byte limit");
                conn.writer
                    .send(&error(ErrorKind::FrameTooLarge, msg))
                    .await;
                break;
            }
            Err(CodecError::Truncated) => {
                ctx.incidents.record(Incident::Malformed, uid);
                break;
            }
            Err(_) => break,
        }
        if let Next::Close = conn.frame(&buf).await {
            break;
        }
    }
    for sub in conn.subs.drain(..) {
        sub.abort();
    }
    ctx.stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// Per-connection state of the reader.
struct Conn {
    ctx: Arc<Ctx>,
    peer: Peer,
    writer: Writer,
    handshaken: bool,
    bad: u32,
    limiter: RateLimiter,
    /// Since when the connection has been over its request budget (held back at least once a
    /// second since).
    over_budget: Option<(Instant, Instant)>,
    subs: Vec<JoinHandle<()>>,
}

impl Conn {
    /// Handles one frame payload.
    async fn frame(&mut self, payload: &[u8]) -> Next {
        let req: Request = match codec::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                self.ctx.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                self.bad += 1;
                self.writer
                    .send(&error(ErrorKind::Malformed, e.to_string()))
                    .await;
                return if !self.handshaken || self.bad >= self.ctx.limits.max_bad_frames {
                    self.ctx
                        .incidents
                        .record(Incident::Malformed, self.peer.uid);
                    Next::Close
                } else {
                    Next::Continue
                };
            }
        };
        if !self.handshaken {
            return self.handshake(req).await;
        }
        if let Next::Close = self.throttle().await {
            return Next::Close;
        }
        self.ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match req {
            Request::Subscribe { job, period_ms } => self.subscribe(job, period_ms).await,
            other => self.ctx.service.handle(&self.peer, other).await,
        };
        self.reply(&resp).await
    }

    /// Back-pressure: holds the reader (so the client's writes block on its own socket buffer)
    /// until the request budget allows one more request; closes a connection that has stayed
    /// over its budget for [`SocketLimits::throttle_close_after`].
    async fn throttle(&mut self) -> Next {
        while let Some(wait) = self.limiter.take() {
            self.ctx.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let since = match self.over_budget {
                // Still over budget if it was held back within the last second.
                Some((since, last)) if now.duration_since(last) <= Duration::from_secs(1) => since,
                _ => now,
            };
            self.over_budget = Some((since, now));
            if now.duration_since(since) >= self.ctx.limits.throttle_close_after {
                self.ctx
                    .stats
                    .throttle_closes
                    .fetch_add(1, Ordering::Relaxed);
                self.ctx
                    .incidents
                    .record(Incident::Throttled, self.peer.uid);
                return Next::Close;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.writer.killed() => return Next::Close,
            }
        }
        Next::Continue
    }

    async fn reply(&self, resp: &Response) -> Next {
        if self.writer.send(resp).await {
            Next::Continue
        } else {
            Next::Close
        }
    }

    async fn handshake(&mut self, req: Request) -> Next {
        match req {
            Request::Hello { protocol_version } if protocol_version == PROTOCOL_VERSION => {
                self.handshaken = true;
                let interval = self.ctx.service.publish_interval();
                let resp = Response::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                    publish_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                    peer_uid: self.peer.uid,
                };
                self.reply(&resp).await
            }
            Request::Hello { protocol_version } => {
                let msg = format!(
                    "client speaks protocol {protocol_version}, this daemon speaks {PROTOCOL_VERSION}"
                );
                self.writer
                    .send(&error(ErrorKind::VersionMismatch, msg))
                    .await;
                self.ctx
                    .incidents
                    .record(Incident::Malformed, self.peer.uid);
                Next::Close
            }
            _ => {
                self.writer
                    .send(&error(
                        ErrorKind::HandshakeRequired,
                        "the first request must be Hello",
                    ))
                    .await;
                self.ctx
                    .incidents
                    .record(Incident::Malformed, self.peer.uid);
                Next::Close
            }
        }
    }

    async fn subscribe(&mut self, job: Option<JobId>, period_ms: u64) -> Response {
        self.subs.retain(|s| !s.is_finished());
        if self.subs.len() >= self.ctx.limits.max_subscriptions_per_conn {
            return self.refuse_subscription("too many subscriptions on this connection");
        }
        if let Some(id) = job
            && let Err(e) = self.ctx.service.job(&self.peer, id, false).await
        {
            return Response::Error(e);
        }
        let Some(share) = self
            .ctx
            .subs_per_uid
            .acquire(self.peer.uid, self.ctx.limits.max_subscriptions_per_uid)
        else {
            return self.refuse_subscription("too many subscriptions for your uid");
        };
        let Ok(permit) = self.ctx.subscriptions.clone().try_acquire_owned() else {
            return self.refuse_subscription("too many subscriptions on this daemon");
        };
        let interval = self.ctx.service.publish_interval();
        let period = Duration::from_millis(period_ms).max(interval);
        let task = tokio::spawn(updates(
            self.ctx.clone(),
            self.peer.clone(),
            job,
            period,
            self.writer.clone(),
            (permit, share),
        ));
        self.subs.push(task);
        Response::Subscribed {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn refuse_subscription(&self, why: &str) -> Response {
        self.ctx
            .stats
            .refused_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        self.ctx
            .incidents
            .record(Incident::SubscriptionRefused, self.peer.uid);
        error(ErrorKind::LimitReached, why)
    }
}

/// Sends periodic readings of a subscription; drops (and counts) those a busy or slow client
/// cannot take at once.
async fn updates(
    ctx: Arc<Ctx>,
    peer: Peer,
    job: Option<JobId>,
    period: Duration,
    writer: Writer,
    _places: (OwnedSemaphorePermit, UidGuard),
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let snap = ctx.service.latest();
        let reading = match job {
            None => snap.machine_reading(),
            Some(id) => match ctx.service.published_job(&snap, id) {
                Some(r) if ctx.service.policy().can_see(&peer, r.job.owner_uid) => r.reading,
                Some(_) => return,
                None if ctx.service.backend().job(id).is_some() => continue,
                // Unregistered: end the subscription with an error.
                None => {
                    let gone = error(ErrorKind::NoSuchJob, format!("job {id} ended"));
                    writer.send(&gone).await;
                    return;
                }
            },
        };
        let Some(frame) = frame_of(&Response::Update { job, reading }) else {
            return;
        };
        match writer.offer(&frame).await {
            Some(true) => {}
            Some(false) => {
                ctx.stats.dropped_updates.fetch_add(1, Ordering::Relaxed);
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_burst_then_holds_back_for_a_batch() {
        let mut r = RateLimiter::new(1.0, 3.0);
        assert!(r.take().is_none());
        assert!(r.take().is_none());
        assert!(r.take().is_none());
        let wait = r.take().expect("over budget");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // 2000/s: wait for 50 ms worth of tokens, not for one.
        let mut r = RateLimiter::new(2000.0, 500.0);
        while r.take().is_none() {}
        let wait = r.take().expect("over budget");
        assert!(wait >= Duration::from_millis(40), "{wait:?}");
    }

    #[test]
    fn incident_tallies_name_a_bounded_number_of_uids() {
        let mut t = Tally::default();
        for uid in 0..100 {
            t.add(uid);
            t.add(uid);
        }
        assert_eq!(t.count, 200);
        assert_eq!(t.by_uid.len(), SUMMARY_UIDS);
        assert_eq!(t.others, 200 - 2 * SUMMARY_UIDS as u64);
    }

    #[test]
    fn uid_counts_bound_non_root_only() {
        let counts = Arc::new(UidCounts::default());
        let a = counts.acquire(1000, 1);
        assert!(a.is_some());
        assert!(counts.acquire(1000, 1).is_none());
        drop(a);
        assert!(counts.acquire(1000, 1).is_some());
        let _r1 = counts.acquire(0, 1).unwrap();
        assert!(counts.acquire(0, 1).is_some());
    }

    #[test]
    fn bind_replaces_stale_socket_but_not_live_one_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/meterd.sock");
        let live = bind(&path, 0o660, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let err = bind(&path, 0o660, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        bind(&path, 0o600, None).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind(&file, 0o660, None).is_err());
    }
}
