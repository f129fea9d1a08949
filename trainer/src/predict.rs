//! `anges-train predict`: a finished fine-tuning run (or several, an ensemble) applied to the
//! molecules of a CSV file.
//!
//! Each run is rebuilt from what it recorded: the model settings of `config.json`
//! ([`crate::config::legacy::recorded_config`]), `predictor.json` (tasks, regression
//! standardisation, the 1D encoder and tokeniser: [`crate::train::predictions`]) and its best
//! weights, `best.safetensors`. The input's SMILES go through the trainer's own featurisation
//! ([`crate::data::dataset::featurize_table`], and the run's tokeniser for the 1D model), and
//! batches through the network as the run evaluated them.
//!
//! The output has one row per input row, in input order: the input's columns, one column per
//! task (the probability for classification, the value in the dataset's units for regression;
//! `<task>_pred` when the input already has a column of that name), with several runs the mean
//! and a `<task>_std` column (population standard deviation over the runs), and `reason`: empty
//! when the row was predicted, else why not (its prediction cells are empty). Runs of an ensemble
//! must share the model family and the tasks.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tch::Device;

use crate::checkpoint::{self, LoadOptions};
use crate::config::{ComputeConfig, FinetuneConfig, legacy};
use crate::data::DataError;
use crate::data::dataset::{available_threads, featurize_table};
use crate::data::table::{self, Table};
use crate::featurize::{GraphFeatures, SmilesTokenizer, TokenIds};
use crate::models::{Collator, SequenceModel};
use crate::train::TrainError;
use crate::train::network::{self, Inputs, Network};
use crate::train::predictions::{
    self, BEST_WEIGHTS_FILE, PREDICTOR_FILE, PREDICTOR_FORMAT, Predictor, prediction_column,
};

/// The column that says why a row has no prediction (empty when it has one).
pub const REASON_COLUMN: &str = "reason";

/// What `anges-train predict` does.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictConfig {
    /// Run directories of finished fine-tuning runs (several: an ensemble).
    pub runs: Vec<PathBuf>,
    /// The input CSV (`.csv` or `.csv.gz`).
    pub input: PathBuf,
    /// The output CSV.
    pub out: PathBuf,
    /// The input's SMILES column.
    pub smiles_column: String,
    /// Mini-batch size (`None`: the first run's).
    pub batch_size: Option<usize>,
    /// Device and threads.
    pub compute: ComputeConfig,
}

impl PredictConfig {
    /// Checks the values; the message names the flag.
    pub fn validate(&self) -> Result<(), PredictError> {
        if self.runs.is_empty() {
            return Err(PredictError::Options("give at least one --run DIR".into()));
        }
        if self.batch_size == Some(0) {
            return Err(PredictError::Options(
                "--batch-size must be at least 1".into(),
            ));
        }
        if self.smiles_column.trim().is_empty() {
            return Err(PredictError::Options(
                "--smiles-column must name a column".into(),
            ));
        }
        Ok(())
    }
}

/// Why a prediction could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// An invalid flag value.
    #[error("invalid options: {0}")]
    Options(String),
    /// A run directory that cannot be used for prediction.
    #[error("run {}: {message}", dir.display())]
    Run {
        /// The run directory.
        dir: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Runs of an ensemble that do not predict the same thing.
    #[error("these runs cannot form an ensemble: {0}")]
    Mismatch(String),
    /// The input could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model could not be built or run.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The output could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a prediction did.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOutcome {
    /// Input rows (= output rows).
    pub rows: usize,
    /// Rows without a prediction (a `reason` given).
    pub unpredicted: usize,
    /// Runs averaged.
    pub runs: usize,
    /// The output file.
    pub out: PathBuf,
}

/// A finished run, rebuilt for inference.
struct TrainedRun {
    dir: PathBuf,
    predictor: Predictor,
    net: Network,
    /// 1D: the run's tokeniser.
    tokenizer: Option<SmilesTokenizer>,
    /// Kept alive: the network's variables.
    _vs: tch::nn::VarStore,
}

