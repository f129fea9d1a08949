//! The fine-tuning loop of `anges-train` (GIN/GCN, and the 1D SMILES Transformer).
//!
//! [`run_finetune`]: load and featurise the dataset (optionally its first `--max-rows` rows),
//! split it (or read `--split-file`), build the model with `tch::manual_seed(seed)`, load the
//! pre-trained encoder (`--pretrained`, else the first `gin_*`/`gcn_*` checkpoint or
//! `transformer_*` folder of the model cache folder, its task head starting fresh, else random
//! initialisation with a loud warning), register the run with the meter
//! (`--meter`), then per epoch: choose the epoch's training rows (all, or those MolPeg or random
//! pruning keeps), train on them in a seeded shuffled order (Adam, or AdamW when
//! `--weight-decay > 0`; gradient norm clipping when `--clip-grad > 0`), evaluate on valid and
//! test, take a fresh meter reading, let the policy (`--stop full|patience|anges`) decide, log
//! the epoch, write `best.safetensors` when it is the best on validation so far, and save the
//! state that `--resume` continues from ([`super::resume`]). Writes `final.safetensors` and
//! `summary.json` at the end.
//!
//! Determinism: with the same seed and `--threads N` on the CPU, two runs give bit-identical
//! metrics, and so does a run interrupted and resumed (libtorch's generator is reseeded at the
//! start of every epoch from the seed and the epoch). libtorch's generator is process-global: do
//! not run two fine-tunings at once in one process if they must be reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tch::nn::VarStore;

use super::TrainError;
use super::epoch::{Ctx, PassOptions, Scoring, build_labels, evaluate, train_epoch};
use super::network::{self, Inputs, Network};
use super::prune::{Pruner, ReferenceModel};
use super::resume;
use super::rundir::{EpochRecord, PruneSummary, RowCounts, RunDir, Summary, replace_atomically};
use super::seeded::{group_by_length, shuffle};
use super::setup;
use crate::checkpoint::{self, CheckpointError, LoadOptions};
use crate::cli::{FinetuneArgs, MeterMode, ModelArgs, ModelKind, PruneMethod};
use crate::data::{self, DataOptions, Dataset, DatasetRequest, Metric, TaskType};
use crate::emissions::EpochMeter;
use crate::models::{Collator, Gnn, GnnConfig, GnnKind, HEAD_PREFIX};
use crate::policy::{Policy, PolicySpec};
use crate::split::{self, Split};

/// Drop reason of rows whose features the model's embedding tables cannot hold.
const DROP_MODEL_VOCABULARY: &str = "model-vocabulary";

/// What `config.json` holds: the flags as given and what they resolved to.
#[derive(Debug, Serialize)]
struct RunConfig<'a> {
    args: &'a FinetuneArgs,
    resolved: Resolved,
}

#[derive(Debug, Serialize)]
struct Resolved {
    dataset: String,
    source: PathBuf,
    task_type: TaskType,
    tasks: Vec<String>,
    metric: Metric,
    device: String,
    threads: i32,
    pretrained: Option<PathBuf>,
    /// [`data::Dataset::digest`] of the rows used, which `--resume` checks.
    data_digest: String,
    trainer_version: &'static str,
}

