//! End to end: the trainer's per-epoch meter (`anges_trainer::emissions::EpochMeter`, `--meter
//! daemon`) against the real `anges-meterd --user` binary reading a fixture powercap tree whose
//! counter a thread advances. The test process is the job: it burns CPU for a few "epochs" and
//! reads each one. The daemon is then killed mid-run (SIGKILL), restarted on the same state
//! folder, stopped and restarted again between two reads (a restart the client hides by
//! reconnecting within one read), killed before it ever saved the job (which it then forgets), and
//! stopped (SIGSTOP: connections accepted, never answered).
//! Training never stalls or fails, every epoch has exactly one source, gap epochs are marked and
//! filled by the in-process estimator, and the daemon-sourced increments never exceed the daemon's
//! own final total of the job (nothing counted twice); work after the last reading is the run's
//! tail, so that the run's total is the job's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anges_e2e::{MeterDaemon, PowerFeed, PowercapFixture, burn};
use anges_trainer::config::{MeterConfig, MeterMode};
use anges_trainer::emissions::{
    EnergySource, EpochEnergy, EpochMeter, MeterError, MeterFinal, MeterOptions,
};

/// Longest a single epoch reading may take, daemon up or down.
const MAX_READ: Duration = Duration::from_secs(5);

fn daemon_args(socket: &Path) -> MeterConfig {
    MeterConfig {
        mode: MeterMode::Daemon,
        socket: Some(socket.to_owned()),
        ..MeterConfig::default()
    }
}

/// The trainer's meter on the daemon at `socket`, its standby forced to the estimate.
fn daemon_meter(socket: &Path, job: &str) -> EpochMeter {
    EpochMeter::start_with(&daemon_args(socket), job, &MeterOptions::estimated())
        .expect("daemon meter")
        .expect("not off")
}

/// One epoch: burn, then read, bounded in time.
fn epoch(meter: &mut EpochMeter, log: &mut Vec<EpochEnergy>) -> EpochEnergy {
    burn(Duration::from_millis(350));
    let t = Instant::now();
    let e = meter.read_epoch();
    let took = t.elapsed();
    assert!(
        took < MAX_READ,
        "epoch {} read took {took:?}",
        log.len() + 1
    );
    eprintln!("epoch {}: {e:?} ({took:?})", log.len() + 1);
    log.push(e.clone());
    e
}

/// The invariants of any run: increments ≥ 0 summing to the cumulative figures, which never go
/// down; gap epochs marked; the daemon's increments within its own total.
fn check_run(log: &[EpochEnergy], fin: &MeterFinal) {
    let (mut sum_j, mut sum_g, mut prev) = (0.0, 0.0, 0.0);
    for (i, e) in log.iter().enumerate() {
        assert!(
            e.energy_j >= 0.0 && e.co2_g >= 0.0,
            "epoch {}: {e:?}",
            i + 1
        );
        sum_j += e.energy_j;
        sum_g += e.co2_g;
        assert_eq!(e.cumulative_j, sum_j, "epoch {}", i + 1);
        assert_eq!(e.cumulative_g, sum_g, "epoch {}", i + 1);
        assert!(e.cumulative_j >= prev);
        prev = e.cumulative_j;
        if e.source == EnergySource::LocalGap {
            let fault = e.fault.as_deref().unwrap_or("");
            assert!(
                fault.contains("local estimator"),
                "gap epoch {} is marked: {fault:?}",
                i + 1
            );
            assert!(!e.measured, "an estimate is not measured");
        }
    }
    assert_eq!(fin.cumulative_j, sum_j);
    assert_eq!(fin.cumulative_g, sum_g);
    assert_eq!(fin.epochs, log.len());
    assert_eq!(
        fin.gap_epochs,
        log.iter()
            .filter(|e| e.source == EnergySource::LocalGap)
            .count()
    );
}

fn sources(log: &[EpochEnergy]) -> Vec<EnergySource> {
    log.iter().map(|e| e.source).collect()
}

fn fault(e: &EpochEnergy) -> &str {
    e.fault.as_deref().unwrap_or("")
}

use EnergySource::{Daemon as D, LocalGap as G};