impl TrainedRun {
    /// Rebuilds the run in `dir` on `device` with its best weights.
    fn open(dir: &Path, device: Device) -> Result<Self, PredictError> {
        let bad = |message: String| PredictError::Run {
            dir: dir.to_owned(),
            message,
        };
        if !dir.join("summary.json").is_file() {
            return Err(bad(
                "no summary.json: not a finished fine-tuning run (finish or --resume it first)"
                    .into(),
            ));
        }
        let config = read_config(dir).map_err(bad)?;
        let predictor_path = dir.join(PREDICTOR_FILE);
        let text = std::fs::read_to_string(&predictor_path).map_err(|e| {
            bad(format!(
                "{PREDICTOR_FILE}: {e} (runs finished before `anges-train predict` existed lack \
                 it: train the run again)"
            ))
        })?;
        let predictor: Predictor =
            serde_json::from_str(&text).map_err(|e| bad(format!("{PREDICTOR_FILE}: {e}")))?;
        if predictor.format != PREDICTOR_FORMAT || predictor.model != config.model.kind {
            return Err(bad(format!(
                "{PREDICTOR_FILE} (format {}, model {}) does not match this trainer (format \
                 {PREDICTOR_FORMAT}) or config.json (model {})",
                predictor.format,
                predictor.model.name(),
                config.model.kind.name()
            )));
        }
        let num_tasks = i64::try_from(predictor.tasks.len())
            .map_err(|_| bad(format!("{} tasks", predictor.tasks.len())))?;
        let (vs, net, tokenizer) = if config.model.kind.is_graph() {
            let (vs, net) = network::graph_network(&config.model, num_tasks, device)?;
            (vs, net, None)
        } else {
            let (Some(encoder), Some(file)) = (&predictor.encoder, &predictor.tokenizer) else {
                return Err(bad(format!(
                    "{PREDICTOR_FILE} lacks the 1D encoder or tokeniser"
                )));
            };
            // The run's own representation: a SELFIES run's vocabulary is of SELFIES symbols.
            let tokenizer =
                SmilesTokenizer::from_path_as(&dir.join(file), config.model.representation)
                    .map_err(|e| bad(format!("{file}: {e}")))?;
            let vs = tch::nn::VarStore::new(device);
            let model =
                SequenceModel::new(&vs.root(), encoder.clone(), num_tasks, config.model.pooling)
                    .map_err(TrainError::from)?;
            (vs, Network::Sequence(Box::new(model)), Some(tokenizer))
        };
        let weights = dir.join(BEST_WEIGHTS_FILE);
        checkpoint::load_file_into(&vs, &weights, &LoadOptions::default())
            .map_err(|e| bad(format!("{BEST_WEIGHTS_FILE}: {e}")))?;
        tracing::info!(
            "{}: {} {} task(s) {:?}",
            dir.display(),
            config.model.kind.name(),
            predictor.tasks.len(),
            predictor.task_type
        );
        Ok(Self {
            dir: dir.to_owned(),
            predictor,
            net,
            tokenizer,
            _vs: vs,
        })
    }
}

/// The run's configuration, from its `config.json` (either layout).
fn read_config(dir: &Path) -> Result<FinetuneConfig, String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("config.json: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("config.json: {e}"))?;
    legacy::recorded_config(&json).map_err(|e| e.0)
}

/// Refuses an ensemble whose runs differ in model family, task type or tasks.
fn check_ensemble(runs: &[TrainedRun]) -> Result<(), PredictError> {
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let what = |r: &TrainedRun| {
        format!(
            "{} is a {} {:?} model of tasks {:?}",
            r.dir.display(),
            r.predictor.model.name(),
            r.predictor.task_type,
            r.predictor.tasks
        )
    };
    for run in &runs[1..] {
        let (a, b) = (&first.predictor, &run.predictor);
        if a.model != b.model || a.task_type != b.task_type || a.tasks != b.tasks {
            return Err(PredictError::Mismatch(format!(
                "{}, but {} (an ensemble averages runs of one model family on the same tasks, \
                 e.g. seeds)",
                what(first),
                what(run)
            )));
        }
    }
    Ok(())
}

/// The input table: its header, every record's cells, and each record's line.
struct InputTable {
    header: Vec<String>,
    records: Vec<Vec<String>>,
    lines: Vec<u64>,
}

