//! `anges-meter`: command-line client of the meter daemon.
//!
//! `status` (machine totals and sampler health), `jobs` (your jobs), `watch` (live table),
//! `run -- CMD…` (run any program, meter it as a job and print its energy and CO2 when it exits;
//! see [`run`]: it runs and returns the command's status even without a daemon),
//! `attach`/`detach` (meter an already running process). Uses the blocking client library, so
//! it finds the daemon the same way the trainer does and says which socket it used.

#[path = "anges-meter/run.rs"]
mod run;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anges_common::client::{Client, ClientConfig};
use anges_common::protocol::{JobId, JobReading, JobTarget, Reading, Totals};
use anyhow::Result;
use clap::{Parser, Subcommand};

/// Command-line client of the ANGES energy and CO2 meter: asks the running meter daemon
/// (anges-meterd) for totals, jobs and live readings, and meters commands as jobs.
#[derive(Debug, Parser)]
#[command(name = "anges-meter", version)]
struct Cli {
    /// Daemon socket (default: $ANGES_METER_SOCKET, then the system socket, then the user one).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Request timeout in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,

    /// How long to keep trying to reconnect after losing the daemon, in seconds (default: the
    /// client library's, about 16.5 s).
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "ANGES_METER_RECONNECT_S",
        value_parser = parse_seconds
    )]
    reconnect_s: Option<Duration>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Machine totals, sources and sampler health.
    Status,
    /// The jobs you can see (yours; every job for root and the admin group).
    Jobs,
    /// Live table of the machine and your jobs, with the power (W) of each domain over the last
    /// refresh and the time of the reading (Ctrl-C to stop).
    Watch {
        /// Refresh period in milliseconds (raised to the daemon's publication interval).
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many refreshes (default: never).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Run a command as a metered job, print its energy and CO2 when it exits and exit with its
    /// status (128+N when killed by signal N); without a daemon, meter it in this process (a
    /// local estimate).
    Run {
        /// Job name (default: the command's name).
        #[arg(long)]
        name: Option<String>,
        /// Also append the figures to FILE as a row of CodeCarbon's emissions.csv (its columns
        /// and units: kWh, kg CO2-eq, W), so that CodeCarbon's tools read it.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Meter an already running process tree (a PID you own) as a job; prints its id.
    Attach {
        /// Root PID of the process tree.
        #[arg(long)]
        pid: u32,
        /// Job name.
        #[arg(long, default_value = "attached")]
        name: String,
    },
    /// Stop metering a job and print its final totals.
    Detach {
        /// The job's id.
        job: u64,
    },
}

/// A non-negative, finite number of seconds.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"))
}

/// The client configuration the flags ask for.
fn client_config(cli: &Cli) -> ClientConfig {
    let mut cfg = ClientConfig::discover(cli.socket.clone());
    cfg.request_timeout = Duration::from_millis(cli.timeout_ms);
    if let Some(window) = cli.reconnect_s {
        cfg.set_reconnect_window(window);
    }
    cfg
}

/// Says on stderr which socket and daemon `client` uses.
fn announce(client: &Client) {
    let info = client.info();
    eprintln!(
        "anges-meter: using {} ({}), daemon {}",
        info.endpoint.path.display(),
        info.endpoint.origin,
        info.daemon_version
    );
}

fn connect(cli: &Cli) -> Result<Client> {
    let client = Client::connect(client_config(cli))?;
    announce(&client);
    Ok(client)
}

fn fmt_reading(r: &Reading) -> String {
    let t = &r.totals;
    let kind = if t.all_measured() {
        "measured"
    } else {
        "estimated"
    };
    format!(
        "{:.3} J ({:.6} kWh), {:.4} g CO2-eq at {:.1} g/kWh, {kind}",
        t.joules(),
        t.joules() / 3.6e6,
        t.grams_co2,
        t.intensity_g_per_kwh
    )
}

