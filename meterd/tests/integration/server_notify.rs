//! sd-notify over a real `NOTIFY_SOCKET` datagram socket that the test binds: `READY=1` comes
//! only once the meter's socket accepts connections, `WATCHDOG=1` pings follow while the sampler
//! advances and stop while it is stalled, and `STOPPING=1` comes at shutdown.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};
use anges_meterd::server::Server;

use crate::server_common::{TestBackend, test_config};

/// Datagrams received within `window`.
fn collect(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[test]
fn ready_after_listen_then_watchdog_only_while_the_sampler_advances() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let mut cfg = test_config(dir.path());
    cfg.notify_socket = Some(notify_path.clone().into_os_string());
    cfg.watchdog = Some(Duration::from_millis(40));
    let socket = cfg.socket.clone();

    let starting = {
        let backend = backend.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || handle.block_on(Server::start(backend, cfg)).unwrap())
    };
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("READY=1\n"), "first message: {first:?}");
    assert!(first.contains("STATUS=measured: test-rapl"), "{first:?}");
    // At READY the socket already accepts connections and answers the handshake.
    let mut c = Client::connect(ClientConfig::socket(&socket)).unwrap();
    assert!(c.machine(false).is_ok());
    let server = starting.join().unwrap();

    let msgs = collect(&notify, Duration::from_millis(400));
    assert!(pings(&msgs) >= 4, "too few pings while sampling: {msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("sampling at")),
        "no rate in STATUS: {msgs:?}"
    );

    backend.set_stalled(true);
    let _ = collect(&notify, Duration::from_millis(100)); // a ping may already be in flight
    let stalled = collect(&notify, Duration::from_millis(400));
    assert_eq!(pings(&stalled), 0, "pings while stalled: {stalled:?}");
    assert!(stalled.iter().any(|m| m.contains("STATUS=sampler stalled")));

    backend.set_stalled(false);
    let resumed = collect(&notify, Duration::from_millis(300));
    assert!(pings(&resumed) >= 2, "no pings after resuming: {resumed:?}");

    rt.block_on(server.shutdown());
    let last = collect(&notify, Duration::from_millis(300));
    assert!(
        last.iter().any(|m| m.starts_with("STOPPING=1")),
        "no STOPPING: {last:?}"
    );
}
