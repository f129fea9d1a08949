//! `anges-meter run` without a daemon, or losing it mid-run (issue 27, item 9): the command always
//! runs, its exit status is the CLI's, and its energy is estimated locally or reported as
//! incomplete instead of failing the run.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ALICE, SystemDaemon, meter_cli};

/// The real CLI under alice with a socket nobody listens on and no other candidate socket.
fn cli_without_daemon() -> (Command, tempfile::TempDir) {
    let runtime = tempfile::tempdir().expect("an empty runtime folder");
    let mut cmd = meter_cli(ALICE, std::path::Path::new("/nonexistent/meter.sock"));
    cmd.env_remove("ANGES_METER_SOCKET")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("ANGES_LOG", "warn");
    (cmd, runtime)
}

#[test]
fn run_without_a_daemon_runs_the_command_and_returns_its_status() {
    let (mut cmd, _runtime) = cli_without_daemon();
    let out = cmd
        .args(["run", "--", "sh", "-c", "echo the-command-ran; exit 3"])
        .output()
        .expect("run anges-meter");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the-command-ran"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("local estimate"), "{stderr}");
}

#[test]
fn run_without_a_daemon_returns_128_plus_the_signal() {
    let (mut cmd, _runtime) = cli_without_daemon();
    let out = cmd
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .expect("run anges-meter");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
}

#[test]
fn run_outlives_a_daemon_killed_mid_run() {
    let mut daemon = SystemDaemon::start("", &[]);
    let mut cli = meter_cli(ALICE, daemon.socket())
        .args(["--reconnect-s", "0.5", "run", "--name", "outlive", "--"])
        .args(["sh", "-c", "sleep 1.5; exit 0"])
        .env("ANGES_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run anges-meter");
    // Kill the daemon once it meters the command.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = daemon.root_client();
    while !client
        .jobs()
        .is_ok_and(|jobs| jobs.iter().any(|j| j.job.name == "outlive"))
    {
        if Instant::now() > deadline || cli.try_wait().expect("poll the CLI").is_some() {
            let mut err = String::new();
            if let Some(mut e) = cli.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = cli.kill();
            panic!("the command was never metered by the daemon: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The job is published; give the registration's answer time to reach the CLI (a daemon
    // killed before answering leaves a job the CLI never learnt of: it then meters locally).
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = cli.try_wait().expect("poll the CLI") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = cli.kill();
            panic!("anges-meter did not exit after its command");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = cli.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("incomplete"), "{stderr}");
}