fn print_domains(r: &Reading) {
    for d in &r.totals.domains {
        let kind = if d.measured { "measured" } else { "estimated" };
        println!("  {:<16} {:>14.3} J  {kind}", d.name, d.joules);
    }
}

fn status(client: &mut Client) -> Result<()> {
    let r = client.machine(false)?;
    let h = &r.health;
    println!("machine: {}", fmt_reading(&r));
    print_domains(&r);
    let last = match h.last_tick_age_ms {
        u64::MAX => "none yet".to_owned(),
        ms => format!("{ms} ms ago"),
    };
    println!(
        "sampler: {} ticks, last {last}, {} read errors; measured: [{}], estimated: [{}]",
        h.ticks,
        h.read_errors,
        h.sources_measured.join(", "),
        h.sources_estimated.join(", ")
    );
    println!("publication interval: {:?}", client.info().publish_interval);
    // Daemon-wide aggregates (no per-uid figures), named as on D-Bus (`Counters`).
    match client.status() {
        Ok(stats) => {
            let counters: Vec<String> = stats
                .counters()
                .iter()
                .map(|c| format!("{} {}", c.name, c.value))
                .collect();
            println!("server: {}", counters.join(", "));
        }
        Err(e) => println!("server: counters unavailable ({e})"),
    }
    Ok(())
}

fn jobs_table(jobs: &[JobReading]) -> String {
    let mut out = format!(
        "{:>6} {:<24} {:>6} {:>14} {:>12}\n",
        "ID", "NAME", "UID", "JOULES", "G CO2-EQ"
    );
    for j in jobs {
        let t = &j.reading.totals;
        out.push_str(&format!(
            "{:>6} {:<24} {:>6} {:>14.3} {:>12.4}\n",
            j.job.id,
            j.job.name,
            j.job.owner_uid,
            t.joules(),
            t.grams_co2
        ));
    }
    out
}

/// Power per domain from successive cumulative readings: what `watch` shows.
#[derive(Debug, Default)]
struct PowerMeter {
    /// The previous totals of the machine (`None`) and of each job.
    last: std::collections::HashMap<Option<JobId>, Totals>,
}

impl PowerMeter {
    /// Mean power of each domain of `who` since its previous totals, W (`None` the first time,
    /// or when no time passed).
    fn power(&mut self, who: Option<JobId>, totals: &Totals) -> Option<Vec<(String, f64)>> {
        let previous = self.last.insert(who, totals.clone())?;
        let seconds = totals.timestamp_ms.checked_sub(previous.timestamp_ms)? as f64 / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        Some(
            totals
                .domains
                .iter()
                .map(|d| {
                    let before = previous
                        .domains
                        .iter()
                        .find(|p| p.name == d.name)
                        .map_or(0.0, |p| p.joules);
                    (d.name.clone(), ((d.joules - before) / seconds).max(0.0))
                })
                .collect(),
        )
    }
}

/// `cpu:package-0 12.3 W, dram:package-0 1.2 W; total 13.5 W`, or `-` before two readings.
fn fmt_power(power: Option<&[(String, f64)]>) -> String {
    let Some(power) = power else {
        return "-".to_owned();
    };
    let total: f64 = power.iter().map(|(_, w)| w).sum();
    let parts: Vec<String> = power
        .iter()
        .map(|(name, w)| format!("{name} {w:.1} W"))
        .collect();
    format!("{}; total {total:.1} W", parts.join(", "))
}

