//! Splitting one interval's energy (and CO2) of a domain among jobs, pure and property-tested.
//!
//! A CPU or DRAM domain is split by the jobs' CPU-time deltas; a GPU domain by the jobs'
//! processes' SM utilisation of that device. What no job accounts for is the "unattributed"
//! remainder, computed as `total − Σ jobs` so that the invariant
//! `Σ jobs + unattributed = machine total` holds per interval and per domain up to float rounding.
//!
//! Idle policy ([`IdlePolicy`]) decides the denominator of a CPU/DRAM share:
//! - `busy` (default): the machine's busy CPU time. Jobs carry the idle baseline in proportion to
//!   their activity; when nothing runs, everything is unattributed. A job alone on an otherwise
//!   idle machine is charged the whole machine's energy, like a wall-plug meter.
//! - `capacity`: all CPU time available (logical CPUs × interval). A job pays only for the share
//!   of the machine it occupied; idle capacity and other processes stay unattributed.
//!
//! GPU shares always use the total utilisation reported for the device (NVML gives relative
//! samples), so an idle GPU's energy stays unattributed. The NVML sensor holds a GPU's latest
//! active samples for up to two seconds (`sensors::nvml::SAMPLE_HOLD`), so a busy GPU is not
//! "idle" in the ticks between NVML's samples.

use serde::{Deserialize, Serialize};

/// Who pays for idle power of CPU/DRAM domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    /// Split by share of the machine's busy CPU time (idle baseline follows activity).
    #[default]
    Busy,
    /// Split by share of the machine's CPU capacity (idle capacity stays unattributed).
    Capacity,
}

/// Splits `total` in proportion to `weights` over `denominator` (raised to `Σ weights` when the
/// readings are skewed so no share exceeds the whole). Writes the jobs' parts into `out` and
/// returns the unattributed remainder. Negative or non-finite weights count as zero.
pub fn split(total: f64, weights: &[f64], denominator: f64, out: &mut [f64]) -> f64 {
    let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let sum: f64 = weights.iter().map(|&w| clean(w)).sum();
    let denom = if denominator.is_finite() {
        denominator.max(sum)
    } else {
        sum
    };
    let mut given = 0.0;
    for (o, &w) in out.iter_mut().zip(weights) {
        *o = if denom > 0.0 {
            total * (clean(w) / denom)
        } else {
            0.0
        };
        given += *o;
    }
    total - given
}

/// The denominator of a CPU/DRAM share under `policy`.
pub fn cpu_denominator(policy: IdlePolicy, busy_seconds: f64, capacity_seconds: f64) -> f64 {
    match policy {
        IdlePolicy::Busy => busy_seconds,
        IdlePolicy::Capacity => capacity_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proportional_split() {
        let mut out = [0.0; 2];
        let rest = split(10.0, &[1.0, 3.0], 5.0, &mut out);
        assert_eq!(out, [2.0, 6.0]);
        assert_eq!(rest, 2.0);
        // Skewed readings (jobs > machine) never over-attribute.
        let rest = split(10.0, &[4.0, 4.0], 5.0, &mut out);
        assert_eq!(out, [5.0, 5.0]);
        assert_eq!(rest, 0.0);
        // Nothing ran: all unattributed.
        let rest = split(10.0, &[0.0, 0.0], 0.0, &mut out);
        assert_eq!((out, rest), ([0.0, 0.0], 10.0));
    }

    proptest! {
        #[test]
        fn additivity_and_bounds(
            total in 0.0f64..1e6,
            weights in proptest::collection::vec(prop_oneof![0.0f64..100.0, Just(-1.0), Just(f64::NAN)], 0..40),
            denominator in prop_oneof![0.0f64..1000.0, Just(f64::INFINITY)],
        ) {
            let mut out = vec![0.0; weights.len()];
            let rest = split(total, &weights, denominator, &mut out);
            let sum: f64 = out.iter().sum::<f64>() + rest;
            prop_assert!((sum - total).abs() <= 1e-9 * total.max(1.0));
            prop_assert!(out.iter().all(|o| *o >= 0.0 && o.is_finite()));
            prop_assert!(rest >= -1e-9 * total.max(1.0));
        }
    }
}
