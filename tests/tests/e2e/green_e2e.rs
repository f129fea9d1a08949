//! End to end, the trainer's green side against a real meter: `anges-meterd --user` on a fixture
//! powercap tree whose counter a feeder thread advances at a constant power, and the real
//! `anges-train` binary registering its runs as jobs over the socket.
//!
//! - a study finishes, its files exist and parse, AN-GES used fewer joules than the full run, and
//!   the reported %ΔEmiss matches what the daemon's own job totals say within 1 point;
//! - killing the daemon mid-run and restarting it: the run completes, the gap is filled and
//!   marked, and the energy log has no hole or double count;
//! - two concurrent runs each get their own share, and their sum is within 5 % of the machine
//!   total over the same period, less the part of its busy CPU time (as the kernel counts it) that
//!   was not theirs.
//!
//! The tests share the machine's two cores, so they take turns (a process-wide lock), and no
//! test of another module runs meanwhile (`crate::turn`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig};
use anges_e2e::{MeterDaemon, PowerFeed, PowercapFixture};
use serde_json::Value;

static MACHINE: Mutex<()> = Mutex::new(());

fn machine() -> (crate::Turn, MutexGuard<'static, ()>) {
    let turn = crate::turn(module_path!());
    (turn, MACHINE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A test folder with a metered machine: fixture tree, feeder and daemon.
struct Rig {
    // Dropped in this order: the feeder, then the daemon, then the folder they use.
    _feed: PowerFeed,
    daemon: Option<MeterDaemon>,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let fixture = PowercapFixture::new(&dir.path().join("sysfs")).unwrap();
        let daemon = MeterDaemon::start(dir.path(), fixture.root(), &[]).unwrap();
        Rig {
            _feed: PowerFeed::start(Arc::new(fixture), 20.0),
            daemon: Some(daemon),
            dir,
        }
    }

    fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("a running daemon").pid()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/anges/meterd.sock")
    }

    fn restart_daemon(&mut self) {
        let sysfs = self.dir.path().join("sysfs");
        self.daemon = Some(MeterDaemon::start(self.dir.path(), &sysfs, &[]).unwrap());
    }

    /// `anges-train [subcommand]` with the test's data, cache and meter; `args` appended.
    fn trainer(&self, subcommand: Option<&str>, args: &[&str]) -> Command {
        let bin = anges_e2e::binary("anges-trainer", "anges-train").unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(subcommand)
            .args([
                "--dataset",
                "bbbp",
                "--max-rows",
                "240",
                "--threads",
                "1",
                "--meter",
                "daemon",
            ])
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env(
                "ANGES_DATA_DIR",
                anges_e2e::shared_dir().join("datasets/moleculenet"),
            )
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("ANGES_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn epochs(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("epochs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// One poll of the two-job test: the meter's totals and the kernel's CPU-time counts.
struct Poll {
    machine: f64,
    jobs: BTreeMap<u64, f64>,
    cpu: CpuTicks,
}

/// CPU time in clock ticks, read from procfs with the meter's own (unit-tested) parsers.
struct CpuTicks {
    /// The machine's busy time (the busy-time policy's denominator).
    machine_busy: u64,
    /// The trainers' processes together.
    jobs: u64,
    /// The meter daemon's.
    meter: u64,
}

impl CpuTicks {
    fn now(jobs: &[u32], meter: u32) -> CpuTicks {
        use anges_meter_engine::procfs::{parse_pid_stat, parse_proc_stat};
        // A child's entry stays (as a zombie) until it is reaped, which the test does after the
        // polls, so an unreadable one is a failure, not a zero.
        let process = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| parse_pid_stat(&t))
                .unwrap_or_else(|| panic!("/proc/{pid}/stat unreadable"))
                .cpu_ticks
        };
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        CpuTicks {
            machine_busy: parse_proc_stat(&stat).expect("/proc/stat parses").busy,
            jobs: jobs.iter().map(|&p| process(p)).sum(),
            meter: process(meter),
        }
    }
}

fn wait_ok(mut child: Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                use std::io::Read;
                let _ = s.read_to_string(&mut out);
            }
            assert!(status.success(), "{what}: {status}\n{out}");
            return out;
        }
        assert!(Instant::now() < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_study_on_a_metered_machine_reports_what_the_meter_measured() {
    let _turn = machine();
    let rig = Rig::start();
    let out = rig.dir.path().join("study");
    let child = rig
        .trainer(
            Some("study"),
            &[
                "--epochs",
                "8",
                // The literal rule, which fires on the first validation dip: the default
                // variant waits 40 epochs.
                "--anges-variant",
                "literal",
                "--warmup",
                "3",
                "--patience",
                "2",
                "--keep-ratios",
                "0.5",
                "--seeds",
                "0",
                // The live AN-GES run is the one metered against the daemon below; without the
                // flag the study replays AN-GES on the full run's log.
                "--live-policies",
            ],
        )
        .arg("--out")
        .arg(&out)
        .spawn()
        .unwrap();
    let stdout = wait_ok(child, "anges-train study");
    assert!(
        stdout.contains("anges") && stdout.contains("molpeg-0.5"),
        "{stdout}"
    );

    // Every file exists and parses.
    let study = read_json(&out.join("study.json"));
    let runs = study["runs"].as_array().unwrap();
    let labels: Vec<&str> = runs.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "full",
            "patience",
            "patience-live",
            "anges",
            "anges-live",
            "molpeg-0.5"
        ]
    );
    assert_eq!(runs[3]["source"], "replayed");
    assert_eq!(runs[4]["source"], "live");
    assert!(!study["frontier"].as_array().unwrap().is_empty());
    let csv = std::fs::read_to_string(out.join("study.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + runs.len(), "{csv}");
    for png in ["curve.png", "frontier.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(out.join("report.md").is_file() && out.join("aggregate.csv").is_file());

    // AN-GES used fewer joules than the full run.
    let summary = |label: &str| read_json(&out.join("seed0").join(label).join("summary.json"));
    let (full, anges) = (summary("full"), summary("anges-live"));
    assert_eq!(
        full["measured"],
        Value::Bool(true),
        "the fixture is a counter"
    );
    assert!(
        full["epochs_run"].as_u64() > anges["epochs_run"].as_u64(),
        "AN-GES did not stop early: {anges}"
    );
    assert!(f(&anges, "energy_j") < f(&full, "energy_j"));

    // Replaying the live AN-GES run's own log with its parameters stops where it stopped.
    let bin = anges_e2e::binary("anges-trainer", "anges-train").unwrap();
    let replay = Command::new(bin)
        .args([
            "replay",
            "--anges-variant",
            "literal",
            "--warmup",
            "3",
            "--json",
        ])
        .arg(out.join("seed0/anges-live"))
        .output()
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    let outcome: Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(outcome["fired"], Value::Bool(true), "{outcome}");
    assert_eq!(outcome["stop_epoch"], anges["epochs_run"], "{outcome}");

    // The reported %ΔEmiss is what the daemon's own job totals say, within 1 point; each run's
    // total accounts for its job's within 1 %: its epochs, plus the tail the daemon charged
    // after the last epoch's reading (a tick of the busy-time policy can land there; a few
    // percent of these 1-second epochs), which stays a small part of the run.
    let reported = f(&runs[4], "delta_emiss_pct");
    let (d_full, d_anges) = (f(&full, "daemon_job_grams"), f(&anges, "daemon_job_grams"));
    let by_daemon = 100.0 * (d_anges - d_full) / d_full;
    eprintln!(
        "study: full {} epochs {:.2} J, anges {} epochs {:.2} J; %ΔEmiss reported {reported:.3}, \
         by the daemon's job totals {by_daemon:.3}",
        full["epochs_run"],
        f(&full, "energy_j"),
        anges["epochs_run"],
        f(&anges, "energy_j")
    );
    assert!(
        (reported - by_daemon).abs() <= 1.0,
        "reported {reported:.3} %, daemon {by_daemon:.3} %"
    );
    for (label, s) in [("full", &full), ("anges-live", &anges)] {
        let (run_g, job_g, tail_g) = (f(s, "co2_g"), f(s, "daemon_job_grams"), f(s, "tail_co2_g"));
        let last = epochs(&out.join("seed0").join(label));
        let epochs_g = f(last.last().unwrap(), "cumulative_co2_g");
        eprintln!("study: {label}: epochs {epochs_g:.6} g + tail {tail_g:.6} g, job {job_g:.6} g");
        assert!(
            (run_g - job_g).abs() <= 0.01 * job_g,
            "{label}: run {run_g} g vs job {job_g} g"
        );
        assert!(
            (epochs_g + tail_g - run_g).abs() <= 1e-9 * run_g,
            "{label}: epochs {epochs_g} g + tail {tail_g} g vs run {run_g} g"
        );
        assert!(
            (0.0..=0.1 * run_g).contains(&tail_g),
            "{label}: tail {tail_g} g of {run_g} g"
        );
    }
}

#[test]
fn killing_the_meter_mid_run_leaves_no_hole_and_no_double_count() {
    let _turn = machine();
    let mut rig = Rig::start();
    let out = rig.dir.path().join("run");
    let mut child = rig
        .trainer(None, &["--epochs", "9", "--stop", "full"])
        .arg("--out")
        .arg(&out)
        .spawn()
        .unwrap();
    let logged = |n: usize| {
        std::fs::read_to_string(out.join("epochs.jsonl"))
            .map(|t| t.lines().count() >= n)
            .unwrap_or(false)
    };
    let wait_for = |n: usize, child: &mut Child| {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !logged(n) {
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            assert!(Instant::now() < deadline, "epoch {n} never came");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(2, &mut child);
    rig.daemon.take().unwrap().kill().unwrap();
    wait_for(4, &mut child);
    rig.restart_daemon();
    wait_ok(child, "anges-train with a vanishing meter");

    let recs = epochs(&out);
    assert_eq!(recs.len(), 9);
    let sources: Vec<&str> = recs
        .iter()
        .map(|r| r["meter_source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"local-gap"), "{sources:?}");
    assert_eq!(sources[0], "daemon");
    assert_eq!(*sources.last().unwrap(), "daemon", "{sources:?}");
    let mut sum = 0.0;
    for r in &recs {
        let e = f(r, "energy_j");
        assert!(e > 0.0, "epoch without energy: {r}");
        sum += e;
        assert!(
            (sum - f(r, "cumulative_j")).abs() <= 1e-9 * sum.max(1.0),
            "Σ increments {sum} != cumulative in {r}"
        );
        if r["meter_source"] == "local-gap" {
            assert!(r["meter_fault"].is_string(), "gap epoch not marked: {r}");
        }
    }
    let summary = read_json(&out.join("summary.json"));
    let gaps = sources.iter().filter(|s| **s == "local-gap").count();
    assert_eq!(summary["meter_gap_epochs"].as_u64(), Some(gaps as u64));
    // The run's total: the epochs' plus the tail the daemon charged after the last one.
    let tail = f(&summary, "tail_j");
    assert!(
        tail >= 0.0 && tail <= 0.1 * sum,
        "tail {tail} J after {sum} J of epochs"
    );
    assert!((f(&summary, "energy_j") - tail - sum).abs() <= 1e-9 * sum);
}

#[test]
fn two_concurrent_runs_each_get_their_own_share() {
    let _turn = machine();
    let rig = Rig::start();
    let mut client = Client::connect(ClientConfig::socket(rig.socket())).unwrap();
    let spawn = |name: &str| {
        rig.trainer(None, &["--epochs", "6", "--stop", "full"])
            .arg("--out")
            .arg(rig.dir.path().join(name))
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    let pids = [a.id(), b.id()];
    // The period: while both jobs are registered, seen by polling the daemon (the test runs as
    // the same user, so it sees both jobs). Each poll: the meter's machine total and job totals,
    // and what the kernel says of CPU time: the machine's busy time, the two trainers' and the
    // meter's own.
    let mut polls: Vec<Poll> = Vec::new();
    let mut seen = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let jobs: BTreeMap<u64, f64> = client
            .jobs()
            .unwrap()
            .into_iter()
            .map(|j| (j.job.id.0, j.reading.totals.joules()))
            .collect();
        let machine = client.machine(false).unwrap().totals.joules();
        seen |= !jobs.is_empty();
        if jobs.len() == 2 {
            polls.push(Poll {
                machine,
                jobs,
                cpu: CpuTicks::now(&pids, rig.daemon_pid()),
            });
        } else if seen && jobs.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the runs did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let (Some(first), Some(last)) = (polls.first(), polls.last()) else {
        panic!("the two jobs were never registered at the same time");
    };
    let machine = last.machine - first.machine;
    let shares: Vec<f64> = first
        .jobs
        .iter()
        .map(|(id, j0)| last.jobs.get(id).expect("same jobs") - j0)
        .collect();
    let sum: f64 = shares.iter().sum();
    // Under the default busy-time policy the jobs are owed the machine's energy in proportion to
    // their part of its busy CPU time; the rest (the meter, this test, the kernel, whatever else
    // the host runs) stays unattributed. The kernel's own counts say what that part is.
    let busy = (last.cpu.machine_busy - first.cpu.machine_busy) as f64;
    let part = |ticks: fn(&CpuTicks) -> u64| (ticks(&last.cpu) - ticks(&first.cpu)) as f64 / busy;
    let jobs_part = part(|c| c.jobs);
    let meter_part = part(|c| c.meter);
    // What the two are owed, as the meter owes it: poll interval by poll interval, that
    // interval's machine energy times the jobs' part of that interval's busy CPU time. (One
    // part over the whole period is biased low: in the trainers' short waits for the meter the
    // machine's idle power goes with the meter's and the test's CPU time, not theirs.)
    let owed: f64 = polls
        .windows(2)
        .map(|w| {
            let busy = w[1].cpu.machine_busy.saturating_sub(w[0].cpu.machine_busy) as f64;
            let jobs = w[1].cpu.jobs.saturating_sub(w[0].cpu.jobs) as f64;
            let energy = w[1].machine - w[0].machine;
            if busy > 0.0 {
                (jobs / busy).min(1.0) * energy
            } else {
                0.0
            }
        })
        .sum();
    eprintln!(
        "concurrent: over {} polls both registered: jobs {shares:.2?} J, sum {sum:.2} J, machine \
         {machine:.2} J ({:+.2} %); of the busy CPU time the jobs had {:.1} %, the meter {:.1} %, \
         the rest {:.1} %: owed {owed:.2} J per poll interval ({:+.2} % off), {:.2} J by the \
         whole period's part ({:+.2} % off)",
        polls.len(),
        100.0 * (sum - machine) / machine,
        100.0 * jobs_part,
        100.0 * meter_part,
        100.0 * (1.0 - jobs_part - meter_part),
        100.0 * (sum - owed) / machine,
        jobs_part * machine,
        100.0 * (sum - jobs_part * machine) / machine,
    );
    assert!(machine > 0.0 && busy > 0.0);
    // Neither sees the other's energy: each has about its own CPU-time share of what the two are
    // owed, far from all of it (measured against `owed`, not the machine, so that other load on
    // the host does not push a fair share under the bound).
    for j in &shares {
        assert!(
            *j > 0.2 * owed && *j < 0.8 * owed,
            "a job got {j:.2} J of the {owed:.2} J the two are owed"
        );
    }
    // Nothing is counted twice: the jobs never get more than the machine (1 % for the polls'
    // jobs and machine readings being a tick apart).
    assert!(
        sum <= 1.01 * machine,
        "jobs {shares:?} J vs machine {machine:.2} J over the same period"
    );
    // Nothing is lost: the jobs' sum is within 5 % of the machine total of what they are owed by
    // their CPU time, as the kernel counted it interval by interval (on a quiet machine, nearly
    // all).
    assert!(
        (sum - owed).abs() <= 0.05 * machine,
        "jobs {shares:?} J, sum {sum:.2} J, vs {owed:.2} J owed by their {:.1} % of the busy CPU \
         time of {machine:.2} J",
        100.0 * jobs_part
    );
    // Each run reports its own job's energy: the run's figure (its epochs' and the tail after
    // the last one) is within 2 % of the daemon's final total for that run's job.
    for name in ["a", "b"] {
        let s = read_json(&rig.dir.path().join(name).join("summary.json"));
        let (run_j, job_j) = (f(&s, "energy_j"), f(&s, "daemon_job_joules"));
        assert!(
            (run_j - job_j).abs() <= 0.02 * job_j,
            "{name}: run {run_j} J vs its job {job_j} J"
        );
    }
}
