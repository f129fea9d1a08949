//! `anges-meter`: command-line client of the meter daemon.
//!
//! `status` (machine totals and sampler health), `jobs` (your jobs), `watch` (live table),
//! `run -- CMD…` (meter any program as a job and print its energy and CO2 when it exits),
//! `attach`/`detach` (meter an already running process). Uses the blocking client library, so
//! it finds the daemon the same way the trainer does and says which socket it used.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anges_common::client::{Client, ClientConfig};
use anges_common::protocol::{JobId, JobReading, JobTarget, Reading};
use anyhow::{Context, Result, bail};
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

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Machine totals, sources and sampler health.
    Status,
    /// The jobs you can see (yours; every job for root and the admin group).
    Jobs,
    /// Live table of the machine and your jobs (Ctrl-C to stop).
    Watch {
        /// Refresh period in milliseconds (raised to the daemon's publication interval).
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many refreshes (default: never).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Run a command as a metered job and print its energy and CO2 when it exits.
    Run {
        /// Job name (default: the command's name).
        #[arg(long)]
        name: Option<String>,
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

fn connect(cli: &Cli) -> Result<Client> {
    let mut cfg = ClientConfig::discover(cli.socket.clone());
    cfg.request_timeout = Duration::from_millis(cli.timeout_ms);
    let client = Client::connect(cfg)?;
    let info = client.info();
    eprintln!(
        "anges-meter: using {} ({}), daemon {}",
        info.endpoint.path.display(),
        info.endpoint.origin,
        info.daemon_version
    );
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

fn watch(client: &mut Client, interval_ms: u64, count: Option<u64>) -> Result<()> {
    let period = client.subscribe(None, Duration::from_millis(interval_ms))?;
    let tty = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let update = client.next_update()?;
        let jobs = client.jobs()?;
        let mut out = std::io::stdout().lock();
        if tty {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            out,
            "machine (every {period:?}): {}",
            fmt_reading(&update.reading)
        )?;
        write!(out, "{}", jobs_table(&jobs))?;
        out.flush()?;
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}

fn run(client: &mut Client, name: Option<String>, command: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let name = name.unwrap_or_else(|| program.clone());
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let job = match client.register_job(&name, JobTarget::Pid(child.id())) {
        Ok(j) => j.job.id,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e).context("cannot register the command as a job");
        }
    };
    let status = child.wait().context("waiting for the command")?;
    // A fresh reading includes the work done just before the exit; unregistering then returns
    // the job's final totals.
    client.job(job, true)?;
    let last = client.unregister_job(job)?;
    eprintln!(
        "anges-meter: job {job} ({name}): {}",
        fmt_reading(&last.reading)
    );
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(128),
    })
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
    let mut client = connect(cli)?;
    match &cli.cmd {
        Cmd::Status => status(&mut client)?,
        Cmd::Jobs => print!("{}", jobs_table(&client.jobs()?)),
        Cmd::Watch { interval_ms, count } => watch(&mut client, *interval_ms, *count)?,
        Cmd::Run { name, command } => return run(&mut client, name.clone(), command),
        Cmd::Attach { pid, name } => {
            let j = client.register_job(name, JobTarget::Pid(*pid))?;
            println!("{}", j.job.id);
        }
        Cmd::Detach { job } => {
            let j = client.unregister_job(JobId(*job))?;
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
    }
}
