//! Fine-tuning (GIN/GCN, and the 1D SMILES Transformer) as a task of the one epoch loop
//! ([`super::epochs`]).
//!
//! [`run_finetune`] is a sequence of named steps: check the configuration (that `--out` holds no
//! run unless `--overwrite`, and, with `--resume`, that the interrupted run had this one:
//! [`ResumePoint`]); [`RunData::load`] the dataset
//! (optionally its first `--max-rows` rows), featurise or tokenise it, split it (or read
//! `--split-file`) and lay out its labels; [`open_run_dir`]; [`TunedModel::build`] the model
//! with `tch::manual_seed(seed)` from its starting weights ([`super::weights`]: `--pretrained`,
//! else the model cache folder's checkpoint or the family's shipped or published default, its
//! task head starting fresh; random only with `--random-init`); assemble the
//! [`FinetuneTask`] (optimiser: Adam, or AdamW when `--weight-decay > 0`; MolPeg or random
//! pruning; the stopping policy `--stop full|patience|anges`) and restore an interrupted run's
//! state into it; start the meter; run the epochs; [`FinetuneTask::finish`] with
//! `final.safetensors`, what prediction needs and the best weights' `test_predictions.csv`
//! ([`super::predictions`]) and `summary.json`.
//!
//! Per epoch the task chooses the epoch's training rows (all, or those MolPeg or random pruning
//! keeps), trains on them in a seeded shuffled order (gradient norm clipping when
//! `--clip-grad > 0`), evaluates on valid and test; after the loop's fresh meter reading it lets
//! the policy decide, logs the epoch, and (after the loop's resume state) writes
//! `best.safetensors` when the epoch is the best on validation so far.
//!
//! Determinism: with the same seed and `--threads N` on the CPU, two runs give bit-identical
//! metrics, and so does a run interrupted and resumed (libtorch's generator is reseeded at the
//! start of every epoch from the seed and the epoch). libtorch's generator is process-global: do
//! not run two fine-tunings at once in one process if they must be reproducible.

use super::predictions::BEST_WEIGHTS_FILE;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tch::Device;
use tch::nn::VarStore;

use super::TrainError;
use super::epoch::{
    Ctx, Labels, PassOptions, Scoring, TrainStats, build_labels, evaluate, train_epoch,
};
use super::epochs::{
    EpochPlan, EpochTask, RunClock, StateExtras, energy_text, run_epochs, start_meter,
};
use super::metrics::EvalMetrics;
use super::network::{self, Inputs, Network};
use super::optim::Optimizer;
use super::predictions;
use super::prune::{Pruner, ReferenceModel};
use super::resume::{self, Saved};
use super::rundir::{EpochRecord, PruneSummary, RowCounts, RunDir, Summary, replace_atomically};
use super::seeded::{group_by_length, shuffle};
use super::setup;
use super::weights::{StartWeights, WeightsSource, load_pretrained};
use crate::checkpoint;
use crate::config::{FinetuneConfig, ModelKind, PruneMethod};
use crate::data::{self, DataOptions, Dataset, DatasetRequest, Metric, TaskType};
use crate::emissions::{self, EpochEnergy, EpochMeter, LedgerTotals, MeterFinal};
use crate::featurize::{SmilesTokenizer, TokenIds};
use crate::models::{Collator, TransformerConfig};
use crate::policy::{Policy, StopReason};
use crate::split::{self, Split, SplitPositions};

/// Drop reason of rows whose features the model's embedding tables cannot hold.
const DROP_MODEL_VOCABULARY: &str = "model-vocabulary";

/// What `config.json` holds: the run's configuration and what it resolved to.
#[derive(Debug, Serialize)]
struct RunConfig<'a> {
    config: &'a FinetuneConfig,
    resolved: Resolved,
}