/// Reads every column of `path` (all rows kept, in order).
fn read_input(path: &Path) -> Result<InputTable, DataError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(table::open(path)?);
    let header = table::header_of(path, &mut reader)?;
    let (mut records, mut lines) = (Vec::new(), Vec::new());
    let mut record = csv::StringRecord::new();
    let mut last_line = 1;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(table::csv_error(path, e, last_line + 1)),
        }
        last_line = record.position().map_or(last_line + 1, csv::Position::line);
        records.push(record.iter().map(str::to_owned).collect());
        lines.push(last_line);
    }
    if records.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(InputTable {
        header,
        records,
        lines,
    })
}

/// Predicts the molecules of `config.input` with the runs of `config.runs`; writes
/// `config.out`.
pub fn run_predict(config: &PredictConfig) -> Result<PredictOutcome, PredictError> {
    config.validate()?;
    if config.compute.threads > 0 {
        let n = i32::try_from(config.compute.threads).map_err(|_| {
            PredictError::Options(format!("--threads {} is too large", config.compute.threads))
        })?;
        tch::set_num_threads(n);
    }
    let device = config.compute.device.resolve().map_err(TrainError::from)?;
    let runs = config
        .runs
        .iter()
        .map(|dir| TrainedRun::open(dir, device))
        .collect::<Result<Vec<_>, _>>()?;
    check_ensemble(&runs)?;
    let first = &runs[0].predictor;
    let (tasks, task_type) = (first.tasks.clone(), first.task_type);
    let batch_size = config.batch_size.unwrap_or(first.batch_size).max(1);

    // The input, featurised as the trainer featurises a dataset.
    let input = read_input(&config.input)?;
    let smiles_idx = input
        .header
        .iter()
        .position(|h| *h == config.smiles_column)
        .ok_or_else(|| DataError::MissingColumn {
            path: config.input.clone(),
            column: config.smiles_column.clone(),
            available: input.header.clone(),
        })?;
    let n = input.records.len();
    let table = Table {
        task_names: Vec::new(),
        smiles: input
            .records
            .iter()
            .map(|r| r.get(smiles_idx).map_or("", |s| s.trim()).to_owned())
            .collect(),
        labels: vec![Vec::new(); n],
        lines: input.lines.clone(),
    };
    let (rows, skipped) = featurize_table(&table, available_threads());
    let mut reason: Vec<Option<String>> = vec![None; n];
    for s in skipped {
        reason[s.row] = Some(format!("{}: {}", s.kind.name(), s.message));
    }
    let mut graphs: Vec<Option<GraphFeatures>> = vec![None; n];
    for row in rows {
        if let (true, Err(why)) = (runs[0].tokenizer.is_none(), row.graph.validate()) {
            reason[row.row] = Some(format!("model-vocabulary: {why}"));
        } else {
            graphs[row.row] = Some(row.graph);
        }
    }
    // 1D: every run's token ids (the runs' vocabularies may differ); a row any run cannot
    // encode gets no prediction.
    let mut tokens: Vec<Vec<TokenIds>> = Vec::new();
    for run in &runs {
        let (Some(tokenizer), Network::Sequence(model)) = (&run.tokenizer, &run.net) else {
            continue;
        };
        let max_len = usize::try_from(model.encoder.config().max_len()).unwrap_or(0);
        let mut ids = vec![TokenIds::new(); n];
        for (i, smiles) in table.smiles.iter().enumerate() {
            if reason[i].is_some() {
                continue;
            }
            match tokenizer.encode(smiles, max_len) {
                Ok(t) => ids[i] = t,
                Err(why) => reason[i] = Some(format!("model-vocabulary: {why}")),
            }
        }
        tokens.push(ids);
    }
    let positions: Vec<usize> = (0..n).filter(|&i| reason[i].is_none()).collect();
    let unpredicted = n - positions.len();
    if unpredicted > 0 {
        tracing::warn!("{unpredicted} of {n} row(s) cannot be predicted (see the reason column)");
    }

    // Every run over the predictable rows.
    let bar = progress_bar((positions.len().div_ceil(batch_size) * runs.len()) as u64);
    let mut per_run: Vec<Vec<f64>> = Vec::with_capacity(runs.len());
    let mut collator = Collator::new();
    let graph_refs: Vec<&GraphFeatures> = positions
        .iter()
        .filter_map(|&i| graphs[i].as_ref())
        .collect();
    for (k, run) in runs.iter().enumerate() {
        // The inputs are the predictable rows, in order.
        let ids: Vec<TokenIds>;
        let inputs = match (run.tokenizer.as_ref(), tokens.get(k)) {
            (Some(t), Some(all)) => {
                ids = positions.iter().map(|&i| all[i].clone()).collect();
                Inputs::Tokens(&ids, t.pad_id())
            }
            _ => Inputs::Graphs(graph_refs.clone()),
        };
        let order: Vec<usize> = (0..positions.len()).collect();
        let outputs = predictions::forward_rows(
            &run.net,
            &inputs,
            &mut collator,
            &order,
            batch_size,
            device,
            || bar.inc(1),
        )?;
        let standardizer = run.predictor.standardizer();
        per_run.push(predictions::predictions(
            &outputs,
            task_type,
            standardizer.as_ref(),
            tasks.len(),
        ));
    }
    bar.finish_and_clear();

    write_output(&config.out, &input, &tasks, &positions, &per_run, &reason)?;
    Ok(PredictOutcome {
        rows: n,
        unpredicted,
        runs: runs.len(),
        out: config.out.clone(),
    })
}

