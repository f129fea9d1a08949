//! `anges-meterd` as a library: the daemon around the meter engine.
//!
//! The measuring itself (sensors, sampler, jobs, attribution, carbon, persistence) is the
//! [`anges_meter_engine`] crate, which the trainer's in-process meter (`--meter local`) links on
//! its own, so both measure with exactly the same code. This crate adds what only the daemon
//! needs: [`config`] merges `/etc/anges/meterd.toml` with the flags of [`cli`], [`server`]
//! publishes the engine's totals (local socket, D-Bus, Prometheus, sd-notify, socket activation)
//! and [`signals`] receives SIGTERM/SIGINT. The binaries (`src/main.rs`, the daemon, and
//! `src/bin/anges-meter.rs`, the CLI) only parse arguments, set up logging and signals and call
//! into this crate and the engine.

pub mod cli;
pub mod config;
pub mod server;
pub mod signals;