#[derive(Debug, Serialize)]
struct Resolved {
    dataset: String,
    source: PathBuf,
    task_type: TaskType,
    /// Whether `task_type` was guessed from the labels (a custom CSV without `--task-type`).
    task_type_guessed: bool,
    tasks: Vec<String>,
    metric: Metric,
    device: String,
    threads: i32,
    pretrained: Option<PathBuf>,
    /// [`data::Dataset::digest`] of the rows used, which `--resume` checks.
    data_digest: String,
    trainer_version: &'static str,
}

/// Runs one fine-tuning as `config` describes; returns its summary (also written to
/// `summary.json` in the run directory).
pub fn run_finetune(config: &FinetuneConfig) -> Result<Summary, TrainError> {
    let started = Instant::now();
    config.validate()?;
    // A fresh run never replaces another one unasked: refused before any work.
    if !config.resume {
        super::rundir::check_unused(config.out.as_deref(), config.overwrite)?;
    }
    // `--resume`: the configuration must be the run's, and its state readable, before any work.
    let resumed = config
        .resume
        .then(|| ResumePoint::open(config))
        .transpose()?;
    // The starting weights too: a missing, truncated or wrong checkpoint is refused before the
    // data is featurised and before the run folder exists.
    let weights = StartWeights::check(config)?;
    setup::apply_threads(config.compute.threads).map_err(TrainError::Options)?;
    let device = config.compute.device.resolve()?;
    let data = RunData::load(config, resumed.as_ref(), weights)?;
    let (run, records) = open_run_dir(config, &data, resumed.as_ref(), device)?;
    let model = TunedModel::build(config, &data, device)?;
    let labels = build_labels(&data.dataset, &data.parts.train)?;
    let inputs = data.inputs();
    let mut task = FinetuneTask::new(config, &data, &model, &inputs, &labels, run, records)?;
    let start = match resumed {
        Some(point) => task.restore(point, started)?,
        None => LoopStart {
            first: 1,
            last: config.train.epochs,
            clock: RunClock {
                started,
                earlier: 0.0,
            },
            meter: None,
        },
    };
    let mut meter = start_meter(
        &config.meter,
        &format!(
            "anges-train {} {} {}",
            data.dataset.name,
            config.model_name(),
            config.stop.label()
        ),
        start.meter,
    )?;
    let state = task.run.file(resume::STATE_FILE);
    let plan = EpochPlan {
        seed: config.data.seed,
        first: start.first,
        last: start.last,
        state: &state,
        clock: start.clock,
    };
    let stop = match task.resumed_stop {
        Some(reason) => reason,
        None => run_epochs(&mut task, meter.as_mut(), &plan)?,
    };
    task.finish(stop, meter.map(EpochMeter::finish), start.clock)
}

/// An interrupted run's state and `config.json`, checked against the configuration (`--resume`).
struct ResumePoint {
    saved: Saved,
    config_json: Value,
}

impl ResumePoint {
    /// Refuses, saying why, a run started with another configuration, finished, or that never
    /// saved a state.
    fn open(config: &FinetuneConfig) -> Result<Self, TrainError> {
        let Some(dir) = &config.out else {
            return Err(TrainError::Options("--resume needs --out DIR".into()));
        };
        let config_json = resume::check_config(&dir.join("config.json"), config)?;
        let saved = resume::load_run(dir)?;
        Ok(Self { saved, config_json })
    }
}

/// The 1D model's inputs: each row's token ids, the tokeniser, the padding id and the encoder's
/// configuration.
struct SequenceInputs {
    tokens: Vec<TokenIds>,
    /// The tokeniser (saved with the run for `anges-train predict`).
    tokenizer: SmilesTokenizer,
    pad_id: i64,
    encoder: TransformerConfig,
}

/// A run's data: featurised (or tokenised), split, with what was read and dropped.
struct RunData {
    dataset: Dataset,
    rows: RowCounts,
    split: Split,
    parts: SplitPositions,
    metric: Metric,
    /// The 1D model's inputs (`None`: a 2D model, whose inputs are the rows' graphs).
    sequence: Option<SequenceInputs>,
    /// The checkpoint the encoder starts from (`None`: random initialisation).
    pretrained: Option<PathBuf>,
    /// Where it came from.
    weights_source: WeightsSource,
    /// Whether the checkpoint may lack the task head.
    allow_partial: bool,
    /// [`Dataset::digest`] of the rows used.
    digest: String,
}

