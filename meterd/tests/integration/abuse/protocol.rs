//! Protocol- and configuration-level abuse (issue 27, items 7, 8 and 10): a side-channel guard
//! switched off by the configuration, abuse counters nobody could read, a job listing that broke
//! past one frame, an error that told hidden processes from missing ones, and an empty
//! `ANGES_METER_SOCKET` read differently by the daemon and its clients.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};
use anges_common::codec;
use anges_common::paths::SYSTEM_SOCKET;
use anges_common::protocol::{JobTarget, Request, Response};

use super::{
    ALICE, BOB, SystemDaemon, UserProcess, as_uid, daemon_command, daemon_folder, meter_cli,
};

/// Item 7: `publish_interval_ms = 1` in the system daemon's file is refused at start, naming
/// the key and the CVE.
#[test]
fn the_system_daemon_refuses_a_publication_interval_under_100_ms() {
    let out = SystemDaemon::start_expecting_exit(
        "publish_interval_ms = 1\n",
        &[],
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "{:?}\n{}", out.status, out.stderr);
    assert!(
        out.stderr.contains("publish_interval_ms") && out.stderr.contains("CVE-2020-8694"),
        "{}",
        out.stderr
    );
}

/// Item 7: a `--user` daemon (which serves only its own user) accepts 1 ms, with a warning.
#[test]
fn a_user_daemon_accepts_a_fast_publication_interval_with_a_warning() {
    let mut daemon = SystemDaemon::start("publish_interval_ms = 1\n", &["--user"]);
    assert_eq!(
        daemon.root_client().info().publish_interval,
        Duration::from_millis(1)
    );
    assert!(
        daemon.wait_for("CVE-2020-8694", Duration::from_secs(10)),
        "no warning; log:\n{}",
        daemon.log().join("\n")
    );
    assert!(
        daemon
            .log()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("publish_interval_ms")),
        "{}",
        daemon.log().join("\n")
    );
}

/// Item 8: the abuse counters are served, and every uid sees the daemon-wide aggregates (here
/// a bad frame sent by root, read by Alice through `anges-meter status`).
#[test]
fn status_shows_the_aggregate_abuse_counters_to_every_uid() {
    let daemon = SystemDaemon::start("", &[]);
    let mut raw = UnixStream::connect(daemon.socket()).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let hello = Request::Hello {
        protocol_version: anges_common::PROTOCOL_VERSION,
    };
    raw.write_all(&codec::encode(&hello).expect("encode"))
        .expect("send Hello");
    let mut buf = Vec::new();
    assert!(codec::read_frame(&mut raw, &mut buf, codec::MAX_FRAME).expect("Hello answer"));
    // Variant 200 of Request does not exist: a malformed frame.
    raw.write_all(&[1, 0, 0, 0, 200]).expect("send garbage");
    assert!(codec::read_frame(&mut raw, &mut buf, codec::MAX_FRAME).expect("answer"));
    assert!(matches!(
        codec::decode::<Response>(&buf),
        Ok(Response::Error(e)) if e.kind == anges_common::protocol::ErrorKind::Malformed
    ));

    let out = meter_cli(ALICE, daemon.socket())
        .arg("status")
        .output()
        .expect("setpriv (util-linux) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = stdout
        .lines()
        .find(|l| l.starts_with("server:"))
        .unwrap_or_else(|| panic!("no server counters in:\n{stdout}"));
    for counter in [
        "bad_frames 1",
        "rate_limited 0",
        "refused 0",
        "dropped_updates 0",
    ] {
        assert!(server.contains(counter), "{counter} missing: {server}");
    }
    drop(raw);
}

/// Item 10 (a): root registers 700 jobs (past the ≈600 that fit in one frame) and lists them
/// all.
#[test]
fn root_lists_700_jobs() {
    const THREADS: usize = 70;
    const PER_THREAD: usize = 10;
    let daemon = SystemDaemon::start("", &[]);
    let sleeper = UserProcess::shell(0, "exec sleep 60");
    let pid = sleeper.pid();
    // A registration is answered from the next publication (100 ms): register in parallel.
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let socket = daemon.socket().to_owned();
            std::thread::spawn(move || {
                let mut c = Client::connect(ClientConfig::socket(&socket)).expect("connect");
                for i in 0..PER_THREAD {
                    let name = format!("bulk-job-with-a-reasonably-long-name-{t:02}-{i:02}");
                    c.register_job(&name, JobTarget::Pid(pid))
                        .expect("root registers");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("registering thread");
    }
    let jobs = daemon.root_client().jobs().expect("list every job");
    assert_eq!(jobs.len(), THREADS * PER_THREAD);
    assert!(jobs.windows(2).all(|w| w[0].job.id < w[1].job.id));
    assert!(jobs.iter().all(|j| j.job.name.starts_with("bulk-job-")));
}

/// Item 10 (b): registering a PID you do not own and a PID that does not exist get the same
/// answer, so that processes hidden by `hidepid` (and their owners) are not revealed.
#[test]
fn a_pid_of_another_user_and_a_missing_pid_get_the_same_answer() {
    let daemon = SystemDaemon::start("", &[]);
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304);
    let missing = pid_max + 1;
    let attach = |pid: u32| {
        let out = meter_cli(BOB, daemon.socket())
            .args(["attach", "--name", "probe", "--pid"])
            .arg(pid.to_string())
            .output()
            .expect("setpriv (util-linux) must be installed");
        assert!(!out.status.success(), "Bob registered PID {pid}");
        String::from_utf8_lossy(&out.stderr).replace(&format!("PID {pid}"), "PID <pid>")
    };
    let init = attach(1);
    let ghost = attach(missing);
    assert_eq!(init, ghost);
    assert!(init.contains("PID <pid>"), "{init}");
}

/// Item 10 (c): an empty `ANGES_METER_SOCKET` is unset for the daemon and for `anges-meter`: a
/// `--user` daemon binds its default socket, and the CLI finds it there.
#[test]
fn an_empty_socket_variable_counts_as_unset_for_the_daemon_and_the_cli() {
    let dir = daemon_folder("");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("runtime folder");
    let socket = run.join("anges/meterd.sock");
    let log = dir.path().join("stderr.log");
    let mut child = daemon_command(dir.path())
        .arg("--user")
        .env("ANGES_METER_SOCKET", "")
        .env("XDG_RUNTIME_DIR", &run)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr log"))
        .spawn()
        .expect("spawn anges-meterd");
    let _kill = KillOnDrop(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Client::connect(ClientConfig::socket(&socket)).is_err() {
        let exited = _kill.0.try_wait().expect("wait on the daemon");
        if exited.is_some() || Instant::now() >= deadline {
            let mut text = String::new();
            let _ = std::fs::File::open(&log).map(|mut f| f.read_to_string(&mut text));
            panic!(
                "no daemon on {} ({exited:?}); log:\n{text}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = as_uid(0, env!("CARGO_BIN_EXE_anges-meter"))
        .arg("status")
        .env("ANGES_METER_SOCKET", "")
        .env("XDG_RUNTIME_DIR", &run)
        .output()
        .expect("run anges-meter");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if !Path::new(SYSTEM_SOCKET).exists() {
        assert!(
            stderr.contains(&socket.display().to_string()),
            "not our daemon: {stderr}"
        );
    }
}

/// Kills the child when the test ends, pass or fail.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
