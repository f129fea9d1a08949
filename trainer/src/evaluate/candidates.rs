//! The stopping rules an evaluation compares: families (the AN-GES variants, patience, fixed
//! epoch budgets), each a grid of candidates, and how one candidate stops on a logged run.

use serde::Serialize;

use crate::policy::{AngesParams, AngesVariant, StopSpec};
use crate::replay::{self, LoggedRun, Outcome};

/// One rule with one set of parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Candidate {
    /// A stopping policy replayed on the log.
    Policy {
        /// The policy and its parameters.
        spec: StopSpec,
    },
    /// A fixed number of epochs (the run given `--epochs N`), delivering its best validation
    /// epoch up to N.
    Budget {
        /// Epochs.
        epochs: usize,
    },
}

impl Candidate {
    /// A short label: the policy's (`patience(10)`, `anges(α=0.9 β=0.2 W=5)`) or `budget(12)`.
    pub fn label(&self) -> String {
        match self {
            Self::Policy { spec } => spec.label(),
            Self::Budget { epochs } => format!("budget({epochs})"),
        }
    }

    /// Where the candidate stops on `run`, and what that stop delivers.
    pub fn apply(&self, run: &LoggedRun) -> Outcome {
        match *self {
            Self::Policy { spec } => replay::replay(run, spec),
            Self::Budget { epochs } => replay::replay_within(run, StopSpec::Full, epochs),
        }
    }
}

/// A family of rules: a name and the grid of its candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `literal`, `history`, … (an AN-GES variant), `patience` or `budget`.
    pub name: String,
    /// Whether it is one of the baselines (patience, budgets) rather than an AN-GES variant.
    pub baseline: bool,
    /// The candidates.
    pub candidates: Vec<Candidate>,
}

/// Every combination of the lists, laid over the variant's preset.
fn anges_grid(
    variant: AngesVariant,
    betas: &[f64],
    warmups: &[usize],
    extra: &[fn(&mut AngesParams, f64)],
    extra_values: &[&[f64]],
) -> Vec<Candidate> {
    let mut params = vec![variant.preset()];
    for (set, values) in extra.iter().zip(extra_values) {
        params = params
            .iter()
            .flat_map(|p| {
                values.iter().map(move |&v| {
                    let mut q = *p;
                    set(&mut q, v);
                    q
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for p in params {
        for &beta in betas {
            for &warmup in warmups {
                let spec = StopSpec::Anges(AngesParams { beta, warmup, ..p });
                if spec.validate().is_ok() {
                    out.push(Candidate::Policy { spec });
                }
            }
        }
    }
    out
}

/// The families `anges-train evaluate` compares, for logs of up to `max_epochs` epochs: each
/// AN-GES variant over its grid (α 0.9 throughout, the spec's; warm-ups 5–40), patience 3–40 and
/// fixed budgets every 5 epochs.
pub fn default_families(max_epochs: usize) -> Vec<Family> {
    let betas = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0];
    let warmups = [5, 10, 15, 20, 30, 40];
    let set_k: fn(&mut AngesParams, f64) = |p, v| p.consecutive = v as usize;
    let set_gamma: fn(&mut AngesParams, f64) = |p, v| p.smoothing = v;
    let set_window: fn(&mut AngesParams, f64) = |p, v| p.window = v as usize;
    let anges = |variant: AngesVariant, candidates: Vec<Candidate>| Family {
        name: variant.name().to_owned(),
        baseline: false,
        candidates,
    };
    vec![
        anges(
            AngesVariant::Literal,
            anges_grid(AngesVariant::Literal, &betas, &warmups, &[], &[]),
        ),
        anges(
            AngesVariant::History,
            anges_grid(AngesVariant::History, &betas, &warmups, &[], &[]),
        ),
        anges(
            AngesVariant::Smoothed,
            anges_grid(
                AngesVariant::Smoothed,
                &[0.05, 0.1, 0.2, 0.5],
                &warmups,
                &[set_gamma],
                &[&[0.5, 0.7, 0.8, 0.9]],
            ),
        ),
        anges(
            AngesVariant::Consecutive,
            anges_grid(
                AngesVariant::Consecutive,
                &[0.1, 0.2, 0.5],
                &warmups,
                &[set_k],
                &[&[2.0, 3.0, 5.0, 8.0, 12.0, 20.0]],
            ),
        ),
        anges(
            AngesVariant::Plateau,
            anges_grid(
                AngesVariant::Plateau,
                &[0.05, 0.1, 0.2, 0.5],
                &warmups,
                &[set_k],
                &[&[5.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0]],
            ),
        ),
        anges(
            AngesVariant::Window,
            anges_grid(
                AngesVariant::Window,
                &[0.05, 0.1, 0.2, 0.5],
                &warmups,
                &[set_window, set_gamma],
                &[&[3.0, 5.0, 10.0], &[0.0, 0.5, 0.8]],
            ),
        ),
        Family {
            name: "patience".into(),
            baseline: true,
            candidates: (3..=40)
                .map(|patience| Candidate::Policy {
                    spec: StopSpec::Patience {
                        patience,
                        min_delta: 0.0,
                    },
                })
                .collect(),
        },
        Family {
            name: "budget".into(),
            baseline: true,
            candidates: (1..=max_epochs / 5)
                .map(|k| Candidate::Budget { epochs: 5 * k })
                .collect(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_valid_distinct_candidates_of_its_variant() {
        for family in default_families(100) {
            assert!(!family.candidates.is_empty(), "{}", family.name);
            let labels: Vec<String> = family.candidates.iter().map(Candidate::label).collect();
            let mut unique = labels.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), labels.len(), "{}: duplicates", family.name);
            for c in &family.candidates {
                if let Candidate::Policy {
                    spec: StopSpec::Anges(p),
                } = c
                {
                    assert_eq!(p.variant().name(), family.name, "{}", c.label());
                }
            }
        }
        let budgets = default_families(12).pop().unwrap();
        assert_eq!(budgets.candidates.len(), 2, "budgets 5 and 10 of 12 epochs");
    }
}
