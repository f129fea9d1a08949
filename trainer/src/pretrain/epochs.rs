//! The epoch loop both pre-training objectives share: per epoch, the molecules in a seeded
//! shuffled order (the fine-tuning loop's [`shuffle`]), masks from a seeded [`Stream`] of the
//! same seed and epoch, libtorch's generator reseeded for the epoch (dropout), Adam (or AdamW)
//! over every variable with optional gradient clipping, a progress bar, then the checkpoint and
//! the log rewritten, a meter reading, one log line, and the state `--resume` continues from
//! ([`resume`], after the log: an epoch logged but not saved runs again). An [`Objective`] says
//! how a batch becomes a loss and how its weights are saved.
//!
//! Everything an epoch draws is keyed by `(seed, epoch)`, so a run resumed from the state of
//! epoch k with the same `--threads` is bit-identical to an uninterrupted one.

use std::collections::HashMap;
use std::time::Instant;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::PretrainError;
use super::output::{Output, PretrainEpoch, PretrainLog};
use crate::cli::PretrainArgs;
use crate::emissions::EpochMeter;
use crate::train::resume::{self, Saved, Snapshot};
use crate::train::seeded::{Stream, shuffle};
use crate::train::setup;

/// Salt of the mask stream (keeps it apart from the data order's stream).
const MASK_SALT: u64 = 0x6d61_736b;

/// The predictions one batch asks for.
#[derive(Debug)]
pub struct BatchOutput {
    /// `[P, C]` logits of the masked predictions.
    pub logits: Tensor,
    /// `[P]` their targets on the same device.
    pub targets: Tensor,
    /// The same targets on the host (for the majority baseline).
    pub target_values: Vec<i64>,
}

/// A self-supervised objective over a corpus of molecules.
pub trait Objective {
    /// Molecules to train on.
    fn molecules(&self) -> usize;

    /// The variables the optimiser trains (the encoder and the objective's head).
    fn var_store(&self) -> &VarStore;

    /// Parameters of what [`Objective::save`] writes.
    fn encoder_parameters(&self) -> i64;

    /// The masked predictions of the molecules `items` in training mode, masks drawn from
    /// `masks`; `None` when the batch cannot be trained on (it is then skipped).
    fn forward(
        &mut self,
        items: &[usize],
        masks: &mut Stream,
    ) -> Result<Option<BatchOutput>, PretrainError>;

    /// Writes the current weights to the output (atomically).
    fn save(&self) -> Result<(), PretrainError>;
}

/// What one epoch's training pass measured.
#[derive(Debug, Default)]
struct PassStats {
    loss_sum: f64,
    predictions: usize,
    correct: i64,
    molecules: usize,
    label_counts: HashMap<i64, usize>,
}

impl PassStats {
    fn loss(&self) -> f64 {
        self.loss_sum / self.predictions.max(1) as f64
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.predictions.max(1) as f64
    }

    fn majority_baseline(&self) -> f64 {
        let most = self.label_counts.values().copied().max().unwrap_or(0);
        most as f64 / self.predictions.max(1) as f64
    }
}

/// The run's wall clock: this process's start and the seconds of the processes before it.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// When this process started the run.
    pub started: Instant,
    /// Seconds the interrupted processes spent (0 for a fresh run).
    pub earlier: f64,
}

impl RunClock {
    /// Seconds of the run so far, over all its processes.
    pub fn seconds(&self) -> f64 {
        self.earlier + self.started.elapsed().as_secs_f64()
    }
}

