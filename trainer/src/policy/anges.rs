//! AN-GES (Adaptive, emission-aware Green Early Stopping), Algorithm 1 of docs/spec.md §1, as a state
//! machine fed one `(P_i, E_i)` pair per epoch.
//!
//! `P_i` is the validation metric after epoch `i`, `E_i` the job's cumulative CO2-eq (grams) read
//! after that epoch's work. Per epoch `i > 1` the rule computes
//! `AER_i = %ΔPerf_i / %ΔEmiss_i`; epochs `2..W−1` fill the warm-up list; from epoch `W` on the
//! EMA (initialised once with the warm-up mean, else `ema_init`) is updated with `AER_i` and the
//! run stops when `AER_i < β·EMA`.
//!
//! The literal order (update the EMA with the current AER, then compare) is the default.
//! Named variants, never silent changes: [`AngesOrder::CompareThenUpdate`], and
//! `consecutive = K > 1` (stop only after K triggering epochs in a row).
//!
//! Faults take no decision and leave the rule's state untouched, except that the trajectory moves
//! on where it has to:
//! - `E_i ≤ E_{i−1}` (no fresh energy seen): a meter fault; epoch `i` is skipped, so the next
//!   epoch's percentages span both epochs (energy and metric alike);
//! - `E_{i−1} = 0` (nothing metered yet): a meter fault; epoch `i` becomes the reference;
//! - a missing validation metric, or `P_{i−1} = 0`: a metric fault, handled the same way.
//!
//! The rule depends only on the trajectory, so replaying a logged run with the same parameters
//! stops at the same epoch ([`super::replay`]).

use serde::{Deserialize, Serialize};

/// Order of the EMA update and the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AngesOrder {
    /// Algorithm 1 as written: `EMA ← α·AER + (1−α)·EMA`, then stop if `AER < β·EMA`.
    #[default]
    UpdateThenCompare,
    /// Variant: compare `AER` with the EMA of the previous epochs, then update.
    CompareThenUpdate,
}

/// Parameters of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AngesParams {
    /// Smoothing α of the EMA (weight of the newest AER), in (0, 1].
    pub alpha: f64,
    /// Threshold β: stop when `AER < β·EMA`.
    pub beta: f64,
    /// Warm-up epochs W.
    pub warmup: usize,
    /// EMA start value when the warm-up collected nothing.
    pub ema_init: f64,
    /// Order of update and comparison.
    pub order: AngesOrder,
    /// Triggering epochs in a row needed to stop (1 = the literal rule).
    pub consecutive: usize,
}

impl Default for AngesParams {
    fn default() -> Self {
        Self {
            alpha: 0.9,
            beta: 0.2,
            warmup: 5,
            ema_init: 1e-3,
            order: AngesOrder::UpdateThenCompare,
            consecutive: 1,
        }
    }
}

impl AngesParams {
    /// Checks the values; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(format!("--alpha {} is not in (0, 1]", self.alpha));
        }
        if !self.beta.is_finite() {
            return Err(format!("--beta {} is not a finite number", self.beta));
        }
        if !self.ema_init.is_finite() {
            return Err(format!("--ema-init {} is not finite", self.ema_init));
        }
        if self.consecutive == 0 {
            return Err("--anges-consecutive must be at least 1".into());
        }
        Ok(())
    }

    /// A short label such as `α=0.9 β=0.2 W=5` (plus the variant when not the literal one).
    pub fn label(&self) -> String {
        let mut s = format!("α={} β={} W={}", self.alpha, self.beta, self.warmup);
        if self.order == AngesOrder::CompareThenUpdate {
            s.push_str(" compare-then-update");
        }
        if self.consecutive > 1 {
            s.push_str(&format!(" K={}", self.consecutive));
        }
        s
    }
}

/// What the rule did with one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Epoch 1 (or the first usable one): only a reference for the next.
    Reference,
    /// `i < W`: the AER joined the warm-up list.
    WarmUp,
    /// Compared, no stop.
    Continue,
    /// Compared and triggered, but fewer than `consecutive` times in a row.
    Triggered,
    /// Stop after this epoch.
    Stop,
    /// No fresh energy (`E_i ≤ E_{i−1}` or `E_{i−1} = 0`): no decision.
    MeterFault,
    /// Missing validation metric or `P_{i−1} = 0`: no decision.
    MetricFault,
}

/// One epoch as the rule saw it (logged per epoch and in `epochs.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AngesStep {
    /// 1-based epoch.
    pub epoch: usize,
    /// `P_i`.
    pub p: Option<f64>,
    /// `E_i`, grams.
    pub e: Option<f64>,
    /// `%ΔPerf_i`.
    pub delta_perf_pct: Option<f64>,
    /// `%ΔEmiss_i`.
    pub delta_emiss_pct: Option<f64>,
    /// `AER_i`.
    pub aer: Option<f64>,
    /// The EMA after this epoch (unset before the warm-up ends).
    pub ema: Option<f64>,
    /// What happened.
    pub decision: Decision,
}

