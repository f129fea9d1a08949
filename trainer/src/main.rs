//! `anges-train` binary: parse flags ([`cli`], into the library's configuration types), set up
//! logging ([`init_logging`]), dispatch to the library ([`run`]) and print an error as one line
//! ([`error_line`]).

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};
use cli::{Cli, Command, OutputArgs};
use tracing_subscriber::EnvFilter;

use anges_trainer::progress::StderrWriter;

fn main() -> ExitCode {
    // Before anything else: this may start the program again with a bounded OpenMP spin count.
    let spin_setup = anges_trainer::runtime::bound_openmp_spinning();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.check_usage().unwrap_or_else(|e| e.exit());
    let colour = colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    if let Err(e) = init_logging(&cli.output, colour) {
        print_error(&e, colour);
        return ExitCode::from(2);
    }
    if let anges_trainer::runtime::SpinSetup::ReexecFailed(e) = spin_setup {
        tracing::warn!(
            "could not restart with {}={}: {e}; OpenMP keeps its default spin-waiting, which \
             slows jobs that share this machine (set it yourself to silence this)",
            anges_trainer::runtime::SPIN_COUNT_VAR,
            anges_trainer::runtime::BOUNDED_SPIN_COUNT
        );
    }
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e, colour);
            ExitCode::FAILURE
        }
    }
}

