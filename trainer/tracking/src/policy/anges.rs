//! AN-GES (Adaptive, emission-aware Green Early Stopping) as a state machine fed one `(P_i, E_i)`
//! pair per epoch: Algorithm 1 of docs/spec.md §1 (the literal rule) and its named variants
//! (docs/green.md, "AN-GES variants").
//!
//! `P_i` is the validation metric after epoch `i`, `E_i` the job's cumulative CO2-eq (grams) read
//! after that epoch's work. Per epoch the rule computes `AER_i = %ΔPerf_i / %ΔEmiss_i`; epochs
//! `2..W−1` fill the warm-up list; from epoch `W` on the EMA of the AER (initialised once with the
//! warm-up mean, else `ema_init`) is updated and the run stops when `AER_i < β·EMA`.
//!
//! The knobs, each a field of [`AngesParams`] whose literal value reproduces Algorithm 1 bit for
//! bit:
//! - [`AngesOrder`]: update the EMA with `AER_i` and then compare (literal), or compare with the
//!   EMA of the previous epochs and then update (the EMA as history);
//! - [`AngesSignal`]: the performance signal `P̃_i` the percentages are taken on: the raw metric
//!   (literal), its EMA (`P̃_i = γ·P̃_{i−1} + (1−γ)·P_i`, `smoothing` = γ), or the best so far;
//! - `window` = w: `%ΔPerf_i` and `%ΔEmiss_i` span the last w usable epochs (1 = literal; fewer at
//!   the start of the run);
//! - `consecutive` = K: stop only after K triggering epochs in a row (1 = literal).
//!
//! [`AngesVariant`] names the combinations that are offered, with their default parameters.
//!
//! Faults take no decision and leave the rule's state untouched, except that the trajectory moves
//! on where it has to:
//! - `E_i ≤ E_{i−1}` (no fresh energy seen): a meter fault; epoch `i` is skipped, so the next
//!   epoch's percentages span both epochs (energy and metric alike);
//! - `E_{i−1} = 0` (nothing metered yet): a meter fault; epoch `i` becomes the reference;
//! - a missing validation metric, or a reference signal of 0: a metric fault; a missing metric is
//!   skipped, a zero reference is replaced by epoch `i`.
//!
//! The rule depends only on the trajectory, so replaying a logged run with the same parameters
//! stops at the same epoch ([`crate::replay`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Order of the EMA update and the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum AngesOrder {
    /// Algorithm 1 as written: `EMA ← α·AER + (1−α)·EMA`, then stop if `AER < β·EMA`.
    #[default]
    UpdateThenCompare,
    /// Compare `AER` with the EMA of the previous epochs, then update (the EMA as history).
    CompareThenUpdate,
}

/// The performance signal whose relative change is `%ΔPerf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum AngesSignal {
    /// The validation metric itself (Algorithm 1).
    #[default]
    Raw,
    /// Its exponential moving average: `P̃_i = γ·P̃_{i−1} + (1−γ)·P_i` (γ = `smoothing`).
    Ema,
    /// The best validation metric so far (a dip then gains nothing, and loses nothing).
    Best,
}

/// The named AN-GES variants (`--anges-variant`), each a combination of the rule's knobs with
/// default parameters chosen by `anges-train evaluate` (docs/green.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum AngesVariant {
    /// Algorithm 1 of docs/spec.md as written: update the EMA, then compare; raw metric.
    Literal,
    /// The EMA as history: compare the AER with the EMA of the previous epochs, then update.
    History,
    /// History, on the EMA of the validation metric (a single noisy dip is damped).
    Smoothed,
    /// History, stopping only after K triggering epochs in a row.
    Consecutive,
    /// History on the best validation metric so far, K triggers in a row: stop when K epochs in
    /// a row buy less than β × the run's usual accuracy per % of CO2 (a relative minimum gain).
    Plateau,
    /// History, with the AER taken over a window of epochs on the smoothed metric.
    Window,
}

