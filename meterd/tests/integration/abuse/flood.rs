//! Items 6 and 8 of issue 27: a flood of pipelined requests is held back (back-pressure) rather
//! than answered, so it cannot take a core from the sampler; refused and malformed connections
//! leave a few summary lines in the log, neither thousands nor none.

use std::time::{Duration, Instant};

use super::{Attack, BOB, SystemDaemon, field, loadgen};

#[test]
fn a_flood_of_pipelined_requests_is_held_back_and_the_sampler_keeps_its_pace() {
    let daemon = SystemDaemon::start("", &[]);
    let mut root = daemon.root_client();
    // The sampler's pace without the flood.
    let t0 = Instant::now();
    let tick0 = root.machine(true).expect("machine").tick;
    std::thread::sleep(Duration::from_secs(1));
    let tick1 = root.machine(true).expect("machine").tick;
    let calm = (tick1 - tick0) as f64 / t0.elapsed().as_secs_f64();

    let cpu0 = daemon.cpu_seconds();
    let t1 = Instant::now();
    let out = loadgen(BOB, daemon.socket())
        .args(["flood", "--connections", "4", "--seconds", "3", "--read"])
        .output()
        .expect("setpriv (util-linux) must be installed");
    let wall = t1.elapsed().as_secs_f64();
    let cpu = (daemon.cpu_seconds() - cpu0) / wall;
    let tick2 = root.machine(true).expect("machine").tick;
    let pace = (tick2 - tick1) as f64 / t1.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "bob: {summary}daemon CPU {:.1} % of a core over {wall:.1} s; ticks/s {calm:.1} calm, \
         {pace:.1} flooded",
        cpu * 100.0
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(field(&summary, "sent") > 0, "{summary}");
    assert!(cpu < 0.25, "the flood took {:.1} % of a core", cpu * 100.0);
    assert!(
        pace > calm * 0.7,
        "the sampler slowed: {pace:.1} ticks/s, {calm:.1} calm"
    );
}

/// Lines of the log that contain `needle`.
fn lines_with(daemon: &mut SystemDaemon, needle: &str) -> usize {
    daemon.log().iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn refused_and_malformed_connections_leave_a_few_summary_lines() {
    let mut daemon = SystemDaemon::start("", &[]);
    let out = loadgen(BOB, daemon.socket())
        .args(["garbage", "--connections", "2000"])
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert_eq!(field(&String::from_utf8_lossy(&out.stdout), "sent"), 2000);
    // Bob takes all the connections his uid may have, and asks for 2,000 more.
    let mut bob = Attack::start(
        BOB,
        daemon.socket(),
        &["stall", "--connections", "2512", "--hold-s", "1"],
    );
    let held = bob.line(Duration::from_secs(60));
    eprintln!("bob: {held}");
    assert_eq!(field(&held, "refused"), 2000, "{held}");

    assert!(
        daemon.wait_for("malformed", Duration::from_secs(5)),
        "2,000 malformed connections left no trace:\n{}",
        daemon.log().join("\n")
    );
    assert!(daemon.wait_for("refused", Duration::from_secs(5)));
    // Let a flood of lines arrive, if there is one.
    std::thread::sleep(Duration::from_millis(500));
    let malformed = lines_with(&mut daemon, "malformed");
    let refused = lines_with(&mut daemon, "refused");
    eprintln!("log lines: {malformed} about malformed, {refused} about refused connections");
    assert!(
        malformed <= 5,
        "{malformed} lines about malformed connections"
    );
    assert!(refused <= 5, "{refused} lines about refused connections");
}
