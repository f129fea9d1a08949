//! `anges-train` binary: parse flags ([`cli`], into the library's configuration types), set up
//! logging, dispatch to the library.

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // Before anything else: this may start the program again with a bounded OpenMP spin count.
    let spin_setup = anges_trainer::runtime::bound_openmp_spinning();
    let cli = Cli::parse();
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
            tracing::info!("{}", anges_trainer::runtime::describe());
            let s = anges_trainer::train::run_finetune(&cli.finetune.to_config()?)?;
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
