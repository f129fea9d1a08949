//! `anges-train` as a library.
//!
//! The trainer's pipeline is `chem → data → models → training loop → green policies → reports`
//! (see `docs/architecture.md`); each stage becomes a module here as its issue lands. Today the
//! crate owns the command line ([`cli`]) and the libtorch runtime probe ([`runtime`]).

pub mod cli;
pub mod runtime;
