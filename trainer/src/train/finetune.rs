//! The fine-tuning loop of `anges-train` for the 2D models (GIN/GCN).
//!
//! [`run_finetune`]: load and featurise the dataset (optionally its first `--max-rows` rows),
//! split it (or read `--split-file`), build the model with `tch::manual_seed(seed)`, load the
//! pre-trained encoder (`--pretrained`, else the first `gin_*.pth`/`gcn_*.pth` of the model cache
//! folder, else random initialisation with a loud warning), then per epoch: train on the
//! training rows in a seeded shuffled order (Adam, or AdamW when `--weight-decay > 0`; gradient
//! norm clipping when `--clip-grad > 0`), evaluate on valid and test, log the epoch, keep the
//! best-validation weights in memory, and stop at `--epochs` or when the patience runs out.
//! Writes `best.safetensors`, `final.safetensors` and `summary.json` at the end.
//!
//! Determinism: with the same seed and `--threads N` on the CPU, two runs give bit-identical
//! metrics (libtorch's generator is process-global: do not run two fine-tunings at once in one
//! process if they must be reproducible).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

use super::TrainError;
use super::metrics::{self, EvalMetrics};
use super::rundir::{EpochRecord, RowCounts, RunDir, Summary};
use super::stopping::Patience;
use crate::checkpoint::{self, CheckpointError, LoadOptions};
use crate::cli::{FinetuneArgs, ModelKind, PruneMethod, StopPolicy};
use crate::data::{self, DataOptions, Dataset, DatasetRequest, Metric, TaskType};
use crate::featurize::GraphFeatures;
use crate::models::loss::{Standardizer, masked_bce_with_logits, masked_mse};
use crate::models::{Collator, Gnn, GnnConfig, GnnKind, HEAD_PREFIX};
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
    trainer_version: &'static str,
}

/// Labels of every dataset row in the layout the loop needs.
struct Labels {
    /// Per row, the training targets: `−1/0/1` (classification) or standardised values with NaN
    /// for missing (regression).
    train: Vec<Vec<f32>>,
    /// Per row, the evaluation targets: `−1/0/1`, or raw values (target units).
    eval: Vec<Vec<f32>>,
    /// Regression only: the training-set standardisation.
    standardizer: Option<Standardizer>,
}

/// Everything one epoch needs, borrowed.
struct Ctx<'a> {
    gnn: &'a Gnn,
    graphs: &'a [&'a GraphFeatures],
    labels: &'a Labels,
    task_type: TaskType,
    num_tasks: usize,
    batch_size: usize,
    device: Device,
}

