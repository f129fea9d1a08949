//! The socket server against a real `UnixListener`, the real client libraries and a small test
//! backend: queries, fresh readings, publication rate, re-attachment after a restart, bounds and
//! slow clients.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anges_common::client::{AsyncClient, Client, ClientConfig, ClientError};
use anges_common::codec;
use anges_common::protocol::{ErrorKind, JobTarget, Request, Response};
use anges_meterd::server::{MeterBackend, Server, ServerConfig};

use crate::server_common::{TestBackend, test_config};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client(path: &std::path::Path) -> Client {
    let mut cfg = ClientConfig::socket(path);
    cfg.request_timeout = Duration::from_secs(5);
    Client::connect(cfg).unwrap()
}

#[test]
fn register_query_list_unregister() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let cfg = test_config(dir.path());
    let server = rt.block_on(Server::start(backend.clone(), cfg)).unwrap();
    let mut c = client(server.socket_path());
    assert_eq!(c.info().peer_uid, unsafe { libc::geteuid() });

    let job = c
        .register_job("unit", JobTarget::Pid(std::process::id()))
        .unwrap();
    assert_eq!(job.job.name, "unit");
    let first = c.job(job.job.id, true).unwrap();
    let second = c.job(job.job.id, true).unwrap();
    assert!(second.reading.tick > first.reading.tick);
    assert!(second.reading.totals.joules() > first.reading.totals.joules());
    assert_eq!(second.reading.health.sources_measured, ["test-rapl"]);

    let m = c.machine(true).unwrap();
    assert!(m.totals.joules() > 0.0);
    assert!(
        (m.totals.grams_co2 - m.totals.joules() / 3.6e6 * crate::server_common::INTENSITY).abs()
            < 1e-9
    );

    let jobs = c.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    let last = c.unregister_job(job.job.id).unwrap();
    assert!(last.reading.totals.joules() >= second.reading.totals.joules());
    let err = c.job(job.job.id, false).unwrap_err();
    assert!(matches!(err, ClientError::Daemon(e) if e.kind == ErrorKind::NoSuchJob));
    assert!(c.jobs().unwrap().is_empty());

    // Bad registrations get typed errors.
    let err = c.register_job("", JobTarget::Pid(1)).unwrap_err();
    assert!(matches!(err, ClientError::Daemon(e) if e.kind == ErrorKind::InvalidRequest));
    let err = c
        .register_job("ghost", JobTarget::Pid(u32::MAX - 1))
        .unwrap_err();
    assert!(matches!(err, ClientError::Daemon(e) if e.kind == ErrorKind::NoSuchTarget));
    rt.block_on(server.shutdown());
}

#[test]
fn fresh_readings_include_a_later_tick_and_publication_is_rate_limited() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(1));
    let mut cfg = test_config(dir.path());
    cfg.publish_interval = Duration::from_millis(60);
    let server = rt.block_on(Server::start(backend.clone(), cfg)).unwrap();
    let mut c = client(server.socket_path());
    assert_eq!(c.info().publish_interval, Duration::from_millis(60));
    let mut prev = c.machine(true).unwrap();
    for _ in 0..5 {
        let before = backend.tick();
        let r = c.machine(true).unwrap();
        assert!(
            r.tick > before,
            "a fresh reading includes a tick after the call"
        );
        let gap = r.totals.timestamp_ms - prev.totals.timestamp_ms;
        assert!(gap >= 55, "publications {gap} ms apart, interval is 60 ms");
        prev = r;
    }
    // Non-fresh readings between two publications are identical: no finer-grained data leaks.
    let a = c.machine(false).unwrap();
    let b = c.machine(false).unwrap();
    if a.tick == b.tick {
        assert_eq!(a.totals, b.totals);
    }
    // Subscriptions cannot go faster than the publication interval.
    let period = c.subscribe(None, Duration::from_millis(1)).unwrap();
    assert_eq!(period, Duration::from_millis(60));
    let u1 = c.next_update().unwrap();
    let u2 = c.next_update().unwrap();
    assert!(u2.reading.tick >= u1.reading.tick);
    rt.block_on(server.shutdown());
}

#[test]
fn client_reattaches_after_a_daemon_restart_without_loss_or_double_count() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    // The backend outlives both servers, as the engine's persisted state does across restarts.
    let backend = TestBackend::start(Duration::from_millis(2));
    let server = rt
        .block_on(Server::start(backend.clone(), test_config(dir.path())))
        .unwrap();
    let path = server.socket_path().to_owned();
    let mut c = client(&path);
    let job = c
        .register_job("epochs", JobTarget::Pid(std::process::id()))
        .unwrap();
    let before = c.job(job.job.id, true).unwrap();
    rt.block_on(server.shutdown());

    // The daemon is down for a moment; the client's next call waits and reconnects.
    let restarted = {
        let backend = backend.clone();
        let cfg = test_config(dir.path());
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            handle.block_on(Server::start(backend, cfg)).unwrap()
        })
    };
    let after = c.job(job.job.id, true).unwrap();
    assert!(after.reading.totals.joules() > before.reading.totals.joules());
    assert_eq!(
        backend.job_count(),
        1,
        "re-attaching must not register again"
    );
    assert_eq!(c.jobs().unwrap().len(), 1);
    let server = restarted.join().unwrap();
    rt.block_on(server.shutdown());
}

