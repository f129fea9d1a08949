//! `anges-meter run -- CMD…`: runs the command whatever the meter does and exits with its status
//! (`128 + N` when signal N killed it, as shells report it).
//!
//! - A daemon answers: the command is registered as a job; while it runs, its reading is refreshed
//!   every [`REFRESH`]; when it exits, a fresh reading and the job's final totals are printed.
//! - No daemon answers, or it refuses the job: the meter engine runs in this process (the same
//!   code as the daemon and the trainer's `--meter local`) and meters this process tree, the
//!   command included; the figures are printed as a *local estimate*.
//! - The daemon stops answering mid-run (beyond the client's reconnect window): the command keeps
//!   running; at its exit the last reading received is printed, labelled *incomplete*.
//!
//! With `--csv FILE`, the figures printed are also appended to `FILE` as one row of CodeCarbon's
//! `emissions.csv` format (`anges_common::codecarbon`, the writer the trainer uses).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use anges_common::client::{Client, ClientConfig, ClientError};
use anges_common::codecarbon::{self, EmissionsRow, Energies, TrackingMode};
use anges_common::protocol::{JobId, JobReading, JobTarget, Reading, Totals};
use anges_meter_engine::{Engine, EngineConfig};
use anges_meterd::server::{JobSpec, MeterBackend};
use anyhow::{Result, bail};

use crate::{announce, fmt_reading};

/// How often the job's reading is refreshed from the daemon while the command runs.
const REFRESH: Duration = Duration::from_secs(1);
/// How often the command is checked for its exit.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for the local engine's next accounting tick at the end.
const LOCAL_FRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// The command's job on the daemon, and what is known of it.
struct DaemonJob {
    client: Client,
    job: JobId,
    name: String,
    /// The latest reading received.
    last: JobReading,
    /// Why the daemon stopped answering, once it did.
    lost: Option<ClientError>,
}

impl DaemonJob {
    /// Refreshes [`DaemonJob::last`] unless the daemon is already lost.
    fn refresh(&mut self) {
        if self.lost.is_some() {
            return;
        }
        match self.client.job(self.job, false) {
            Ok(r) => self.last = r,
            Err(e) => {
                eprintln!(
                    "anges-meter: the daemon stopped answering ({e}); the command keeps running"
                );
                self.lost = Some(e);
            }
        }
    }

    /// A fresh reading and the final totals, or the last reading labelled incomplete; returns
    /// the totals printed.
    fn finish(mut self) -> Totals {
        let last = match self.lost.take() {
            Some(e) => Err(e),
            None => self.client.job(self.job, true).and_then(|r| {
                self.last = r;
                self.client.unregister_job(self.job)
            }),
        };
        match last {
            Ok(last) => {
                eprintln!(
                    "anges-meter: job {} ({}): {}",
                    self.job,
                    self.name,
                    fmt_reading(&last.reading)
                );
                last.reading.totals
            }
            Err(e) => {
                eprintln!(
                    "anges-meter: job {} ({}): {} up to tick {}; incomplete: the daemon stopped \
                     answering ({e})",
                    self.job,
                    self.name,
                    fmt_reading(&self.last.reading),
                    self.last.reading.tick
                );
                self.last.reading.totals
            }
        }
    }
}

/// The meter engine in this process, metering this process tree.
struct LocalMeter {
    engine: Engine,
    job: JobId,
}

