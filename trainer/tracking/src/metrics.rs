//! Evaluation metrics of a split: ROC-AUC and PRC-AUC (average precision) per task for
//! classification, RMSE and MAE for regression, and the [`EvalMetrics`] record that carries them
//! into `epochs.jsonl` and `summary.json`, with the [`Metric`] that selects a run's epochs.
//!
//! Classification labels follow pretrain-gnns: `1` positive, `−1` negative, `0` missing. A task
//! counts only when the split holds both classes for it; the reported value is the mean over the
//! tasks that count (`None` when none does). Ties in the scores are handled exactly as
//! scikit-learn does (`roc_auc_score`: the trapezoidal rule, i.e. average ranks;
//! `average_precision_score`: one step per distinct threshold). Regression metrics are computed
//! on the de-standardised scale (target units), per task over the present (non-NaN) targets, and
//! averaged over the tasks having any.

use serde::{Deserialize, Serialize};

/// Evaluation metrics (ordered as declared, for grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Area under the ROC curve (higher is better), mean over tasks with both classes.
    RocAuc,
    /// Area under the precision-recall curve (higher is better).
    PrcAuc,
    /// Root mean squared error (lower is better).
    Rmse,
    /// Mean absolute error (lower is better).
    Mae,
}

impl Metric {
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::RocAuc | Self::PrcAuc)
    }
}

/// Metrics of one model on one split. Fields that do not apply (or cannot be computed) are
/// `None` and serialise as `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean loss over the present labels (BCE, or MSE on standardised targets).
    pub loss: Option<f64>,
    /// Mean ROC-AUC over the tasks having both classes.
    pub roc_auc: Option<f64>,
    /// Mean average precision over the tasks having both classes.
    pub prc_auc: Option<f64>,
    /// Mean per-task root mean squared error (target units).
    pub rmse: Option<f64>,
    /// Mean per-task mean absolute error (target units).
    pub mae: Option<f64>,
    /// Number of tasks that entered the means.
    pub tasks_evaluated: usize,
}

impl EvalMetrics {
    /// The value of `metric`, if it was computed.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::RocAuc => self.roc_auc,
            Metric::PrcAuc => self.prc_auc,
            Metric::Rmse => self.rmse,
            Metric::Mae => self.mae,
        }
    }
}

/// ROC-AUC of `scores` against binary `positive` flags; `None` unless both classes occur.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != positive.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann–Whitney U with average ranks over tied scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = order[i..=j].iter().filter(|&&k| positive[k]).count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision–recall curve as scikit-learn's
/// `average_precision_score`); `None` unless both classes occur.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 || n_pos == positive.len() || scores.len() != positive.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        // One threshold per distinct score: take the whole tied group at once.
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if positive[order[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        i = j;
    }
    Some(ap)
}

/// Classification metrics of row-major `[n, num_tasks]` scores (logits or probabilities) against
/// `−1/0/1` labels of the same shape. Fills `roc_auc`, `prc_auc` and `tasks_evaluated`.
pub fn classification(scores: &[f32], labels: &[f32], num_tasks: usize) -> EvalMetrics {
    let mut rocs = Vec::new();
    let mut prcs = Vec::new();
    if num_tasks > 0 && scores.len() == labels.len() {
        for task in 0..num_tasks {
            let (mut s, mut p) = (Vec::new(), Vec::new());
            for (score, label) in scores
                .iter()
                .skip(task)
                .step_by(num_tasks)
                .zip(labels.iter().skip(task).step_by(num_tasks))
            {
                if *label != 0.0 {
                    s.push(f64::from(*score));
                    p.push(*label > 0.0);
                }
            }
            if let (Some(r), Some(a)) = (roc_auc(&s, &p), average_precision(&s, &p)) {
                rocs.push(r);
                prcs.push(a);
            }
        }
    }
    EvalMetrics {
        roc_auc: mean(&rocs),
        prc_auc: mean(&prcs),
        tasks_evaluated: rocs.len(),
        ..Default::default()
    }
}

