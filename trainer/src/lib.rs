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

/// Helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Mutex, MutexGuard};

    static TORCH_RNG: Mutex<()> = Mutex::new(());

    /// Holds libtorch's process-global random generator for the calling test: unit tests run
    /// on parallel threads, and a test that checks seeded determinism fails if another test
    /// draws (weight initialisation, dropout) between its seeding and its draws.
    pub(crate) fn torch_rng() -> MutexGuard<'static, ()> {
        TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
    }
}
