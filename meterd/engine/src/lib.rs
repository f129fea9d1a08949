//! `anges-meter-engine`: the meter's measuring engine, with no server in it.
//!
//! Pipeline: [`sensors`] (perf RAPL → powercap RAPL → estimate for CPU; NVML for GPUs) → the
//! sampler (a dedicated thread, drift-free schedule) → [`attribution`] over [`jobs`] →
//! [`carbon`] → totals published by [`engine::Engine`] and saved by [`persist`]. [`procfs`] and
//! [`root`] are the parsers and the filesystem root every read goes through.
//!
//! Two programs run it: the daemon `anges-meterd` (which adds its servers, configuration and
//! signals) and the trainer's in-process meter (`--meter local`), so both measure with exactly
//! the same code and the trainer links none of the daemon's serving stack.
//!
//! Module graph (one-way): `engine → sampler → state`, `engine → state`; both over `jobs`,
//! `attribution`, `carbon`, `persist`, `sensors`, `procfs`, `root`.

#![warn(missing_docs)]

pub mod attribution;
pub mod carbon;
pub mod engine;
pub mod jobs;
pub mod persist;
pub mod procfs;
pub mod root;
mod sampler;
pub mod sensors;
mod state;

pub use engine::{Engine, EngineConfig, EngineError, EngineSnapshot, SamplerHealth};
pub use jobs::{DomainTotals, JobId, JobSpec, JobTotals, MachineTotals};