fn watch(client: &mut Client, interval_ms: u64, count: Option<u64>) -> Result<()> {
    let period = client.subscribe(None, Duration::from_millis(interval_ms))?;
    let tty = std::io::stdout().is_terminal();
    let mut meter = PowerMeter::default();
    let mut n = 0u64;
    loop {
        let update = client.next_update()?;
        let jobs = client.jobs()?;
        let mut out = std::io::stdout().lock();
        if tty {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        let totals = &update.reading.totals;
        let at = anges_common::time::iso8601_utc(totals.timestamp_ms as f64 / 1000.0);
        writeln!(
            out,
            "{at} UTC  machine (every {period:?}): {}",
            fmt_reading(&update.reading)
        )?;
        writeln!(
            out,
            "  power: {}",
            fmt_power(meter.power(None, totals).as_deref())
        )?;
        write!(out, "{}", jobs_table(&jobs))?;
        for j in &jobs {
            let power = meter.power(Some(j.job.id), &j.reading.totals);
            writeln!(
                out,
                "  job {} power: {}",
                j.job.id,
                fmt_power(power.as_deref())
            )?;
        }
        out.flush()?;
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ANGES_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("anges-meter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: &Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Run { name, csv, command } => {
            return run::run(client_config(cli), name.clone(), csv.as_deref(), command);
        }
        Cmd::Status => status(&mut connect(cli)?)?,
        Cmd::Jobs => print!("{}", jobs_table(&connect(cli)?.jobs()?)),
        Cmd::Watch { interval_ms, count } => watch(&mut connect(cli)?, *interval_ms, *count)?,
        Cmd::Attach { pid, name } => {
            let j = connect(cli)?.register_job(name, JobTarget::Pid(*pid))?;
            println!("{}", j.job.id);
        }
        Cmd::Detach { job } => {
            let j = connect(cli)?.unregister_job(JobId(*job))?;
            println!(
                "job {} ({}): {}",
                j.job.id,
                j.job.name,
                fmt_reading(&j.reading)
            );
            print_domains(&j.reading);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_run_takes_the_rest() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["anges-meter", "run", "--", "sh", "-c", "true"]).unwrap();
        match cli.cmd {
            Cmd::Run { command, .. } => assert_eq!(command, ["sh", "-c", "true"]),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["anges-meter", "--reconnect-s", "0.5", "status"]).unwrap();
        assert_eq!(cli.reconnect_s, Some(Duration::from_millis(500)));
        assert!(Cli::try_parse_from(["anges-meter", "--reconnect-s", "-1", "status"]).is_err());
    }

    #[test]
    fn exit_code_is_the_shells() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        assert_eq!(
            run::exit_code(ExitStatus::from_raw(3 << 8)),
            ExitCode::from(3)
        );
        assert_eq!(
            run::exit_code(ExitStatus::from_raw(libc::SIGTERM)),
            ExitCode::from(128 + libc::SIGTERM as u8)
        );
    }

    #[test]
    fn watch_shows_power_per_domain_from_successive_totals() {
        use anges_common::protocol::DomainEnergy;
        let totals = |ms: u64, cpu: f64, dram: f64| Totals {
            domains: vec![
                DomainEnergy {
                    name: "cpu:package-0".into(),
                    joules: cpu,
                    measured: true,
                },
                DomainEnergy {
                    name: "dram:package-0".into(),
                    joules: dram,
                    measured: true,
                },
            ],
            timestamp_ms: ms,
            ..Totals::default()
        };
        let mut meter = PowerMeter::default();
        assert_eq!(meter.power(None, &totals(1_000, 10.0, 1.0)), None);
        let p = meter.power(None, &totals(3_000, 34.0, 2.0)).unwrap();
        assert_eq!(
            fmt_power(Some(&p)),
            "cpu:package-0 12.0 W, dram:package-0 0.5 W; total 12.5 W"
        );
        // Jobs are tracked apart from the machine.
        assert_eq!(meter.power(Some(JobId(1)), &totals(3_000, 1.0, 0.0)), None);
        assert_eq!(fmt_power(None), "-");
    }

    #[test]
    fn run_takes_a_codecarbon_csv() {
        let cli =
            Cli::try_parse_from(["anges-meter", "run", "--csv", "e.csv", "--", "true"]).unwrap();
        match cli.cmd {
            Cmd::Run { csv, .. } => assert_eq!(csv, Some(PathBuf::from("e.csv"))),
            other => panic!("{other:?}"),
        }
    }
}
