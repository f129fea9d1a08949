//! Stopping policies (`--stop full|patience|anges`) as pure state machines over the per-epoch
//! `(P_i, E_i)` trajectory, shared by the live loop and by `anges-train replay`.
//!
//! - [`patience`]: best-validation tracking (every policy keeps the best weights) and the classic
//!   patience rule;
//! - [`anges`]: Algorithm 1 of SPEC §1;
//! - [`replay`]: the same policies applied offline to a logged run, and the trade-off of each
//!   stop against the full run.

pub mod anges;
pub mod patience;
pub mod replay;

use serde::{Deserialize, Serialize};

pub use anges::{Anges, AngesOrder, AngesParams, AngesStep, Decision};
pub use patience::Patience;

use crate::cli::{StopArgs, StopPolicy};

/// A policy and its parameters, independent of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum PolicySpec {
    /// Every epoch up to the maximum.
    Full,
    /// Stop after `patience` epochs without a validation improvement larger than `min_delta`.
    Patience {
        /// Epochs without improvement.
        patience: usize,
        /// Smallest improvement that counts.
        min_delta: f64,
    },
    /// AN-GES.
    Anges(AngesParams),
}

impl PolicySpec {
    /// The policy the flags describe; invalid values are an error naming the flag.
    pub fn from_args(args: &StopArgs) -> Result<Self, String> {
        Ok(match args.stop {
            StopPolicy::Full => Self::Full,
            StopPolicy::Patience => {
                if args.patience == 0 || args.min_delta.is_nan() || args.min_delta < 0.0 {
                    return Err("--patience must be ≥ 1 and --min-delta ≥ 0".into());
                }
                Self::Patience {
                    patience: args.patience,
                    min_delta: args.min_delta,
                }
            }
            StopPolicy::Anges => {
                let p = AngesParams {
                    alpha: args.alpha,
                    beta: args.beta,
                    warmup: args.warmup,
                    ema_init: args.variant.ema_init,
                    order: args.variant.anges_order,
                    consecutive: args.variant.anges_consecutive,
                };
                p.validate()?;
                Self::Anges(p)
            }
        })
    }

    /// A short label (`full`, `patience(10)`, `anges(α=0.9 β=0.2 W=5)`).
    pub fn label(&self) -> String {
        match self {
            Self::Full => "full".into(),
            Self::Patience { patience, .. } => format!("patience({patience})"),
            Self::Anges(p) => format!("anges({})", p.label()),
        }
    }
}

/// What the policy made of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochVerdict {
    /// This epoch's weights are the best on validation so far.
    pub new_best: bool,
    /// Stop after this epoch, and why (`patience`, `anges`).
    pub stop: Option<&'static str>,
    /// The AN-GES step, when the policy is AN-GES.
    pub anges: Option<AngesStep>,
}

/// A running policy: best-epoch tracking plus the stopping rule.
#[derive(Debug, Clone)]
pub struct Policy {
    spec: PolicySpec,
    best: Patience,
    anges: Option<Anges>,
}

impl Policy {
    /// A fresh policy for a metric whose direction is `higher_is_better`.
    pub fn new(spec: PolicySpec, higher_is_better: bool) -> Self {
        let (patience, min_delta) = match spec {
            PolicySpec::Patience {
                patience,
                min_delta,
            } => (patience, min_delta),
            _ => (usize::MAX, 0.0),
        };
        Self {
            spec,
            best: Patience::new(patience, min_delta, higher_is_better),
            anges: match spec {
                PolicySpec::Anges(p) => Some(Anges::new(p, higher_is_better)),
                _ => None,
            },
        }
    }

    /// The policy's parameters.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Feeds epoch `epoch` (1-based): validation metric `p` and cumulative CO2-eq `e` (grams).
    pub fn observe(&mut self, epoch: usize, p: Option<f64>, e: Option<f64>) -> EpochVerdict {
        let update = self.best.update(epoch, p);
        let anges = self.anges.as_mut().map(|rule| rule.observe(epoch, p, e));
        let stop = match self.spec {
            PolicySpec::Full => None,
            PolicySpec::Patience { .. } => update.exhausted.then_some("patience"),
            PolicySpec::Anges(_) => anges
                .is_some_and(|s| s.decision == Decision::Stop)
                .then_some("anges"),
        };
        EpochVerdict {
            new_best: update.new_best,
            stop,
            anges,
        }
    }

    /// Epoch of the best validation metric so far (1-based).
    pub fn best_epoch(&self) -> Option<usize> {
        self.best.best_epoch()
    }
}
