//! One epoch of the fine-tuning loop: the network being tuned (2D graph model or 1D SMILES
//! Transformer) with its per-row inputs, the training pass (optionally scoring samples for
//! MolPeg against the EMA reference model) and the evaluation of a split.

use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use super::TrainError;
use super::metrics::{self, EvalMetrics};
use super::network::{Inputs, Network};
use super::optim::Optimizer;
use super::predictions::{forward_rows, target_units};
use super::prune::{Pruner, ReferenceModel};
use super::setup;
use crate::data::{Dataset, TaskType};
use crate::models::Collator;
use crate::models::loss::{
    Standardizer, masked_bce_per_sample, masked_bce_with_logits, masked_mse, masked_mse_per_sample,
};

/// Labels of every dataset row in the layout the loop needs.
pub(crate) struct Labels {
    /// Per row, the training targets: `−1/0/1` (classification) or standardised values with NaN
    /// for missing (regression).
    pub(crate) train: Vec<Vec<f32>>,
    /// Per row, the evaluation targets: `−1/0/1`, or raw values (target units).
    pub(crate) eval: Vec<Vec<f32>>,
    /// Regression only: the training-set standardisation.
    pub(crate) standardizer: Option<Standardizer>,
}

/// Everything one epoch needs, borrowed.
pub(crate) struct Ctx<'a> {
    pub(crate) net: &'a Network,
    pub(crate) inputs: &'a Inputs<'a>,
    pub(crate) labels: &'a Labels,
    pub(crate) task_type: TaskType,
    pub(crate) num_tasks: usize,
    pub(crate) batch_size: usize,
    pub(crate) device: Device,
}

/// Training and evaluation targets of every row; regression targets are standardised on the
/// training rows.
pub(crate) fn build_labels(ds: &Dataset, train: &[usize]) -> Result<Labels, TrainError> {
    match ds.task_type {
        TaskType::Classification => {
            let pm1: Vec<Vec<f32>> = ds
                .rows
                .iter()
                .map(|r| r.labels_pm1().into_iter().map(|v| v as f32).collect())
                .collect();
            Ok(Labels {
                train: pm1.clone(),
                eval: pm1,
                standardizer: None,
            })
        }
        TaskType::Regression => {
            let raw: Vec<Vec<f32>> = ds
                .rows
                .iter()
                .map(|r| r.labels.iter().map(|v| v.unwrap_or(f32::NAN)).collect())
                .collect();
            let train_rows: Vec<&[f32]> = train.iter().map(|&p| raw[p].as_slice()).collect();
            let st = Standardizer::fit(&train_rows)?;
            let standardised = raw
                .iter()
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .map(|(t, &v)| ((f64::from(v) - st.mean[t]) / st.std[t]) as f32)
                        .collect()
                })
                .collect();
            Ok(Labels {
                train: standardised,
                eval: raw,
                standardizer: Some(st),
            })
        }
    }
}

/// MolPeg's state during a training pass: the pruner that keeps the scores, the reference
/// model, and the reference's forward passes.
pub(crate) struct Scoring<'a> {
    /// Keeps the scores.
    pub(crate) pruner: &'a mut Pruner,
    /// The EMA reference network (same architecture as the online one).
    pub(crate) reference_net: &'a Network,
    /// Its variables, paired with the online ones.
    pub(crate) reference: &'a ReferenceModel,
    /// Training-list index of each dataset row position (`usize::MAX`: not a training row).
    pub(crate) train_index: &'a [usize],
}

/// What a training pass did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrainStats {
    /// Mean loss (batch-size weighted, before the `1/r` weight).
    pub(crate) loss: f64,
    /// Samples trained on.
    pub(crate) samples: usize,
    /// Time in the reference model's forward passes (MolPeg).
    pub(crate) reference_time: Duration,
}

/// How one training pass runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassOptions {
    /// `(epoch, epochs)` for the progress bar.
    pub(crate) progress: (usize, usize),
    /// Gradient-norm clipping (0: none).
    pub(crate) clip_grad: f64,
    /// Factor of the loss (`1/r` when pruning keeps a fraction `r`).
    pub(crate) loss_weight: f64,
}

