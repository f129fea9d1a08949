//! `anges-meterd` binary: parse flags, set up logging and signals, start the engine and the
//! servers from the library, and on SIGTERM/SIGINT stop the servers, persist and exit.

use std::sync::Arc;

use anges_meter_engine::Engine;
use anges_meterd::cli::Cli;
use anges_meterd::config::DaemonConfig;
use anges_meterd::server::{self, Server, ServerError};
use anges_meterd::signals::TerminationSignals;
use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();
    // Before any thread exists, so that every thread inherits the blocked mask and no signal
    // arriving during start-up is lost: it waits for `signals.wait()` below.
    let signals = TerminationSignals::block().context("blocking SIGTERM/SIGINT")?;
    let config = DaemonConfig::load(&cli)?;
    match &config.config_file {
        Some(p) => tracing::info!("configuration from {}", p.display()),
        None => tracing::info!("no configuration file; defaults and flags"),
    }
    if let Some(dir) = &config.engine.state_dir {
        tracing::info!("state directory {}", dir.display());
    }
    let server_config = config.server_config()?;
    let engine = Arc::new(Engine::start(config.engine).context("starting the meter")?);
    match server::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("meter-serve")
        .build()
        .context("starting the server runtime")?;
    let started = runtime.block_on(async {
        match Server::start(engine.clone(), server_config.clone()).await {
            // The socket is what clients need; a missing bus must not take it down.
            Err(ServerError::Dbus(e)) => {
                tracing::warn!("D-Bus unavailable ({e}); serving the socket only");
                let mut without_bus = server_config;
                without_bus.dbus = None;
                Server::start(engine.clone(), without_bus).await
            }
            other => other,
        }
    });
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            engine
                .shutdown()
                .context("persisting after a failed start")?;
            return Err(e).context("starting the servers");
        }
    };
    let signal = signals.wait().context("waiting for a termination signal")?;
    tracing::info!("{signal} received; persisting totals and exiting");
    runtime.block_on(server.shutdown());
    engine.shutdown().context("shutting down the meter")?;
    let m = engine.machine();
    tracing::info!(
        "stopped at tick {}: {:.3} J, {:.6} g CO2-eq",
        m.tick,
        m.joules,
        m.grams
    );
    Ok(())
}
