//! `anges-meterd` as a library: the daemon's configuration and, as the meter issues land, its
//! pipeline `sensors → sampler → accounting → carbon → servers` (see `docs/architecture.md`).
//!
//! The binary (`src/main.rs`) only parses arguments, sets up logging and calls into this crate, so
//! that the trainer's in-process meter (`--meter local`) reuses exactly the same code.

pub mod cli;
