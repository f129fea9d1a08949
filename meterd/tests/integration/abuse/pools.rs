//! Item 3 of issue 27: one uid must not take a whole daemon-wide pool. Bob hoards every
//! connection and subscription he can; Alice can still connect and subscribe.

use std::time::Duration;

use super::{ALICE, Attack, BOB, SystemDaemon, field, loadgen};

#[test]
fn a_uid_hoarding_subscriptions_leaves_room_for_another_uid() {
    let daemon = SystemDaemon::start("", &[]);
    // 300 connections × 4 subscriptions: more than the 1,024 slots of the whole daemon.
    let mut bob = Attack::start(
        BOB,
        daemon.socket(),
        &[
            "subscribe",
            "--connections",
            "300",
            "--per-connection",
            "4",
            "--hold-s",
            "30",
        ],
    );
    let hoard = bob.line(Duration::from_secs(60));
    eprintln!("bob: {hoard}");
    assert!(field(&hoard, "subscriptions") > 0, "{hoard}");

    let out = loadgen(ALICE, daemon.socket())
        .args(["subscribe", "--connections", "2", "--per-connection", "2"])
        .output()
        .expect("setpriv (util-linux) must be installed");
    let alice = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("alice: {alice}");
    assert_eq!(field(&alice, "connections"), 2, "{alice}");
    assert_eq!(
        field(&alice, "subscriptions"),
        4,
        "alice was refused: {alice}"
    );
}
