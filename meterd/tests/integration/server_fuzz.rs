//! Bad input against the real socket server: random bytes, truncated frames, oversized length
//! prefixes, wrong protocol versions and well-framed nonsense. The server must answer with an
//! error or close that connection, never panic, and keep serving a well-behaved client that is
//! connected the whole time.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anges_common::client::{Client, ClientConfig};
use anges_common::codec;
use anges_common::protocol::{ErrorKind, Request, Response};
use anges_meterd::server::Server;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::server_common::{TestBackend, test_config};

/// One hostile input.
#[derive(Debug, Clone)]
enum Attack {
    /// Bytes straight onto the socket, no handshake.
    Raw(Vec<u8>),
    /// A handshake, then raw bytes.
    AfterHello(Vec<u8>),
    /// A handshake, then a frame announcing `len` bytes and carrying fewer, then EOF.
    Truncated { len: u32, body: Vec<u8> },
    /// A length prefix over the limit.
    Oversized(u32),
    /// A handshake with another protocol version.
    WrongVersion(u32),
    /// A well-framed payload that is not a valid request, after the handshake.
    Garbage(Vec<u8>),
}

fn attack() -> impl Strategy<Value = Attack> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..512);
    prop_oneof![
        bytes.clone().prop_map(Attack::Raw),
        bytes.clone().prop_map(Attack::AfterHello),
        (1u32..70_000, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(len, body)| Attack::Truncated { len, body }),
        ((codec::MAX_FRAME as u32 + 1)..=u32::MAX).prop_map(Attack::Oversized),
        any::<u32>()
            .prop_filter("another version", |v| *v != anges_common::PROTOCOL_VERSION)
            .prop_map(Attack::WrongVersion),
        proptest::collection::vec(any::<u8>(), 1..256)
            .prop_filter("not a request", |b| codec::decode::<Request>(b).is_err())
            .prop_map(Attack::Garbage),
    ]
}

fn frame_bytes(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn hello_frame() -> Vec<u8> {
    codec::encode(&Request::Hello {
        protocol_version: anges_common::PROTOCOL_VERSION,
    })
    .unwrap()
}

/// Sends the attack and collects every answer until the server closes or goes quiet.
fn run_attack(path: &Path, a: &Attack) -> Vec<Response> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let bytes = match a {
        Attack::Raw(b) => b.clone(),
        Attack::AfterHello(b) => [hello_frame(), b.clone()].concat(),
        Attack::Truncated { len, body } => {
            let mut v = hello_frame();
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&body[..body.len().min(*len as usize - 1)]);
            v
        }
        Attack::Oversized(len) => [hello_frame(), len.to_le_bytes().to_vec()].concat(),
        Attack::WrongVersion(v) => codec::encode(&Request::Hello {
            protocol_version: *v,
        })
        .unwrap(),
        Attack::Garbage(b) => [hello_frame(), frame_bytes(b)].concat(),
    };
    // The server may close before taking everything; that is a fine answer.
    let _ = s.write_all(&bytes);
    if matches!(a, Attack::Truncated { .. }) {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let mut buf = Vec::new();
    // Until the server closes (Ok(false)), resets or goes quiet (Err).
    while let Ok(true) = codec::read_frame(&mut s, &mut buf, codec::MAX_FRAME) {
        match codec::decode::<Response>(&buf) {
            Ok(r) => out.push(r),
            Err(e) => panic!("the server sent an undecodable frame: {e}"),
        }
    }
    out
}

fn kinds(answers: &[Response]) -> Vec<ErrorKind> {
    answers
        .iter()
        .filter_map(|r| match r {
            Response::Error(e) => Some(e.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn hostile_input_gets_errors_or_a_close_and_others_keep_getting_readings() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(1));
    let mut cfg = test_config(dir.path());
    cfg.publish_interval = Duration::from_millis(5);
    cfg.socket_limits.handshake_timeout = Duration::from_millis(200);
    let server = rt.block_on(Server::start(backend, cfg)).unwrap();
    let path = server.socket_path().to_owned();
    let mut client = Client::connect(ClientConfig::socket(&path)).unwrap();
    let first = client.machine(true).unwrap().tick;
    // The runner takes an `Fn`: the well-behaved client and its last tick live in a cell.
    let good = std::cell::RefCell::new((client, first));

    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&attack(), |a| {
            let answers = run_attack(&path, &a);
            let errs = kinds(&answers);
            match &a {
                Attack::Oversized(_) => prop_assert!(errs.contains(&ErrorKind::FrameTooLarge)),
                Attack::WrongVersion(_) => {
                    prop_assert_eq!(errs, vec![ErrorKind::VersionMismatch])
                }
                Attack::Garbage(_) => prop_assert!(errs.contains(&ErrorKind::Malformed)),
                _ => {}
            }
            // Before a handshake nothing but errors may come back.
            if let Attack::Raw(_) = a {
                prop_assert!(answers.iter().all(|r| matches!(r, Response::Error(_))));
            }
            // The well-behaved client is still served, with fresh readings.
            let mut good = good.borrow_mut();
            let r = good.0.machine(true).unwrap();
            prop_assert!(r.tick > good.1);
            good.1 = r.tick;
            Ok(())
        })
        .unwrap();
    assert!(
        server
            .stats()
            .bad_frames
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    rt.block_on(server.shutdown());
}

#[test]
fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = TestBackend::start(Duration::from_millis(2));
    let mut cfg = test_config(dir.path());
    cfg.socket_limits.handshake_timeout = Duration::from_millis(100);
    let server = rt.block_on(Server::start(backend, cfg)).unwrap();
    let mut s = UnixStream::connect(server.socket_path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "closed without a byte");
    rt.block_on(server.shutdown());
}