impl RunData {
    /// Loads, featurises and splits the data of `config` (an interrupted run's own split and
    /// data with `--resume`), for a model starting from `weights`.
    fn load(
        config: &FinetuneConfig,
        resumed: Option<&ResumePoint>,
        weights: StartWeights,
    ) -> Result<Self, TrainError> {
        let request = DatasetRequest {
            dataset: config.data.dataset.clone(),
            smiles_column: config.data.smiles_column.clone(),
            targets: config.data.targets.clone(),
            task_type: config.data.task_type,
        };
        let options = DataOptions {
            data_dir: config.data.data_dir.clone(),
            ..DataOptions::default()
        };
        let mut dataset = data::load_dataset(&request, &options)?;
        let mut rows = limit_rows(&mut dataset, config.data.max_rows)?;
        let StartWeights {
            pretrained,
            source: weights_source,
            allow_partial,
        } = weights;
        // The 1D model's tokeniser and encoder configuration; rows it cannot encode are dropped.
        let sequence = match config.model.kind {
            ModelKind::Transformer => {
                let (tokenizer, encoder) = network::sequence_setup(
                    pretrained.as_deref(),
                    dataset.rows.iter().map(|r| r.smiles.as_str()),
                    config.model.representation,
                )?;
                let max_len = usize::try_from(encoder.max_len()).unwrap_or(0);
                let (tokens, no_selfies, dropped) =
                    network::tokenize_rows(&mut dataset, &tokenizer, max_len);
                if no_selfies > 0 {
                    tracing::warn!(
                        "{no_selfies} row(s) dropped: SELFIES cannot express them (see the \
                         warnings above)"
                    );
                    rows.dropped
                        .insert(network::DROP_NO_SELFIES.into(), no_selfies);
                }
                if dropped > 0 {
                    rows.dropped.insert(DROP_MODEL_VOCABULARY.into(), dropped);
                }
                Some(SequenceInputs {
                    tokens,
                    pad_id: tokenizer.pad_id(),
                    encoder,
                    tokenizer,
                })
            }
            ModelKind::Gin | ModelKind::Gcn | ModelKind::Graphsage | ModelKind::Gat => {
                drop_unembeddable(&mut dataset, &mut rows);
                None
            }
        };
        if dataset.rows.is_empty() {
            return Err(TrainError::Options(format!(
                "{}: no usable molecule left",
                dataset.name
            )));
        }
        let digest = dataset.digest();
        if let Some(point) = resumed {
            resume::check_data(&point.config_json, &digest, &dataset.source)?;
            resume::check_task_type(&point.config_json, dataset.task_type)?;
        }
        let split = match (&config.data.split_file, resumed, &config.out) {
            (_, Some(_), Some(dir)) => Split::read(&dir.join("split.json"))?,
            (Some(path), _, _) => Split::read(path)?,
            _ => split::make_split(&dataset, config.data.split, config.data.seed),
        };
        let parts = split.positions(&dataset)?;
        if parts.train.is_empty() {
            return Err(TrainError::Options(format!(
                "the split leaves no training row ({} rows in all)",
                dataset.rows.len()
            )));
        }
        rows.used = dataset.rows.len();
        (rows.train, rows.valid, rows.test) =
            (parts.train.len(), parts.valid.len(), parts.test.len());
        let metric = dataset
            .metrics
            .first()
            .copied()
            .unwrap_or(match dataset.task_type {
                TaskType::Classification => Metric::RocAuc,
                TaskType::Regression => Metric::Rmse,
            });
        Ok(Self {
            dataset,
            rows,
            split,
            parts,
            metric,
            sequence,
            pretrained,
            weights_source,
            allow_partial,
            digest,
        })
    }

