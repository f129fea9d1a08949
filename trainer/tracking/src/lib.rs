//! The tracking side of ANGES, free of libtorch: what a training loop needs to meter its CO2 and
//! stop early with AN-GES, whatever trains the model.
//!
//! `anges-train` (tch) and the Python package `anges` (PyO3) both use this crate, so a run of
//! either is metered, stopped and logged by the same code:
//!
//! - [`config`]: where emissions come from (`auto|daemon|local|off`) and the carbon options;
//! - [`emissions`]: the meter session ([`emissions::EpochMeter`]): registration with
//!   `anges-meterd` (system socket, user socket) or the in-process engine, per-epoch fresh
//!   readings paid by exactly one source, the final figures and the CodeCarbon-compatible row;
//! - [`policy`]: the stopping policies (patience, AN-GES and its variants) as pure state machines;
//! - [`metrics`]: the evaluation metrics and the [`metrics::Metric`] that selects epochs;
//! - [`record`]: one epoch as `epochs.jsonl` and `epochs.csv` log it;
//! - [`replay`]: the policies applied offline to a logged run, and the trade-off;
//! - [`session`]: a metered, policed, logged run for any training loop (the Python callbacks);
//! - [`options`]: named options (the Python package's keyword arguments) turned into these types.
//!
//! The flags are not known here; with the `clap` feature the enums they name are also
//! `clap::ValueEnum`s (the trainer's command line turns on that feature).

pub mod config;
pub mod emissions;
pub mod metrics;
pub mod options;
pub mod policy;
pub mod record;
pub mod replay;
pub mod session;
