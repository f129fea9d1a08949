//! The end-to-end tests, one module per area, linked into one test binary: the binary links
//! anges-trainer and so libtorch, which is slow, so one link instead of five.
//!
//! The modules share one process, and the tests of `green_e2e` measure the machine (its CPU time
//! as the kernel counts it, the meter's shares of its energy): they hold [`machine`], and every
//! other test, which loads the machine too (daemons, trainers, CPU burners), holds
//! [`shared_machine`]. The others thus run beside each other, as they did in their own
//! binaries, and never beside a measuring test, as when each file was its own binary.

mod cli;
mod green_e2e;
mod meter_daemon;
mod systemd_units;
mod trainer_meter;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// The whole machine, for a test that measures it: no other test of this binary runs meanwhile.
pub fn machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// A share of the machine, for a test that does not measure it: it runs beside the other such
/// tests, never beside one that holds [`machine`].
pub fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}
