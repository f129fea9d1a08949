//! `anges-train` binary: parse flags, set up logging, dispatch to the library.

use anges_trainer::cli::{Cli, Command};
use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Some(Command::Pretrain(_)) | Some(Command::Replay(_)) | Some(Command::Study(_)) => {
            anyhow::bail!("this subcommand is not built yet (see the trainer issues)")
        }
        None => {
            let args = cli.finetune;
            if args.model.threads > 0 {
                tch::set_num_threads(args.model.threads as i32);
            }
            let device = args.model.device.resolve()?;
            tracing::info!("{}; using {device:?}", anges_trainer::runtime::describe());
            let config = serde_json::to_string_pretty(&args).context("serialising the config")?;
            println!("{config}");
            anyhow::bail!(
                "fine-tuning is not built yet (see the trainer issues); the configuration above \
                 is what a run would use"
            )
        }
    }
}