/// Whether stderr gets colours: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
fn colour_wanted(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs to stderr at the level `output` asks for, without module paths, in colour only when
/// `colour`, through the writer that keeps the progress bars intact.
fn init_logging(output: &OutputArgs, colour: bool) -> anyhow::Result<()> {
    let filter = output.log_filter(std::env::var("ANGES_LOG").ok());
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| anyhow::anyhow!("--log {filter:?} is not a log filter: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(|| StderrWriter)
        .init();
    Ok(())
}

/// An error as one line: `a: b: c`, each cause in the chain once (a cause whose text the line
/// already holds, as an error that prints its source does, is skipped).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints `error: …` ([`error_line`]) on stderr, "error" in bold red when `colour`; never a
/// backtrace (they are for bugs, which panic).
fn print_error(e: &anyhow::Error, colour: bool) {
    let label = if colour {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    eprintln!("{label}: {}", error_line(e));
}

/// Logs the libtorch runtime (threads, OpenMP, CUDA) at debug level, once `--threads` applies.
fn describe_runtime(compute: &anges_trainer::config::ComputeConfig) -> anyhow::Result<()> {
    anges_trainer::runtime::apply_threads(compute.threads)?;
    tracing::debug!("{}", anges_trainer::runtime::describe());
    Ok(())
}

/// Prints `value` as JSON on stdout (`--json`).
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs what the command line asks for; the result goes to stdout (as JSON with `--json`).
fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let json = cli.output.json;
    match cli.command {
        Some(Command::Pretrain(args)) => {
            let config = args.to_config()?;
            describe_runtime(&config.compute)?;
            let log = anges_trainer::pretrain::run_pretrain(&config)?;
            if json {
                print_json(&log)
            } else {
                println!("{}", log.summary_line());
                Ok(())
            }
        }
        Some(Command::Replay(args)) => {
            let (run, outcomes) =
                anges_trainer::replay::run_replay(&args.run_dir, &args.to_grid())?;
            if json {
                for o in &outcomes {
                    println!("{}", serde_json::to_string(o)?);
                }
            } else {
                print!("{}", anges_trainer::replay::format_table(&run, &outcomes));
            }
            Ok(())
        }
        Some(Command::Evaluate(args)) => {
            use anges_trainer::evaluate;
            let evaluation = evaluate::run_evaluate(&args.to_config())?;
            let files = evaluate::output::write_all(&evaluation, &args.out)?;
            if json {
                print_json(&evaluation)?;
            } else {
                print!("{}", evaluate::output::table(&evaluation));
            }
            eprintln!("evaluation written to {}", files.json.display());
            Ok(())
        }
        Some(Command::Tradeoff(args)) => {
            use anges_trainer::tradeoff;
            let analysis = tradeoff::analyse(&args.to_config())?;
            let files = tradeoff::output::write_all(&analysis, &args.out)?;
            if json {
                print_json(&analysis)?;
            } else {
                print!("{}", tradeoff::output::markdown(&analysis));
            }
            eprintln!("trade-off analysis written to {}", files.markdown.display());
            Ok(())
        }
        Some(Command::Study(args)) => {
            let config = args.to_config()?;
            describe_runtime(&config.base.compute)?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let out = anges_trainer::study::run_study(&config, command)?;
            if json {
                print_json(&out.report)
            } else {
                print!("{}", anges_trainer::report::table(&out.report));
                println!("study folder: {}", out.dir.display());
                Ok(())
            }
        }
        Some(Command::Summarize(args)) => {
            use anges_trainer::report::runs;
            let found = runs::find_runs(&args.paths)?;
            let rows = found.rows();
            let groups = runs::group_runs(&rows);
            if let Some(csv) = &args.csv {
                runs::write_csv(&groups, csv)?;
            }
            if json {
                print_json(&groups)?;
            } else {
                print!("{}", runs::markdown(&groups));
                let compared = runs::comparison_markdown(&runs::init_comparisons(&groups));
                if !compared.is_empty() {
                    println!(
                        "\nPre-trained against random init (difference of the means ± its standard error):\n"
                    );
                    print!("{compared}");
                }
            }
            let python = match found.python.len() {
                0 => String::new(),
                n => format!(" ({n} of them the Python package's)"),
            };
            eprintln!(
                "{} run(s) in {} group(s); {} summary file(s) skipped{python}",
                rows.len(),
                groups.len(),
                found.skipped.len()
            );
            Ok(())
        }
        Some(Command::Predict(args)) => {
            let done = anges_trainer::predict::run_predict(&args.to_config())?;
            println!(
                "{} row(s) predicted with {} run(s), {} without a prediction: {}",
                done.rows - done.unpredicted,
                done.runs,
                done.unpredicted,
                done.out.display()
            );
            Ok(())
        }
        Some(Command::Convert(args)) => {
            let done = anges_trainer::convert::run_convert(&args.to_config())?;
            println!(
                "{} of {} row(s) converted to {}, {} without a conversion (see the reason \
                 column): {}",
                done.converted,
                done.rows,
                args.to,
                done.rows - done.converted,
                done.out.display()
            );
            Ok(())
        }
        None => {
            let config = cli.finetune.to_run_config(matches)?;
            // Before libtorch or featurisation start any thread, which inherit the signal mask.
            watch_interrupt();
            describe_runtime(&config.compute)?;
            let s = anges_trainer::train::run_finetune(&config)?;
            if json {
                return print_json(&s);
            }
            let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
            println!(
                "{} / {:?}: {} epoch(s) ({}), best epoch {}: valid {:?} {}, test {:?} {}",
                s.dataset,
                s.model,
                s.epochs_run,
                s.stop_reason,
                s.best_epoch,
                s.metric,
                show(s.best_valid.get(s.metric)),
                s.metric,
                show(s.best_test.get(s.metric)),
            );
            if let (Some(j), Some(g)) = (s.energy_j, s.co2_g) {
                // The meter's description names its provenance ("local (estimated: …)");
                // say "estimated" only when it does not.
                let meter = s.meter.as_deref().unwrap_or("meter");
                let estimated = s.measured != Some(true) && !meter.contains("estimated");
                println!(
                    "emissions: {j:.1} J ({:.3e} kWh), {g:.4} g CO2-eq, {meter}{}",
                    j / 3.6e6,
                    if estimated { " (estimated)" } else { "" }
                );
            }
            if let Some(c) = &s.carbon {
                println!("carbon intensity: {}", c.describe());
            }
            if let Some(h) = &s.hardware {
                println!("hardware: {}", h.describe());
            }
            println!(
                "starting weights: {}",
                s.pretrained
                    .as_ref()
                    .map_or_else(|| "from scratch".to_owned(), |p| p.display().to_string())
            );
            println!("run directory: {}", s.run_dir.display());
            Ok(())
        }
    }
}

/// Ctrl-C during a fine-tuning: instead of dying silently, say where the run stands and how to
/// continue it, then exit with 130 (128 + SIGINT), as the default action would.
///
/// SIGINT is blocked in this thread before any other starts (they inherit the mask), and one
/// thread waits for it with `sigwait`, so the message is written outside a signal handler. The
/// process then ends with `_exit`: the state file of the last finished epoch is already whole
/// on disk (it is renamed into place), and running no exit handlers keeps libtorch's worker
/// threads from racing its static destructors.
fn watch_interrupt() {
    // SAFETY: plain libc calls on a signal set owned by this function; `pthread_sigmask` only
    // changes this thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            tracing::debug!("cannot block SIGINT: Ctrl-C ends the run without a message");
            return;
        }
        set
    };
    let spawned = std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: `set` is a valid signal set; `sigwait` only writes `signal`.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            eprintln!("{}", interrupted_message());
            // SAFETY: ends the process at once, without running exit handlers (see above).
            unsafe { libc::_exit(130) }
        });
    if let Err(e) = spawned {
        tracing::debug!("cannot watch for Ctrl-C ({e}): it ends the run without a message");
        // SAFETY: undoes the block above on this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

/// What to tell a user who pressed Ctrl-C: the last epoch saved and the command that continues
/// the run, or why there is nothing to continue.
fn interrupted_message() -> String {
    use anges_trainer::train::{resume, rundir};
    let Some(dir) = rundir::open_run() else {
        return "interrupted before the run folder was opened: nothing in it was changed"
            .to_owned();
    };
    match resume::saved_epochs(&dir) {
        Some(epochs) => format!(
            "interrupted after epoch {epochs}; continue with: anges-train --resume {}",
            dir.display()
        ),
        None => format!(
            "interrupted before the first epoch was saved: nothing to resume in {}; start it \
             again with --overwrite",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading x.pth: {0}")]
        struct Outer(#[source] std::io::Error);
        let io = std::io::Error::other("unexpected end of file");
        let e = anyhow::Error::new(Outer(io)).context("loading the checkpoint");
        assert_eq!(
            error_line(&e),
            "loading the checkpoint: reading x.pth: unexpected end of file"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some("".into())));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
    }
}
