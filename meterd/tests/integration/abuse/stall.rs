//! Item 5 of issue 27: connections that announce a large frame and then stall (or trickle one
//! byte at a time) must cost little memory and be closed after the frame deadline.

use std::time::Duration;

use super::{Attack, BOB, SystemDaemon, field};

/// The test daemon's frame deadline, far above the time the attack takes to open its
/// connections, so that they are all stalled together.
const CONFIG: &str = "[limits]\nframe_timeout_ms = 3000\n";

/// Runs `stall` with `extra` arguments over 500 connections; returns the daemon's peak RSS, KiB.
fn stall_500(daemon: &SystemDaemon, extra: &[&str]) -> u64 {
    let baseline = daemon.rss_kib();
    eprintln!("daemon RSS before the attack: {baseline} KiB");
    let mut args = vec!["stall", "--connections", "500", "--hold-s", "7"];
    args.extend_from_slice(extra);
    let mut bob = Attack::start(BOB, daemon.socket(), &args);
    let held = bob.line(Duration::from_secs(60));
    eprintln!("bob: {held}");
    assert_eq!(field(&held, "held"), 500, "{held}");
    let during = daemon.rss_kib();
    let end = bob.line(Duration::from_secs(60));
    let peak = daemon.peak_rss_kib();
    eprintln!(
        "bob: {end}; daemon RSS with 500 stalled connections: {during} KiB, peak {peak} KiB, \
         after: {} KiB",
        daemon.rss_kib()
    );
    assert_eq!(
        field(&end, "closed"),
        500,
        "stalled connections outlived the frame deadline: {end}"
    );
    peak
}

#[test]
fn stalled_frames_cost_little_memory_and_are_closed_after_the_frame_deadline() {
    let daemon = SystemDaemon::start(CONFIG, &[]);
    let peak = stall_500(&daemon, &[]);
    assert!(peak < 20 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn trickled_frames_are_closed_after_the_frame_deadline() {
    let daemon = SystemDaemon::start(CONFIG, &[]);
    let peak = stall_500(&daemon, &["--trickle-ms", "500"]);
    assert!(peak < 20 * 1024, "peak RSS {peak} KiB");
}