    /// The model's per-row inputs, borrowed from the data.
    fn inputs(&self) -> Inputs<'_> {
        match &self.sequence {
            Some(s) => Inputs::Tokens(&s.tokens, s.pad_id),
            None => Inputs::Graphs(self.dataset.rows.iter().map(|r| &r.graph).collect()),
        }
    }
}

/// Creates the run directory and writes `config.json` and `split.json` (a fresh run), or reopens
/// an interrupted run's, its log cut back to the saved state; returns it with the logged epochs.
fn open_run_dir(
    config: &FinetuneConfig,
    data: &RunData,
    resumed: Option<&ResumePoint>,
    device: Device,
) -> Result<(RunDir, Vec<EpochRecord>), TrainError> {
    let (run, records) = match (resumed, &config.out) {
        (Some(point), Some(dir)) => RunDir::reopen(dir, point.saved.progress.epochs)?,
        _ => {
            let run = RunDir::create(
                config.out.as_deref(),
                &data.dataset.name,
                config.model_name(),
            )?;
            run.clear_outputs()?;
            run.write_config(&RunConfig {
                config,
                resolved: Resolved {
                    dataset: data.dataset.name.clone(),
                    source: data.dataset.source.clone(),
                    task_type: data.dataset.task_type,
                    task_type_guessed: data.dataset.task_type_guessed,
                    tasks: data.dataset.task_names.clone(),
                    metric: data.metric,
                    device: format!("{device:?}"),
                    threads: tch::get_num_threads(),
                    pretrained: data.pretrained.clone(),
                    data_digest: data.digest.clone(),
                    trainer_version: env!("CARGO_PKG_VERSION"),
                },
            })?;
            run.write_split(&data.split)?;
            run.write_skipped(&data.dataset.skipped)?;
            (run, Vec::new())
        }
    };
    tracing::info!(
        run_dir = %run.path().display(),
        "{}: {} train / {} valid / {} test rows, {} task(s), metric {:?}, {device:?}",
        data.dataset.name,
        data.rows.train,
        data.rows.valid,
        data.rows.test,
        data.dataset.num_tasks(),
        data.metric,
    );
    Ok((run, records))
}

/// The network being tuned and its variables.
struct TunedModel {
    vs: VarStore,
    net: Network,
    device: Device,
}

impl TunedModel {
    /// Seeds libtorch with the run's seed and builds the model of `config` for `data`, from its
    /// starting weights.
    fn build(config: &FinetuneConfig, data: &RunData, device: Device) -> Result<Self, TrainError> {
        setup::seed_torch(config.data.seed);
        let num_tasks = data.dataset.num_tasks();
        let num_tasks = i64::try_from(num_tasks)
            .map_err(|_| TrainError::Options(format!("{num_tasks} tasks")))?;
        let (vs, net) = match &data.sequence {
            Some(s) => network::sequence_network(
                data.pretrained.as_deref(),
                s.encoder.clone(),
                num_tasks,
                config.model.pooling,
                device,
            )?,
            None => {
                let (vs, net) = network::graph_network(&config.model, num_tasks, device)?;
                match &data.pretrained {
                    Some(path) => {
                        load_pretrained(&vs, path, data.allow_partial, config.model.kind)?
                    }
                    None => tracing::info!("--random-init: the encoder starts from random weights"),
                }
                (vs, net)
            }
        };
        Ok(Self { vs, net, device })
    }
}

/// MolPeg's EMA reference model: its variables, its network, and its pairing with the online
/// model's.
struct Reference {
    vs: VarStore,
    net: Network,
    ema: ReferenceModel,
}

/// Where the epoch loop starts: the epochs to run, the run's clock and, resumed, the meter's
/// totals so far.
struct LoopStart {
    first: usize,
    last: usize,
    clock: RunClock,
    meter: Option<LedgerTotals>,
}

/// What pruning did so far over the run.
#[derive(Debug, Default)]
struct PruneTotals {
    samples_used: usize,
    reference_time: Duration,
    reference_energy_j: f64,
}