#[test]
fn daemon_killed_and_restarted_mid_run_loses_and_double_counts_nothing() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    // Frequent saves, so that a killed daemon restarts with the job and its totals.
    let config = home.path().join("config/anges");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("meterd.toml"), "persist_interval_s = 0.1\n").unwrap();
    let fixture = Arc::new(PowercapFixture::new(&home.path().join("sysfs")).unwrap());
    let pump = PowerFeed::start(fixture.clone(), 5.0);
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon");
    let socket = daemon.socket().to_owned();

    let mut meter = daemon_meter(&socket, "e2e-trainer");
    let describe = meter.describe();
    assert!(
        describe.starts_with(&format!("daemon {}", socket.display()))
            && describe.contains("measured: powercap"),
        "{describe}"
    );
    assert!(meter.measured());
    let first_job = meter.daemon_job().expect("a daemon job");
    let mut log = Vec::new();

    // Steady: the daemon's increments, measured.
    for _ in 0..3 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, D, "{e:?}");
    }
    assert!(log[1..].iter().all(|e| e.energy_j > 0.0 && e.measured));

    // SIGKILL. The counter is held still first, so that the last periodic save has every joule
    // the daemon attributed (a killed daemon cannot save what came after).
    pump.pause(true);
    std::thread::sleep(Duration::from_millis(400));
    daemon.kill().expect("kill the daemon");
    pump.pause(false);
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, G, "{e:?}");
        assert!(fault(&e).contains("meter unreachable"), "{e:?}");
        assert!(e.energy_j > 0.0, "the estimator filled the gap: {e:?}");
    }

    // Back on the same state folder: the client re-attaches the same job; the first epoch is
    // still filled locally (the daemon's jump spans part of the gap), then the daemon counts.
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon again");
    let e = epoch(&mut meter, &mut log);
    assert_eq!(e.source, G, "{e:?}");
    assert_eq!(meter.daemon_job(), Some(first_job), "re-attached by id");
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, D, "{e:?}");
        assert!(e.energy_j > 0.0, "{e:?}");
    }

    // A restart between two reads, which the client hides by reconnecting within the read: the
    // reading after it must not be compared with the one before.
    daemon.stop().expect("clean stop");
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon again");
    let e = epoch(&mut meter, &mut log);
    assert_eq!(e.source, G, "{e:?}");
    assert!(fault(&e).contains("restarted"), "{e:?}");
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, D, "{e:?}");
    }

    let fin = meter.finish();
    eprintln!("{fin:?}");
    check_run(&log, &fin);
    assert_eq!(
        sources(&log),
        vec![D, D, D, G, G, G, D, D, G, D, D],
        "one source per epoch, in this order"
    );
    assert_eq!(fin.gap_epochs, 4);
    let daemon_sum: f64 = log
        .iter()
        .filter(|e| e.source == D)
        .map(|e| e.energy_j)
        .sum();
    let daemon_total = fin.daemon_job_joules.expect("the unregistration answer");
    assert!(
        daemon_sum <= daemon_total + 1e-6,
        "daemon increments {daemon_sum} J exceed the daemon's own job total {daemon_total} J"
    );
    assert!(fin.daemon_job_grams.is_some_and(|g| g > 0.0));
    daemon.stop().expect("clean stop");
    drop(pump);
}

#[test]
fn work_after_the_last_reading_is_the_runs_tail_and_the_run_total_is_the_jobs() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    let fixture = Arc::new(PowercapFixture::new(&home.path().join("sysfs")).unwrap());
    let pump = PowerFeed::start(fixture.clone(), 5.0);
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon");
    let mut meter = daemon_meter(daemon.socket(), "e2e-tail");
    let mut log = Vec::new();
    for _ in 0..2 {
        assert_eq!(epoch(&mut meter, &mut log).source, D);
    }
    // What a run does after its last reading (writing weights, a slow disk, being descheduled):
    // several of the daemon's accounting ticks (10 per second) charge the job for it.
    burn(Duration::from_millis(500));
    let fin = meter.finish();
    eprintln!("{fin:?}");
    check_run(&log, &fin);
    let tail = fin
        .tail
        .expect("the unregistration answer continues the readings");
    let job = fin.daemon_job_joules.expect("unregistered");
    // The feed is 5 W and, on an idle machine, this process is nearly all the busy CPU time:
    // ≈ 2.5 J. Other work on the machine (a build beside the tests) takes part of the busy
    // time, and so of the charge: the bound only asks for a clear share of it.
    assert_eq!(tail.source, D, "{tail:?}");
    assert!(tail.energy_j > 0.25, "{tail:?}");
    assert!(
        job - fin.cumulative_j >= tail.energy_j - 1e-9,
        "the epochs alone ({} J) miss the tail of the job ({job} J)",
        fin.cumulative_j
    );
    let (total_j, total_g) = fin.total();
    assert!(
        (total_j - job).abs() <= 1e-9 * job,
        "{total_j} J vs job {job} J"
    );
    let job_g = fin.daemon_job_grams.expect("unregistered");
    assert!(
        (total_g - job_g).abs() <= 1e-9 * job_g,
        "{total_g} g vs {job_g} g"
    );
    daemon.stop().expect("clean stop");
    drop(pump);
}

