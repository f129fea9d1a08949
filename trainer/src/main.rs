//! `anges-train` binary: parse flags ([`cli`], into the library's configuration types), set up
//! logging, dispatch to the library.

mod cli;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // Before anything else: this may start the program again with a bounded OpenMP spin count.
    let spin_setup = anges_trainer::runtime::bound_openmp_spinning();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.check_usage().unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();
    if let anges_trainer::runtime::SpinSetup::ReexecFailed(e) = spin_setup {
        tracing::warn!(
            "could not restart with {}={}: {e}; OpenMP keeps its default spin-waiting, which \
             slows jobs that share this machine (set it yourself to silence this)",
            anges_trainer::runtime::SPIN_COUNT_VAR,
            anges_trainer::runtime::BOUNDED_SPIN_COUNT
        );
    }

    match cli.command {
        Some(Command::Pretrain(args)) => {
            tracing::info!("{}", anges_trainer::runtime::describe());
            let log = anges_trainer::pretrain::run_pretrain(&args.to_config()?)?;
            println!("{}", log.summary_line());
            Ok(())
        }
        Some(Command::Replay(args)) => {
            let (run, outcomes) =
                anges_trainer::replay::run_replay(&args.run_dir, &args.to_grid())?;
            if args.json {
                for o in &outcomes {
                    println!("{}", serde_json::to_string(o)?);
                }
            } else {
                print!("{}", anges_trainer::replay::format_table(&run, &outcomes));
            }
            Ok(())
        }
        Some(Command::Study(args)) => {
            tracing::info!("{}", anges_trainer::runtime::describe());
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let out = anges_trainer::study::run_study(&args.to_config()?, command)?;
            print!("{}", anges_trainer::report::table(&out.report));
            println!("study folder: {}", out.dir.display());
            Ok(())
        }
        Some(Command::Summarize(args)) => {
            use anges_trainer::report::runs;
            let found = runs::find_runs(&args.paths)?;
            let groups = runs::group_runs(&found.summaries);
            if let Some(csv) = &args.csv {
                runs::write_csv(&groups, csv)?;
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&groups)?);
            } else {
                print!("{}", runs::markdown(&groups));
            }
            eprintln!(
                "{} run(s) in {} group(s); {} summary file(s) skipped",
                found.summaries.len(),
                groups.len(),
                found.skipped.len()
            );
            Ok(())
        }
        None => {
            let config = cli.finetune.to_run_config(&matches)?;
            // Before libtorch or featurisation start any thread, which inherit the signal mask.
            watch_interrupt();
            tracing::info!("{}", anges_trainer::runtime::describe());
            let s = anges_trainer::train::run_finetune(&config)?;
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
                println!(
                    "emissions: {j:.1} J ({:.3e} kWh), {g:.4} g CO2-eq, {} ({})",
                    j / 3.6e6,
                    s.meter.as_deref().unwrap_or("meter"),
                    if s.measured == Some(true) {
                        "measured"
                    } else {
                        "estimated"
                    }
                );
            }
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