/// What one epoch's work measured, before the meter reading.
struct FinetunePass {
    stats: TrainStats,
    valid: EvalMetrics,
    test: EvalMetrics,
}

/// Fine-tuning as the epoch loop sees it.
struct FinetuneTask<'a> {
    config: &'a FinetuneConfig,
    data: &'a RunData,
    model: &'a TunedModel,
    ctx: Ctx<'a>,
    collator: Collator,
    optimizer: Optimizer,
    pruner: Option<Pruner>,
    reference: Option<Reference>,
    /// Training-list index of each dataset row position (`usize::MAX`: not a training row).
    train_index: Vec<usize>,
    policy: Policy,
    run: RunDir,
    records: Vec<EpochRecord>,
    totals: PruneTotals,
    /// The last epoch was the best on validation so far: its weights go to `best.safetensors`.
    new_best: bool,
    /// The policy had already stopped the interrupted run (`--resume` of a stopped run whose
    /// summary was not written).
    resumed_stop: Option<StopReason>,
}

impl<'a> FinetuneTask<'a> {
    /// The optimiser, pruner, MolPeg reference and policy of `config` over `model`.
    fn new(
        config: &'a FinetuneConfig,
        data: &'a RunData,
        model: &'a TunedModel,
        inputs: &'a Inputs<'a>,
        labels: &'a Labels,
        run: RunDir,
        records: Vec<EpochRecord>,
    ) -> Result<Self, TrainError> {
        let optimizer = setup::optimizer(&model.vs, &config.train)?;
        let train_rows = &data.parts.train;
        let pruner = Pruner::new(&config.prune, train_rows.len(), config.data.seed)?;
        let reference = if config.prune.method == PruneMethod::Molpeg {
            let vs = VarStore::new(model.device);
            let net = network::twin(&model.net, &vs.root())?;
            let ema = ReferenceModel::new(&vs, &model.vs, config.prune.ema_beta)?;
            Some(Reference { vs, net, ema })
        } else {
            None
        };
        let mut train_index = vec![usize::MAX; data.dataset.rows.len()];
        for (i, &p) in train_rows.iter().enumerate() {
            train_index[p] = i;
        }
        Ok(Self {
            config,
            data,
            model,
            ctx: Ctx {
                net: &model.net,
                inputs,
                labels,
                task_type: data.dataset.task_type,
                num_tasks: data.dataset.num_tasks(),
                batch_size: config.train.batch_size,
                device: model.device,
            },
            collator: Collator::new(),
            optimizer,
            pruner,
            reference,
            train_index,
            policy: Policy::new(config.stop, data.metric.higher_is_better()),
            run,
            records,
            totals: PruneTotals::default(),
            new_best: false,
            resumed_stop: None,
        })
    }

    /// Puts an interrupted run's state back (weights, moments, MolPeg's reference and scores,
    /// the policy replayed over the log); returns the epochs left to run, the run's clock and
    /// the meter totals so far.
    fn restore(&mut self, point: ResumePoint, started: Instant) -> Result<LoopStart, TrainError> {
        let state = point.saved;
        let progress = state.progress.clone();
        let best_is_last = progress.best_epoch == Some(progress.epochs);
        state.restore(
            &self.model.vs,
            &mut self.optimizer,
            self.reference.as_ref().map(|r| &r.vs),
            self.pruner.as_mut(),
        )?;
        let mut last = self.config.train.epochs;
        if let Some(reason) = replay_policy(&mut self.policy, &self.records, self.data.metric)? {
            self.resumed_stop = Some(reason);
            last = self.records.len();
        }
        let best_path = self.run.file(BEST_WEIGHTS_FILE);
        if best_is_last {
            save_weights(&self.model.vs, &best_path)?;
        } else if self.policy.best_epoch().is_some() && !best_path.is_file() {
            tracing::warn!(
                "{} is missing: the best-validation weights of epoch {} are lost; the run will \
                 deliver a later best, or its final weights",
                best_path.display(),
                self.policy.best_epoch().unwrap_or_default()
            );
        }
        for r in &self.records {
            self.totals.samples_used += r.samples_used;
            self.totals.reference_time +=
                Duration::from_secs_f64(r.reference_seconds.unwrap_or(0.0));
            self.totals.reference_energy_j += r.reference_energy_j.unwrap_or(0.0);
        }
        tracing::info!(
            "resuming {} after epoch {} of {} ({:.0} s so far)",
            self.run.path().display(),
            self.records.len(),
            self.config.train.epochs,
            progress.seconds
        );
        Ok(LoopStart {
            first: self.records.len() + 1,
            last,
            clock: RunClock {
                started,
                earlier: progress.seconds,
            },
            meter: progress.meter,
        })
    }