/// Runs one fine-tuning as `args` describe; returns its summary (also written to
/// `summary.json` in the run directory).
pub fn run_finetune(args: &FinetuneArgs) -> Result<Summary, TrainError> {
    let started = Instant::now();
    check_supported(args)?;
    let Some(dataset_name) = args.data.dataset.clone() else {
        return Err(TrainError::Options(
            "--dataset is required (a MoleculeNet name such as bbbp, or a CSV file)".into(),
        ));
    };
    if args.model.threads > 0 {
        let threads = i32::try_from(args.model.threads)
            .map_err(|_| TrainError::Options(format!("--threads {}", args.model.threads)))?;
        tch::set_num_threads(threads);
    }
    let device = args.model.device.resolve()?;

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
    drop_unembeddable(&mut dataset, &mut rows);
    if dataset.rows.is_empty() {
        return Err(TrainError::Options(format!(
            "{}: no usable molecule left",
            dataset.name
        )));
    }
    let split = match &args.data.split_file {
        Some(path) => Split::read(path)?,
        None => split::make_split(&dataset, args.data.split, args.data.seed),
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

    // Weights.
    let pretrained = match &args.model.pretrained {
        Some(p) => Some(p.clone()),
        None => cached_checkpoint(args.model.model, &DataOptions::default().cache_dir),
    };

    // Run directory.
    let model_name = match args.model.model {
        ModelKind::Gin => "gin",
        ModelKind::Gcn => "gcn",
        ModelKind::Transformer => "transformer",
    };
    let mut run = RunDir::create(args.out.as_deref(), &dataset.name, model_name)?;
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
            trainer_version: env!("CARGO_PKG_VERSION"),
        },
    })?;
    run.write_split(&split)?;
    tracing::info!(
        run_dir = %run.path().display(),
        "{}: {} train / {} valid / {} test rows, {num_tasks} task(s), metric {metric:?}, {device:?}",
        dataset.name,
        rows.train,
        rows.valid,
        rows.test
    );

    // Model.
    tch::manual_seed(seed_i64(args.data.seed));
    let vs = VarStore::new(device);
    let kind = match args.model.model {
        ModelKind::Gin => GnnKind::Gin,
        _ => GnnKind::Gcn,
    };
    let num_tasks_i64 =
        i64::try_from(num_tasks).map_err(|_| TrainError::Options(format!("{num_tasks} tasks")))?;
    let gnn = Gnn::new(
        &vs.root(),
        GnnConfig {
            kind,
            dropout: args.model.dropout,
            num_tasks: num_tasks_i64,
            ..GnnConfig::default()
        },
    )?;
    match &pretrained {
        Some(path) => load_pretrained(&vs, path, args.model.allow_partial)?,
        None => tracing::warn!(
            "NO PRE-TRAINED WEIGHTS: no --pretrained given and no {model_name}_*.pth in {}; \
             fine-tuning starts from RANDOM initialisation",
            DataOptions::default().cache_dir.join("models").display()
        ),
    }
    let mut opt = if args.train.weight_decay > 0.0 {
        nn::AdamW::default()
            .wd(args.train.weight_decay)
            .build(&vs, args.train.lr)?
    } else {
        nn::Adam::default().build(&vs, args.train.lr)?
    };

    // Epochs.
    let graphs: Vec<&GraphFeatures> = dataset.rows.iter().map(|r| &r.graph).collect();
    let ctx = Ctx {
        gnn: &gnn,
        graphs: &graphs,
        labels: &labels,
        task_type: dataset.task_type,
        num_tasks,
        batch_size: args.train.batch_size,
        device,
    };
    let mut collator = Collator::new();
    let mut tracker = Patience::new(
        args.stop.patience,
        args.stop.min_delta,
        metric.higher_is_better(),
    );
    let mut order = train_rows;
    let mut best_state: Option<Vec<(String, Tensor)>> = None;
    let mut records: Vec<EpochRecord> = Vec::new();
    let mut stop_reason = "max-epochs";
    for epoch in 1..=args.train.epochs {
        let t0 = Instant::now();
        shuffle(&mut order, args.data.seed, epoch as u64);
        let train_loss = train_epoch(&ctx, &mut collator, &mut opt, &order, epoch, args)?;
        let valid = evaluate(&ctx, &mut collator, &parts.valid)?;
        let test = evaluate(&ctx, &mut collator, &parts.test)?;
        let update = tracker.update(epoch, valid.get(metric));
        if update.new_best {
            best_state = Some(snapshot(&vs)?);
        }
        let record = EpochRecord {
            epoch,
            train_loss,
            valid,
            test,
            best: update.new_best,
            seconds: t0.elapsed().as_secs_f64(),
            energy_j: None,
            co2_g: None,
        };
        run.append_epoch(&record)?;
        tracing::info!(
            "epoch {epoch}/{}: train loss {train_loss:.4}, valid {metric:?} {}, test {metric:?} {}, \
             valid loss {}{} ({:.1} s)",
            args.train.epochs,
            fmt(record.valid.get(metric)),
            fmt(record.test.get(metric)),
            fmt(record.valid.loss),
            if update.new_best { " [best]" } else { "" },
            record.seconds
        );
        records.push(record);
        if args.stop.stop == StopPolicy::Patience && update.exhausted {
            tracing::info!(
                "stopping: no validation improvement > {} for {} epochs",
                args.stop.min_delta,
                update.stale_epochs
            );
            stop_reason = "patience";
            break;
        }
    }
    let Some(last) = records.last().cloned() else {
        return Err(TrainError::Options("--epochs must be at least 1".into()));
    };

    // Weights and summary.
    checkpoint::save_safetensors(&vs, &run.file("final.safetensors")).map_err(|source| {
        TrainError::Checkpoint {
            path: run.file("final.safetensors"),
            source,
            hint: String::new(),
        }
    })?;
    let best_path = run.file("best.safetensors");
    let best_epoch = tracker.best_epoch().unwrap_or(last.epoch);
    let saved = match &best_state {
        Some(state) => Tensor::write_safetensors(state, &best_path).map_err(TrainError::from),
        None => std::fs::copy(run.file("final.safetensors"), &best_path)
            .map(|_| ())
            .map_err(|e| TrainError::io(&best_path, e)),
    };
    saved?;
    let best = &records[best_epoch - 1];
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
        seconds: started.elapsed().as_secs_f64(),
        energy_j: None,
        co2_g: None,
    };
    run.write_summary(&summary)?;
    Ok(summary)
}

