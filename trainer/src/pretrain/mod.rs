//! `anges-train pretrain`: self-supervised pre-training on a SMILES corpus, whose output
//! fine-tuning loads with `--pretrained` (or finds in the model cache folder by itself).
//!
//! [`run_pretrain`] checks the flags and the output place ([`output`]), reads and featurises the
//! corpus ([`corpus`]: invalid rows are skipped, logged and counted), builds the objective —
//! attribute masking for GIN/GCN ([`graph`], masks from [`atom_masking`]) or masked-language
//! modelling for the 1D encoder ([`sequence`], masks from [`token_masking`]) — and runs the
//! epochs ([`epochs`]): seeded order and masks, Adam, progress bar, a meter reading, the
//! checkpoint, the machine-readable log ([`PretrainLog`]) and the resume state rewritten after
//! every epoch. `--resume` continues an interrupted run from that state ([`resume_point`]),
//! bit-identically with the same `--threads`.
//!
//! Not built: bond masking (pretrain-gnns' `--mask_edge`) and continuing 1D pre-training from a
//! Hugging Face folder.

pub(crate) mod atom_masking;
pub mod corpus;
pub(crate) mod graph;
pub mod output;
pub(crate) mod sequence;
pub(crate) mod task;
pub(crate) mod token_masking;

use std::path::PathBuf;
use std::time::Instant;

use output::{CorpusCounts, LoggedRun, Output};
pub use output::{PretrainEpoch, PretrainLog};

use crate::checkpoint::CheckpointError;
use crate::config::PretrainConfig;
use crate::data::DataError;
use crate::emissions::{EpochMeter, MeterError};
use crate::featurize::TokenizeError;
use crate::models::ModelError;
use crate::runtime::DeviceUnavailable;
use crate::train::epochs::{EpochPlan, RunClock, run_epochs, start_meter};
use crate::train::resume::{self, Saved};
use crate::train::{TrainError, setup};
use task::{Objective, PretrainTask};

/// Why a pre-training run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// An invalid value or combination of flags.
    #[error("invalid options: {0}")]
    Options(String),
    /// `--corpus` names no file.
    #[error("corpus {}: no such file", .0.display())]
    NoCorpus(PathBuf),
    /// The corpus could not be read (the message names the file and line).
    #[error(transparent)]
    Corpus(#[from] DataError),
    /// Every row of the corpus was skipped.
    #[error("corpus {}: no usable molecule in {rows} row(s) read (skipped: {skipped})", path.display())]
    EmptyCorpus {
        /// The corpus.
        path: PathBuf,
        /// Data rows read.
        rows: usize,
        /// Skips by reason.
        skipped: String,
    },
    /// The output exists and `--overwrite` was not given.
    #[error("{} already exists: pass --overwrite to replace it, or another --out", .0.display())]
    OutputExists(PathBuf),
    /// The requested device is not available.
    #[error(transparent)]
    Device(#[from] DeviceUnavailable),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tokeniser could not be read or written.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A checkpoint could not be read, applied or written.
    #[error("{}: {source}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        source: CheckpointError,
    },
    /// The meter could not be started as asked.
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// `--resume` was refused, or the resume state could not be read, restored or written.
    #[error(transparent)]
    Resume(#[from] TrainError),
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<crate::config::ConfigError> for PretrainError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Options(e.0)
    }
}

