//! Benchmark: the sampler's own CPU cost and the meter's RSS.
//!
//! For each CPU sensor, energy rate (100 Hz, 1 kHz) and number of registered jobs (1, 16, 256;
//! each job a real `sleep` process, so the tracker scans and reads real procfs entries), an engine
//! runs on this machine's real /proc for a measurement window while the main thread sleeps; the process's CPU time (getrusage, RUSAGE_SELF: the sampler thread is the only
//! one working) over the window gives the cost as a percentage of one core. Then the **whole
//! daemon**: the real `anges-meterd` binary (sampler, publication and its journal, servers) on
//! the powercap fixture with 16 registered `sleep` jobs, its process CPU time over the window.
//! RSS is VmRSS/VmHWM of this process, and of the real `anges-meterd` binary run at 1 kHz.
//!
//! Two CPU sensors are measured, because their schedules differ: `estimate` (the path of VMs such
//! as this build machine: a utilisation model, brought up to date at each accounting tick, so the
//! engine wakes at the accounting rate whatever `rate_hz` says) and `powercap` on a fixture tree
//! (one `pread` of an open `energy_uj` per sample at `rate_hz`: the shape of the RAPL counter
//! path, without the MSR read the kernel does on real hardware), both over the real `/proc`.
//!
//! The table is preceded by the wake-up floor: the same schedule with no work at all, i.e. what
//! the machine charges for the wake-ups alone.
//!
//! Run: `cargo bench -p anges-meterd --bench sampler` (options: `-- --window-s 5`, `--runs 3` (windows per row, median
//! printed), `--rss-only`,
//! `--case estimate,100,16` for one row, e.g. under `perf record`; `--daemon-only` for the
//! whole-daemon rows alone).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anges_meter_engine::engine::{Engine, EngineConfig};
use anges_meter_engine::jobs::JobSpec;
use anges_meter_engine::sensors::SensorChoice;
use anges_meter_engine::sensors::detect::GpuSelection;

/// A powercap tree with one package zone (a static counter) and the real `/proc` beside it.
fn powercap_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let zone = dir.path().join("sys/class/powercap/intel-rapl:0");
    std::fs::create_dir_all(&zone).expect("fixture zone");
    for (file, text) in [
        ("name", "package-0\n"),
        ("max_energy_range_uj", "262143328850\n"),
        ("energy_uj", "1000000\n"),
    ] {
        std::fs::write(zone.join(file), text).expect("fixture file");
    }
    std::os::unix::fs::symlink("/proc", dir.path().join("proc")).expect("proc link");
    dir
}

fn cpu_seconds_self() -> f64 {
    // SAFETY: getrusage writes into a zeroed local.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn status_kb(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn sleepers(n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            Command::new("sleep")
                .arg("600")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sleep")
        })
        .collect()
}

fn measure(sensor: SensorChoice, rate_hz: u32, jobs: usize, window: Duration) -> (f64, f64, u64) {
    let mut children = sleepers(jobs);
    let fixture = powercap_fixture();
    let sysfs_root = match sensor {
        SensorChoice::Powercap => fixture.path().to_owned(),
        _ => EngineConfig::default().sysfs_root,
    };
    let engine = Engine::start(EngineConfig {
        sensor,
        sysfs_root,
        rate_hz,
        gpus: GpuSelection::None,
        ..EngineConfig::default()
    })
    .expect("engine");
    for (i, c) in children.iter().enumerate() {
        engine
            .register_job(JobSpec {
                name: format!("job{i}"),
                root_pid: Some(c.id()),
                cgroup: None,
                owner_uid: 0,
            })
            .expect("register");
    }
    // Warm up (first scans, allocation of the per-job state).
    std::thread::sleep(Duration::from_millis(1500));
    let h0 = engine.health();
    let c0 = cpu_seconds_self();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let c1 = cpu_seconds_self();
    let elapsed = t0.elapsed().as_secs_f64();
    let h1 = engine.health();
    let achieved = (h1.samples - h0.samples) as f64 / elapsed;
    let rss = status_kb("self", "VmRSS:");
    engine.shutdown().expect("shutdown");
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    (100.0 * (c1 - c0) / elapsed, achieved, rss)
}