/// Runs one fine-tuning as `args` describe; returns its summary (also written to
/// `summary.json` in the run directory).
pub fn run_finetune(args: &FinetuneArgs) -> Result<Summary, TrainError> {
    let started = Instant::now();
    let spec = check_supported(args)?;
    // `--resume`: the flags must be the run's, and its state readable, before any work.
    let (saved, run_config) = match (&args.out, args.resume) {
        (Some(dir), true) => {
            let config = resume::check_flags(&dir.join("config.json"), args)?;
            (Some(resume::load_run(dir)?), Some(config))
        }
        _ => (None, None),
    };
    let Some(dataset_name) = args.data.dataset.clone() else {
        return Err(TrainError::Options(
            "--dataset is required (a MoleculeNet name such as bbbp, or a CSV file)".into(),
        ));
    };
    setup::apply_threads(args.model.compute.threads).map_err(TrainError::Options)?;
    let device = args.model.compute.device.resolve()?;

    // Data.
    let request = DatasetRequest {
        dataset: dataset_name,
        smiles_column: args.data.smiles_column.clone(),
        targets: args.data.target.clone(),
    };
    let options = DataOptions {
        data_dir: args.data.data_dir.clone(),
        ..DataOptions::default()
    };
    let mut dataset = data::load_dataset(&request, &options)?;
    let mut rows = limit_rows(&mut dataset, args.data.max_rows)?;
    let (pretrained, allow_partial) =
        initial_weights(&args.model, &DataOptions::default().cache_dir);
    // The 1D model's tokeniser and encoder configuration; rows it cannot encode are dropped.
    let sequence = match args.model.model {
        ModelKind::Transformer => {
            let (tokenizer, cfg) = network::sequence_setup(
                pretrained.as_deref(),
                dataset.rows.iter().map(|r| r.smiles.as_str()),
            )?;
            let max_len = usize::try_from(cfg.max_len()).unwrap_or(0);
            let (tokens, dropped) = network::tokenize_rows(&mut dataset, &tokenizer, max_len);
            if dropped > 0 {
                rows.dropped.insert(DROP_MODEL_VOCABULARY.into(), dropped);
            }
            Some((tokens, tokenizer.pad_id(), cfg))
        }
        _ => {
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
    let data_digest = dataset.digest();
    if let Some(config) = &run_config {
        resume::check_data(config, &data_digest, &dataset.source)?;
    }
    let split = match (&args.data.split_file, &saved, &args.out) {
        (_, Some(_), Some(dir)) => Split::read(&dir.join("split.json"))?,
        (Some(path), _, _) => Split::read(path)?,
        _ => split::make_split(&dataset, args.data.split, args.data.seed),
    };
    let parts = split.positions(&dataset)?;
    if parts.train.is_empty() {
        return Err(TrainError::Options(format!(
            "the split leaves no training row ({} rows in all)",
            dataset.rows.len()
        )));
    }
    rows.used = dataset.rows.len();
    (rows.train, rows.valid, rows.test) = (parts.train.len(), parts.valid.len(), parts.test.len());
    let metric = dataset
        .metrics
        .first()
        .copied()
        .unwrap_or(match dataset.task_type {
            TaskType::Classification => Metric::RocAuc,
            TaskType::Regression => Metric::Rmse,
        });
    let num_tasks = dataset.num_tasks();
    let train_rows: Vec<usize> = parts.train.clone();
    let labels = build_labels(&dataset, &train_rows)?;

    // Run directory.
    let model_name = match args.model.model {
        ModelKind::Gin => "gin",
        ModelKind::Gcn => "gcn",
        ModelKind::Transformer => "transformer",
    };
    let (mut run, mut records) = match (&saved, &args.out) {
        (Some(state), Some(dir)) => RunDir::reopen(dir, state.progress.epochs)?,
        _ => {
            let run = RunDir::create(args.out.as_deref(), &dataset.name, model_name)?;
            run.clear_outputs()?;
            run.write_config(&RunConfig {
                args,
                resolved: Resolved {
                    dataset: dataset.name.clone(),
                    source: dataset.source.clone(),
                    task_type: dataset.task_type,
                    tasks: dataset.task_names.clone(),
                    metric,
                    device: format!("{device:?}"),
                    threads: tch::get_num_threads(),
                    pretrained: pretrained.clone(),
                    data_digest,
                    trainer_version: env!("CARGO_PKG_VERSION"),
                },
            })?;
            run.write_split(&split)?;
            (run, Vec::new())
        }
    };
    tracing::info!(
        run_dir = %run.path().display(),
        "{}: {} train / {} valid / {} test rows, {num_tasks} task(s), metric {metric:?}, {device:?}",
        dataset.name,
        rows.train,
        rows.valid,
        rows.test
    );

    // Model.
    setup::seed_torch(args.data.seed);
    let num_tasks_i64 =
        i64::try_from(num_tasks).map_err(|_| TrainError::Options(format!("{num_tasks} tasks")))?;
    let (vs, net, inputs) = match sequence {
        Some((tokens, pad, cfg)) => {
            let pooling = args.model.pooling.parse().map_err(TrainError::Model)?;
            let (vs, net) = network::sequence_network(
                pretrained.as_deref(),
                cfg,
                num_tasks_i64,
                pooling,
                device,
            )?;
            (vs, net, Inputs::Tokens(tokens, pad))
        }
        None => {
            let vs = VarStore::new(device);
            let kind = match args.model.model {
                ModelKind::Gin => GnnKind::Gin,
                _ => GnnKind::Gcn,
            };
            let gnn = Gnn::new(
                &vs.root(),
                GnnConfig {
                    kind,
                    dropout: args.model.dropout,
                    num_tasks: num_tasks_i64,
                    gcn_l2_normalize: args.model.gcn_l2_normalize,
                    ..GnnConfig::default()
                },
            )?;
            match &pretrained {
                Some(path) => load_pretrained(&vs, path, allow_partial)?,
                None => tracing::warn!(
                    "NO PRE-TRAINED WEIGHTS: no --pretrained given and no {model_name}_*.pth, \
                     .pt or .safetensors in {}; fine-tuning starts from RANDOM initialisation",
                    DataOptions::default().cache_dir.join("models").display()
                ),
            }
            let graphs = dataset.rows.iter().map(|r| &r.graph).collect();
            (vs, Network::Graph(gnn), Inputs::Graphs(graphs))
        }
    };
    let mut opt = setup::optimizer(&vs, &args.train)?;

    // Epochs.
    let ctx = Ctx {
        net: &net,
        inputs: &inputs,
        labels: &labels,
        task_type: dataset.task_type,
        num_tasks,
        batch_size: args.train.batch_size,
        device,
    };
    let mut collator = Collator::new();
    let mut pruner = Pruner::new(
        args.prune.prune,
        args.prune.keep_ratio,
        train_rows.len(),
        args.data.seed,
    )?;
    let reference_vs = VarStore::new(device);
    let (reference_net, reference) = if args.prune.prune == PruneMethod::Molpeg {
        let g = network::twin(&net, &reference_vs.root())?;
        let r = ReferenceModel::new(&reference_vs, &vs, args.prune.ema_beta)?;
        (Some(g), Some(r))
    } else {
        (None, None)
    };
    let mut train_index = vec![usize::MAX; dataset.rows.len()];
    for (i, &p) in train_rows.iter().enumerate() {
        train_index[p] = i;
    }
    let mut policy = Policy::new(spec, metric.higher_is_better());
    let mut stop_reason = "max-epochs";
    let mut last_epoch = args.train.epochs;
    let mut prune_totals = (0usize, Duration::ZERO, 0.0f64);
    let mut earlier_seconds = 0.0;
    let mut earlier_meter = None;
    if let Some(state) = saved {
        (earlier_seconds, earlier_meter) = (state.progress.seconds, state.progress.meter);
        let best_is_last = state.progress.best_epoch == Some(state.progress.epochs);
        state.restore(
            &vs,
            &mut opt,
            reference.as_ref().map(|_| &reference_vs),
            pruner.as_mut(),
        )?;
        if let Some(reason) = replay_policy(&mut policy, &records, metric)? {
            (stop_reason, last_epoch) = (reason, records.len());
        }
        let best_path = run.file("best.safetensors");
        if best_is_last {
            save_weights(&vs, &best_path)?;
        } else if policy.best_epoch().is_some() && !best_path.is_file() {
            tracing::warn!(
                "{} is missing: the best-validation weights of epoch {} are lost; the run will \
                 deliver a later best, or its final weights",
                best_path.display(),
                policy.best_epoch().unwrap_or_default()
            );
        }
        for r in &records {
            prune_totals.0 += r.samples_used;
            prune_totals.1 += Duration::from_secs_f64(r.reference_seconds.unwrap_or(0.0));
            prune_totals.2 += r.reference_energy_j.unwrap_or(0.0);
        }
        tracing::info!(
            "resuming {} after epoch {} of {} ({:.0} s so far)",
            run.path().display(),
            records.len(),
            args.train.epochs,
            earlier_seconds
        );
    }
    let saves_state = resume::supported(&opt);
    if !saves_state {
        tracing::warn!(
            "no resume state will be saved: libtorch's optimiser (parameters of mixed kinds or \
             devices on {device:?}) keeps moments that cannot be read"
        );
    }
    let mut meter = EpochMeter::start(
        &args.meter,
        &format!("anges-train {} {model_name} {}", dataset.name, spec.label()),
    )?;
    if let Some(m) = &mut meter {
        tracing::info!("meter: {}", m.describe());
        if let Some(totals) = earlier_meter {
            m.carry_over(totals);
        }
    }
    for epoch in records.len() + 1..=last_epoch {
        let t0 = Instant::now();
        setup::seed_epoch(args.data.seed, epoch);
        let mut order: Vec<usize> = match &pruner {
            Some(p) => p.select(epoch).into_iter().map(|i| train_rows[i]).collect(),
            None => train_rows.clone(),
        };
        shuffle(&mut order, args.data.seed, epoch as u64);
        if let (true, Inputs::Tokens(tokens, _)) = (args.model.group_by_length, &inputs) {
            group_by_length(
                &mut order,
                |row| tokens[row].len(),
                args.train.batch_size,
                args.data.seed,
                epoch as u64,
            );
        }
        let weight = pruner.as_ref().map_or(1.0, Pruner::weight);
        let scoring = match (pruner.as_mut(), &reference_net, &reference) {
            (Some(p), Some(g), Some(r)) => Some(Scoring {
                pruner: p,
                reference_net: g,
                reference: r,
                train_index: &train_index,
            }),
            _ => None,
        };
        let stats = train_epoch(
            &ctx,
            &mut collator,
            &mut opt,
            &order,
            PassOptions {
                progress: (epoch, args.train.epochs),
                clip_grad: args.train.clip_grad,
                loss_weight: weight,
            },
            scoring,
        )?;
        let valid = evaluate(&ctx, &mut collator, &parts.valid)?;
        let test = evaluate(&ctx, &mut collator, &parts.test)?;
        // A fresh reading that includes this epoch's training and evaluation work.
        let energy = meter.as_mut().map(EpochMeter::read_epoch);
        let seconds = t0.elapsed().as_secs_f64();
        let verdict = policy.observe(
            epoch,
            valid.get(metric),
            energy.as_ref().map(|e| e.cumulative_g),
        );
        let reference_seconds = reference
            .as_ref()
            .map(|_| stats.reference_time.as_secs_f64());
        let reference_energy_j = match (reference_seconds, &energy) {
            (Some(r), Some(e)) if seconds > 0.0 => Some(e.energy_j * r / seconds),
            _ => None,
        };
        prune_totals.0 += stats.samples;
        prune_totals.1 += stats.reference_time;
        prune_totals.2 += reference_energy_j.unwrap_or(0.0);
        let record = EpochRecord {
            epoch,
            train_loss: stats.loss,
            valid,
            test,
            best: verdict.new_best,
            seconds,
            energy_j: energy.as_ref().map(|e| e.energy_j),
            co2_g: energy.as_ref().map(|e| e.co2_g),
            cumulative_j: energy.as_ref().map(|e| e.cumulative_j),
            cumulative_co2_g: energy.as_ref().map(|e| e.cumulative_g),
            meter_source: energy.as_ref().map(|e| e.source.to_string()),
            measured: energy.as_ref().map(|e| e.measured),
            meter_fault: energy.as_ref().and_then(|e| e.fault.clone()),
            anges: verdict.anges,
            samples_used: stats.samples,
            reference_seconds,
            reference_energy_j,
        };
        run.append_epoch(&record)?;
        // Not after the last epoch: the run ends next (an interruption there reruns that epoch),
        // and work after the last meter reading would be left out of the run's energy.
        if saves_state && verdict.stop.is_none() && epoch < last_epoch {
            let t_state = Instant::now();
            resume::save(
                &run.file(resume::STATE_FILE),
                &resume::Snapshot {
                    epochs: epoch,
                    seconds: earlier_seconds + started.elapsed().as_secs_f64(),
                    best_epoch: policy.best_epoch(),
                    meter: meter.as_ref().map(EpochMeter::totals),
                    model: &vs,
                    optimizer: &opt,
                    reference: reference.as_ref().map(|_| &reference_vs),
                    pruner: pruner.as_ref(),
                },
            )?;
            tracing::debug!(
                seconds = t_state.elapsed().as_secs_f64(),
                "epoch {epoch}: resume state saved"
            );
        }
        // After the state (see `resume`): never an epoch later than the saved one.
        if verdict.new_best {
            save_weights(&vs, &run.file("best.safetensors"))?;
        }
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4}, valid {metric:?} {}, test {metric:?} {}, \
             valid loss {}{} ({:.1} s{})",
            args.train.epochs,
            stats.loss,
            fmt(record.valid.get(metric)),
            fmt(record.test.get(metric)),
            fmt(record.valid.loss),
            if verdict.new_best { " [best]" } else { "" },
            record.seconds,
            energy.as_ref().map_or_else(String::new, |e| format!(
                ", {:.2} J, {:.3e} g CO2-eq, {}",
                e.energy_j, e.co2_g, e.source
            )),
        );
        if let Some(step) = &verdict.anges {
            tracing::info!("{}", step.log_line());
        }
        if let Some(fault) = &record.meter_fault {
            tracing::warn!("epoch {epoch}: meter: {fault}");
        }
        records.push(record);
        if let Some(reason) = verdict.stop {
            tracing::info!("stopping after epoch {epoch}: {}", spec.label());
            stop_reason = reason;
            break;
        }
    }
    let meter_final = meter.map(EpochMeter::finish);
    let Some(last) = records.last().cloned() else {
        return Err(TrainError::Options("--epochs must be at least 1".into()));
    };

    // Weights and summary (best.safetensors was written at each new best epoch).
    save_weights(&vs, &run.file("final.safetensors"))?;
    let best_path = run.file("best.safetensors");
    let best_epoch = policy.best_epoch().unwrap_or(last.epoch);
    if !best_path.is_file() {
        std::fs::copy(run.file("final.safetensors"), &best_path)
            .map_err(|e| TrainError::io(&best_path, e))?;
    }
    let best = &records[best_epoch - 1];
    let tail = meter_final.as_ref().and_then(|m| m.tail);
    let summary = Summary {
        run_dir: run.path().to_owned(),
        dataset: dataset.name.clone(),
        model: args.model.model,
        task_type: dataset.task_type,
        metric,
        stop: args.stop.stop,
        stop_reason: stop_reason.into(),
        epochs_run: records.len(),
        best_epoch,
        best_valid: best.valid.clone(),
        best_test: best.test.clone(),
        final_train_loss: last.train_loss,
        final_valid: last.valid,
        final_test: last.test,
        rows,
        pretrained,
        seconds: earlier_seconds + started.elapsed().as_secs_f64(),
        energy_j: meter_final.as_ref().map(|m| m.total().0),
        co2_g: meter_final.as_ref().map(|m| m.total().1),
        tail_j: tail.map(|t| t.energy_j),
        tail_co2_g: tail.map(|t| t.co2_g),
        policy: Some(spec),
        meter: meter_final.as_ref().map(|m| m.describe.clone()),
        measured: meter_final.as_ref().map(|m| m.measured),
        meter_gap_epochs: meter_final.as_ref().map_or(0, |m| m.gap_epochs),
        daemon_job_joules: meter_final.as_ref().and_then(|m| m.daemon_job_joules),
        daemon_job_grams: meter_final.as_ref().and_then(|m| m.daemon_job_grams),
        prune: pruner.as_ref().map(|p| PruneSummary {
            method: p.method(),
            keep_ratio: p.keep_ratio(),
            samples_used: prune_totals.0,
            samples_full: train_rows.len() * records.len(),
            reference_seconds: prune_totals.1.as_secs_f64(),
            reference_energy_j: (p.method() == PruneMethod::Molpeg && meter_final.is_some())
                .then_some(prune_totals.2),
        }),
    };
    run.write_summary(&summary)?;
    resume::remove(&run.file(resume::STATE_FILE))?;
    Ok(summary)
}