impl AngesStep {
    /// The per-epoch log line: P, E, %ΔPerf, %ΔEmiss, AER, EMA and the decision.
    pub fn log_line(&self) -> String {
        let f =
            |v: Option<f64>, prec: usize| v.map_or_else(|| "–".into(), |v| format!("{v:.prec$}"));
        format!(
            "AN-GES epoch {}: P={} E={} g %ΔPerf={} %ΔEmiss={} AER={} EMA={} → {:?}",
            self.epoch,
            f(self.p, 4),
            f(self.e, 6),
            f(self.delta_perf_pct, 3),
            f(self.delta_emiss_pct, 3),
            f(self.aer, 5),
            f(self.ema, 5),
            self.decision
        )
    }
}

/// The rule's state.
///
/// # Examples
///
/// A run whose validation ROC-AUC gains shrink while each epoch emits one more gram: with a
/// warm-up of 3, epoch 2's AER starts the EMA and the rule compares from epoch 3 on; it stops at
/// epoch 5, where the accuracy bought per % of CO2 has collapsed below β × its EMA.
///
/// ```
/// use anges_trainer::policy::{Anges, AngesParams, Decision};
///
/// let params = AngesParams { warmup: 3, ..AngesParams::default() };
/// let mut rule = Anges::new(params, true); // ROC-AUC: higher is better
/// // (validation ROC-AUC, cumulative grams of CO2-eq) after epochs 1, 2, …
/// let trajectory = [(0.60, 1.0), (0.70, 2.0), (0.75, 3.0), (0.76, 4.0), (0.7601, 5.0)];
/// let decisions: Vec<Decision> = (1..)
///     .zip(trajectory)
///     .map(|(epoch, (p, e))| rule.observe(epoch, Some(p), Some(e)).decision)
///     .collect();
/// use Decision::*;
/// assert_eq!(decisions, [Reference, WarmUp, Continue, Continue, Stop]);
///
/// // A reading without fresh energy is a fault: no decision, the state is untouched.
/// let mut rule = Anges::new(params, true);
/// rule.observe(1, Some(0.6), Some(1.0));
/// assert_eq!(rule.observe(2, Some(0.7), Some(1.0)).decision, MeterFault);
/// ```
#[derive(Debug, Clone)]
pub struct Anges {
    params: AngesParams,
    higher_is_better: bool,
    /// `(P, E)` of the reference epoch (the previous usable one).
    prev: Option<(f64, f64)>,
    ema: Option<f64>,
    warm: Vec<f64>,
    triggers: usize,
}