fn daemon_rss() -> Option<(u64, u64)> {
    let dir = std::env::temp_dir().join(format!("anges-bench-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_anges-meterd"))
        .args([
            "--user",
            "--rate-hz",
            "1000",
            "--gpus",
            "none",
            "--no-dbus",
            "--socket",
        ])
        .arg(dir.join("meterd.sock"))
        .arg("--state-dir")
        .arg(&dir)
        .env("ANGES_LOG", "warn")
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id().to_string();
    let out = (status_kb(&pid, "VmRSS:"), status_kb(&pid, "VmHWM:"));
    // 0 kB: the daemon exited before it could be measured (its error is on stderr above).
    let measured = out.0 > 0;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    measured.then_some(out)
}

/// CPU seconds (user + system, all threads) of process `pid` so far.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// The whole real daemon (sampler, publication with its journal, servers), as issue 27 measured
/// it: `anges-meterd --user` on the powercap fixture (the counter path) at `rate_hz`, `jobs`
/// real `sleep` processes registered through the socket, its process CPU time (every thread)
/// over `window` after a warm-up, as % of one core. `None` when it cannot be run.
fn daemon_cpu(rate_hz: u32, jobs: usize, window: Duration) -> Option<f64> {
    let fixture = powercap_fixture();
    let dir = tempfile::tempdir().ok()?;
    let socket = dir.path().join("meterd.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_anges-meterd"))
        .args([
            "--user",
            "--sensor",
            "powercap",
            "--gpus",
            "none",
            "--no-dbus",
        ])
        .arg("--rate-hz")
        .arg(rate_hz.to_string())
        .arg("--sysfs-root")
        .arg(fixture.path())
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--config")
        .arg("/dev/null")
        .env("ANGES_LOG", "warn")
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        let cfg = anges_common::client::ClientConfig::socket(&socket);
        match anges_common::client::Client::connect(cfg) {
            Ok(c) => break Some(c),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    let mut sleepers: Vec<Child> = (0..jobs)
        .filter_map(|_| Command::new("sleep").arg("600").spawn().ok())
        .collect();
    let mut result = None;
    if let Some(client) = client.as_mut() {
        let registered = sleepers.iter().all(|s| {
            let target = anges_common::protocol::JobTarget::Pid(s.id());
            client.register_job("bench", target).is_ok()
        });
        std::thread::sleep(Duration::from_millis(1500));
        if registered && let Some(c0) = process_cpu_seconds(child.id()) {
            let t0 = Instant::now();
            std::thread::sleep(window);
            result = process_cpu_seconds(child.id())
                .map(|c1| 100.0 * (c1 - c0) / t0.elapsed().as_secs_f64());
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

/// The whole daemon's cost at 100 Hz and 1 kHz with 16 jobs, median of `runs` windows. A
/// process's CPU time counts in clock ticks (10 ms), so each window lasts at least 15 s (a
/// resolution of 0.07 % of a core).
fn daemon_table(window: Duration, runs: usize) {
    let window = window.max(Duration::from_secs(15));
    println!(
        "whole daemon (anges-meterd --user, powercap fixture, 16 jobs, every thread), median of \
         {runs} windows of {} s:",
        window.as_secs_f64()
    );
    for (rate, target) in [(100, 0.5), (1000, 2.0)] {
        let mut values: Vec<f64> = (0..runs.max(1))
            .filter_map(|_| daemon_cpu(rate, 16, window))
            .collect();
        values.sort_by(f64::total_cmp);
        match values.get(values.len() / 2) {
            Some(median) => println!(
                "  {rate:>5} Hz: {median:.3} % of a core (range {:.3}–{:.3}; target < {target} %: {})",
                values[0],
                values[values.len() - 1],
                if *median < target { "met" } else { "MISSED" }
            ),
            None => println!("  {rate:>5} Hz: the daemon could not be run: NOT measured"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let window_s = args
        .iter()
        .position(|a| a == "--window-s")
        .and_then(|i| args.get(i + 1)?.parse::<f64>().ok())
        .unwrap_or(6.0);
    let window = Duration::from_secs_f64(window_s);
    // `--case estimate,100,16`: one configuration only (for profiling it with perf).
    if let Some(case) = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
    {
        let parts: Vec<&str> = case.split(',').collect();
        let sensor = match parts.first() {
            Some(&"powercap") => SensorChoice::Powercap,
            _ => SensorChoice::Estimate,
        };
        let rate = parts.get(1).and_then(|r| r.parse().ok()).unwrap_or(100);
        let jobs = parts.get(2).and_then(|j| j.parse().ok()).unwrap_or(16);
        let (pct, achieved, rss) = measure(sensor, rate, jobs, window);
        println!("{case}: {pct:.3} % of a core, {achieved:.1} Hz, RSS {rss} kB");
        return;
    }
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
        .unwrap_or(3);
    if args.iter().any(|a| a == "--daemon-only") {
        daemon_table(window, runs);
        return;
    }
    if !args.iter().any(|a| a == "--rss-only") {
        cpu_table(window, window_s, runs);
        daemon_table(window, runs);
    }
    match daemon_rss() {
        Some((rss, hwm)) => println!(
            "anges-meterd --user --rate-hz 1000: VmRSS {rss} kB, VmHWM {hwm} kB (target < 20 MB: {})",
            if hwm < 20_000 { "ok" } else { "MISS" }
        ),
        None => println!("anges-meterd could not be started or measured: RSS target NOT verified"),
    }
}

/// The floor: a thread that only sleeps on the same drift-free `park_timeout` schedule as the
/// sampler, reading nothing. Its cost is what the machine charges for `rate_hz` wake-ups alone
/// (timer programming, the context switch, on a VM the exits to the hypervisor), which no sampler
/// at that rate can go below.
fn wake_up_floor(rate_hz: u32, window: Duration) -> f64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate_hz));
    let flag = std::sync::Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let start = Instant::now();
        let mut slot = 0u32;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            slot += 1;
            let due = start + period * slot;
            while Instant::now() < due {
                std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let c0 = cpu_seconds_self();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let pct = 100.0 * (cpu_seconds_self() - c0) / t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = thread.join();
    pct
}

/// Median, minimum and maximum of `runs` measurements of `f` (this VM's scheduling noise is of
/// the order of the figures themselves, so one window is not enough).
fn spread(runs: usize, mut f: impl FnMut() -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = (0..runs.max(1)).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Prints the CPU cost table (median of `runs` windows, with the range), then this process's
/// peak RSS.
fn cpu_table(window: Duration, window_s: f64, runs: usize) {
    for rate in [100u32, 1000] {
        let (med, lo, hi) = spread(runs, || wake_up_floor(rate, window));
        println!(
            "wake-up floor at {rate} Hz (a thread that only sleeps on the sampler's schedule): \
             {med:.3} % of a core (range {lo:.3}-{hi:.3})"
        );
    }
    println!(
        "sampler CPU cost (real /proc, accounting 10 Hz, /proc scan every 5 s), median of {runs} \
         windows of {window_s} s"
    );
    println!(
        "{:>9} {:>8} {:>6} {:>12} {:>15} {:>12} {:>10} {:>10}",
        "sensor", "rate_hz", "jobs", "cpu_%core", "range", "achieved_hz", "rss_kB", "target"
    );
    let sensors = [
        (SensorChoice::Estimate, "estimate"),
        (SensorChoice::Powercap, "powercap"),
    ];
    for (sensor, sensor_name) in sensors {
        for rate in [100u32, 1000] {
            for jobs in [1usize, 16, 256] {
                let mut achieved = 0.0;
                let mut rss = 0;
                let (pct, lo, hi) = spread(runs, || {
                    let m = measure(sensor, rate, jobs, window);
                    (achieved, rss) = (m.1, m.2);
                    m.0
                });
                let target = match (rate, jobs) {
                    (100, 16) if pct < 0.5 => "<0.5 ok",
                    (100, 16) => "<0.5 MISS",
                    (1000, 16) if pct < 2.0 => "<2 ok",
                    (1000, 16) => "<2 MISS",
                    _ => "-",
                };
                let range = format!("{lo:.3}-{hi:.3}");
                println!(
                    "{sensor_name:>9} {rate:>8} {jobs:>6} {pct:>12.3} {range:>15} {achieved:>12.1} {rss:>10} {target:>10}"
                );
            }
        }
    }
    println!("bench process VmHWM {} kB", status_kb("self", "VmHWM:"));
}
