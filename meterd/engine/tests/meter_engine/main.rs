//! The engine's integration tests, one module per former test file, linked into one test binary
//! (`cargo test -p anges-meter-engine --test meter_engine`; filter by module, e.g. `degrade::`).
//! One binary links the engine once instead of once per file.

mod common;
mod degrade;
mod estimate_load;
mod jobs_attribution;
mod powercap_fixture;