#[test]
fn a_daemon_that_forgot_the_job_gets_it_registered_again() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    let fixture = Arc::new(PowercapFixture::new(&home.path().join("sysfs")).unwrap());
    let pump = PowerFeed::start(fixture.clone(), 5.0);
    // Killed, then its state directory lost (a wiped or new state folder): it restarts without
    // the job. (A plain kill -9 no longer loses it: every publication is journalled.)
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon");
    let socket = daemon.socket().to_owned();
    let mut meter = daemon_meter(&socket, "e2e-forgotten");
    let mut log = Vec::new();
    for _ in 0..2 {
        assert_eq!(epoch(&mut meter, &mut log).source, D);
    }
    daemon.kill().expect("kill the daemon");
    std::fs::remove_dir_all(home.path().join("state/anges")).expect("wipe the state directory");
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon again");
    let e = epoch(&mut meter, &mut log);
    assert_eq!(e.source, G, "{e:?}");
    assert!(fault(&e).contains("re-registered"), "{e:?}");
    let mut after = 0.0;
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, D, "{e:?}");
        after += e.energy_j;
    }
    let fin = meter.finish();
    check_run(&log, &fin);
    // The final total is the new job's only: it covers the increments counted since.
    let total = fin.daemon_job_joules.expect("unregistered");
    assert!(
        after > 0.0 && after <= total + 1e-6,
        "{after} J vs {total} J"
    );
    daemon.stop().expect("clean stop");
    drop(pump);
}

#[test]
fn a_hung_daemon_never_stalls_an_epoch_for_long() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    let fixture = Arc::new(PowercapFixture::new(&home.path().join("sysfs")).unwrap());
    let pump = PowerFeed::start(fixture.clone(), 5.0);
    let daemon = MeterDaemon::start(home.path(), fixture.root(), &[]).expect("daemon");
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's PID.
        assert_eq!(unsafe { libc::kill(daemon.pid() as i32, sig) }, 0);
    };
    let mut meter = daemon_meter(daemon.socket(), "e2e-hung");
    let mut log = Vec::new();
    assert_eq!(epoch(&mut meter, &mut log).source, D);
    // Stopped, not dead: connections are accepted but never answered. Each read gives up after
    // the request timeout (`epoch` checks the bound) and the estimator fills in.
    signal(libc::SIGSTOP);
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, G, "{e:?}");
        assert!(fault(&e).contains("meter unreachable"), "{e:?}");
    }
    // Resumed: the same instance (its backlog of energy lands in the re-baselined reading).
    signal(libc::SIGCONT);
    let e = epoch(&mut meter, &mut log);
    assert_eq!(e.source, G, "{e:?}");
    for _ in 0..2 {
        assert_eq!(epoch(&mut meter, &mut log).source, D);
    }
    let fin = meter.finish();
    check_run(&log, &fin);
    assert_eq!(sources(&log), vec![D, G, G, G, D, D]);
    let daemon_sum: f64 = log
        .iter()
        .filter(|e| e.source == D)
        .map(|e| e.energy_j)
        .sum();
    assert!(daemon_sum <= fin.daemon_job_joules.expect("unregistered") + 1e-6);
    daemon.stop().expect("clean stop");
    drop(pump);
}

#[test]
fn daemon_mode_without_a_daemon_is_a_clear_error_and_auto_meters_locally() {
    let _turn = crate::turn(module_path!());
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("no-daemon.sock");
    let err = EpochMeter::start_with(
        &daemon_args(&socket),
        "e2e-none",
        &MeterOptions::estimated(),
    )
    .expect_err("no daemon");
    assert!(
        matches!(err, MeterError::DaemonUnreachable { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");

    let auto = MeterConfig {
        mode: MeterMode::Auto,
        socket: Some(socket.clone()),
        ..MeterConfig::default()
    };
    let t = Instant::now();
    let mut meter = EpochMeter::start_with(&auto, "e2e-auto", &MeterOptions::estimated())
        .expect("auto falls back")
        .expect("not off");
    assert!(t.elapsed() < MAX_READ);
    assert!(
        meter.describe().starts_with("local (estimated"),
        "{}",
        meter.describe()
    );
    let mut log = Vec::new();
    for _ in 0..2 {
        let e = epoch(&mut meter, &mut log);
        assert_eq!(e.source, EnergySource::Local);
        assert!(e.energy_j > 0.0 && !e.measured, "{e:?}");
    }
    let fin = meter.finish();
    check_run(&log, &fin);
    assert_eq!(fin.daemon_job_joules, None);
}