impl AngesVariant {
    /// The variant of `--stop anges` when no `--anges-variant` is given: the one whose
    /// held-out frontier lies beyond patience's with the least held-out loss in
    /// `anges-train evaluate` on the 21 logged random-init GIN runs (docs/green.md).
    pub const DEFAULT: AngesVariant = AngesVariant::Plateau;

    /// Every variant, in documentation order.
    pub const ALL: [AngesVariant; 6] = [
        Self::Literal,
        Self::History,
        Self::Smoothed,
        Self::Consecutive,
        Self::Plateau,
        Self::Window,
    ];

    /// The variant's name (`literal`, `history`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Literal => "literal",
            Self::History => "history",
            Self::Smoothed => "smoothed",
            Self::Consecutive => "consecutive",
            Self::Plateau => "plateau",
            Self::Window => "window",
        }
    }

    /// The variant with its default parameters: the spec's for the literal rule; for the
    /// others, the candidates `anges-train evaluate` chose on all 21 logged random-init GIN runs
    /// (the most CO2 saved with a mean loss ≤ 1 ROC-AUC point, else the least loss).
    pub fn preset(self) -> AngesParams {
        let literal = AngesParams::literal();
        let history = AngesParams {
            order: AngesOrder::CompareThenUpdate,
            ..literal
        };
        match self {
            Self::Literal => literal,
            Self::History => AngesParams {
                beta: 1.0,
                warmup: 40,
                ..history
            },
            Self::Smoothed => AngesParams {
                signal: AngesSignal::Ema,
                smoothing: 0.9,
                beta: 0.2,
                warmup: 40,
                ..history
            },
            Self::Consecutive => AngesParams {
                consecutive: 3,
                beta: 0.1,
                warmup: 40,
                ..history
            },
            Self::Plateau => AngesParams {
                signal: AngesSignal::Best,
                consecutive: 10,
                beta: 0.05,
                warmup: 40,
                ..history
            },
            Self::Window => AngesParams {
                signal: AngesSignal::Ema,
                smoothing: 0.5,
                window: 10,
                beta: 0.1,
                warmup: 40,
                ..history
            },
        }
    }
}

impl std::fmt::Display for AngesVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn literal_signal() -> AngesSignal {
    AngesSignal::Raw
}

fn literal_window() -> usize {
    1
}

/// Parameters of the rule. A configuration written before the variants existed has no
/// `signal`, `smoothing` or `window`: it reads as the literal rule it ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AngesParams {
    /// Smoothing α of the AER's EMA (weight of the newest AER), in (0, 1].
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
    /// The performance signal (raw = the literal rule).
    #[serde(default = "literal_signal")]
    pub signal: AngesSignal,
    /// γ of the metric's EMA for [`AngesSignal::Ema`], in [0, 1) (weight of the history).
    #[serde(default)]
    pub smoothing: f64,
    /// Epochs the AER spans (1 = the literal rule).
    #[serde(default = "literal_window")]
    pub window: usize,
}

impl Default for AngesParams {
    /// The default variant's parameters ([`AngesVariant::DEFAULT`]).
    fn default() -> Self {
        AngesVariant::DEFAULT.preset()
    }
}

impl AngesParams {
    /// Algorithm 1 as written, with the spec's parameters α 0.9, β 0.2, W 5.
    pub const fn literal() -> Self {
        Self {
            alpha: 0.9,
            beta: 0.2,
            warmup: 5,
            ema_init: 1e-3,
            order: AngesOrder::UpdateThenCompare,
            consecutive: 1,
            signal: AngesSignal::Raw,
            smoothing: 0.0,
            window: 1,
        }
    }