    /// Writes `final.safetensors` (and `best.safetensors` if no epoch was best), the summary,
    /// and removes the resume state.
    fn finish(
        self,
        stop: StopReason,
        meter: Option<MeterFinal>,
        clock: RunClock,
    ) -> Result<Summary, TrainError> {
        let Some(last) = self.records.last().cloned() else {
            return Err(TrainError::Options("--epochs must be at least 1".into()));
        };
        // Weights and summary (best.safetensors was written at each new best epoch).
        let final_path = self.run.file("final.safetensors");
        save_weights(&self.model.vs, &final_path)?;
        let best_path = self.run.file(BEST_WEIGHTS_FILE);
        let best_epoch = self.policy.best_epoch().unwrap_or(last.epoch);
        if !best_path.is_file() {
            std::fs::copy(&final_path, &best_path).map_err(|e| TrainError::io(&best_path, e))?;
        }
        predictions::write_run_outputs(&predictions::RunOutputs {
            dir: self.run.path(),
            vs: &self.model.vs,
            net: &self.model.net,
            inputs: self.ctx.inputs,
            dataset: &self.data.dataset,
            test: &self.data.parts.test,
            standardizer: self.ctx.labels.standardizer.as_ref(),
            model: self.config.model.kind,
            sequence: self
                .data
                .sequence
                .as_ref()
                .map(|s| (&s.tokenizer, &s.encoder)),
            batch_size: self.config.train.batch_size,
            device: self.model.device,
        })?;
        let best = &self.records[best_epoch - 1];
        let tail = meter.as_ref().and_then(|m| m.tail);
        let (data, config) = (self.data, self.config);
        let summary = Summary {
            run_dir: self.run.path().to_owned(),
            dataset: data.dataset.name.clone(),
            model: config.model.kind,
            task_type: data.dataset.task_type,
            metric: data.metric,
            stop: config.stop.kind(),
            stop_reason: stop,
            epochs_run: self.records.len(),
            best_epoch,
            best_valid: best.valid.clone(),
            best_test: best.test.clone(),
            final_train_loss: last.train_loss,
            final_valid: last.valid,
            final_test: last.test,
            rows: data.rows.clone(),
            pretrained: data.pretrained.clone(),
            weights_source: Some(data.weights_source),
            seconds: clock.seconds(),
            energy_j: meter.as_ref().map(|m| m.total().0),
            co2_g: meter.as_ref().map(|m| m.total().1),
            tail_j: tail.map(|t| t.energy_j),
            tail_co2_g: tail.map(|t| t.co2_g),
            policy: Some(config.stop),
            meter: meter.as_ref().map(|m| m.describe.clone()),
            measured: meter.as_ref().map(|m| m.measured),
            meter_gap_epochs: meter.as_ref().map_or(0, |m| m.gap_epochs),
            daemon_job_joules: meter.as_ref().and_then(|m| m.daemon_job_joules),
            daemon_job_grams: meter.as_ref().and_then(|m| m.daemon_job_grams),
            carbon: meter.as_ref().and_then(|m| m.carbon.clone()),
            hardware: meter.as_ref().and_then(|m| m.hardware.clone()),
            prune: self.pruner.as_ref().map(|p| PruneSummary {
                method: p.method(),
                keep_ratio: p.keep_ratio(),
                samples_used: self.totals.samples_used,
                samples_full: data.parts.train.len() * self.records.len(),
                reference_seconds: self.totals.reference_time.as_secs_f64(),
                reference_energy_j: (p.method() == PruneMethod::Molpeg && meter.is_some())
                    .then_some(self.totals.reference_energy_j),
            }),
        };
        self.run.write_summary(&summary)?;
        if let Some(m) = &meter {
            emissions::codecarbon::append_run(self.run.path(), summary.seconds, m).map_err(
                |e| {
                    let path = self.run.file(emissions::codecarbon::FILE);
                    TrainError::io(&path, std::io::Error::other(e))
                },
            )?;
        }
        resume::remove(&self.run.file(resume::STATE_FILE))?;
        Ok(summary)
    }
}

