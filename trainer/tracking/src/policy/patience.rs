//! Validation bookkeeping shared by every policy: which epoch is the best so far (model
//! selection) and the classic patience rule (`--stop patience`, `--patience`, `--min-delta`).
//!
//! The direction follows the dataset's first metric: higher is better for ROC-AUC/PRC-AUC,
//! lower for RMSE/MAE. An epoch whose validation metric cannot be computed (e.g. a split with a
//! single class) neither improves nor resets anything; it counts against the patience.

/// Best-epoch tracking plus the patience counter.
///
/// # Examples
///
/// ```
/// use anges_tracking::policy::Patience;
///
/// // Patience 2 on an RMSE (lower is better), improvements must exceed 0.01.
/// let mut p = Patience::new(2, 0.01, false);
/// assert!(p.update(1, Some(1.00)).new_best);
/// let u = p.update(2, Some(0.995)); // best so far, but not by more than min_delta
/// assert!(u.new_best && !u.exhausted && u.stale_epochs == 1);
/// assert!(p.update(3, None).exhausted); // no metric: counts against the patience
/// assert_eq!((p.best_epoch(), p.best()), (Some(2), Some(0.995)));
/// ```
#[derive(Debug, Clone)]
pub struct Patience {
    patience: usize,
    min_delta: f64,
    higher_is_better: bool,
    best: Option<f64>,
    best_epoch: Option<usize>,
    /// Best value the patience counter measures against (moves only by more than `min_delta`).
    reference: Option<f64>,
    stale: usize,
}

/// What one validation value changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The value is the best so far (strictly): keep this epoch's weights.
    pub new_best: bool,
    /// Epochs in a row without an improvement larger than `min_delta`.
    pub stale_epochs: usize,
    /// The patience is exhausted (only meaningful for `--stop patience`).
    pub exhausted: bool,
}

impl Patience {
    /// A fresh tracker: stop after `patience` epochs without an improvement larger than
    /// `min_delta` (in the metric's own direction).
    pub fn new(patience: usize, min_delta: f64, higher_is_better: bool) -> Self {
        Self {
            patience,
            min_delta: min_delta.max(0.0),
            higher_is_better,
            best: None,
            best_epoch: None,
            reference: None,
            stale: 0,
        }
    }

    fn better(&self, value: f64, than: f64, margin: f64) -> bool {
        if self.higher_is_better {
            value > than + margin
        } else {
            value < than - margin
        }
    }

    /// Records the validation value of `epoch` (1-based).
    pub fn update(&mut self, epoch: usize, value: Option<f64>) -> Update {
        let value = value.filter(|v| v.is_finite());
        let new_best = match (value, self.best) {
            (Some(_), None) => true,
            (Some(v), Some(b)) => self.better(v, b, 0.0),
            (None, _) => false,
        };
        if new_best {
            self.best = value;
            self.best_epoch = Some(epoch);
        }
        let improved = match (value, self.reference) {
            (Some(_), None) => true,
            (Some(v), Some(r)) => self.better(v, r, self.min_delta),
            (None, _) => false,
        };
        if improved {
            self.reference = value;
            self.stale = 0;
        } else {
            self.stale += 1;
        }
        Update {
            new_best,
            stale_epochs: self.stale,
            exhausted: self.stale >= self.patience.max(1),
        }
    }

    /// The best validation value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// The epoch of the best validation value so far (1-based).
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a trajectory; returns the epoch at which the patience rule stops (if any).
    fn stop_epoch(p: &mut Patience, values: &[Option<f64>]) -> Option<usize> {
        values
            .iter()
            .enumerate()
            .find_map(|(i, &v)| p.update(i + 1, v).exhausted.then_some(i + 1))
    }

    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        // ROC-AUC: best 0.75 at epoch 3; 0.74, 0.75 (a tie is no improvement), 0.70 → stop at 6.
        let traj = [0.6, 0.7, 0.75, 0.74, 0.75, 0.70, 0.9].map(Some);
        let mut p = Patience::new(3, 0.0, true);
        assert_eq!(stop_epoch(&mut p, &traj), Some(6));
        assert_eq!((p.best(), p.best_epoch()), (Some(0.75), Some(3)));
    }

    #[test]
    fn min_delta_and_lower_is_better() {
        // RMSE: 1.0, 0.95 (better but not by > 0.1: stale 1, yet the new best model), 0.85
        // (> 0.1 below the reference 1.0: reset), 0.84, 0.83 → stop at 5 with patience 2.
        let traj = [1.0, 0.95, 0.85, 0.84, 0.83].map(Some);
        let mut p = Patience::new(2, 0.1, false);
        let updates: Vec<Update> = traj
            .iter()
            .enumerate()
            .map(|(i, &v)| p.update(i + 1, v))
            .collect();
        assert_eq!(
            updates.iter().map(|u| u.new_best).collect::<Vec<_>>(),
            [true, true, true, true, true]
        );
        assert_eq!(
            updates.iter().map(|u| u.stale_epochs).collect::<Vec<_>>(),
            [0, 1, 0, 1, 2]
        );
        assert!(updates[4].exhausted && !updates[3].exhausted);
        assert_eq!(p.best_epoch(), Some(5));
    }

    #[test]
    fn missing_values_count_against_the_patience() {
        let mut p = Patience::new(2, 0.0, true);
        assert_eq!(stop_epoch(&mut p, &[None, Some(0.5), None, None]), Some(4));
        assert_eq!(p.best_epoch(), Some(2));
        let mut q = Patience::new(5, 0.0, true);
        assert!(!q.update(1, Some(f64::NAN)).new_best);
    }
}