impl PretrainError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Runs `anges-train pretrain` as `args` describe; returns its log (also written next to the
/// checkpoint).
pub fn run_pretrain(args: &PretrainConfig) -> Result<PretrainLog, PretrainError> {
    let started = Instant::now();
    args.validate()?;
    let out = Output::resolve(args)?;
    // `--resume`: the flags must be the run's, and its state readable, before any work.
    let resumed = args.resume.then(|| resume_point(args, &out)).transpose()?;
    setup::apply_threads(args.compute.threads).map_err(PretrainError::Options)?;
    let device = args.compute.device.resolve()?;
    let is_graph = args.model.is_graph();
    let corpus = corpus::read_corpus(
        &args.corpus,
        args.smiles_column.as_deref(),
        args.limit,
        is_graph,
    )?;
    setup::seed_torch(args.seed);
    let mut log = PretrainLog::new(args, &corpus, &out, device);
    let mut objective: Box<dyn Objective> = if is_graph {
        Box::new(graph::AttributeMasking::new(args, corpus, device, &out)?)
    } else {
        let (mlm, dropped) = sequence::MaskedLanguageModelling::new(args, corpus, device, &out)?;
        log.read.skipped.extend(dropped);
        log.read.molecules = mlm.molecules();
        Box::new(mlm)
    };
    log.parameters = objective.encoder_parameters();
    let clock = RunClock {
        started,
        earlier: resumed
            .as_ref()
            .map_or(0.0, |(saved, _)| saved.progress.seconds),
    };
    let earlier_meter = resumed.as_ref().and_then(|(saved, _)| saved.progress.meter);
    let saved = match resumed {
        Some((saved, logged)) => {
            check_same_corpus(&logged.corpus, &log.read, args)?;
            tracing::info!(
                "resuming {} after epoch {} of {} ({:.0} s so far)",
                out.checkpoint().display(),
                logged.epochs.len(),
                args.train.epochs,
                clock.earlier
            );
            log.epochs = logged.epochs;
            Some(saved)
        }
        None => None,
    };
    tracing::info!(
        "pre-training {:?} ({}) on {} molecules of {} ({} rows read{}), {device:?}; writing {}",
        args.model,
        log.objective,
        log.read.molecules,
        args.corpus.display(),
        log.read.rows_read,
        skipped_text(&log),
        out.checkpoint().display()
    );
    let mut meter = start_meter(
        &args.meter,
        &format!("anges-train pretrain {}", log.model_name()),
        earlier_meter,
    )?;
    log.meter = meter.as_ref().map(EpochMeter::describe);
    let run = train_epochs(
        objective.as_mut(),
        args,
        meter.as_mut(),
        &mut log,
        &out,
        saved,
        clock,
    );
    if let Some(fin) = meter.map(EpochMeter::finish) {
        let (energy_j, co2_g) = fin.total();
        log.energy_j = Some(energy_j);
        log.co2_g = Some(co2_g);
        log.measured = Some(fin.measured);
    }
    log.seconds = clock.seconds();
    out.write_log(&log)?;
    run?;
    Ok(log)
}

/// Runs the epochs of `objective` after those already in `log` (with `--resume`, from the state
/// `resumed` of the last of them) in the one epoch loop; removes the state at the end.
fn train_epochs(
    objective: &mut dyn Objective,
    config: &PretrainConfig,
    meter: Option<&mut EpochMeter>,
    log: &mut PretrainLog,
    out: &Output,
    resumed: Option<Saved>,
    clock: RunClock,
) -> Result<(), PretrainError> {
    let mut optimizer = setup::optimizer(objective.var_store(), &config.train)?;
    if let Some(saved) = resumed {
        saved.restore(objective.var_store(), &mut optimizer, None, None)?;
    }
    let plan = EpochPlan {
        seed: config.seed,
        first: log.epochs.len() + 1,
        last: config.train.epochs,
        state: &out.state(),
        clock,
    };
    let mut task = PretrainTask {
        objective,
        config,
        log,
        out,
        optimizer,
    };
    run_epochs(&mut task, meter, &plan)?;
    resume::remove(&out.state())?;
    Ok(())
}

/// Where `--resume` continues the run at `out` from: its saved state and its logged epochs up to
/// the state's (an epoch logged after the last save runs again). Refuses, saying why, a run that
/// was started with other flags, has finished, or never saved a state.
fn resume_point(args: &PretrainConfig, out: &Output) -> Result<(Saved, LoggedRun), PretrainError> {
    let refuse = |why: String| {
        PretrainError::Options(format!("--resume {}: {why}", out.checkpoint().display()))
    };
    let log = out.log();
    if !log.is_file() {
        return Err(refuse(format!(
            "no log {}: the run stopped before its first epoch ended (or --out differs); start \
             it again without --resume",
            log.display()
        )));
    }
    let logged = resume::check_flags(&log, args)?;
    let mut logged: LoggedRun = serde_json::from_value(logged)
        .map_err(|e| PretrainError::io(&log, std::io::Error::other(e)))?;
    let Some(saved) = resume::read(&out.state())? else {
        let why = if logged.epochs.len() >= args.train.epochs {
            format!(
                "this run has finished ({} epochs logged); nothing to resume",
                logged.epochs.len()
            )
        } else {
            format!(
                "no saved state {}: the run stopped before its first epoch ended, or it ran \
                 where the optimiser state cannot be saved; start it again without --resume",
                out.state().display()
            )
        };
        return Err(refuse(why));
    };
    let epochs = saved.progress.epochs;
    if logged.epochs.len() < epochs || epochs >= args.train.epochs {
        return Err(refuse(format!(
            "the saved state is of epoch {epochs}, the log lists {} of {} epochs: they do not \
             belong together",
            logged.epochs.len(),
            args.train.epochs
        )));
    }
    logged.epochs.truncate(epochs);
    Ok((saved, logged))
}

/// `--resume` goes on only over the corpus the run started on: the same flags over a file that
/// changed since (other rows, skips or molecules) would silently train on other molecules.
fn check_same_corpus(
    then: &CorpusCounts,
    now: &CorpusCounts,
    args: &PretrainConfig,
) -> Result<(), PretrainError> {
    if then == now {
        return Ok(());
    }
    let describe = |c: &CorpusCounts| {
        format!(
            "{} rows read, {} molecules, skipped {:?}, digest {:.12}",
            c.rows_read, c.molecules, c.skipped, c.corpus_digest
        )
    };
    Err(PretrainError::Options(format!(
        "--resume: {} is not the corpus the run started on: then {}; now {}",
        args.corpus.display(),
        describe(then),
        describe(now)
    )))
}

fn skipped_text(log: &PretrainLog) -> String {
    log.read
        .skipped
        .iter()
        .map(|(why, n)| format!(", {n} skipped ({why})"))
        .collect()
}