impl EpochTask for FinetuneTask<'_> {
    type Error = TrainError;
    type Pass = FinetunePass;

    fn model(&self) -> &VarStore {
        &self.model.vs
    }

    fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    fn run_epoch(&mut self, epoch: usize) -> Result<FinetunePass, TrainError> {
        let (config, train_rows) = (self.config, &self.data.parts.train);
        let seed = config.data.seed;
        let mut order: Vec<usize> = match &self.pruner {
            Some(p) => p.select(epoch).into_iter().map(|i| train_rows[i]).collect(),
            None => train_rows.clone(),
        };
        shuffle(&mut order, seed, epoch as u64);
        if let (true, Some(sequence)) = (config.model.group_by_length, &self.data.sequence) {
            group_by_length(
                &mut order,
                |row| sequence.tokens[row].len(),
                config.train.batch_size,
                seed,
                epoch as u64,
            );
        }
        let weight = self.pruner.as_ref().map_or(1.0, Pruner::weight);
        let scoring = match (self.pruner.as_mut(), &self.reference) {
            (Some(pruner), Some(r)) => Some(Scoring {
                pruner,
                reference_net: &r.net,
                reference: &r.ema,
                train_index: &self.train_index,
            }),
            _ => None,
        };
        let stats = train_epoch(
            &self.ctx,
            &mut self.collator,
            &mut self.optimizer,
            &order,
            PassOptions {
                progress: (epoch, config.train.epochs),
                clip_grad: config.train.clip_grad,
                loss_weight: weight,
            },
            scoring,
        )?;
        let valid = evaluate(&self.ctx, &mut self.collator, &self.data.parts.valid)?;
        let test = evaluate(&self.ctx, &mut self.collator, &self.data.parts.test)?;
        Ok(FinetunePass { stats, valid, test })
    }

    fn end_epoch(
        &mut self,
        epoch: usize,
        pass: FinetunePass,
        energy: Option<&EpochEnergy>,
        seconds: f64,
    ) -> Result<Option<StopReason>, TrainError> {
        let metric = self.data.metric;
        let FinetunePass { stats, valid, test } = pass;
        let verdict = self
            .policy
            .observe(epoch, valid.get(metric), energy.map(|e| e.cumulative_g));
        let reference_seconds = self
            .reference
            .as_ref()
            .map(|_| stats.reference_time.as_secs_f64());
        let reference_energy_j = match (reference_seconds, energy) {
            (Some(r), Some(e)) if seconds > 0.0 => Some(e.energy_j * r / seconds),
            _ => None,
        };
        self.totals.samples_used += stats.samples;
        self.totals.reference_time += stats.reference_time;
        self.totals.reference_energy_j += reference_energy_j.unwrap_or(0.0);
        let record = EpochRecord {
            epoch,
            train_loss: stats.loss,
            valid,
            test,
            best: verdict.new_best,
            seconds,
            anges: verdict.anges,
            samples_used: stats.samples,
            reference_seconds,
            reference_energy_j,
            ..EpochRecord::default()
        }
        .with_energy(energy);
        self.run.append_epoch(&record)?;
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4}, valid {metric:?} {}, test {metric:?} {}, \
             valid loss {}{} ({:.1} s{})",
            self.config.train.epochs,
            stats.loss,
            fmt(record.valid.get(metric)),
            fmt(record.test.get(metric)),
            fmt(record.valid.loss),
            if verdict.new_best { " [best]" } else { "" },
            record.seconds,
            energy_text(energy),
        );
        if let Some(step) = &verdict.anges {
            tracing::debug!("{}", step.log_line());
        }
        if let Some(fault) = &record.meter_fault {
            tracing::warn!("epoch {epoch}: meter: {fault}");
        }
        self.records.push(record);
        self.new_best = verdict.new_best;
        if verdict.stop.is_some() {
            tracing::info!("stopping after epoch {epoch}: {}", self.config.stop.label());
        }
        Ok(verdict.stop)
    }

    fn state_extras(&self) -> StateExtras<'_> {
        StateExtras {
            best_epoch: self.policy.best_epoch(),
            reference: self.reference.as_ref().map(|r| &r.vs),
            pruner: self.pruner.as_ref(),
        }
    }

    /// After the state (see [`resume`]): never an epoch later than the saved one.
    fn after_state(&mut self, _epoch: usize) -> Result<(), TrainError> {
        if std::mem::take(&mut self.new_best) {
            save_weights(&self.model.vs, &self.run.file(BEST_WEIGHTS_FILE))?;
        }
        Ok(())
    }
}

