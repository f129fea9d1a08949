//! `anges-train` as a library.
//!
//! The trainer's pipeline is `chem → data → models → training loop → green policies → reports`
//! (see `docs/architecture.md`). Runs are described by the validated types of [`config`]
//! (`FinetuneConfig`, `PretrainConfig`, `StopSpec`, …), which the command line ([`cli`], the
//! only module that knows the flags) builds in one place; nothing else depends on the flags.
//!
//! The modules: the libtorch runtime probe ([`runtime`]), chemistry ([`chem`]), datasets
//! ([`data`]), featurisation ([`featurize`]), splits ([`split`]), the models and their
//! checkpoints ([`models`], [`checkpoint`]), the one epoch loop and fine-tuning with MolPeg
//! pruning ([`train`]), self-supervised pre-training ([`pretrain`], a task of the same loop), the
//! per-epoch meter readings ([`emissions`]), the stopping policies as pure state machines
//! ([`policy`]) and their offline replay on logged runs ([`replay`]), and the trade-off study
//! ([`study`]) with its report ([`report`]).

pub mod checkpoint;
pub mod chem;
pub mod cli;
pub mod config;
pub mod data;
pub mod emissions;
pub mod featurize;
pub(crate) mod files;
pub mod models;
pub mod policy;
pub mod pretrain;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod split;
pub mod study;
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