fn check_supported(args: &FinetuneArgs) -> Result<(), TrainError> {
    if args.model.model == ModelKind::Transformer {
        return Err(TrainError::NotBuilt(
            "fine-tuning --model transformer".into(),
        ));
    }
    if args.stop.stop == StopPolicy::Anges {
        return Err(TrainError::NotBuilt("--stop anges".into()));
    }
    match args.prune.prune {
        PruneMethod::None => {}
        PruneMethod::Molpeg => return Err(TrainError::NotBuilt("--prune molpeg".into())),
        PruneMethod::Random => return Err(TrainError::NotBuilt("--prune random".into())),
    }
    if args.train.epochs == 0 || args.train.batch_size == 0 {
        return Err(TrainError::Options(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    let t = &args.train;
    // Written positively so that NaN (which compares false) is rejected too.
    let valid = t.lr > 0.0 && t.lr.is_finite() && t.weight_decay >= 0.0 && t.clip_grad >= 0.0;
    if !valid {
        return Err(TrainError::Options(
            "--lr must be > 0, --weight-decay and --clip-grad ≥ 0".into(),
        ));
    }
    if !(0.0..1.0).contains(&args.model.dropout) {
        return Err(TrainError::Options(format!(
            "--dropout {} is not in [0, 1)",
            args.model.dropout
        )));
    }
    Ok(())
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
        let name = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{kind:?}"));
        dropped.insert(name, n);
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

fn build_labels(ds: &Dataset, train: &[usize]) -> Result<Labels, TrainError> {
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

/// The first `gin_*.pth` / `gcn_*.pth` (by name) in `<cache>/models`, if any.
fn cached_checkpoint(model: ModelKind, cache_dir: &Path) -> Option<PathBuf> {
    let prefix = match model {
        ModelKind::Gin => "gin_",
        ModelKind::Gcn => "gcn_",
        ModelKind::Transformer => return None,
    };
    let dir = cache_dir.join("models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".pth"))
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

/// One pass over the training rows in `order`; returns the mean loss (batch-size weighted).
fn train_epoch(
    ctx: &Ctx<'_>,
    collator: &mut Collator,
    opt: &mut nn::Optimizer,
    order: &[usize],
    epoch: usize,
    args: &FinetuneArgs,
) -> Result<f64, TrainError> {
    let batches = order.len().div_ceil(ctx.batch_size);
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(batches as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches, loss {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{epoch}/{}", args.train.epochs));
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in order.chunks(ctx.batch_size) {
        let graphs: Vec<&GraphFeatures> = chunk.iter().map(|&p| ctx.graphs[p]).collect();
        let rows: Vec<&[f32]> = chunk
            .iter()
            .map(|&p| ctx.labels.train[p].as_slice())
            .collect();
        let batch = collator.collate(&graphs, ctx.device)?;
        let y = collator.labels(&rows, ctx.device)?;
        let out = ctx.gnn.forward(&batch, true)?;
        let loss = match ctx.task_type {
            TaskType::Classification => masked_bce_with_logits(&out, &y)?,
            TaskType::Regression => masked_mse(&out, &y)?,
        };
        opt.zero_grad();
        loss.f_backward()?;
        if args.train.clip_grad > 0.0 {
            opt.clip_grad_norm(args.train.clip_grad);
        }
        opt.step();
        let value = f64::try_from(&loss)?;
        total += value * chunk.len() as f64;
        count += chunk.len();
        bar.inc(1);
        bar.set_message(format!("{:.4}", total / count as f64));
    }
    bar.finish_and_clear();
    Ok(total / count.max(1) as f64)
}

/// Evaluation-mode metrics (and loss) of the rows at `positions`; all `None` when empty.
fn evaluate(
    ctx: &Ctx<'_>,
    collator: &mut Collator,
    positions: &[usize],
) -> Result<EvalMetrics, TrainError> {
    if positions.is_empty() {
        return Ok(EvalMetrics::default());
    }
    let t = ctx.num_tasks;
    let mut outputs: Vec<f32> = Vec::with_capacity(positions.len() * t);
    for chunk in positions.chunks(ctx.batch_size) {
        let graphs: Vec<&GraphFeatures> = chunk.iter().map(|&p| ctx.graphs[p]).collect();
        let batch = collator.collate(&graphs, ctx.device)?;
        let out = tch::no_grad(|| ctx.gnn.forward(&batch, false))?;
        let out = out
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_view([-1])?;
        outputs.extend(Vec::<f32>::try_from(&out)?);
    }
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
                Some(st) => outputs
                    .iter()
                    .enumerate()
                    .map(|(i, &z)| (f64::from(z) * st.std[i % t] + st.mean[i % t]) as f32)
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

/// A CPU copy of every variable (the best-validation weights, kept in memory).
fn snapshot(vs: &VarStore) -> Result<Vec<(String, Tensor)>, TrainError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        vars.into_iter()
            .map(|(k, v)| {
                Ok((
                    k,
                    v.f_detach_copy()?
                        .f_to_device(Device::Cpu)?
                        .f_contiguous()?,
                ))
            })
            .collect()
    })
}

/// Seeded Fisher–Yates shuffle (SplitMix64 stream of `(seed, epoch)`), the same on every
/// machine.
fn shuffle(order: &mut [usize], seed: u64, epoch: u64) {
    let mut state = seed ^ epoch.wrapping_mul(0xd1b5_4a32_d192_ed03);
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// The seed as libtorch takes it (wrapping the top bit).
fn seed_i64(seed: u64) -> i64 {
    seed as i64
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let base: Vec<usize> = (0..50).collect();
        let (mut a, mut b, mut c) = (base.clone(), base.clone(), base.clone());
        shuffle(&mut a, 7, 1);
        shuffle(&mut b, 7, 1);
        shuffle(&mut c, 7, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        a.sort_unstable();
        assert_eq!(a, base);
    }

    #[test]
    fn host_losses_by_hand() {
        let l = bce_loss(&[0.0, 2.0, 5.0], &[1.0, -1.0, 0.0]).unwrap();
        let expect = (2f64.ln() + (1.0 + 2f64.exp()).ln()) / 2.0;
        assert!((l - expect).abs() < 1e-12);
        assert_eq!(bce_loss(&[1.0], &[0.0]), None);
        assert_eq!(mse_loss(&[1.0, 3.0], &[0.0, f32::NAN]), Some(1.0));
    }

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
    }
}
