//! Inference with a fine-tuned network, shared by the end of a run and `anges-train predict`
//! ([`crate::predict`]): the batched forward pass, the outputs in the dataset's units
//! (probabilities for classification, original target units for regression), and what a
//! finished run leaves for inference.
//!
//! At its end a run writes, beside `best.safetensors`:
//! - [`PREDICTOR_FILE`] (`predictor.json`, a [`Predictor`]): the tasks, their type, the
//!   regression standardisation fitted on the training rows, the 1D encoder's configuration and
//!   tokeniser file, and the batch size;
//! - the 1D model's tokeniser (`vocab.txt` or `tokenizer.json`), so that the vocabulary built
//!   from the training data travels with the run;
//! - [`TEST_PREDICTIONS_FILE`] (`test_predictions.csv`): per test row, its file row, SMILES,
//!   labels and the best weights' predictions (`<task>_pred`).
//!
//! This module sits in `train` (not in `predict`) so that the run's end can use it without a
//! cycle between the two.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind};

use super::TrainError;
use super::network::{Inputs, Network};
use super::rundir::replace_atomically;
use crate::checkpoint::{self, LoadOptions};
use crate::config::ModelKind;
use crate::data::{Dataset, TaskType};
use crate::featurize::SmilesTokenizer;
use crate::models::loss::Standardizer;
use crate::models::{Collator, TransformerConfig};

/// The best-validation weights of a run (what prediction uses).
pub const BEST_WEIGHTS_FILE: &str = "best.safetensors";
/// What a finished run records for inference.
pub const PREDICTOR_FILE: &str = "predictor.json";
/// The best weights' predictions on the test rows.
pub const TEST_PREDICTIONS_FILE: &str = "test_predictions.csv";
/// Version of [`Predictor`]'s layout.
pub const PREDICTOR_FORMAT: u32 = 1;

/// What inference needs of a run besides `config.json` and the weights (`predictor.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictor {
    /// Layout version ([`PREDICTOR_FORMAT`]).
    pub format: u32,
    /// The model family.
    pub model: ModelKind,
    /// Classification or regression.
    pub task_type: TaskType,
    /// Task names, in the order of the network's outputs.
    pub tasks: Vec<String>,
    /// Regression: per-task mean of the training targets (outputs are `z·std + mean`).
    pub target_mean: Option<Vec<f64>>,
    /// Regression: per-task standard deviation of the training targets.
    pub target_std: Option<Vec<f64>>,
    /// 1D: the encoder's configuration.
    pub encoder: Option<TransformerConfig>,
    /// 1D: the tokeniser's file in the run directory (`vocab.txt` or `tokenizer.json`).
    pub tokenizer: Option<String>,
    /// The run's mini-batch size (prediction batches the same way by default).
    pub batch_size: usize,
}

impl Predictor {
    /// The regression standardisation, when the run had one.
    pub fn standardizer(&self) -> Option<Standardizer> {
        match (&self.target_mean, &self.target_std) {
            (Some(mean), Some(std)) => Some(Standardizer {
                mean: mean.clone(),
                std: std.clone(),
            }),
            _ => None,
        }
    }
}

/// Raw network outputs `[positions.len() × T]`, row-major, of the rows at `positions`, in
/// evaluation mode and batches of `batch_size`; `on_batch` is called after each batch.
pub(crate) fn forward_rows(
    net: &Network,
    inputs: &Inputs<'_>,
    collator: &mut Collator,
    positions: &[usize],
    batch_size: usize,
    device: Device,
    mut on_batch: impl FnMut(),
) -> Result<Vec<f32>, TrainError> {
    let mut outputs = Vec::new();
    for chunk in positions.chunks(batch_size.max(1)) {
        let out = tch::no_grad(|| net.forward(inputs, collator, chunk, device, false))?;
        let out = out
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_view([-1])?;
        outputs.extend(Vec::<f32>::try_from(&out)?);
        on_batch();
    }
    Ok(outputs)
}

/// Regression outputs `[N × T]` back in target units: `z·std + mean`, task-wise (unchanged
/// without a standardisation).
pub(crate) fn target_units(outputs: &[f32], st: Option<&Standardizer>, tasks: usize) -> Vec<f64> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, &z)| match st {
            Some(st) => f64::from(z) * st.std[i % tasks] + st.mean[i % tasks],
            None => f64::from(z),
        })
        .collect()
}

/// What a user reads of raw outputs `[N × T]`: the probability (sigmoid of the logit) for
/// classification, the value in target units for regression.
pub(crate) fn predictions(
    outputs: &[f32],
    task_type: TaskType,
    st: Option<&Standardizer>,
    tasks: usize,
) -> Vec<f64> {
    match task_type {
        TaskType::Classification => outputs
            .iter()
            .map(|&z| 1.0 / (1.0 + (-f64::from(z)).exp()))
            .collect(),
        TaskType::Regression => target_units(outputs, st, tasks),
    }
}

/// The name of the column holding `task`'s prediction in a table whose columns are `taken`:
/// the task's name, with `_pred` appended while it collides.
pub fn prediction_column(task: &str, taken: &[String]) -> String {
    let mut name = task.to_owned();
    while taken.contains(&name) {
        name.push_str("_pred");
    }
    name
}