/// Feeds the epochs of an interrupted run back to a fresh `policy` (`--resume`), checking that
/// it marks the same best epochs as the log; returns the stop reason if the policy had already
/// stopped the run.
fn replay_policy(
    policy: &mut Policy,
    records: &[EpochRecord],
    metric: Metric,
) -> Result<Option<&'static str>, TrainError> {
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

/// Validates the flags the loop depends on; returns the stopping policy.
fn check_supported(args: &FinetuneArgs) -> Result<PolicySpec, TrainError> {
    let spec = PolicySpec::from_args(&args.stop).map_err(TrainError::Options)?;
    if matches!(spec, PolicySpec::Anges(_)) && args.meter.meter == MeterMode::Off {
        return Err(TrainError::Options(
            "--stop anges needs emissions: use --meter auto, daemon or local, not off".into(),
        ));
    }
    setup::check_train_args(&args.train).map_err(TrainError::Options)?;
    if !(0.0..1.0).contains(&args.model.dropout) {
        return Err(TrainError::Options(format!(
            "--dropout {} is not in [0, 1)",
            args.model.dropout
        )));
    }
    Ok(spec)
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

/// Where the weights start from, and whether missing keys are accepted: `--pretrained` as given
/// (partial only with `--allow-partial`); nothing with `--random-init`; else the model cache
/// folder's checkpoint, whose task head may be missing (it holds an encoder only: pretrain-gnns,
/// `anges-train pretrain`).
fn initial_weights(model: &ModelArgs, cache_dir: &Path) -> (Option<PathBuf>, bool) {
    match &model.pretrained {
        Some(p) => (Some(p.clone()), model.allow_partial),
        None if model.random_init => (None, false),
        None => (cached_checkpoint(model.model, cache_dir), true),
    }
}

/// The first checkpoint of `model`'s family, by name, in `<cache>/models`, if any: a file
/// `gin_*` / `gcn_*` ending in `.pth`, `.pt` or `.safetensors` (pretrain-gnns downloads, and
/// what `anges-train pretrain` writes there: `gin_attrmask.safetensors`), or for the 1D model a
/// folder `transformer_*` holding `config.json` (`transformer_mlm/`).
fn cached_checkpoint(model: ModelKind, cache_dir: &Path) -> Option<PathBuf> {
    let (prefix, folder) = match model {
        ModelKind::Gin => ("gin_", false),
        ModelKind::Gcn => ("gcn_", false),
        ModelKind::Transformer => ("transformer_", true),
    };
    let weights = |name: &str| {
        [".pth", ".pt", ".safetensors"]
            .iter()
            .any(|e| name.ends_with(e))
    };
    let dir = cache_dir.join("models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            name.starts_with(prefix)
                && if folder {
                    p.join("config.json").is_file()
                } else {
                    p.is_file() && weights(name)
                }
        })
        .collect();
    found.sort();
    let first = found.into_iter().next()?;
    tracing::info!("using the cached checkpoint {}", first.display());
    Some(first)
}

