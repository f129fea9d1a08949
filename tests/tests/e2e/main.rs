//! The end-to-end tests, one module per area, linked into one test binary: the binary links
//! anges-trainer and so libtorch, which is slow, so one link instead of five.
//!
//! The modules share one process, but each area's tests load the machine (daemons, trainers, CPU
//! burners) and some measure it (a job's share of the machine's busy CPU time and energy), as
//! when each file was its own binary, which Cargo ran one after the other. So every test takes
//! its module's [`turn`]: the tests of one module run beside each other, as they did in their own
//! binary, and never beside another module's.

mod cli;
mod green_e2e;
mod meter_daemon;
mod slurm;
mod systemd_units;
mod trainer_meter;

use std::sync::{Condvar, Mutex};

/// The module whose tests hold the machine, and how many of them do.
static HOLDER: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static RELEASED: Condvar = Condvar::new();

/// A test's turn on the machine; the next module's tests may start once every test of this one
/// has dropped its turn.
pub struct Turn;

/// Waits until no test of another module holds the machine, then holds it beside the other
/// tests of `module` (pass `module_path!()`).
pub fn turn(module: &'static str) -> Turn {
    let mut holder = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
    while holder.0.is_some_and(|m| m != module) {
        holder = RELEASED.wait(holder).unwrap_or_else(|e| e.into_inner());
    }
    holder.0 = Some(module);
    holder.1 += 1;
    Turn
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut holder = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
        holder.1 -= 1;
        if holder.1 == 0 {
            holder.0 = None;
            RELEASED.notify_all();
        }
    }
}
