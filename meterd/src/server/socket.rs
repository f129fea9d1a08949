//! The local stream socket: framing, handshake, peer credentials, bounds.
//!
//! Built on `tokio::net::UnixListener` directly rather than the `interprocess` crate: on Linux
//! `interprocess` only wraps the same Unix-domain sockets, and it would hide what this server
//! needs from them (`SO_PEERCRED` through `peer_cred()`, adopting a socket-activated listener,
//! file modes and ownership of the socket path), so it adds nothing here.
//!
//! Each connection has one reader task (one request at a time, in order) that writes its answers
//! itself, and one task per subscription. Everything is bounded: connections (in all and per uid), frame size (checked
//! before allocating), subscriptions (per connection and in all), requests per second per
//! connection (token bucket), malformed frames per connection, time to complete the handshake
//! and time to write a frame. A client that stops reading fills only its own socket buffer: its periodic
//! updates are dropped (counted) and, once a write stalls past the limit, the connection is
//! closed. Readers never touch the sampler: they read published snapshots.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anges_common::PROTOCOL_VERSION;
use anges_common::codec::{self, CodecError};
use anges_common::protocol::{ErrorKind, JobId, ProtoError, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
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
    /// Malformed frames tolerated on one connection before it is closed.
    pub max_bad_frames: u32,
    /// Time a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a frame may take to be written before the connection is closed.
    pub write_timeout: Duration,
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
            max_bad_frames: 8,
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
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
    /// Requests refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Subscription updates dropped because a client did not read.
    pub dropped_updates: AtomicU64,
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

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
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
        shutdown: shutdown.clone(),
    });
    loop {
        tokio::select! {
            _ = until_stopped(&mut shutdown) => break,
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
        tracing::warn!(uid = peer.uid, "connection refused: too many connections");
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
}

/// The socket's write half and, while the client's buffer is full, since when it has been.
struct WriteEnd {
    half: OwnedWriteHalf,
    full_since: Option<Instant>,
}

impl Writer {
    fn new(half: OwnedWriteHalf, timeout: Duration) -> Self {
        Writer {
            end: Arc::new(tokio::sync::Mutex::new(WriteEnd {
                half,
                full_since: None,
            })),
            timeout,
            dead: Arc::default(),
            is_dead: Arc::default(),
        }
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
                tracing::warn!("a client stopped reading; closing its connection");
                self.kill();
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
                    tracing::warn!("a subscriber stopped reading; closing its connection");
                    self.kill();
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
    let mut conn = Conn {
        ctx: ctx.clone(),
        peer,
        writer: Writer::new(wr, ctx.limits.write_timeout),
        handshaken: false,
        bad: 0,
        limiter: RateLimiter::new(ctx.limits.requests_per_sec, ctx.limits.request_burst),
        subs: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let read = codec::read_frame_async(&mut rd, &mut buf, ctx.limits.max_frame);
        let deadline = if conn.handshaken {
            Duration::MAX
        } else {
            ctx.limits.handshake_timeout
        };
        let res = tokio::select! {
            r = tokio::time::timeout(deadline, read) => match r {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(uid = conn.peer.uid, "handshake timed out");
                    break;
                }
            },
            _ = conn.writer.killed() => break,
            _ = until_stopped(&mut shutdown) => break,
        };
        match res {
            Ok(true) => {}
            Ok(false) => break,
            Err(CodecError::TooLarge { len, max }) => {
                ctx.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                let msg = format!("frame of {len} bytes exceeds the {max}-byte limit");
                conn.writer
                    .send(&error(ErrorKind::FrameTooLarge, msg))
                    .await;
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
                    Next::Close
                } else {
                    Next::Continue
                };
            }
        };
        if !self.handshaken {
            return self.handshake(req).await;
        }
        if !self.limiter.allow() {
            self.ctx.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "more than {} requests per second",
                self.ctx.limits.requests_per_sec
            );
            return self.reply(&error(ErrorKind::RateLimited, msg)).await;
        }
        self.ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match req {
            Request::Subscribe { job, period_ms } => self.subscribe(job, period_ms).await,
            other => self.ctx.service.handle(&self.peer, other).await,
        };
        self.reply(&resp).await
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
                Next::Close
            }
            _ => {
                self.writer
                    .send(&error(
                        ErrorKind::HandshakeRequired,
                        "the first request must be Hello",
                    ))
                    .await;
                Next::Close
            }
        }
    }

    async fn subscribe(&mut self, job: Option<JobId>, period_ms: u64) -> Response {
        self.subs.retain(|s| !s.is_finished());
        if self.subs.len() >= self.ctx.limits.max_subscriptions_per_conn {
            return error(
                ErrorKind::LimitReached,
                "too many subscriptions on this connection",
            );
        }
        if let Some(id) = job
            && let Err(e) = self.ctx.service.job(&self.peer, id, false).await
        {
            return Response::Error(e);
        }
        let Ok(permit) = self.ctx.subscriptions.clone().try_acquire_owned() else {
            return error(
                ErrorKind::LimitReached,
                "too many subscriptions on this daemon",
            );
        };
        let interval = self.ctx.service.publish_interval();
        let period = Duration::from_millis(period_ms).max(interval);
        let task = tokio::spawn(updates(
            self.ctx.clone(),
            self.peer.clone(),
            job,
            period,
            self.writer.clone(),
            permit,
        ));
        self.subs.push(task);
        Response::Subscribed {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
        }
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
    _permit: OwnedSemaphorePermit,
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
    fn rate_limiter_allows_burst_then_refuses() {
        let mut r = RateLimiter::new(1.0, 3.0);
        assert!(r.allow());
        assert!(r.allow());
        assert!(r.allow());
        assert!(!r.allow());
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