/// A progress bar over `batches` batches, hidden when stderr is not a terminal.
fn progress_bar(batches: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(batches)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} batches") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Mean and population standard deviation of `values`.
fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Writes the input's rows with the prediction columns (see the module documentation).
fn write_output(
    out: &Path,
    input: &InputTable,
    tasks: &[String],
    positions: &[usize],
    per_run: &[Vec<f64>],
    reason: &[Option<String>],
) -> Result<(), PredictError> {
    let t = tasks.len();
    let ensemble = per_run.len() > 1;
    let mut header = input.header.clone();
    let taken = header.clone();
    let names: Vec<String> = tasks.iter().map(|x| prediction_column(x, &taken)).collect();
    for name in &names {
        header.push(name.clone());
    }
    if ensemble {
        for name in &names {
            let std = prediction_column(&format!("{name}_std"), &header);
            header.push(std);
        }
    }
    header.push(prediction_column(REASON_COLUMN, &header));
    // Output row -> index among the predicted rows.
    let mut slot = vec![None; input.records.len()];
    for (k, &p) in positions.iter().enumerate() {
        slot[p] = Some(k);
    }
    let io = |path: &Path, e: std::io::Error| PredictError::Io {
        path: path.to_owned(),
        source: e,
    };
    crate::files::replace_file(
        out,
        |tmp| {
            let mut w = csv::Writer::from_path(tmp).map_err(|e| io(tmp, e.into()))?;
            w.write_record(&header).map_err(|e| io(tmp, e.into()))?;
            for (i, record) in input.records.iter().enumerate() {
                let mut cells = record.clone();
                match slot[i] {
                    Some(k) => {
                        let stats: Vec<(f64, f64)> = (0..t)
                            .map(|task| mean_std(per_run.iter().map(|r| r[k * t + task])))
                            .collect();
                        cells.extend(stats.iter().map(|(m, _)| m.to_string()));
                        if ensemble {
                            cells.extend(stats.iter().map(|(_, s)| s.to_string()));
                        }
                    }
                    None => {
                        let empty = if ensemble { 2 * t } else { t };
                        cells.extend(std::iter::repeat_n(String::new(), empty));
                    }
                }
                cells.push(reason[i].clone().unwrap_or_default());
                w.write_record(&cells).map_err(|e| io(tmp, e.into()))?;
            }
            w.flush().map_err(|e| io(tmp, e))
        },
        io,
    )?;
    tracing::info!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensemble_statistics() {
        let (m, s) = mean_std([0.2, 0.4].into_iter());
        assert!((m - 0.3).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
        assert_eq!(mean_std([5.0].into_iter()), (5.0, 0.0));
    }

    #[test]
    fn flags_are_checked() {
        let ok = PredictConfig {
            runs: vec!["r".into()],
            input: "in.csv".into(),
            out: "out.csv".into(),
            smiles_column: "smiles".into(),
            batch_size: None,
            compute: ComputeConfig::default(),
        };
        assert!(ok.validate().is_ok());
        let none = PredictConfig {
            runs: Vec::new(),
            ..ok.clone()
        };
        assert!(none.validate().is_err());
        let zero = PredictConfig {
            batch_size: Some(0),
            ..ok
        };
        assert!(zero.validate().is_err());
    }
}
