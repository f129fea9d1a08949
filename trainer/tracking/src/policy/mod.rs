//! Stopping policies (`--stop full|patience|anges`) as pure state machines over the per-epoch
//! `(P_i, E_i)` trajectory, shared by the live loop and by `anges-train replay`.
//!
//! - [`patience`]: best-validation tracking (every policy keeps the best weights) and the classic
//!   patience rule;
//! - [`anges`]: Algorithm 1 of docs/spec.md §1;
//!
//! [`crate::replay`] applies the same policies offline to a logged run.

pub mod anges;
pub mod patience;

use serde::{Deserialize, Serialize};

pub use anges::{Anges, AngesOrder, AngesParams, AngesSignal, AngesStep, AngesVariant, Decision};
pub use patience::Patience;

/// The stopping policies, by name (`--stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum StopPolicy {
    /// The fixed number of epochs (classic fine-tuning).
    Full,
    /// Classic validation early stopping (--patience, --min-delta).
    Patience,
    /// AN-GES: stop when accuracy gained per % of CO2 collapses below β × its EMA.
    Anges,
}

/// A policy and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum StopSpec {
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

impl StopSpec {
    /// The policy `kind` with its parameters (those of the other policies are ignored);
    /// invalid values are an error naming the flag.
    pub fn from_parts(
        kind: StopPolicy,
        anges: AngesParams,
        patience: usize,
        min_delta: f64,
    ) -> Result<Self, String> {
        let spec = match kind {
            StopPolicy::Full => Self::Full,
            StopPolicy::Patience => Self::Patience {
                patience,
                min_delta,
            },
            StopPolicy::Anges => Self::Anges(anges),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the parameters; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Full => Ok(()),
            Self::Patience {
                patience,
                min_delta,
            } => {
                if *patience == 0 || min_delta.is_nan() || *min_delta < 0.0 {
                    return Err("--patience must be ≥ 1 and --min-delta ≥ 0".into());
                }
                Ok(())
            }
            Self::Anges(p) => p.validate(),
        }
    }

    /// The policy's name.
    pub fn kind(&self) -> StopPolicy {
        match self {
            Self::Full => StopPolicy::Full,
            Self::Patience { .. } => StopPolicy::Patience,
            Self::Anges(_) => StopPolicy::Anges,
        }
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

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// It trained every epoch it was given.
    MaxEpochs,
    /// The patience rule stopped it.
    Patience,
    /// The AN-GES rule stopped it.
    Anges,
}

impl StopReason {
    /// `max-epochs`, `patience` or `anges` (as in `summary.json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxEpochs => "max-epochs",
            Self::Patience => "patience",
            Self::Anges => "anges",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy made of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochVerdict {
    /// This epoch's weights are the best on validation so far.
    pub new_best: bool,
    /// Stop after this epoch, and why.
    pub stop: Option<StopReason>,
    /// The AN-GES step, when the policy is AN-GES.
    pub anges: Option<AngesStep>,
}

/// A running policy: best-epoch tracking plus the stopping rule.
///
/// # Examples
///
/// The live loop and `anges-train replay` feed it the same `(P_i, E_i)` pairs, so both stop at
/// the same epoch:
///
/// ```
/// use anges_tracking::policy::{Policy, StopPolicy, StopReason, StopSpec, AngesParams};
///
/// let spec = StopSpec::from_parts(StopPolicy::Patience, AngesParams::default(), 2, 0.0)?;
/// let mut policy = Policy::new(spec, true);
/// let valid = [0.70, 0.72, 0.71, 0.715];
/// let mut stopped = None;
/// for (epoch, p) in (1..).zip(valid) {
///     let verdict = policy.observe(epoch, Some(p), Some(epoch as f64));
///     if let Some(reason) = verdict.stop {
///         stopped = Some((epoch, reason));
///         break;
///     }
/// }
/// assert_eq!(stopped, Some((4, StopReason::Patience)));
/// assert_eq!(policy.best_epoch(), Some(2)); // the weights the run delivers
///
/// // Invalid parameters are refused with a message naming the flag.
/// let err = StopSpec::from_parts(StopPolicy::Patience, AngesParams::default(), 0, 0.0);
/// assert!(err.unwrap_err().contains("--patience"));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    spec: StopSpec,
    best: Patience,
    anges: Option<Anges>,
}

impl Policy {
    /// A fresh policy for a metric whose direction is `higher_is_better`.
    pub fn new(spec: StopSpec, higher_is_better: bool) -> Self {
        let (patience, min_delta) = match spec {
            StopSpec::Patience {
                patience,
                min_delta,
            } => (patience, min_delta),
            _ => (usize::MAX, 0.0),
        };
        Self {
            spec,
            best: Patience::new(patience, min_delta, higher_is_better),
            anges: match spec {
                StopSpec::Anges(p) => Some(Anges::new(p, higher_is_better)),
                _ => None,
            },
        }
    }

    /// The policy's parameters.
    pub fn spec(&self) -> &StopSpec {
        &self.spec
    }

    /// Feeds epoch `epoch` (1-based): validation metric `p` and cumulative CO2-eq `e` (grams).
    pub fn observe(&mut self, epoch: usize, p: Option<f64>, e: Option<f64>) -> EpochVerdict {
        let update = self.best.update(epoch, p);
        let anges = self.anges.as_mut().map(|rule| rule.observe(epoch, p, e));
        let stop = match self.spec {
            StopSpec::Full => None,
            StopSpec::Patience { .. } => update.exhausted.then_some(StopReason::Patience),
            StopSpec::Anges(_) => anges
                .is_some_and(|s| s.decision == Decision::Stop)
                .then_some(StopReason::Anges),
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