/// One pass over the training rows in `order`.
pub(crate) fn train_epoch(
    ctx: &Ctx<'_>,
    collator: &mut Collator,
    opt: &mut Optimizer,
    order: &[usize],
    pass: PassOptions,
    mut scoring: Option<Scoring<'_>>,
) -> Result<TrainStats, TrainError> {
    let PassOptions {
        progress,
        clip_grad,
        loss_weight,
    } = pass;
    let bar = setup::epoch_bar(order.len().div_ceil(ctx.batch_size), progress.0, progress.1);
    let (mut total, mut count) = (0.0, 0usize);
    let mut reference_time = Duration::ZERO;
    for chunk in order.chunks(ctx.batch_size) {
        let rows: Vec<&[f32]> = chunk
            .iter()
            .map(|&p| ctx.labels.train[p].as_slice())
            .collect();
        let y = collator.labels(&rows, ctx.device)?;
        let out = ctx
            .net
            .forward(ctx.inputs, collator, chunk, ctx.device, true)?;
        let loss = match ctx.task_type {
            TaskType::Classification => masked_bce_with_logits(&out, &y)?,
            TaskType::Regression => masked_mse(&out, &y)?,
        };
        if let Some(s) = scoring.as_mut() {
            let t0 = Instant::now();
            let reference_out = tch::no_grad(|| {
                s.reference_net
                    .forward(ctx.inputs, collator, chunk, ctx.device, false)
            })?;
            let per_sample = |o: &Tensor| -> Result<Vec<f32>, TrainError> {
                let l = match ctx.task_type {
                    TaskType::Classification => masked_bce_per_sample(o, &y)?,
                    TaskType::Regression => masked_mse_per_sample(o, &y)?,
                };
                Ok(Vec::<f32>::try_from(l.f_to_device(Device::Cpu)?)?)
            };
            let online = per_sample(&out.detach())?;
            let reference = per_sample(&reference_out)?;
            reference_time += t0.elapsed();
            for ((&p, a), b) in chunk.iter().zip(&online).zip(&reference) {
                s.pruner
                    .record(s.train_index[p], (f64::from(*a) - f64::from(*b)).abs());
            }
        }
        let weighted = if loss_weight == 1.0 {
            loss.shallow_clone()
        } else {
            loss.f_mul_scalar(loss_weight)?
        };
        opt.zero_grad()?;
        weighted.f_backward()?;
        if clip_grad > 0.0 {
            opt.clip_grad_norm(clip_grad);
        }
        opt.step()?;
        if let Some(s) = scoring.as_ref() {
            let t0 = Instant::now();
            s.reference.update()?;
            reference_time += t0.elapsed();
        }
        let value = f64::try_from(&loss)?;
        total += value * chunk.len() as f64;
        count += chunk.len();
        bar.inc(1);
        bar.set_message(format!("{:.4}", total / count as f64));
    }
    bar.finish_and_clear();
    Ok(TrainStats {
        loss: total / count.max(1) as f64,
        samples: count,
        reference_time,
    })
}

/// Evaluation-mode metrics (and loss) of the rows at `positions`; all `None` when empty.
pub(crate) fn evaluate(
    ctx: &Ctx<'_>,
    collator: &mut Collator,
    positions: &[usize],
) -> Result<EvalMetrics, TrainError> {
    if positions.is_empty() {
        return Ok(EvalMetrics::default());
    }
    let t = ctx.num_tasks;
    let outputs = forward_rows(
        ctx.net,
        ctx.inputs,
        collator,
        positions,
        ctx.batch_size,
        ctx.device,
        || {},
    )?;
    let mut m = match ctx.task_type {
        TaskType::Classification => {
            let labels: Vec<f32> = positions
                .iter()
                .flat_map(|&p| ctx.labels.eval[p].iter().copied())
                .collect();
            let mut m = metrics::classification(&outputs, &labels, t);
            m.loss = bce_loss(&outputs, &labels);
            m
        }
        TaskType::Regression => {
            let standardised: Vec<f32> = positions
                .iter()
                .flat_map(|&p| ctx.labels.train[p].iter().copied())
                .collect();
            let raw: Vec<f32> = positions
                .iter()
                .flat_map(|&p| ctx.labels.eval[p].iter().copied())
                .collect();
            let loss = mse_loss(&outputs, &standardised);
            let predictions: Vec<f32> = match &ctx.labels.standardizer {
                Some(st) => target_units(&outputs, Some(st), t)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                None => outputs,
            };
            let mut m = metrics::regression(&predictions, &raw, t);
            m.loss = loss;
            m
        }
    };
    if m.loss.is_some_and(|l| !l.is_finite()) {
        m.loss = None;
    }
    Ok(m)
}

/// Mean BCE-with-logits over present (non-zero) `−1/1` labels, in f64.
fn bce_loss(logits: &[f32], labels: &[f32]) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for (&z, &y) in logits.iter().zip(labels) {
        if y != 0.0 {
            let (z, target) = (f64::from(z), if y > 0.0 { 1.0 } else { 0.0 });
            sum += z.max(0.0) - z * target + (-z.abs()).exp().ln_1p();
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Mean squared error over present (non-NaN) standardised targets, in f64.
fn mse_loss(pred: &[f32], target: &[f32]) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for (&p, &y) in pred.iter().zip(target) {
        if !y.is_nan() {
            sum += (f64::from(p) - f64::from(y)).powi(2);
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_losses_by_hand() {
        let l = bce_loss(&[0.0, 2.0, 5.0], &[1.0, -1.0, 0.0]).unwrap();
        let expect = (2f64.ln() + (1.0 + 2f64.exp()).ln()) / 2.0;
        assert!((l - expect).abs() < 1e-12);
        assert_eq!(bce_loss(&[1.0], &[0.0]), None);
        assert_eq!(mse_loss(&[1.0, 3.0], &[0.0, f32::NAN]), Some(1.0));
    }
}