/// Regression metrics of row-major `[n, num_tasks]` predictions against targets (both in target
/// units; NaN targets are missing). Fills `rmse`, `mae` and `tasks_evaluated`.
pub fn regression(predictions: &[f32], targets: &[f32], num_tasks: usize) -> EvalMetrics {
    let mut rmses = Vec::new();
    let mut maes = Vec::new();
    if num_tasks > 0 && predictions.len() == targets.len() {
        for task in 0..num_tasks {
            let (mut sq, mut abs, mut n) = (0.0, 0.0, 0usize);
            for (p, t) in predictions
                .iter()
                .skip(task)
                .step_by(num_tasks)
                .zip(targets.iter().skip(task).step_by(num_tasks))
            {
                if !t.is_nan() {
                    let d = f64::from(*p) - f64::from(*t);
                    sq += d * d;
                    abs += d.abs();
                    n += 1;
                }
            }
            if n > 0 {
                rmses.push((sq / n as f64).sqrt());
                maes.push(abs / n as f64);
            }
        }
    }
    EvalMetrics {
        rmse: mean(&rmses),
        mae: mean(&maes),
        tasks_evaluated: rmses.len(),
        ..Default::default()
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn roc_auc_and_average_precision_by_hand() {
        // scikit-learn's documentation example: AUC 0.75, AP 0.8333.
        let s = [0.1, 0.4, 0.35, 0.8];
        let p = [false, false, true, true];
        assert!(close(roc_auc(&s, &p), 0.75));
        assert!(close(average_precision(&s, &p), 5.0 / 6.0));
        // Perfect and reversed rankings.
        assert!(close(roc_auc(&[0.0, 1.0], &[false, true]), 1.0));
        assert!(close(roc_auc(&[1.0, 0.0], &[false, true]), 0.0));
        assert!(close(average_precision(&[1.0, 0.0], &[false, true]), 0.5));
    }

    #[test]
    fn ties_count_half() {
        // One positive ties with a negative: U = 1 (0.9 > both) + 0.5 (0.5 vs 0.5) + 1 + 1.
        let s = [0.2, 0.5, 0.5, 0.9];
        let p = [false, false, true, true];
        assert!(close(roc_auc(&s, &p), 0.875));
        // Thresholds 0.9 (P 1, R ½), 0.5 (P ⅔, R 1): AP = ½·1 + ½·⅔.
        assert!(close(average_precision(&s, &p), 0.5 + 1.0 / 3.0));
        // All scores equal: chance level, and AP = the positive share.
        let flat = [0.3; 4];
        let q = [false, true, false, true];
        assert!(close(roc_auc(&flat, &q), 0.5));
        assert!(close(average_precision(&flat, &q), 0.5));
    }

    #[test]
    fn one_class_is_undefined() {
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn multitask_means_skip_missing_labels_and_one_class_tasks() {
        // Two tasks, four molecules, row-major. Task 0: labels −1, 1, 0 (missing), 1 → with the
        // missing row left out, scores 0.1, 0.9, 0.8 are perfectly ranked. Task 1: only
        // positives present → not evaluated.
        let scores = [0.1, 0.0, 0.9, 0.5, 0.05, 0.2, 0.8, 0.7];
        let labels = [-1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let m = classification(&scores, &labels, 2);
        assert_eq!(m.tasks_evaluated, 1);
        assert!(close(m.roc_auc, 1.0));
        assert!(close(m.prc_auc, 1.0));
        assert_eq!(m.rmse, None);
        assert_eq!(classification(&scores, &[0.0; 8], 2).roc_auc, None);
    }

    #[test]
    fn regression_by_hand() {
        // Task 0: errors 1, −3 → RMSE √5, MAE 2. Task 1: one present error 0.5.
        let pred = [2.0, 1.0, -1.0, 7.0];
        let target = [1.0, 0.5, 2.0, f32::NAN];
        let m = regression(&pred, &target, 2);
        assert_eq!(m.tasks_evaluated, 2);
        assert!(close(m.rmse, (5f64.sqrt() + 0.5) / 2.0));
        assert!(close(m.mae, (2.0 + 0.5) / 2.0));
        assert_eq!(m.get(Metric::Rmse), m.rmse);
        assert_eq!(regression(&[1.0], &[f32::NAN], 1).rmse, None);
    }
}