/// Runs the epochs of `objective` after those already in `log` (with `--resume`, from the state
/// `resumed` of the last of them), appending to `log` and rewriting the checkpoint, the log and
/// the resume state into `out` after each; removes the state at the end.
pub fn run_epochs(
    objective: &mut dyn Objective,
    args: &PretrainArgs,
    mut meter: Option<&mut EpochMeter>,
    log: &mut PretrainLog,
    out: &Output,
    resumed: Option<Saved>,
    clock: RunClock,
) -> Result<(), PretrainError> {
    let (train, seed) = (&args.train, args.seed);
    let mut opt = setup::optimizer(objective.var_store(), train)?;
    if let Some(saved) = resumed {
        saved.restore(objective.var_store(), &mut opt, None, None)?;
    }
    let saves_state = resume::supported(&opt);
    if !saves_state {
        tracing::warn!(
            "no resume state will be saved: libtorch's optimiser (parameters of mixed kinds or \
             devices) keeps moments that cannot be read"
        );
    }
    let n = objective.molecules();
    for epoch in log.epochs.len() + 1..=train.epochs {
        let t0 = Instant::now();
        setup::seed_epoch(seed, epoch);
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, seed, epoch as u64);
        let mut masks = Stream::new(seed, epoch as u64, MASK_SALT);
        let bar = setup::epoch_bar(n.div_ceil(train.batch_size), epoch, train.epochs);
        let mut stats = PassStats::default();
        for chunk in order.chunks(train.batch_size) {
            bar.inc(1);
            let Some(batch) = objective.forward(chunk, &mut masks)? else {
                tracing::debug!("epoch {epoch}: skipped a batch that cannot be trained on");
                continue;
            };
            let loss = batch.logits.f_cross_entropy_loss::<Tensor>(
                &batch.targets,
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            )?;
            opt.zero_grad()?;
            loss.f_backward()?;
            if train.clip_grad > 0.0 {
                opt.clip_grad_norm(train.clip_grad);
            }
            opt.step()?;
            let correct = tch::no_grad(|| {
                batch
                    .logits
                    .f_argmax(-1, false)?
                    .f_eq_tensor(&batch.targets)?
                    .f_sum(Kind::Int64)
            })?;
            let predictions = batch.target_values.len();
            stats.loss_sum += f64::try_from(&loss)? * predictions as f64;
            stats.correct += i64::try_from(&correct)?;
            stats.predictions += predictions;
            stats.molecules += chunk.len();
            for &t in &batch.target_values {
                *stats.label_counts.entry(t).or_default() += 1;
            }
            bar.set_message(format!("{:.4}", stats.loss()));
        }
        bar.finish_and_clear();
        if stats.predictions == 0 {
            return Err(PretrainError::Options(
                "no batch could be trained on (molecules of one atom with --batch-size 1?)".into(),
            ));
        }
        objective.save()?;
        let energy = meter.as_mut().map(|m| m.read_epoch());
        let record = PretrainEpoch {
            epoch,
            loss: stats.loss(),
            accuracy: stats.accuracy(),
            majority_baseline: stats.majority_baseline(),
            predictions: stats.predictions,
            molecules: stats.molecules,
            seconds: t0.elapsed().as_secs_f64(),
            energy_j: energy.as_ref().map(|e| e.energy_j),
            co2_g: energy.as_ref().map(|e| e.co2_g),
            meter_source: energy.as_ref().map(|e| e.source.to_string()),
        };
        tracing::info!(
            "epoch {epoch}/{}: loss {:.4}, masked accuracy {:.4} (majority {:.4}, {} predictions), \
             {:.1} s{}",
            train.epochs,
            record.loss,
            record.accuracy,
            record.majority_baseline,
            record.predictions,
            record.seconds,
            energy.as_ref().map_or_else(String::new, |e| format!(
                ", {:.2} J, {:.3e} g CO2-eq, {}",
                e.energy_j, e.co2_g, e.source
            )),
        );
        if let Some(fault) = energy.as_ref().and_then(|e| e.fault.as_ref()) {
            tracing::warn!("epoch {epoch}: meter: {fault}");
        }
        log.epochs.push(record);
        out.write_log(log)?;
        // Not after the last epoch: the run ends next (an interruption there reruns it).
        if saves_state && epoch < train.epochs {
            resume::save(
                &out.state(),
                &Snapshot {
                    epochs: epoch,
                    seconds: clock.seconds(),
                    best_epoch: None,
                    meter: meter.as_deref().map(EpochMeter::totals),
                    model: objective.var_store(),
                    optimizer: &opt,
                    reference: None,
                    pruner: None,
                },
            )?;
        }
    }
    resume::remove(&out.state())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_weight_losses_by_predictions() {
        let mut s = PassStats {
            loss_sum: 2.0 * 3.0 + 1.0 * 1.0,
            predictions: 4,
            correct: 3,
            ..PassStats::default()
        };
        s.label_counts.extend([(5, 3), (7, 1)]);
        assert_eq!(s.loss(), 7.0 / 4.0);
        assert_eq!(s.accuracy(), 0.75);
        assert_eq!(s.majority_baseline(), 0.75);
        assert_eq!(PassStats::default().accuracy(), 0.0);
    }
}
