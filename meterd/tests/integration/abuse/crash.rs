//! Items 4 and 10b of issue 27: totals never go backwards after `kill -9`, and a state
//! directory that cannot be written is refused at start, not found at the first save.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anges_common::protocol::Reading;

use super::shares::attach;
use super::{ALICE, SystemDaemon, UserProcess};

/// Publication interval of these daemons (the default), ms.
const PUBLISH_MS: u64 = 100;

/// Estimated power with every CPU busy is at most this (3.5 W per vCPU by default, plus DRAM),
/// per logical CPU and per GB of memory; bounds the energy of one publication interval.
fn max_watts() -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0 / 1e9);
    3.5 * cpus + 0.392 * mem_gb
}

fn at_least(after: &Reading, before: &Reading, what: &str) {
    assert!(
        after.tick >= before.tick,
        "{what}: tick went back {} → {}",
        before.tick,
        after.tick
    );
    assert!(
        after.totals.joules() >= before.totals.joules(),
        "{what}: joules went back {} → {}",
        before.totals.joules(),
        after.totals.joules()
    );
    assert!(
        after.totals.grams_co2 >= before.totals.grams_co2,
        "{what}: grams went back {} → {}",
        before.totals.grams_co2,
        after.totals.grams_co2
    );
}

#[test]
fn totals_never_go_backwards_after_kill_9() {
    let mut daemon = SystemDaemon::start("", &[]);
    let busy = UserProcess::shell(ALICE, "while :; do :; done");
    let job = attach(&daemon, ALICE, busy.pid(), "alice-busy");
    let mut client = daemon.root_client();
    // A couple of seconds of totals, far less than the old 30 s persistence period.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        client.machine(true).expect("machine");
    }
    let machine = client.machine(true).expect("machine");
    let job_before = client.job(job, true).expect("alice's job").reading;
    daemon.kill9();
    daemon.restart(&[]);
    let mut client = daemon.root_client();
    // What the restarted daemon publishes first: its restored totals.
    let machine_after = client.machine(false).expect("machine after restart");
    at_least(&machine_after, &machine, "machine");
    let job_after = client
        .job(job, false)
        .expect("alice's job after restart")
        .reading;
    eprintln!(
        "machine {:.3} J tick {} → {:.3} J tick {}; job {:.3} J → {:.3} J",
        machine.totals.joules(),
        machine.tick,
        machine_after.totals.joules(),
        machine_after.tick,
        job_before.totals.joules(),
        job_after.totals.joules()
    );
    at_least(&job_after, &job_before, "alice's job");
    // Restored is what was published last: the machine reading above, or the job's (at most
    // one publication later). So the crash lost at most the energy not yet published, less
    // than one publication interval's worth.
    let one_interval = max_watts() * (PUBLISH_MS as f64 / 1000.0) * 2.0;
    assert!(
        machine_after.totals.joules() - machine.totals.joules() <= one_interval,
        "restored {:.3} J, more than one interval ({one_interval:.3} J) past the last reading \
         {:.3} J",
        machine_after.totals.joules(),
        machine.totals.joules()
    );
}

#[test]
fn an_unwritable_state_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temporary folder");
    // Root can write anywhere on a normal filesystem, but nobody creates folders in procfs.
    let state = "/proc/self/anges-meter-state";
    let mut child = Command::new(env!("CARGO_BIN_EXE_anges-meterd"))
        .arg("--socket")
        .arg(dir.path().join("meter.sock"))
        .args(["--state-dir", state])
        .args(["--sensor", "estimate", "--gpus", "none", "--no-dbus"])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("ANGES_METER_SOCKET")
        .env("ANGES_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn anges-meterd");
    // Starting takes well under a second; a daemon still running after this accepted the
    // directory (and would have failed only at its first save).
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on the daemon") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("anges-meterd started with an unwritable state directory {state}");
    };
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut log);
    }
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("state directory") && log.contains(state),
        "the error names the state directory:\n{log}"
    );
}