#[test]
fn async_client_works_the_same() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let server = rt
        .block_on(Server::start(backend.clone(), test_config(dir.path())))
        .unwrap();
    let path = server.socket_path().to_owned();
    rt.block_on(async {
        let mut c = AsyncClient::connect(ClientConfig::socket(&path))
            .await
            .unwrap();
        let job = c
            .register_job("async", JobTarget::Pid(std::process::id()))
            .await
            .unwrap();
        let r = c.job(job.job.id, true).await.unwrap();
        assert_eq!(r.job.id, job.job.id);
        assert!(c.machine(true).await.unwrap().totals.joules() > 0.0);
        c.subscribe(Some(job.job.id), Duration::from_millis(10))
            .await
            .unwrap();
        let u = c.next_update().await.unwrap();
        assert_eq!(u.job, Some(job.job.id));
        c.unregister_job(job.job.id).await.unwrap();
    });
    rt.block_on(server.shutdown());
}

/// Raw connection with the handshake done.
fn raw(path: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    codec::write_frame(
        &mut s,
        &Request::Hello {
            protocol_version: anges_common::PROTOCOL_VERSION,
        },
    )
    .unwrap();
    let mut buf = Vec::new();
    assert!(codec::read_frame(&mut s, &mut buf, codec::MAX_FRAME).unwrap());
    assert!(matches!(
        codec::decode(&buf).unwrap(),
        Response::Hello { .. }
    ));
    s
}

#[test]
fn connections_requests_and_subscriptions_are_bounded() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let mut cfg = test_config(dir.path());
    cfg.socket_limits.max_connections = 2;
    cfg.socket_limits.requests_per_sec = 10.0;
    cfg.socket_limits.request_burst = 5.0;
    cfg.socket_limits.max_subscriptions_per_conn = 1;
    let server = rt.block_on(Server::start(backend.clone(), cfg)).unwrap();
    let path = server.socket_path().to_owned();

    let mut a = client(&path);
    let _b = client(&path);
    let err = Client::connect(ClientConfig::socket(&path)).unwrap_err();
    assert!(
        matches!(&err, ClientError::Daemon(e) if e.kind == ErrorKind::LimitReached),
        "{err}"
    );

    // Over its budget, a connection is held back (back-pressure), not answered with errors:
    // 20 requests at 10/s with a burst of 5 take at least 1.5 s.
    let start = Instant::now();
    for _ in 0..20 {
        a.machine(false).unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "20 requests went through in {:?}",
        start.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    a.subscribe(None, Duration::from_millis(20)).unwrap();
    let err = a.subscribe(None, Duration::from_millis(20)).unwrap_err();
    assert!(matches!(err, ClientError::Daemon(e) if e.kind == ErrorKind::LimitReached));
    assert!(
        server
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 10
    );
    rt.block_on(server.shutdown());
}

/// Asks, on a raw connection, for the machine's updates at the fastest period the server allows
/// (the answer is left unread).
fn subscribe_to_every_update(s: &mut UnixStream) {
    codec::write_frame(
        s,
        &Request::Subscribe {
            job: None,
            period_ms: 1,
        },
    )
    .unwrap();
}

/// The slow-client tests' server: publications every `publish`, a 300 ms write timeout.
fn slow_client_config(dir: &std::path::Path, publish: Duration) -> ServerConfig {
    let mut cfg = test_config(dir);
    cfg.publish_interval = publish;
    cfg.socket_limits.write_timeout = Duration::from_millis(300);
    cfg
}

#[test]
fn a_client_that_stops_reading_stalls_nobody_and_is_dropped() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(1));
    let cfg = slow_client_config(dir.path(), Duration::from_millis(5));

    let server = Arc::new(rt.block_on(Server::start(backend.clone(), cfg)).unwrap());
    let path = server.socket_path().to_owned();

    // Large answers: 300 jobs make every job list ~25 KiB.
    for i in 0..300 {
        backend
            .register_job(anges_meterd::server::JobSpec {
                name: format!("job-{i}"),
                root_pid: Some(std::process::id()),
                cgroup: None,
                owner_uid: 0,
            })
            .unwrap();
    }
    // The slow client subscribes to the fastest updates and then asks for large answers
    // without ever reading.
    let mut slow = raw(&path);
    slow.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    subscribe_to_every_update(&mut slow);
    for _ in 0..2000 {
        if codec::write_frame(&mut slow, &Request::ListJobs).is_err() {
            break;
        }
    }
    let mut good = client(&path);
    let start = Instant::now();
    let mut last_tick = 0;
    while start.elapsed() < Duration::from_secs(1) {
        let r = good.machine(true).unwrap();
        assert!(r.tick > last_tick);
        last_tick = r.tick;
    }
    // By now the slow connection has been closed: reading drains what was queued, then EOF.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    // A close with our requests still unread by the server reads as a reset.
    match slow.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the stalled connection was not closed: {e}"
        ),
    }
    let stats = server.stats();
    assert!(
        stats
            .dropped_updates
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let server = Arc::try_unwrap(server).unwrap();
    rt.block_on(server.shutdown());
    let _ = slow.write_all(b"x");
}

#[test]
fn a_subscriber_that_stops_reading_is_closed_after_the_write_timeout() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(1));
    let cfg = slow_client_config(dir.path(), Duration::from_millis(1));
    let server = rt.block_on(Server::start(backend.clone(), cfg)).unwrap();

    // Subscribes to the fastest updates, sends nothing else and never reads: only the updates
    // themselves can fill its buffer, and only a full buffer that stays full can close it.
    let mut slow = raw(server.socket_path());
    subscribe_to_every_update(&mut slow);
    let start = Instant::now();
    let stats = server.stats();
    while stats.open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a subscriber that stopped reading was never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let dropped = stats
        .dropped_updates
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "no update was dropped before the close");
    // What was written before the buffer filled is still readable, then the stream ends.
    let mut sink = Vec::new();
    slow.read_to_end(&mut sink).unwrap();
    assert!(!sink.is_empty());
    rt.block_on(server.shutdown());
}
