//! The trainer's integration tests, one module per area, linked into one test binary: each test
//! binary links libtorch, which is slow, so one link instead of thirteen.
//!
//! The modules share one process. What is process-global is shared through [`common`]: libtorch's
//! random generator (`common::torch_rng`, held by every test that seeds it or draws from it) and
//! the RDKit oracle's cache (`common::oracle` computes each file's output once).

mod common;

mod bad_inputs;
mod carbon;
mod chem_parity;
mod cli;
mod custom_csv;
mod data_lookup;
mod dataset_cache;
mod default_weights;
mod gnn_checkpoints;
mod gnn_parity;
mod learning;
mod libtorch_smoke;
mod predict;
mod pretrain;
mod report;
mod resume;
mod run_folder;
mod selfies_parity;
mod selfies_training;
mod split_parity;
mod stopping;
mod study;
mod terminal;
mod transformer_parity;
