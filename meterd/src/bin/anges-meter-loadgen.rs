//! `anges-meter-loadgen`: what we attack our own daemon with.
//!
//! An operator tool to check that a meter's bounds hold on a given machine: it opens raw
//! connections to the daemon's socket and misbehaves on purpose (hoards subscriptions, stalls in
//! the middle of frames, floods requests, sends garbage), then prints one `key=value` summary line
//! per phase on stdout. Run it as an ordinary member of the group `anges` and watch the daemon
//! (`anges-meter status`, its log, its RSS and CPU) while it runs; every attack must leave other
//! users served. The adversarial tests (`meterd/tests/integration/abuse/`) run it under other uids.
//!
//! It speaks the real protocol through [`anges_common::codec`]; it has no privileges and asks for
//! nothing a client may not ask for.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anges_common::PROTOCOL_VERSION;
use anges_common::codec::{self, MAX_FRAME};
use anges_common::protocol::{Request, Response};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Attack a meter daemon to check its bounds.
#[derive(Debug, Parser)]
#[command(name = "anges-meter-loadgen", version)]
struct Cli {
    /// The daemon's socket (default: the usual discovery, as `anges-meter` does).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The attack.
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Debug, Subcommand)]
enum Attack {
    /// Open connections and subscribe as much as allowed; prints
    /// `connections=C refused=R subscriptions=S`, then holds them.
    Subscribe {
        /// Connections to open.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Subscriptions to ask for on each connection.
        #[arg(long, default_value_t = 1)]
        per_connection: usize,
        /// Period asked for, ms (long by default, so that unread updates do not fill buffers).
        #[arg(long, default_value_t = 60_000)]
        period_ms: u64,
        /// Seconds to hold everything before exiting.
        #[arg(long, default_value_t = 0.0)]
        hold_s: f64,
    },
    /// Hello, then a 64 KiB length prefix and nothing more (or one byte every `--trickle-ms`);
    /// prints `held=H refused=R` once all are open and `closed=C open=O` at the end.
    Stall {
        /// Connections to open.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 10.0)]
        hold_s: f64,
        /// Send one payload byte on each connection every this many ms.
        #[arg(long)]
        trickle_ms: Option<u64>,
    },
    /// Pipelined `QueryMachine` requests on each connection without waiting for the answers;
    /// prints `sent=N answer_bytes=B closed=C`.
    Flood {
        /// Connections.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Duration, seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Read (and discard) the answers instead of leaving them in the socket buffer.
        #[arg(long)]
        read: bool,
    },
    /// Connections whose first frame is not a request (malformed); prints `sent=N`.
    Garbage {
        /// Connections.
        #[arg(long, default_value_t = 1)]
        connections: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let socket = match cli.socket {
        Some(p) => p,
        None => anges_common::client::ClientConfig::discover(None)
            .candidates
            .first()
            .map(|c| c.path.clone())
            .context("no socket candidate; give --socket")?,
    };
    match cli.attack {
        Attack::Subscribe {
            connections,
            per_connection,
            period_ms,
            hold_s,
        } => subscribe(&socket, connections, per_connection, period_ms, hold_s),
        Attack::Stall {
            connections,
            hold_s,
            trickle_ms,
        } => stall(&socket, connections, hold_s, trickle_ms),
        Attack::Flood {
            connections,
            seconds,
            read,
        } => flood(&socket, connections, seconds, read),
        Attack::Garbage { connections } => garbage(&socket, connections),
    }
}

/// Prints a summary line at once (stdout may be a pipe that a test reads while we hold).
fn report(line: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Reads one answer, skipping subscription updates.
fn answer(s: &mut UnixStream) -> anyhow::Result<Response> {
    let mut buf = Vec::new();
    loop {
        if !codec::read_frame(s, &mut buf, MAX_FRAME)? {
            bail!("the daemon closed the connection");
        }
        match codec::decode::<Response>(&buf)? {
            Response::Update { .. } => continue,
            other => return Ok(other),
        }
    }
}

/// Connects and says Hello: `Ok(None)` when the daemon refuses the connection.
fn hello(socket: &Path) -> anyhow::Result<Option<UnixStream>> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let sent = codec::write_frame(
        &mut s,
        &Request::Hello {
            protocol_version: PROTOCOL_VERSION,
        },
    );
    // A refused connection may be closed before our Hello is taken.
    if sent.is_err() {
        return Ok(None);
    }
    match answer(&mut s) {
        Ok(Response::Hello { .. }) => Ok(Some(s)),
        Ok(_) | Err(_) => Ok(None),
    }
}

fn hold(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)));
}

