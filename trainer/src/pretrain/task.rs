//! Pre-training as a task of the one epoch loop ([`crate::train::epochs`]): per epoch, the
//! molecules in a seeded shuffled order (fine-tuning's [`shuffle`]), masks from a seeded
//! [`Stream`] of the same seed and epoch, Adam (or AdamW) over every variable with optional
//! gradient clipping, a progress bar and the checkpoint rewritten; after the loop's meter
//! reading, one log line and the log rewritten (before the loop's resume state: an epoch logged
//! but not saved runs again). An [`Objective`] says how a batch becomes a loss and how its
//! weights are saved.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::PretrainError;
use super::output::{Output, PretrainEpoch, PretrainLog};
use crate::config::PretrainConfig;
use crate::emissions::EpochEnergy;
use crate::policy::StopReason;
use crate::train::epochs::{EpochTask, energy_text};
use crate::train::optim::Optimizer;
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
pub struct PassStats {
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

/// Pre-training as the loop sees it: the objective's epochs, recorded into the run's log.
pub struct PretrainTask<'a> {
    /// The objective trained.
    pub objective: &'a mut dyn Objective,
    /// The run's configuration.
    pub config: &'a PretrainConfig,
    /// The log, one record appended per epoch.
    pub log: &'a mut PretrainLog,
    /// Where the checkpoint and the log are written.
    pub out: &'a Output,
    /// The optimiser of the objective's variables.
    pub optimizer: Optimizer,
}

impl EpochTask for PretrainTask<'_> {
    type Error = PretrainError;
    type Pass = PassStats;

    fn model(&self) -> &VarStore {
        self.objective.var_store()
    }

    fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    fn run_epoch(&mut self, epoch: usize) -> Result<PassStats, PretrainError> {
        let opt = &mut self.optimizer;
        let (train, seed) = (&self.config.train, self.config.seed);
        let n = self.objective.molecules();
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, seed, epoch as u64);
        let mut masks = Stream::new(seed, epoch as u64, MASK_SALT);
        let bar = setup::epoch_bar(n.div_ceil(train.batch_size), epoch, train.epochs);
        let mut stats = PassStats::default();
        for chunk in order.chunks(train.batch_size) {
            bar.inc(1);
            let Some(batch) = self.objective.forward(chunk, &mut masks)? else {
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
        // Within the epoch's energy: the checkpoint is part of every epoch's work.
        self.objective.save()?;
        Ok(stats)
    }

    fn end_epoch(
        &mut self,
        epoch: usize,
        stats: PassStats,
        energy: Option<&EpochEnergy>,
        seconds: f64,
    ) -> Result<Option<StopReason>, PretrainError> {
        let record = PretrainEpoch {
            epoch,
            loss: stats.loss(),
            accuracy: stats.accuracy(),
            majority_baseline: stats.majority_baseline(),
            predictions: stats.predictions,
            molecules: stats.molecules,
            seconds,
            energy_j: energy.map(|e| e.energy_j),
            co2_g: energy.map(|e| e.co2_g),
            meter_source: energy.map(|e| e.source.to_string()),
        };
        tracing::info!(
            "epoch {epoch}/{}: loss {:.4}, masked accuracy {:.4} (majority {:.4}, {} predictions), \
             {:.1} s{}",
            self.config.train.epochs,
            record.loss,
            record.accuracy,
            record.majority_baseline,
            record.predictions,
            record.seconds,
            energy_text(energy),
        );
        if let Some(fault) = energy.and_then(|e| e.fault.as_ref()) {
            tracing::warn!("epoch {epoch}: meter: {fault}");
        }
        self.log.epochs.push(record);
        self.out.write_log(self.log)?;
        Ok(None)
    }
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