/// Feeds the epochs of an interrupted run back to a fresh `policy` (`--resume`), checking that
/// it marks the same best epochs as the log; returns the stop reason if the policy had already
/// stopped the run.
fn replay_policy(
    policy: &mut Policy,
    records: &[EpochRecord],
    metric: Metric,
) -> Result<Option<StopReason>, TrainError> {
    for r in records {
        let verdict = policy.observe(r.epoch, r.valid.get(metric), r.cumulative_co2_g);
        if verdict.new_best != r.best {
            return Err(TrainError::Options(format!(
                "--resume: epoch {} of epochs.jsonl is{} marked best, the stopping policy \
                 replayed says otherwise (a log edited, or written with other flags)",
                r.epoch,
                if r.best { "" } else { " not" }
            )));
        }
        if verdict.stop.is_some() {
            return Ok(verdict.stop);
        }
    }
    Ok(None)
}

/// Writes every variable of `vs` to `path` as safetensors, replacing the file whole.
fn save_weights(vs: &VarStore, path: &Path) -> Result<(), TrainError> {
    replace_atomically(path, |tmp| {
        checkpoint::save_safetensors(vs, tmp).map_err(|source| TrainError::Checkpoint {
            path: path.to_owned(),
            source,
            hint: String::new(),
        })
    })
}

/// Keeps the first `max_rows` data rows of the file (if given); returns the row counts so far.
fn limit_rows(ds: &mut Dataset, max_rows: Option<usize>) -> Result<RowCounts, TrainError> {
    if let Some(n) = max_rows {
        if n == 0 {
            return Err(TrainError::Options("--max-rows must be at least 1".into()));
        }
        ds.rows.retain(|r| r.row < n);
        ds.skipped.retain(|s| s.row < n);
        ds.num_file_rows = ds.num_file_rows.min(n);
    }
    let mut dropped = BTreeMap::new();
    for (kind, n) in ds.skip_counts() {
        dropped.insert(kind.name(), n);
    }
    Ok(RowCounts {
        file_rows: ds.num_file_rows,
        dropped,
        ..RowCounts::default()
    })
}

/// Drops rows the embedding tables cannot hold (e.g. `CHI_OTHER` chirality), counted and logged.
fn drop_unembeddable(ds: &mut Dataset, counts: &mut RowCounts) {
    let before = ds.rows.len();
    ds.rows.retain(|r| match r.graph.validate() {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(row = r.row, smiles = %r.smiles, "dropped row: {why}");
            false
        }
    });
    let dropped = before - ds.rows.len();
    if dropped > 0 {
        counts.dropped.insert(DROP_MODEL_VOCABULARY.into(), dropped);
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}
