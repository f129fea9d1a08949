//! Item 1 of issue 27: one user must not shrink another's energy by registering the same busy
//! process many times. A process's CPU time counts once, so duplicates share that process's own
//! share and alice's joules per CPU-second stay the same.

use std::time::{Duration, Instant};

use anges_common::protocol::JobId;

use super::{ALICE, BOB, SystemDaemon, UserProcess, meter_cli};

/// With no idle power and no DRAM domain the estimated energy is proportional to the machine's
/// busy CPU time, and under the `busy` idle policy a job pays `energy × its CPU / busy CPU`: its
/// joules per CPU-second is the model's constant whatever else runs on the (shared, loaded) CI
/// machine, so two windows can be compared within 2 %.
const CONFIG: &str =
    "idle_policy = \"busy\"\n[estimate]\ncpu_idle_watts = 0.0\ndram_watts_per_gb = 0.0\n";

/// Length of one measuring window: long enough that the skew between the daemon's tick and the
/// test's own reading of `/proc/<pid>/stat` (a few ms) stays far below 1 %.
const WINDOW: Duration = Duration::from_secs(3);

/// `anges-meter attach --pid pid` as `uid`; the job's id.
pub(super) fn attach(daemon: &SystemDaemon, uid: u32, pid: u32, name: &str) -> JobId {
    let out = meter_cli(uid, daemon.socket())
        .args(["attach", "--name", name, "--pid"])
        .arg(pid.to_string())
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert!(
        out.status.success(),
        "attach as {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    JobId(
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("attach printed no job id: {text:?}")),
    )
}

/// Own CPU time (utime + stime) of `pid`, seconds, read by the test itself.
pub(super) fn own_cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    let after = &text[text.rfind(')').expect("comm in stat") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Alice's job's joules and her process's CPU seconds, read while the process is stopped
/// (SIGSTOP, then two fresh publications): the daemon's latest tick and the test's own reading
/// of `/proc/<pid>/stat` then see the same CPU time however late a loaded machine schedules the
/// test, so the windows' figures carry no skew.
fn frozen_reading(daemon: &SystemDaemon, job: JobId, pid: u32) -> (f64, f64) {
    // SAFETY: plain kill(2) on a child of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let mut client = daemon.root_client();
    client.job(job, true).expect("alice's job");
    let joules = client
        .job(job, true)
        .expect("alice's job")
        .reading
        .totals
        .joules();
    let cpu = own_cpu_seconds(pid);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    (joules, cpu)
}

/// Alice's job's joules per CPU-second of her process over one window (at least 1 CPU-second of
/// hers, so that one clock tick is under 1 %).
fn joules_per_cpu_second(daemon: &SystemDaemon, job: JobId, pid: u32) -> f64 {
    let (j0, cpu0) = frozen_reading(daemon, job, pid);
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    while own_cpu_seconds(pid) - cpu0 < 1.0 && start.elapsed() < 4 * WINDOW {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (j1, cpu1) = frozen_reading(daemon, job, pid);
    assert!(
        cpu1 - cpu0 > 0.5,
        "alice's loop hardly ran ({cpu0} → {cpu1} s)"
    );
    (j1 - j0) / (cpu1 - cpu0)
}

#[test]
fn duplicate_registrations_do_not_shrink_another_users_share() {
    let daemon = SystemDaemon::start(CONFIG, &[]);
    let alice = UserProcess::shell(ALICE, "while :; do :; done");
    let bob = UserProcess::shell(BOB, "while :; do :; done");
    let job = attach(&daemon, ALICE, alice.pid(), "alice-busy");
    attach(&daemon, BOB, bob.pid(), "bob-busy-0");
    // Let both jobs take their baseline.
    let mut root = daemon.root_client();
    let t = root.machine(true).expect("machine").tick;
    while root.machine(true).expect("machine").tick < t + 3 {}

    let before = joules_per_cpu_second(&daemon, job, alice.pid());
    for i in 1..64 {
        attach(&daemon, BOB, bob.pid(), &format!("bob-busy-{i}"));
    }
    let t = root.machine(true).expect("machine").tick;
    while root.machine(true).expect("machine").tick < t + 3 {}
    let after = joules_per_cpu_second(&daemon, job, alice.pid());

    let change = after / before - 1.0;
    eprintln!(
        "alice: {before:.4} J/CPU-s with bob once, {after:.4} J/CPU-s with bob 64 times ({:+.2} %)",
        change * 100.0
    );
    assert!(
        change.abs() < 0.02,
        "bob's 64 registrations moved alice's J per CPU-second from {before:.4} to {after:.4}"
    );
}
