//! The daemon's integration tests, one module per former test file, linked into one test binary
//! (`cargo test -p anges-meterd --test integration`; filter by module, e.g. `server_socket::`).
//! One binary links the servers once instead of once per file. They stay in this crate because
//! some run the binaries it owns (`CARGO_BIN_EXE_anges-meterd`, `CARGO_BIN_EXE_anges-meter`); the
//! engine's own tests are in `meterd/engine/tests/meter_engine/`.

mod abuse;
mod cli_csv;
mod restart;
mod server_common;
mod server_dbus;
mod server_fuzz;
mod server_notify;
mod server_permissions;
mod server_socket;