impl Anges {
    /// A fresh rule for a metric whose direction is `higher_is_better`.
    pub fn new(params: AngesParams, higher_is_better: bool) -> Self {
        Self {
            params,
            higher_is_better,
            prev: None,
            ema: None,
            warm: Vec::new(),
            triggers: 0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &AngesParams {
        &self.params
    }

    /// Feeds epoch `epoch` (1-based): validation metric `p`, cumulative CO2-eq `e` (grams).
    pub fn observe(&mut self, epoch: usize, p: Option<f64>, e: Option<f64>) -> AngesStep {
        let mut step = AngesStep {
            epoch,
            p,
            e,
            delta_perf_pct: None,
            delta_emiss_pct: None,
            aer: None,
            ema: self.ema,
            decision: Decision::Reference,
        };
        let (Some(p), Some(e)) = (p.filter(|v| v.is_finite()), e.filter(|v| v.is_finite())) else {
            step.decision = if e.is_some_and(f64::is_finite) {
                Decision::MetricFault
            } else {
                Decision::MeterFault
            };
            return step;
        };
        let Some((p0, e0)) = self.prev else {
            self.prev = Some((p, e));
            return step;
        };
        if e0 <= 0.0 {
            // Nothing metered before this epoch: it becomes the reference.
            self.prev = Some((p, e));
            step.decision = Decision::MeterFault;
            return step;
        }
        if e <= e0 {
            step.decision = Decision::MeterFault;
            return step;
        }
        if p0 == 0.0 {
            self.prev = Some((p, e));
            step.decision = Decision::MetricFault;
            return step;
        }
        let gain = if self.higher_is_better {
            p - p0
        } else {
            p0 - p
        };
        let d_perf = 100.0 * gain / p0.abs();
        let d_emiss = 100.0 * (e - e0) / e0;
        let aer = d_perf / d_emiss;
        self.prev = Some((p, e));
        step.delta_perf_pct = Some(d_perf);
        step.delta_emiss_pct = Some(d_emiss);
        step.aer = Some(aer);
        if epoch < self.params.warmup {
            self.warm.push(aer);
            step.decision = Decision::WarmUp;
            return step;
        }
        let previous = match self.ema {
            Some(v) => v,
            None if self.warm.is_empty() => self.params.ema_init,
            None => self.warm.iter().sum::<f64>() / self.warm.len() as f64,
        };
        let updated = self.params.alpha * aer + (1.0 - self.params.alpha) * previous;
        let against = match self.params.order {
            AngesOrder::UpdateThenCompare => updated,
            AngesOrder::CompareThenUpdate => previous,
        };
        self.ema = Some(updated);
        step.ema = self.ema;
        if aer < self.params.beta * against {
            self.triggers += 1;
            step.decision = if self.triggers >= self.params.consecutive {
                Decision::Stop
            } else {
                Decision::Triggered
            };
        } else {
            self.triggers = 0;
            step.decision = Decision::Continue;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(warmup: usize) -> AngesParams {
        AngesParams {
            warmup,
            ..AngesParams::default()
        }
    }

    fn run(rule: &mut Anges, traj: &[(f64, f64)]) -> Vec<AngesStep> {
        traj.iter()
            .enumerate()
            .map(|(i, &(p, e))| rule.observe(i + 1, Some(p), Some(e)))
            .collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
    }

    #[test]
    fn warm_up_mean_initialises_the_ema_and_the_literal_order_updates_first() {
        // W = 3. Epoch 2: %ΔPerf = 100·(0.66−0.6)/0.6 = 10, %ΔEmiss = 100·(2−1)/1 = 100 → AER 0.1
        // (warm-up). Epoch 3: %ΔPerf = 100·(0.693−0.66)/0.66 = 5, %ΔEmiss = 50 → AER 0.1;
        // EMA ← 0.9·0.1 + 0.1·mean([0.1]) = 0.1; 0.1 < 0.2·0.1? no → continue.
        let mut rule = Anges::new(params(3), true);
        let steps = run(&mut rule, &[(0.6, 1.0), (0.66, 2.0), (0.693, 3.0)]);
        assert_eq!(steps[0].decision, Decision::Reference);
        assert_eq!(steps[1].decision, Decision::WarmUp);
        assert!(close(steps[1].delta_perf_pct, 10.0) && close(steps[1].delta_emiss_pct, 100.0));
        assert!(close(steps[1].aer, 0.1));
        assert_eq!(steps[1].ema, None);
        assert!(close(steps[2].aer, 0.1) && close(steps[2].ema, 0.1));
        assert_eq!(steps[2].decision, Decision::Continue);
    }

    #[test]
    fn ema_init_is_used_when_the_warm_up_is_empty() {
        // W = 2: no warm-up AER; EMA ← 0.9·0.1 + 0.1·1e-3 = 0.0901.
        let mut rule = Anges::new(params(2), true);
        let steps = run(&mut rule, &[(0.6, 1.0), (0.66, 2.0)]);
        assert!(close(steps[1].ema, 0.9 * 0.1 + 0.1 * 1e-3));
        assert_eq!(steps[1].decision, Decision::Continue);
    }

    #[test]
    fn stops_when_the_aer_collapses() {
        // Steady AER 0.1 (constant +1 % per epoch... built exactly), then a gain of ~0.
        let mut traj = vec![(0.5, 1.0)];
        for i in 1..6 {
            let (p, e): (f64, f64) = traj[i - 1];
            traj.push((p * 1.01, e * 1.1)); // %ΔPerf 1, %ΔEmiss 10 → AER 0.1
        }
        let (p, e) = traj[5];
        traj.push((p * 1.0001, e * 1.1)); // AER 0.001 < 0.2 · (0.9·0.001 + 0.1·0.1) = 0.00218
        let mut rule = Anges::new(params(3), true);
        let steps = run(&mut rule, &traj);
        assert!(steps[..6].iter().all(|s| s.decision != Decision::Stop));
        assert_eq!(steps[6].decision, Decision::Stop);
        assert!(close(steps[6].aer, 0.001));
        assert!(close(steps[6].ema, 0.9 * 0.001 + 0.1 * 0.1));
    }

    #[test]
    fn a_steady_aer_never_stops() {
        let mut rule = Anges::new(params(5), true);
        let (mut p, mut e) = (0.5, 1.0);
        for epoch in 1..=100 {
            let step = rule.observe(epoch, Some(p), Some(e));
            assert_ne!(step.decision, Decision::Stop, "epoch {epoch}");
            p *= 1.001;
            e += 1.0;
        }
    }

    #[test]
    fn literal_and_compare_then_update_differ_as_written() {
        // After the warm-up the EMA is 0.1; an AER of 0.015 gives
        //   literal:  EMA' = 0.9·0.015 + 0.1·0.1 = 0.0235 → 0.015 < 0.2·0.0235 = 0.0047? no.
        //   compare-then-update: 0.015 < 0.2·0.1 = 0.02 → stop.
        let mut traj = vec![(0.5, 1.0)];
        for i in 1..3 {
            let (p, e): (f64, f64) = traj[i - 1];
            traj.push((p * 1.01, e * 1.1));
        }
        let (p, e) = traj[2];
        traj.push((p * 1.0015, e * 1.1));
        let literal = run(&mut Anges::new(params(3), true), &traj);
        let variant = run(
            &mut Anges::new(
                AngesParams {
                    order: AngesOrder::CompareThenUpdate,
                    ..params(3)
                },
                true,
            ),
            &traj,
        );
        assert_eq!(literal[3].decision, Decision::Continue);
        assert_eq!(variant[3].decision, Decision::Stop);
        assert!(close(literal[3].ema, variant[3].ema.unwrap()));
    }

    #[test]
    fn lower_is_better_metrics_count_a_falling_error_as_a_gain() {
        // RMSE 2.0 → 1.8: %ΔPerf = +10; energy +100 % → AER 0.1.
        let mut rule = Anges::new(params(5), false);
        let steps = run(&mut rule, &[(2.0, 1.0), (1.8, 2.0), (1.9, 3.0)]);
        assert!(close(steps[1].delta_perf_pct, 10.0) && close(steps[1].aer, 0.1));
        // 1.8 → 1.9 is a loss: %ΔPerf = −100·0.1/1.8.
        assert!(close(steps[2].delta_perf_pct, -100.0 * 0.1 / 1.8));
    }

    #[test]
    fn meter_faults_take_no_decision_and_never_divide_by_zero() {
        let mut rule = Anges::new(params(2), true);
        // E_1 = 0: epoch 2 is a fault and becomes the reference.
        assert_eq!(
            rule.observe(1, Some(0.5), Some(0.0)).decision,
            Decision::Reference
        );
        let s2 = rule.observe(2, Some(0.6), Some(1.0));
        assert_eq!((s2.decision, s2.aer), (Decision::MeterFault, None));
        // E_3 = E_2: a fault, state untouched (no EMA yet).
        let s3 = rule.observe(3, Some(0.9), Some(1.0));
        assert_eq!((s3.decision, s3.ema), (Decision::MeterFault, None));
        // A missing reading and a missing metric.
        assert_eq!(
            rule.observe(4, Some(0.7), None).decision,
            Decision::MeterFault
        );
        assert_eq!(
            rule.observe(5, None, Some(1.5)).decision,
            Decision::MetricFault
        );
        // Epoch 6 compares with epoch 2 (the last usable one): %ΔPerf 100·0.06/0.6 = 10,
        // %ΔEmiss 100 → AER 0.1.
        let s6 = rule.observe(6, Some(0.66), Some(2.0));
        assert!(close(s6.delta_perf_pct, 10.0) && close(s6.aer, 0.1));
        assert!(s6.aer.unwrap().is_finite());
    }

    #[test]
    fn a_perf_drop_after_warm_up_stops_with_the_literal_rule() {
        // A negative AER is below β·EMA whenever the EMA is positive.
        let mut rule = Anges::new(params(3), true);
        let steps = run(
            &mut rule,
            &[(0.6, 1.0), (0.66, 2.0), (0.693, 3.0), (0.69, 4.0)],
        );
        assert_eq!(steps[3].decision, Decision::Stop);
    }

    #[test]
    fn consecutive_triggers_variant_needs_k_in_a_row() {
        let traj = [
            (0.6, 1.0),
            (0.66, 2.0),
            (0.693, 3.0),
            (0.69, 4.0),
            (0.70, 5.0),
            (0.69, 6.0),
            (0.68, 7.0),
        ];
        let mut rule = Anges::new(
            AngesParams {
                consecutive: 2,
                ..params(3)
            },
            true,
        );
        let d: Vec<Decision> = run(&mut rule, &traj).iter().map(|s| s.decision).collect();
        assert_eq!(d[3], Decision::Triggered);
        assert_eq!(d[4], Decision::Continue);
        assert_eq!(d[5], Decision::Triggered);
        assert_eq!(d[6], Decision::Stop);
    }

    #[test]
    fn params_are_validated() {
        assert!(AngesParams::default().validate().is_ok());
        for bad in [
            AngesParams {
                alpha: 0.0,
                ..AngesParams::default()
            },
            AngesParams {
                alpha: f64::NAN,
                ..AngesParams::default()
            },
            AngesParams {
                beta: f64::INFINITY,
                ..AngesParams::default()
            },
            AngesParams {
                consecutive: 0,
                ..AngesParams::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