/// What the end of a run hands over to write [`PREDICTOR_FILE`], the tokeniser and
/// [`TEST_PREDICTIONS_FILE`].
pub(crate) struct RunOutputs<'a> {
    /// The run directory.
    pub(crate) dir: &'a Path,
    /// The tuned variables (the best weights are loaded into them).
    pub(crate) vs: &'a VarStore,
    /// The network over them.
    pub(crate) net: &'a Network,
    /// Every dataset row's inputs.
    pub(crate) inputs: &'a Inputs<'a>,
    /// The dataset (rows in the order of `inputs`).
    pub(crate) dataset: &'a Dataset,
    /// Positions of the test rows.
    pub(crate) test: &'a [usize],
    /// Regression: the training-set standardisation.
    pub(crate) standardizer: Option<&'a Standardizer>,
    /// The model family.
    pub(crate) model: ModelKind,
    /// 1D: the tokeniser and the encoder's configuration.
    pub(crate) sequence: Option<(&'a SmilesTokenizer, &'a TransformerConfig)>,
    /// Mini-batch size.
    pub(crate) batch_size: usize,
    /// Where the network runs.
    pub(crate) device: Device,
}

/// Writes what prediction needs (`predictor.json`, the 1D tokeniser), loads the best weights
/// into the run's variables and writes their predictions on the test rows
/// (`test_predictions.csv`). The run's end calls it once `best.safetensors` is final.
pub(crate) fn write_run_outputs(o: &RunOutputs<'_>) -> Result<(), TrainError> {
    let tokenizer = match o.sequence {
        Some((tokenizer, _)) => Some(save_tokenizer(tokenizer, o.dir)?),
        None => None,
    };
    let predictor = Predictor {
        format: PREDICTOR_FORMAT,
        model: o.model,
        task_type: o.dataset.task_type,
        tasks: o.dataset.task_names.clone(),
        target_mean: o.standardizer.map(|s| s.mean.clone()),
        target_std: o.standardizer.map(|s| s.std.clone()),
        encoder: o.sequence.map(|(_, e)| e.clone()),
        tokenizer,
        batch_size: o.batch_size,
    };
    let path = o.dir.join(PREDICTOR_FILE);
    let text = serde_json::to_string_pretty(&predictor)
        .map_err(|e| TrainError::io(&path, std::io::Error::other(e)))?;
    replace_atomically(&path, |tmp| {
        std::fs::write(tmp, text + "\n").map_err(|e| TrainError::io(tmp, e))
    })?;

    let best = o.dir.join(BEST_WEIGHTS_FILE);
    checkpoint::load_file_into(o.vs, &best, &LoadOptions::default()).map_err(|source| {
        TrainError::Checkpoint {
            path: best.clone(),
            source,
            hint: String::new(),
        }
    })?;
    let tasks = o.dataset.num_tasks();
    let outputs = forward_rows(
        o.net,
        o.inputs,
        &mut Collator::new(),
        o.test,
        o.batch_size,
        o.device,
        || {},
    )?;
    let values = predictions(&outputs, o.dataset.task_type, o.standardizer, tasks);
    let path = o.dir.join(TEST_PREDICTIONS_FILE);
    replace_atomically(&path, |tmp| {
        write_test_csv(tmp, o.dataset, o.test, &values).map_err(|e| TrainError::io(tmp, e))
    })?;
    tracing::info!(
        "{} test row(s) predicted with the best weights: {}",
        o.test.len(),
        path.display()
    );
    Ok(())
}

/// Saves the 1D tokeniser into `dir`; returns its file name.
fn save_tokenizer(tokenizer: &SmilesTokenizer, dir: &Path) -> Result<String, TrainError> {
    let (name, result): (&str, Result<(), String>) = match tokenizer {
        SmilesTokenizer::Regex(t) => {
            let name = "vocab.txt";
            (
                name,
                t.save_vocab(&dir.join(name)).map_err(|e| e.to_string()),
            )
        }
        SmilesTokenizer::HuggingFace(t) => {
            let name = "tokenizer.json";
            (
                name,
                t.save(dir.join(name), false).map_err(|e| e.to_string()),
            )
        }
    };
    let path: PathBuf = dir.join(name);
    result.map_err(|e| TrainError::io(&path, std::io::Error::other(e)))?;
    Ok(name.to_owned())
}

/// `row,smiles,<task>…,<task>_pred…`: the test rows' file row, SMILES, labels (empty when
/// missing) and predictions.
fn write_test_csv(
    path: &Path,
    ds: &Dataset,
    test: &[usize],
    values: &[f64],
) -> std::io::Result<()> {
    let mut header: Vec<String> = vec!["row".into(), "smiles".into()];
    header.extend(ds.task_names.iter().cloned());
    let taken = header.clone();
    header.extend(ds.task_names.iter().map(|t| prediction_column(t, &taken)));
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(&header)?;
    let tasks = ds.num_tasks();
    for (i, &p) in test.iter().enumerate() {
        let row = &ds.rows[p];
        let mut record = vec![row.row.to_string(), row.smiles.clone()];
        record.extend(
            row.labels
                .iter()
                .map(|l| l.map_or_else(String::new, |v| v.to_string())),
        );
        record.extend(
            values[i * tasks..(i + 1) * tasks]
                .iter()
                .map(f64::to_string),
        );
        w.write_record(&record)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_in_the_datasets_units() {
        let p = predictions(&[0.0, 2.0], TaskType::Classification, None, 1);
        assert_eq!(p[0], 0.5);
        assert!((p[1] - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-15);
        let st = Standardizer {
            mean: vec![10.0, -1.0],
            std: vec![2.0, 0.5],
        };
        let r = predictions(&[1.0, 2.0, -1.0, 0.0], TaskType::Regression, Some(&st), 2);
        assert_eq!(r, vec![12.0, 0.0, 8.0, -1.0]);
    }

    #[test]
    fn prediction_columns_never_hide_an_input_column() {
        let taken = vec!["smiles".to_owned(), "p_np".into(), "p_np_pred".into()];
        assert_eq!(prediction_column("tox", &taken), "tox");
        assert_eq!(prediction_column("p_np", &taken), "p_np_pred_pred");
    }
}