impl LocalMeter {
    /// Starts the engine and registers this process (so every child is counted from its start).
    fn start(name: &str) -> Result<Self> {
        let engine = Engine::start(EngineConfig::default())?;
        let spec = JobSpec {
            name: name.to_owned(),
            root_pid: Some(std::process::id()),
            cgroup: None,
            owner_uid: std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid()),
        };
        match MeterBackend::register_job(&engine, spec) {
            Ok(job) => Ok(LocalMeter { engine, job }),
            Err(e) => {
                if let Err(stop) = engine.shutdown() {
                    tracing::warn!("stopping the local meter: {stop}");
                }
                Err(e.into())
            }
        }
    }

    /// Waits for the next accounting tick, unregisters the job and prints its figures; returns
    /// them.
    fn finish(self, name: &str) -> Option<Totals> {
        let backend: &dyn MeterBackend = &self.engine;
        backend.wait_for_tick(backend.tick(), LOCAL_FRESH_TIMEOUT);
        let totals = match backend.unregister_job(self.job) {
            Ok(j) => {
                let reading = Reading {
                    totals: j.totals,
                    tick: backend.tick(),
                    health: backend.health(),
                };
                eprintln!(
                    "anges-meter: {name}: local estimate (no daemon; metered in this process, \
                     anges-meter included): {}",
                    fmt_reading(&reading)
                );
                Some(reading.totals)
            }
            Err(e) => {
                eprintln!("anges-meter: {name}: no local estimate: {e}");
                None
            }
        };
        if let Err(e) = self.engine.shutdown() {
            tracing::warn!("stopping the local meter: {e}");
        }
        totals
    }
}

/// Starts the in-process meter, or says why the command runs unmetered.
fn local(name: &str) -> Option<LocalMeter> {
    match LocalMeter::start(name) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("anges-meter: the local meter failed to start ({e:#}); not metering");
            None
        }
    }
}

/// The exit code a shell reports for `status`.
pub(crate) fn exit_code(status: ExitStatus) -> ExitCode {
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// Waits for `child`, refreshing `daemon`'s reading every [`REFRESH`] meanwhile.
fn wait(child: &mut Child, mut daemon: Option<&mut DaemonJob>) -> Result<ExitStatus> {
    let mut next_refresh = Instant::now() + REFRESH;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if let Some(d) = daemon.as_deref_mut()
            && Instant::now() >= next_refresh
        {
            d.refresh();
            next_refresh = Instant::now() + REFRESH;
        }
        std::thread::sleep(POLL);
    }
}

/// Appends the run's `totals` to `csv` as one CodeCarbon row (a failure is reported, never
/// fatal: the command's status is what `run` returns).
fn append_csv(csv: &Path, name: &str, totals: &Totals, seconds: f64) {
    let energies = Energies::of_totals(totals, seconds);
    let pue = energies.implied_pue(totals.intensity_g_per_kwh);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let row = EmissionsRow::new(
        "anges-meter",
        name,
        codecarbon::iso8601_utc(now),
        energies,
        TrackingMode::Process,
        pue,
    );
    if let Err(e) = codecarbon::append(csv, &row) {
        eprintln!("anges-meter: {e}");
    }
}

/// `anges-meter run`: see the module documentation.
pub(crate) fn run(
    cfg: ClientConfig,
    name: Option<String>,
    csv: Option<&Path>,
    command: &[String],
) -> Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let name = name.unwrap_or_else(|| program.clone());
    let client = match Client::connect(cfg) {
        Ok(c) => {
            announce(&c);
            Some(c)
        }
        Err(e) => {
            eprintln!("anges-meter: {e}; metering {name} in this process (a local estimate)");
            None
        }
    };
    // Registered before the command starts, so none of its work escapes the local meter.
    let mut local_meter = if client.is_none() { local(&name) } else { None };
    let started = Instant::now();
    let mut child = match Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anges-meter: cannot start {program}: {e}");
            // What shells answer for a command not found / not executable.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(ExitCode::from(code));
        }
    };
    let mut daemon = None;
    if let Some(mut client) = client {
        match client.register_job(&name, JobTarget::Pid(child.id())) {
            Ok(last) => {
                daemon = Some(DaemonJob {
                    client,
                    job: last.job.id,
                    name: name.clone(),
                    last,
                    lost: None,
                })
            }
            Err(e) => {
                eprintln!(
                    "anges-meter: the daemon did not take the job ({e}); metering {name} in this \
                     process (a local estimate, from now on)"
                );
                local_meter = local(&name);
            }
        }
    }
    let status = wait(&mut child, daemon.as_mut())?;
    let seconds = started.elapsed().as_secs_f64();
    let mut totals = daemon.map(DaemonJob::finish);
    if let Some(m) = local_meter {
        totals = m.finish(&name).or(totals);
    }
    if let (Some(csv), Some(totals)) = (csv, &totals) {
        append_csv(csv, &name, totals, seconds);
    }
    Ok(exit_code(status))
}