fn subscribe(
    socket: &Path,
    connections: usize,
    per_connection: usize,
    period_ms: u64,
    hold_s: f64,
) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(connections);
    let (mut refused, mut subscriptions) = (0usize, 0usize);
    for _ in 0..connections {
        let Some(mut s) = hello(socket)? else {
            refused += 1;
            continue;
        };
        for _ in 0..per_connection {
            codec::write_frame(
                &mut s,
                &Request::Subscribe {
                    job: None,
                    period_ms,
                },
            )?;
            if let Response::Subscribed { .. } = answer(&mut s)? {
                subscriptions += 1;
            }
        }
        held.push(s);
    }
    report(&format!(
        "connections={} refused={refused} subscriptions={subscriptions}",
        held.len()
    ))?;
    hold(hold_s);
    Ok(())
}

/// Whether the daemon closed `s` (EOF or reset), without blocking.
fn closed_by_peer(mut s: &UnixStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

fn stall(
    socket: &Path,
    connections: usize,
    hold_s: f64,
    trickle_ms: Option<u64>,
) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(connections);
    let mut refused = 0usize;
    // The largest frame the daemon accepts, announced and never (or hardly) sent.
    let prefix = u32::try_from(MAX_FRAME)?.to_le_bytes();
    for _ in 0..connections {
        let Some(mut s) = hello(socket)? else {
            refused += 1;
            continue;
        };
        if s.write_all(&prefix).is_err() {
            refused += 1;
            continue;
        }
        held.push(s);
    }
    report(&format!("held={} refused={refused}", held.len()))?;
    let end = Instant::now() + Duration::from_secs_f64(hold_s.max(0.0));
    if let Some(ms) = trickle_ms {
        let step = Duration::from_millis(ms.max(1));
        while Instant::now() + step < end {
            std::thread::sleep(step);
            for s in &mut held {
                // A closed connection fails here; it is counted at the end.
                let _ = s.write(&[0u8]);
            }
        }
    }
    if let Some(left) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let closed = held.iter().filter(|s| closed_by_peer(s)).count();
    report(&format!("closed={closed} open={}", held.len() - closed))?;
    Ok(())
}

fn flood(socket: &Path, connections: usize, seconds: f64, read: bool) -> anyhow::Result<()> {
    // A batch of pipelined requests, written with one call.
    let one = codec::encode(&Request::QueryMachine { fresh: false })?;
    let batch: Arc<Vec<u8>> = Arc::new(one.repeat(64));
    let sent = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..connections {
        let Some(s) = hello(socket)? else {
            bail!("the daemon refused a flooding connection");
        };
        if read {
            // Raw bytes: a blocking read that the end unblocks (a timeout could cut a frame).
            let mut r = s.try_clone()?;
            let answers = answers.clone();
            threads.push(std::thread::spawn(move || {
                let mut sink = vec![0u8; 64 * 1024];
                while let Ok(n) = r.read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                    answers.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        // Blocking writes (a timeout could cut a frame in two); the end unblocks them.
        ends.push(s.try_clone()?);
        let mut w = s;
        let (batch, sent, closed, stop) =
            (batch.clone(), sent.clone(), closed.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w.write_all(&batch).is_err() {
                    if !stop.load(Ordering::Relaxed) {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                sent.fetch_add(64, Ordering::Relaxed);
            }
        }));
    }
    hold(seconds);
    stop.store(true, Ordering::Relaxed);
    for e in &ends {
        let _ = e.shutdown(std::net::Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    report(&format!(
        "sent={} answer_bytes={} closed={}",
        sent.load(Ordering::Relaxed),
        answers.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed)
    ))
}

fn garbage(socket: &Path, connections: usize) -> anyhow::Result<()> {
    // A 4-byte payload that is no request (an out-of-range variant tag).
    let frame = [4u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    let mut sent = 0usize;
    for _ in 0..connections {
        let mut s = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        if s.write_all(&frame).is_ok() {
            sent += 1;
        }
        // Wait for the daemon's answer or close, so that connections do not pile up.
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut sink = [0u8; 256];
        let _ = s.read(&mut sink);
    }
    report(&format!("sent={sent}"))
}
