//! `anges-train` as a library.
//!
//! The trainer's pipeline is `chem → data → models → training loop → green policies → reports`
//! (see `docs/architecture.md`); each stage becomes a module here as its issue lands. Today the
//! crate owns the command line ([`cli`]), the libtorch runtime probe ([`runtime`]), chemistry,
//! datasets, featurisation, splits, the 2D models and their checkpoints, and the 2D fine-tuning
//! loop ([`train`]).

pub mod checkpoint;
pub mod chem;
pub mod cli;
pub mod data;
pub mod featurize;
pub mod models;
pub mod runtime;
pub mod split;
pub mod train;