fn load_pretrained(vs: &VarStore, path: &Path, allow_partial: bool) -> Result<(), TrainError> {
    let opts = LoadOptions {
        allow_missing_prefixes: if allow_partial {
            vec![HEAD_PREFIX.into()]
        } else {
            Vec::new()
        },
        strip_prefix: None,
    };
    match checkpoint::load_file_into(vs, path, &opts) {
        Ok(report) => {
            tracing::info!(
                loaded = report.loaded.len(),
                kept = report.kept.len(),
                "loaded pre-trained weights from {}",
                path.display()
            );
            Ok(())
        }
        Err(source) => {
            let head_only = matches!(&source, CheckpointError::Mismatch(m)
                if !m.missing.is_empty()
                    && m.unknown.is_empty()
                    && m.mis_shaped.is_empty()
                    && m.missing.iter().all(|k| k.starts_with(HEAD_PREFIX)));
            let hint = if head_only {
                " (an encoder-only checkpoint: pass --allow-partial to start the task head from \
                 random initialisation)"
            } else {
                ""
            };
            Err(TrainError::Checkpoint {
                path: path.to_owned(),
                source,
                hint: hint.into(),
            })
        }
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_checkpoints_are_found_by_family() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        for name in ["gcn_contextpred.pth", "gin_b.pth", "gin_a.pth", "gin_c.pt"] {
            std::fs::write(models.join(name), b"x").unwrap();
        }
        let gin = cached_checkpoint(ModelKind::Gin, dir.path()).unwrap();
        assert!(gin.ends_with("gin_a.pth"));
        assert!(cached_checkpoint(ModelKind::Gcn, dir.path()).is_some());
        assert!(cached_checkpoint(ModelKind::Transformer, dir.path()).is_none());
        assert!(cached_checkpoint(ModelKind::Gin, &dir.path().join("none")).is_none());

        // What `anges-train pretrain` leaves there: the checkpoint, its log, a temporary file.
        let other = tempfile::tempdir().unwrap();
        let models = other.path().join("models");
        std::fs::create_dir_all(models.join("transformer_mlm")).unwrap();
        std::fs::create_dir_all(models.join("transformer_empty")).unwrap();
        for name in [
            "gcn_attrmask.pretrain.json",
            ".gcn_attrmask.safetensors.tmp",
            "gcn_attrmask.safetensors",
            "transformer_mlm/config.json",
        ] {
            std::fs::write(models.join(name), b"x").unwrap();
        }
        let gcn = cached_checkpoint(ModelKind::Gcn, other.path()).unwrap();
        assert!(
            gcn.ends_with("gcn_attrmask.safetensors"),
            "{}",
            gcn.display()
        );
        let mlm = cached_checkpoint(ModelKind::Transformer, other.path()).unwrap();
        assert!(mlm.ends_with("transformer_mlm"), "{}", mlm.display());
        assert!(cached_checkpoint(ModelKind::Gin, other.path()).is_none());
    }

    #[test]
    fn random_init_ignores_the_cache_and_pretrained_wins() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(dir.path().join("models/gin_attrmask.safetensors"), b"x").unwrap();
        let parse = |flags: &[&str]| {
            let argv = [&["anges-train", "--dataset", "bbbp"][..], flags].concat();
            crate::cli::Cli::try_parse_from(argv)
                .unwrap()
                .finetune
                .model
        };
        let (found, partial) = initial_weights(&parse(&[]), dir.path());
        assert!(found.unwrap().ends_with("gin_attrmask.safetensors") && partial);
        assert_eq!(
            initial_weights(&parse(&["--random-init"]), dir.path()),
            (None, false)
        );
        let (given, partial) = initial_weights(&parse(&["--pretrained", "x.pth"]), dir.path());
        assert_eq!((given.unwrap(), partial), (PathBuf::from("x.pth"), false));
        assert!(
            crate::cli::Cli::try_parse_from([
                "anges-train",
                "--random-init",
                "--pretrained",
                "x.pth"
            ])
            .is_err()
        );
    }
}
