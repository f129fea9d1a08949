//! `anges-meterd` as a library: the measuring engine and the daemon's configuration.
//!
//! Pipeline: [`sensors`] (perf RAPL → powercap RAPL → estimate for CPU; NVML for GPUs) →
//! [`sampler`] (dedicated thread, drift-free schedule) → [`attribution`] over [`jobs`] →
//! [`carbon`] → totals published by [`engine::Engine`] and saved by [`persist`]. [`config`] merges
//! `/etc/anges/meterd.toml` with the flags of [`cli`]. The binary (`src/main.rs`) only parses
//! arguments, sets up logging and signals and calls into this crate, so that the trainer's
//! in-process meter (`--meter local`) reuses exactly the same code.

pub mod attribution;
pub mod carbon;
pub mod cli;
pub mod config;
pub mod engine;
pub mod jobs;
pub mod persist;
pub mod procfs;
pub mod root;
mod sampler;
pub mod sensors;
pub mod server;
pub mod signals;
mod state;

pub use engine::{Engine, EngineConfig, EngineError, SamplerHealth};
pub use jobs::{DomainTotals, JobId, JobSpec, JobTotals, MachineTotals};