    /// The named variant these knobs make (the closest name: the signal first, then the
    /// window, the consecutive count and the order).
    pub fn variant(&self) -> AngesVariant {
        match (self.signal, self.window, self.consecutive, self.order) {
            (AngesSignal::Best, ..) => AngesVariant::Plateau,
            (_, w, ..) if w > 1 => AngesVariant::Window,
            (AngesSignal::Ema, ..) => AngesVariant::Smoothed,
            (_, _, k, _) if k > 1 => AngesVariant::Consecutive,
            (.., AngesOrder::CompareThenUpdate) => AngesVariant::History,
            _ => AngesVariant::Literal,
        }
    }

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
        if !(self.smoothing >= 0.0 && self.smoothing < 1.0) {
            return Err(format!(
                "--anges-smoothing {} is not in [0, 1)",
                self.smoothing
            ));
        }
        if self.window == 0 {
            return Err("--anges-window must be at least 1".into());
        }
        Ok(())
    }

    /// A short label such as `α=0.9 β=0.2 W=5`, with the variant's other knobs when not the
    /// literal rule (`history`, `γ=0.8`, `w=5`, `K=3`, `best`).
    pub fn label(&self) -> String {
        let mut s = format!("α={} β={} W={}", self.alpha, self.beta, self.warmup);
        if self.order == AngesOrder::CompareThenUpdate {
            s.push_str(" history");
        }
        match self.signal {
            AngesSignal::Raw => {}
            AngesSignal::Ema => s.push_str(&format!(" γ={}", self.smoothing)),
            AngesSignal::Best => s.push_str(" best"),
        }
        if self.window > 1 {
            s.push_str(&format!(" w={}", self.window));
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
    /// Missing validation metric or a reference signal of 0: no decision.
    MetricFault,
}

/// One epoch as the rule saw it (logged per epoch and in `epochs.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AngesStep {
    /// 1-based epoch.
    pub epoch: usize,
    /// `P_i`.
    pub p: Option<f64>,
    /// The signal `P̃_i` the percentages were taken on, when it is not `P_i` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<f64>,
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
        let signal = self
            .signal
            .map_or_else(String::new, |s| format!(" P̃={s:.4}"));
        format!(
            "AN-GES epoch {}: P={}{signal} E={} g %ΔPerf={} %ΔEmiss={} AER={} EMA={} → {:?}",
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
/// use anges_tracking::policy::{Anges, AngesParams, Decision};
///
/// let params = AngesParams { warmup: 3, ..AngesParams::literal() };
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
    /// The signal after the last accepted epoch.
    signal: Option<f64>,
    /// `(P̃, E)` of the last accepted epochs, oldest first (at most `window + 1`); the
    /// percentages of a new epoch are taken against the one `window` epochs back.
    points: VecDeque<(f64, f64)>,
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
            signal: None,
            points: VecDeque::with_capacity(params.window + 1),
            ema: None,
            warm: Vec::new(),
            triggers: 0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &AngesParams {
        &self.params
    }

    /// The signal `P̃_i` for a new metric value `p` (not yet accepted).
    fn next_signal(&self, p: f64) -> f64 {
        match (self.params.signal, self.signal) {
            (AngesSignal::Raw, _) | (_, None) => p,
            (AngesSignal::Ema, Some(s)) => {
                self.params.smoothing * s + (1.0 - self.params.smoothing) * p
            }
            (AngesSignal::Best, Some(s)) if self.higher_is_better => s.max(p),
            (AngesSignal::Best, Some(s)) => s.min(p),
        }
    }

    /// Accepts an epoch's `(P̃, E)` into the history; `restart` forgets the earlier epochs
    /// (the epoch becomes the only reference).
    fn accept(&mut self, signal: f64, e: f64, restart: bool) {
        self.signal = Some(signal);
        if restart {
            self.points.clear();
        }
        self.points.push_back((signal, e));
        while self.points.len() > self.params.window + 1 {
            self.points.pop_front();
        }
    }

    /// Feeds epoch `epoch` (1-based): validation metric `p`, cumulative CO2-eq `e` (grams).
    pub fn observe(&mut self, epoch: usize, p: Option<f64>, e: Option<f64>) -> AngesStep {
        let mut step = AngesStep {
            epoch,
            p,
            signal: None,
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
        let signal = self.next_signal(p);
        if self.params.signal != AngesSignal::Raw {
            step.signal = Some(signal);
        }
        let Some(&(_, e_last)) = self.points.back() else {
            self.accept(signal, e, true);
            return step;
        };
        if e_last <= 0.0 {
            // Nothing metered before this epoch: it becomes the reference.
            self.accept(signal, e, true);
            step.decision = Decision::MeterFault;
            return step;
        }
        if e <= e_last {
            step.decision = Decision::MeterFault;
            return step;
        }
        // The epoch `window` accepted epochs back (the oldest one kept, early in the run).
        let back = self.points.len().saturating_sub(self.params.window);
        let (p0, e0) = self.points[back];
        if p0 == 0.0 {
            self.accept(signal, e, true);
            step.decision = Decision::MetricFault;
            return step;
        }
        let gain = if self.higher_is_better {
            signal - p0
        } else {
            p0 - signal
        };
        let d_perf = 100.0 * gain / p0.abs();
        let d_emiss = 100.0 * (e - e0) / e0;
        let aer = d_perf / d_emiss;
        self.accept(signal, e, false);
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
            ..AngesParams::literal()
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
                ..AngesParams::literal()
            },
            AngesParams {
                alpha: f64::NAN,
                ..AngesParams::literal()
            },
            AngesParams {
                beta: f64::INFINITY,
                ..AngesParams::literal()
            },
            AngesParams {
                consecutive: 0,
                ..AngesParams::literal()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    fn variant(v: AngesVariant, warmup: usize, beta: f64) -> AngesParams {
        AngesParams {
            warmup,
            beta,
            ..v.preset()
        }
    }

    #[test]
    fn presets_name_their_variant_and_old_configurations_read_as_literal() {
        for v in AngesVariant::ALL {
            assert_eq!(v.preset().variant(), v, "{v}");
            assert!(v.preset().validate().is_ok(), "{v}");
        }
        assert_eq!(AngesParams::default(), AngesVariant::DEFAULT.preset());
        // A configuration written before the variants existed.
        let old = r#"{"alpha":0.9,"beta":0.3,"warmup":5,"ema_init":0.001,
                      "order":"update-then-compare","consecutive":1}"#;
        let read: AngesParams = serde_json::from_str(old).unwrap();
        assert_eq!(
            read,
            AngesParams {
                beta: 0.3,
                ..AngesParams::literal()
            }
        );
        assert_eq!(read.variant(), AngesVariant::Literal);
        for bad in [
            AngesParams {
                smoothing: 1.0,
                ..AngesParams::literal()
            },
            AngesParams {
                window: 0,
                ..AngesParams::literal()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn smoothed_signal_damps_a_single_dip_that_stops_the_literal_rule() {
        // +1 % per epoch, one dip at epoch 5, then +1 % again; energy +1 g per epoch.
        let traj = [
            (0.50, 1.0),
            (0.505, 2.0),
            (0.51, 3.0),
            (0.515, 4.0),
            (0.50, 5.0),
            (0.52, 6.0),
        ];
        let literal = run(&mut Anges::new(params(3), true), &traj);
        assert_eq!(
            literal[4].decision,
            Decision::Stop,
            "the dip stops the literal rule"
        );
        // γ = 0.5: P̃ = 0.5, 0.5025, 0.50625, 0.510625, 0.5053125 (the dip halved): at epoch 5
        // %ΔPerf = 100·(0.5053125 − 0.510625)/0.510625 = −1.0404…, %ΔEmiss = 25 → AER −0.0416;
        // compared with the EMA before it (history): still a trigger, but with K = 2 the rise at
        // epoch 6 (P̃ = 0.51265625, AER +0.73·…) resets it.
        let smoothed = AngesParams {
            signal: AngesSignal::Ema,
            smoothing: 0.5,
            consecutive: 2,
            ..variant(AngesVariant::History, 3, 0.2)
        };
        let steps = run(&mut Anges::new(smoothed, true), &traj);
        assert!(close(steps[4].signal, 0.5053125));
        assert!(close(
            steps[4].delta_perf_pct,
            100.0 * (0.5053125 - 0.510625) / 0.510625
        ));
        assert_eq!(steps[4].decision, Decision::Triggered);
        assert!(close(steps[5].signal, 0.51265625));
        assert_eq!(steps[5].decision, Decision::Continue);
    }

    #[test]
    fn best_signal_counts_a_dip_as_no_gain_and_lower_is_better_keeps_the_minimum() {
        let params = AngesParams {
            consecutive: 2,
            ..variant(AngesVariant::Plateau, 3, 0.5)
        };
        // Higher is better: the dip at epoch 4 and the partial recovery at 5 gain nothing (AER 0).
        let traj = [
            (0.6, 1.0),
            (0.66, 2.0),
            (0.70, 3.0),
            (0.65, 4.0),
            (0.69, 5.0),
        ];
        let steps = run(&mut Anges::new(params, true), &traj);
        assert_eq!(steps[3].aer, Some(0.0));
        assert!(close(steps[3].signal, 0.70));
        assert_eq!(steps[3].decision, Decision::Triggered);
        assert_eq!(steps[4].aer, Some(0.0));
        assert_eq!(steps[4].decision, Decision::Stop);
        // Lower is better (RMSE): the signal is the smallest error so far.
        let rmse = [(2.0, 1.0), (1.8, 2.0), (1.9, 3.0), (1.7, 4.0)];
        let steps = run(&mut Anges::new(params, false), &rmse);
        assert!(close(steps[2].signal, 1.8) && steps[2].aer == Some(0.0));
        assert!(close(steps[3].signal, 1.7));
        assert!(close(steps[3].delta_perf_pct, 100.0 * 0.1 / 1.8));
    }

    #[test]
    fn a_window_spans_that_many_accepted_epochs() {
        let params = AngesParams {
            window: 2,
            ..variant(AngesVariant::History, 10, 0.2)
        };
        let mut rule = Anges::new(params, true);
        let steps = run(&mut rule, &[(0.5, 1.0), (0.6, 2.0), (0.66, 4.0)]);
        // Epoch 2: fewer than 2 epochs back, against epoch 1: %ΔPerf 20, %ΔEmiss 100.
        assert!(close(steps[1].delta_perf_pct, 20.0) && close(steps[1].delta_emiss_pct, 100.0));
        // Epoch 3 against epoch 1: %ΔPerf 32, %ΔEmiss 300.
        assert!(close(steps[2].delta_perf_pct, 32.0) && close(steps[2].delta_emiss_pct, 300.0));
        // A meter fault (no fresh energy) is not an accepted epoch: epoch 5 is compared with
        // epoch 2, two accepted epochs back.
        assert_eq!(
            rule.observe(4, Some(0.9), Some(4.0)).decision,
            Decision::MeterFault
        );
        let s5 = rule.observe(5, Some(0.72), Some(8.0));
        assert!(close(s5.delta_perf_pct, 20.0) && close(s5.delta_emiss_pct, 300.0));
    }

    #[test]
    fn faults_leave_a_smoothed_signal_untouched() {
        let params = AngesParams {
            signal: AngesSignal::Ema,
            smoothing: 0.5,
            ..variant(AngesVariant::History, 10, 0.2)
        };
        let mut rule = Anges::new(params, true);
        rule.observe(1, Some(0.5), Some(1.0));
        // No fresh energy, a missing metric: neither moves the signal.
        assert_eq!(
            rule.observe(2, Some(0.9), Some(1.0)).decision,
            Decision::MeterFault
        );
        assert_eq!(
            rule.observe(3, None, Some(2.0)).decision,
            Decision::MetricFault
        );
        let s4 = rule.observe(4, Some(0.7), Some(2.0));
        assert!(
            close(s4.signal, 0.6),
            "0.5·0.5 + 0.5·0.7, the faults ignored"
        );
        assert!(close(s4.delta_perf_pct, 20.0));
    }
}
