//! Acceptance: two concurrent busy child processes registered as two jobs receive shares within
//! 10 % of their actual CPU-time shares; Σ jobs + unattributed = machine total per domain; a
//! finished job keeps its totals; descendants count.

use std::process::{Child, Command};
use std::time::Duration;

use anges_meter_engine::attribution::IdlePolicy;
use anges_meter_engine::engine::Engine;
use anges_meter_engine::jobs::JobSpec;
use anges_meter_engine::sensors::SensorChoice;

use crate::common::test_config;

/// Own CPU ticks (utime + stime) of `pid`, read independently of the meter's tracker.
fn own_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the name: f[0] state, f[1] ppid, … f[11] utime, f[12] stime (proc(5)).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A busy loop pinned to CPU 0 with a niceness, so two of them get unequal CPU shares.
fn busy(nice: u32) -> Child {
    Command::new("taskset")
        .args([
            "-c",
            "0",
            "nice",
            "-n",
            &nice.to_string(),
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .spawn()
        .expect("spawn taskset/nice/sh (util-linux and coreutils are required)")
}

fn exec_done(pid: u32) {
    // taskset and nice exec; wait until the process image is the shell so the PID is stable.
    for _ in 0..200 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sh") {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("child {pid} never became sh");
}

#[test]
fn two_busy_jobs_get_their_cpu_time_shares() {
    let mut cfg = test_config(std::path::Path::new("/"));
    cfg.sensor = SensorChoice::Estimate;
    cfg.idle_policy = IdlePolicy::Busy;
    let engine = Engine::start(cfg).unwrap();

    let mut a = busy(0);
    let mut b = busy(6);
    exec_done(a.id());
    exec_done(b.id());
    let spec = |name: &str, pid: u32| JobSpec {
        name: name.into(),
        root_pid: Some(pid),
        cgroup: None,
        owner_uid: 0,
    };
    let ja = engine.register_job(spec("a", a.id())).unwrap();
    let jb = engine.register_job(spec("b", b.id())).unwrap();
    // The tracker's baseline is taken at the first accounting tick after registration.
    let t = engine.wait_for_tick(engine.tick(), Duration::from_secs(2));
    let (a0, b0) = (own_ticks(a.id()), own_ticks(b.id()));
    std::thread::sleep(Duration::from_millis(2500));
    let t2 = engine.wait_for_tick(engine.tick(), Duration::from_secs(2));
    let (a1, b1) = (own_ticks(a.id()), own_ticks(b.id()));
    assert!(t2 > t);

    let (ta, tb) = (engine.job(ja).unwrap(), engine.job(jb).unwrap());
    let actual_a = (a1 - a0) as f64 / ((a1 - a0) + (b1 - b0)) as f64;
    let cpu_a = ta.cpu_seconds / (ta.cpu_seconds + tb.cpu_seconds);
    let energy_a = ta.domains["cpu:estimated"].joules
        / (ta.domains["cpu:estimated"].joules + tb.domains["cpu:estimated"].joules);
    eprintln!(
        "actual share a {actual_a:.3}, metered CPU share {cpu_a:.3}, energy share {energy_a:.3}"
    );
    assert!(
        actual_a > 0.55,
        "nice did not skew the shares ({actual_a}); test setup is not discriminating"
    );
    for (what, share) in [("cpu", cpu_a), ("energy", energy_a)] {
        assert!(
            (share - actual_a).abs() <= 0.10 * actual_a,
            "{what} share {share} vs actual {actual_a}"
        );
        let (sb, actual_b) = (1.0 - share, 1.0 - actual_a);
        assert!(
            (sb - actual_b).abs() <= 0.10 * actual_b,
            "{what} share b {sb} vs actual {actual_b}"
        );
    }
    let ticks_per_s = anges_meter_engine::procfs::clock_ticks_per_second();
    let measured_a = (a1 - a0) as f64 / ticks_per_s;
    assert!(
        (ta.cpu_seconds - measured_a).abs() <= 0.1 * measured_a + 0.1,
        "{} vs {measured_a}",
        ta.cpu_seconds
    );
    assert!(
        ta.grams > 0.0
            && ta
                .domains
                .values()
                .all(|d| d.provenance.to_string() == "estimated")
    );

    // Additivity: per domain, Σ jobs + unattributed = machine total.
    let m = engine.machine();
    let jobs = engine.jobs();
    for (id, d) in &m.domains {
        let sum_jobs: f64 = jobs
            .iter()
            .filter_map(|j| j.domains.get(id))
            .map(|x| x.joules)
            .sum();
        let lhs = sum_jobs + m.unattributed[id].joules;
        assert!(
            (lhs - d.joules).abs() <= 1e-9 * d.joules.max(1.0),
            "{id}: {lhs} vs {}",
            d.joules
        );
        let sum_g: f64 = jobs
            .iter()
            .filter_map(|j| j.domains.get(id))
            .map(|x| x.grams)
            .sum();
        assert!((sum_g + m.unattributed[id].grams - d.grams).abs() <= 1e-9 * d.grams.max(1e-9));
    }

    // Kill a: the job finishes and keeps its totals; b keeps counting.
    a.kill().unwrap();
    a.wait().unwrap();
    let mut finished = None;
    for _ in 0..40 {
        let t = engine.tick();
        engine.wait_for_tick(t, Duration::from_secs(1));
        if let Some(j) = engine.job(ja).filter(|j| j.finished) {
            finished = Some(j);
            break;
        }
    }
    let fa = finished.expect("job a never marked finished");
    std::thread::sleep(Duration::from_millis(300));
    let later = engine.job(ja).unwrap();
    assert_eq!(
        later.joules, fa.joules,
        "a finished job's totals must not change"
    );
    assert!(later.joules >= ta.joules);
    assert!(engine.job(jb).unwrap().cpu_seconds > tb.cpu_seconds);
    let gone = engine.unregister_job(ja).unwrap();
    assert_eq!(gone.joules, fa.joules);
    assert!(engine.job(ja).is_none());
    b.kill().unwrap();
    b.wait().unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn descendants_and_reaped_children_are_counted() {
    let mut cfg = test_config(std::path::Path::new("/"));
    cfg.sensor = SensorChoice::Estimate;
    let engine = Engine::start(cfg).unwrap();
    // A root shell that runs short-lived busy children one after another (each reaped by the
    // root) and one long-lived busy grandchild-holder; the root itself stays idle.
    #[allow(clippy::zombie_processes, reason = "reaped below with wait4 to get its rusage")]
    let root = Command::new("sh")
        .args([
            "-c",
            "sh -c 'while :; do :; done' & for i in 1 2 3 4 5 6; do timeout 0.3 sh -c 'while :; do :; done'; done; kill $!; wait",
        ])
        .spawn()
        .unwrap();
    let job = engine
        .register_job(JobSpec {
            name: "tree".into(),
            root_pid: Some(root.id()),
            cgroup: None,
            owner_uid: 0,
        })
        .unwrap();
    // Actual CPU time of the root and all it reaped, from the kernel's rusage.
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = root.id() as libc::pid_t;
    // SAFETY: valid out-pointers to locals; `pid` is our own child.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let actual = tv(usage.ru_utime) + tv(usage.ru_stime);
    let mut done = None;
    for _ in 0..40 {
        let t = engine.tick();
        engine.wait_for_tick(t, Duration::from_secs(1));
        if let Some(j) = engine.job(job).filter(|j| j.finished) {
            done = Some(j);
            break;
        }
    }
    let j = done.expect("tree job never finished");
    // Every process here is reaped by its parent, so the root's rusage is the tree's CPU time.
    eprintln!("metered {:.2} s, actual {actual:.2} s", j.cpu_seconds);
    assert!(actual > 0.3, "the tree did not run ({actual} s)");
    assert!(
        (j.cpu_seconds - actual).abs() <= 0.1 * actual + 0.05,
        "metered {} s vs actual {actual} s",
        j.cpu_seconds
    );
    engine.shutdown().unwrap();
}
