//! The one epoch loop of `anges-train`: fine-tuning ([`super::finetune`]) and pre-training
//! ([`crate::pretrain`]) are both an [`EpochTask`] driven by [`run_epochs`].
//!
//! Per epoch the loop reseeds libtorch's generator from `(seed, epoch)`
//! ([`setup::seed_epoch`]: the dropout masks), lets the task run its epoch (its data order, its
//! training pass, its evaluation or checkpoint), takes a fresh meter reading that includes that
//! work, hands the task the reading and the epoch's wall time to record and judge, saves the
//! state `--resume` continues from ([`resume`]) and lets the task write what must come after the
//! state (fine-tuning's best weights). It ends at the last epoch or when the task says stop.
//!
//! Everything an epoch draws is keyed by `(seed, epoch)`, so a run resumed from the state of
//! epoch k with the same `--threads` is bit-identical to an uninterrupted one.

use std::path::Path;
use std::time::Instant;

use tch::nn::VarStore;

use super::TrainError;
use super::optim::Optimizer;
use super::prune::Pruner;
use super::resume::{self, Snapshot};
use super::setup;
use crate::config::MeterConfig;
use crate::emissions::{EpochEnergy, EpochMeter, LedgerTotals, MeterError};
use crate::policy::StopReason;

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

/// What the resume state holds besides the model and its optimiser.
#[derive(Default)]
pub struct StateExtras<'a> {
    /// The best validation epoch so far.
    pub best_epoch: Option<usize>,
    /// MolPeg's reference model.
    pub reference: Option<&'a VarStore>,
    /// The pruner (its scores).
    pub pruner: Option<&'a Pruner>,
}

/// One kind of training run, seen by the loop.
pub trait EpochTask {
    /// The task's error (it takes the loop's own [`TrainError`]s).
    type Error: From<TrainError>;
    /// What an epoch's work measured, before the meter reading.
    type Pass;

    /// The model being trained (saved in the resume state).
    fn model(&self) -> &VarStore;

    /// Its optimiser (whose moments the resume state holds).
    fn optimizer(&self) -> &Optimizer;

    /// Epoch `epoch`'s work: its data order, its training pass, and whatever must be in the
    /// epoch's energy (evaluation, the checkpoint).
    fn run_epoch(&mut self, epoch: usize) -> Result<Self::Pass, Self::Error>;

    /// Records epoch `epoch` from its pass, its meter reading (`None` unmetered) and its wall
    /// seconds (work and reading), logs it, and says whether the run stops after it.
    fn end_epoch(
        &mut self,
        epoch: usize,
        pass: Self::Pass,
        energy: Option<&EpochEnergy>,
        seconds: f64,
    ) -> Result<Option<StopReason>, Self::Error>;

    /// What the resume state holds besides the model and the optimiser.
    fn state_extras(&self) -> StateExtras<'_> {
        StateExtras::default()
    }

    /// What must be written after the state of epoch `epoch` (so that nothing on disk is newer
    /// than the state).
    fn after_state(&mut self, _epoch: usize) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Where and how the loop runs.
#[derive(Debug)]
pub struct EpochPlan<'a> {
    /// The run's seed.
    pub seed: u64,
    /// The first epoch to run (1, or the one after a resumed state's).
    pub first: usize,
    /// The last epoch to run.
    pub last: usize,
    /// Where the resume state is written.
    pub state: &'a Path,
    /// The run's wall clock.
    pub clock: RunClock,
}

/// Runs epochs `plan.first..=plan.last` of `task`, reading `meter` after each (when metered)
/// and saving the resume state after each but the last (and a stopping one), under a whole-run
/// progress bar ([`crate::progress::run_bar`]: hidden off a terminal); returns why the loop
/// ended. The caller removes the state when the run is finished.
pub fn run_epochs<T: EpochTask>(
    task: &mut T,
    mut meter: Option<&mut EpochMeter>,
    plan: &EpochPlan<'_>,
) -> Result<StopReason, T::Error> {
    let saves_state = resume::supported(task.optimizer());
    if !saves_state {
        tracing::warn!(
            "no resume state will be saved: libtorch's optimiser (parameters of mixed kinds or \
             devices) keeps moments that cannot be read"
        );
    }
    let bar = crate::progress::run_bar(plan.first, plan.last);
    for epoch in plan.first..=plan.last {
        let t0 = Instant::now();
        setup::seed_epoch(plan.seed, epoch);
        let pass = task.run_epoch(epoch)?;
        // A fresh reading that includes this epoch's work.
        let energy = meter.as_mut().map(|m| m.read_epoch());
        let seconds = t0.elapsed().as_secs_f64();
        let stop = task.end_epoch(epoch, pass, energy.as_ref(), seconds)?;
        // Not after the last epoch: the run ends next (an interruption there reruns that epoch),
        // and work after the last meter reading would be left out of the run's energy.
        if saves_state && stop.is_none() && epoch < plan.last {
            let t_state = Instant::now();
            let extras = task.state_extras();
            resume::save(
                plan.state,
                &Snapshot {
                    epochs: epoch,
                    seconds: plan.clock.seconds(),
                    best_epoch: extras.best_epoch,
                    meter: meter.as_deref().map(EpochMeter::totals),
                    model: task.model(),
                    optimizer: task.optimizer(),
                    reference: extras.reference,
                    pruner: extras.pruner,
                },
            )?;
            tracing::debug!(
                seconds = t_state.elapsed().as_secs_f64(),
                "epoch {epoch}: resume state saved"
            );
        }
        task.after_state(epoch)?;
        bar.inc(1);
        if let Some(reason) = stop {
            return Ok(reason);
        }
    }
    Ok(StopReason::MaxEpochs)
}

/// Starts metering the run as `config` says (`None` unmetered), as the job `job_name`; a resumed
/// run carries the `earlier` processes' totals over.
pub fn start_meter(
    config: &MeterConfig,
    job_name: &str,
    earlier: Option<LedgerTotals>,
) -> Result<Option<EpochMeter>, MeterError> {
    let mut meter = EpochMeter::start(config, job_name)?;
    if let Some(m) = &mut meter {
        tracing::debug!("meter: {}", m.describe());
        if let Some(totals) = earlier {
            m.carry_over(totals);
        }
    }
    Ok(meter)
}

/// The log suffix of an epoch's reading: `, 12.34 J, 5.678e-4 g CO2-eq, local` (empty
/// unmetered).
pub fn energy_text(energy: Option<&EpochEnergy>) -> String {
    energy.map_or_else(String::new, |e| {
        format!(
            ", {:.2} J, {:.3e} g CO2-eq, {}",
            e.energy_j, e.co2_g, e.source
        )
    })
}
