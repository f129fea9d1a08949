//! Query round-trip latency of the meter's socket with 1, 64 and 1024 concurrent clients.
//!
//! The real server (`Server::start`) runs in this process on a 2-worker Tokio runtime over the
//! test backend (a 100 Hz fake sampler); each client is the real blocking client in its own
//! thread, asking `QueryMachine { fresh: false }` in a loop for a fixed time. Prints p50/p99/max
//! latency, requests per second and errors per level, then the latency of fresh queries (which
//! wait for the next publication, so they are bounded by the publication interval).
//!
//! Run: `cargo bench -p anges-meterd --bench roundtrip` (optionally `-- SECONDS`).

#[path = "../tests/integration/server_common.rs"]
mod server_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};
use anges_meterd::server::{Server, raise_fd_limit};
use server_common::{TestBackend, test_config};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// One level: `clients` threads for `secs` seconds; each sends back to back (`period` None,
/// closed loop: measures throughput) or one query every `period` (open loop: measures latency
/// at a given offered load).
fn level(path: &std::path::Path, clients: usize, secs: f64, period: Option<Duration>) {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::with_capacity(clients);
    for i in 0..clients {
        let (path, barrier, errors) = (path.to_owned(), barrier.clone(), errors.clone());
        let t = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut cfg = ClientConfig::socket(&path);
                cfg.request_timeout = Duration::from_secs(30);
                let client = Client::connect(cfg);
                barrier.wait();
                let Ok(mut client) = client else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return Vec::new();
                };
                let mut lat = Vec::with_capacity(1 << 14);
                let end = Instant::now() + Duration::from_secs_f64(secs);
                // Spread the clients' phases over one period, then keep a fixed schedule.
                let mut next = Instant::now()
                    + period.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / clients as f64));
                while Instant::now() < end {
                    if let Some(p) = period {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        next = (next + p).max(Instant::now());
                    }
                    let t0 = Instant::now();
                    match client.machine(false) {
                        Ok(_) => lat.push(t0.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
            .expect("spawn client thread");
        threads.push(t);
    }
    barrier.wait();
    let start = Instant::now();
    let mut all: Vec<Duration> = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap_or_default());
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let mode = match period {
        None => "closed loop".to_owned(),
        Some(p) => format!("every {p:?}"),
    };
    println!(
        "clients={clients:5} {mode:>14}  requests={:8}  req/s={:9.0}  p50={:7.1}µs  p99={:8.1}µs  max={:9.1}µs  errors={}",
        all.len(),
        all.len() as f64 / wall,
        percentile(&all, 0.50).as_secs_f64() * 1e6,
        percentile(&all, 0.99).as_secs_f64() * 1e6,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
        errors.load(Ordering::Relaxed),
    );
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    match raise_fd_limit() {
        Ok(n) => println!("RLIMIT_NOFILE soft limit: {n}"),
        Err(e) => println!("cannot raise RLIMIT_NOFILE: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = TestBackend::start(Duration::from_millis(10));
    let mut cfg = test_config(dir.path());
    cfg.publish_interval = Duration::from_millis(100);
    // The per-connection rate limit would dominate a closed-loop benchmark; lift it here.
    cfg.socket_limits.requests_per_sec = 1e9;
    cfg.socket_limits.request_burst = 1e9;
    let server = rt.block_on(Server::start(backend, cfg)).expect("server");
    let path = server.socket_path().to_owned();
    println!(
        "QueryMachine{{fresh:false}} round trips, {secs} s per level, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for clients in [1, 64, 1024] {
        level(&path, clients, secs, None);
    }
    level(&path, 64, secs, Some(Duration::from_millis(10)));
    level(&path, 1024, secs, Some(Duration::from_millis(100)));

    let mut c = Client::connect(ClientConfig::socket(&path)).expect("client");
    let mut fresh: Vec<Duration> = (0..20)
        .map(|_| {
            let t0 = Instant::now();
            c.machine(true).expect("fresh query");
            t0.elapsed()
        })
        .collect();
    fresh.sort_unstable();
    println!(
        "fresh queries (publication interval 100 ms): p50={:.1} ms  max={:.1} ms",
        percentile(&fresh, 0.5).as_secs_f64() * 1e3,
        fresh.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    rt.block_on(server.shutdown());
}
