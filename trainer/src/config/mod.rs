//! The validated configuration of the trainer's runs: what a fine-tuning or a pre-training
//! computes, independent of how it was asked for (the command line, a test, a Python binding).
//!
//! `anges-train`'s command line turns its flags into these types in one place (`cli.rs`, in the
//! spirit of ripgrep's low-level → high-level arguments); every check of a value or of a
//! combination lives in the `validate` methods here, and the runs call them again at their start,
//! so that a configuration built by hand is checked exactly like one built from flags.
//!
//! A fine-tuning run records its [`FinetuneConfig`] in `config.json` (beside what it resolved
//! to: the dataset file, the metric, the device, the starting weights), and `--resume` compares
//! the recorded configuration with the new one ([`crate::train::resume::check_config`]); the
//! `config.json` of a run written before this layout (its flags under `"args"`) is migrated when
//! read ([`legacy`]).
//!
//! The enums that name a domain choice live with the code that implements it and are re-exported
//! here: [`ModelKind`] ([`crate::models`]), [`SplitKind`] ([`crate::split`]), [`StopPolicy`] and
//! [`StopSpec`] ([`crate::policy`]), [`DeviceChoice`] ([`crate::runtime`]), [`Pooling`],
//! [`TaskType`] ([`crate::data`]), [`Representation`] ([`crate::featurize`]).

pub mod legacy;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::data::TaskType;
pub use crate::featurize::Representation;
pub use crate::models::{ModelKind, Pooling};
pub use crate::policy::{AngesOrder, AngesParams, AngesSignal, AngesVariant, StopPolicy, StopSpec};
pub use crate::runtime::DeviceChoice;
pub use crate::split::SplitKind;
pub use anges_meter_engine::carbon::IntensitySource;
pub use anges_tracking::config::{
    CarbonConfig, CarbonOrigin, ConfigError, MeterConfig, MeterMode, ResolvedCarbon,
};

/// Data pruning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Train on every sample every epoch.
    #[default]
    None,
    /// MolPeg: keep the samples with the largest online/EMA-reference loss discrepancy.
    Molpeg,
    /// Dynamic random pruning with the same keep ratio (baseline).
    Random,
}

/// Where the numbers are crunched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeConfig {
    /// The device (not recorded: a run may resume on another one).
    #[serde(skip)]
    pub device: DeviceChoice,
    /// libtorch CPU threads (0 = libtorch's default).
    pub threads: usize,
}

/// Optimisation: epochs, batches, Adam(W), clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay (0 = Adam, > 0 = AdamW).
    pub weight_decay: f64,
    /// Gradient-norm clipping (0 = none).
    pub clip_grad: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            clip_grad: 0.0,
        }
    }
}

impl OptimConfig {
    /// Checks `--epochs`, `--batch-size`, `--lr`, `--weight-decay` and `--clip-grad`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs == 0 {
            return Err(ConfigError::new("--epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("--batch-size must be at least 1"));
        }
        // Written positively so that NaN (which compares false) is rejected too.
        let valid = self.lr > 0.0
            && self.lr.is_finite()
            && self.weight_decay >= 0.0
            && self.clip_grad >= 0.0;
        if !valid {
            return Err(ConfigError::new(
                "--lr must be > 0, --weight-decay and --clip-grad ≥ 0",
            ));
        }
        Ok(())
    }
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// A MoleculeNet name (`bbbp`, …) or a CSV file.
    pub dataset: String,
    /// Folder of the MoleculeNet CSVs (else `$ANGES_DATA_DIR`, else the user cache folder).
    pub data_dir: Option<PathBuf>,
    /// SMILES column of a custom CSV.
    pub smiles_column: Option<String>,
    /// Target columns of a custom CSV.
    #[serde(rename = "target")]
    pub targets: Vec<String>,
    /// How to split train/valid/test (80/10/10).
    pub split: SplitKind,
    /// Reuse the split of an earlier run (its `split.json`).
    pub split_file: Option<PathBuf>,
    /// Seed of the split, the initialisation and the data order.
    pub seed: u64,
    /// Only the first N data rows of the file.
    pub max_rows: Option<usize>,
    /// Classification or regression (`None`: the registry's, or guessed from a custom CSV's
    /// labels). Absent from the `config.json` of runs written before it: `None`.
    #[serde(default)]
    pub task_type: Option<TaskType>,
}

impl DataConfig {
    /// The defaults for `dataset`.
    pub fn new(dataset: impl Into<String>) -> Self {
        Self {
            dataset: dataset.into(),
            data_dir: None,
            smiles_column: None,
            targets: Vec::new(),
            split: SplitKind::Scaffold,
            split_file: None,
            seed: 0,
            max_rows: None,
            task_type: None,
        }
    }
}

/// Which model is tuned, from which weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Model family.
    #[serde(rename = "model")]
    pub kind: ModelKind,
    /// Pre-trained weights (else the model cache folder's, else random initialisation).
    pub pretrained: Option<PathBuf>,
    /// Ignore the model cache folder: start from random initialisation.
    pub random_init: bool,
    /// Accept a checkpoint that lacks some weights (the task head).
    pub allow_partial: bool,
    /// 1D model: batch rows of similar length together.
    pub group_by_length: bool,
    /// Pooling of the 1D model's token states.
    pub pooling: Pooling,
    /// Dropout of the 2D models.
    pub dropout: f64,
    /// GCN: L2-normalise each atom's row after the aggregation.
    pub gcn_l2_normalize: bool,
    /// 1D model: the string form it reads, SMILES or SELFIES. Absent from the `config.json` of
    /// runs written before it: SMILES.
    #[serde(default)]
    pub representation: Representation,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Gin,
            pretrained: None,
            random_init: false,
            allow_partial: false,
            group_by_length: false,
            pooling: Pooling::Cls,
            dropout: 0.5,
            gcn_l2_normalize: false,
            representation: Representation::Smiles,
        }
    }
}

/// Data pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneConfig {
    /// The method.
    #[serde(rename = "prune")]
    pub method: PruneMethod,
    /// Fraction of the training set kept each epoch.
    pub keep_ratio: f64,
    /// MolPeg: EMA factor of the reference model.
    pub ema_beta: f64,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            method: PruneMethod::None,
            keep_ratio: 0.5,
            ema_beta: 0.5,
        }
    }
}

impl PruneConfig {
    /// Checks `--keep-ratio` (always: a value out of range is a mistake even without
    /// `--prune`) and `--ema-beta` (for MolPeg).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.keep_ratio > 0.0 && self.keep_ratio <= 1.0) {
            return Err(ConfigError(format!(
                "--keep-ratio {} is not in (0, 1] (it is the fraction KEPT each epoch)",
                self.keep_ratio
            )));
        }
        if self.method == PruneMethod::Molpeg && !(0.0..=1.0).contains(&self.ema_beta) {
            return Err(ConfigError(format!(
                "--ema-beta {} is not in [0, 1]",
                self.ema_beta
            )));
        }
        Ok(())
    }
}

/// Everything a fine-tuning run computes (what `config.json` records under `"config"`).
///
/// # Examples
///
/// What `anges-train --dataset bbbp --stop anges --beta 0.3` describes, built without flags
/// ([`crate::train::run_finetune`] takes it as it is):
///
/// ```
/// use anges_trainer::config::{AngesParams, FinetuneConfig, MeterMode, StopSpec};
///
/// let mut config = FinetuneConfig::new("bbbp");
/// config.stop = StopSpec::Anges(AngesParams { beta: 0.3, ..AngesParams::default() });
/// assert!(config.validate().is_ok());
///
/// config.meter.mode = MeterMode::Off; // AN-GES reads emissions: refused, naming the flags
/// let err = config.validate().unwrap_err().to_string();
/// assert!(err.starts_with("invalid options: --stop anges needs emissions"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The data and its split.
    pub data: DataConfig,
    /// The model and its starting weights.
    pub model: ModelConfig,
    /// Device and threads.
    pub compute: ComputeConfig,
    /// Optimisation.
    pub train: OptimConfig,
    /// When to stop.
    pub stop: StopSpec,
    /// Data pruning.
    pub prune: PruneConfig,
    /// Metering.
    pub meter: MeterConfig,
    /// The run directory (else `runs/<time>-<dataset>-<model>/`).
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in `out` (not part of what the run computes).
    #[serde(skip)]
    pub resume: bool,
    /// Replace the run that `out` already holds; without it such a folder is refused, so that a
    /// repeated command never destroys a run (not part of what the run computes).
    #[serde(skip)]
    pub overwrite: bool,
}

impl FinetuneConfig {
    /// The defaults of `anges-train --dataset DATASET`.
    pub fn new(dataset: impl Into<String>) -> Self {
        Self {
            data: DataConfig::new(dataset),
            model: ModelConfig::default(),
            compute: ComputeConfig::default(),
            train: OptimConfig::default(),
            stop: StopSpec::Full,
            prune: PruneConfig::default(),
            meter: MeterConfig::default(),
            out: None,
            resume: false,
            overwrite: false,
        }
    }

    /// Checks every value and combination the run depends on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.stop.validate().map_err(ConfigError)?;
        if matches!(self.stop, StopSpec::Anges(_)) && self.meter.mode == MeterMode::Off {
            return Err(ConfigError::new(
                "--stop anges needs emissions: use --meter auto, daemon or local, not off",
            ));
        }
        self.train.validate()?;
        if !(0.0..1.0).contains(&self.model.dropout) {
            return Err(ConfigError(format!(
                "--dropout {} is not in [0, 1)",
                self.model.dropout
            )));
        }
        if self.data.max_rows == Some(0) {
            return Err(ConfigError::new("--max-rows must be at least 1"));
        }
        check_representation(self.model.kind, self.model.representation)?;
        if self.resume && self.out.is_none() {
            return Err(ConfigError::new("--resume needs --out DIR"));
        }
        if self.resume && self.overwrite {
            return Err(ConfigError::new(
                "--resume and --overwrite exclude each other",
            ));
        }
        self.meter.validate()?;
        self.prune.validate()
    }

    /// `gin`, `gcn` or `transformer`.
    pub fn model_name(&self) -> &'static str {
        self.model.kind.name()
    }
}

/// SELFIES is a string form: only the 1D model reads it.
fn check_representation(
    model: ModelKind,
    representation: Representation,
) -> Result<(), ConfigError> {
    if model.is_graph() && representation != Representation::Smiles {
        return Err(ConfigError(format!(
            "--representation {representation} is for --model transformer: the {} model reads \
             molecular graphs",
            model.name()
        )));
    }
    Ok(())
}

/// Size of a 1D encoder trained from scratch (BERT layout, exact GELU, feed-forward 4× wide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderSize {
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of Transformer blocks.
    pub layers: i64,
    /// Attention heads per block (divides `hidden_size`).
    pub heads: i64,
    /// A vocab.txt or tokenizer.json instead of the corpus' regex vocabulary.
    pub vocab: Option<PathBuf>,
}

impl Default for EncoderSize {
    fn default() -> Self {
        Self {
            hidden_size: 192,
            layers: 4,
            heads: 6,
            vocab: None,
        }
    }
}

/// Everything a pre-training run computes (what its log records under `"args"`: the layout is
/// that of the flags it replaced, so logs written before it resume unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// The SMILES corpus (CSV or CSV.gz with a header row).
    pub corpus: PathBuf,
    /// Its SMILES column (else `smiles` in any case, else the only column).
    pub smiles_column: Option<String>,
    /// Only the first N data rows.
    pub limit: Option<usize>,
    /// gin or gcn (attribute masking) or transformer (masked-language modelling).
    pub model: ModelKind,
    /// Share of each molecule to predict.
    pub mask_rate: f64,
    /// gin/gcn: start from this checkpoint.
    pub pretrained: Option<PathBuf>,
    /// gin/gcn: dropout after every layer.
    pub dropout: f64,
    /// gcn: L2-normalise each atom's row after the aggregation.
    pub gcn_l2_normalize: bool,
    /// transformer: the encoder's size and vocabulary.
    pub encoder: EncoderSize,
    /// transformer: SMILES or SELFIES tokens. Left out of the log when SMILES, so that the logs
    /// of runs written before it resume unchanged.
    #[serde(default, skip_serializing_if = "Representation::is_smiles")]
    pub representation: Representation,
    /// Device and threads.
    pub compute: ComputeConfig,
    /// Optimisation.
    pub train: OptimConfig,
    /// Seed of the initialisation, the data order and the masks.
    pub seed: u64,
    /// Metering.
    pub meter: MeterConfig,
    /// Where to write (else the model cache folder).
    pub out: Option<PathBuf>,
    /// Replace what `out` holds.
    pub overwrite: bool,
    /// Continue the interrupted run at `out` (not part of what the run computes).
    #[serde(skip)]
    pub resume: bool,
}

impl PretrainConfig {
    /// The defaults of `anges-train pretrain --corpus CORPUS` (attribute masking on GIN, as
    /// pretrain-gnns).
    pub fn new(corpus: impl Into<PathBuf>) -> Self {
        Self {
            corpus: corpus.into(),
            smiles_column: None,
            limit: None,
            model: ModelKind::Gin,
            mask_rate: 0.15,
            pretrained: None,
            dropout: 0.0,
            gcn_l2_normalize: false,
            encoder: EncoderSize::default(),
            representation: Representation::Smiles,
            compute: ComputeConfig::default(),
            train: OptimConfig::default(),
            seed: 0,
            meter: MeterConfig::default(),
            out: None,
            overwrite: false,
            resume: false,
        }
    }

    /// Checks what does not depend on the corpus.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        self.train.validate()?;
        if !(self.mask_rate > 0.0 && self.mask_rate <= 1.0) {
            return bad(format!("--mask-rate {} is not in (0, 1]", self.mask_rate));
        }
        if self.limit == Some(0) {
            return bad("--limit must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout {} is not in [0, 1)", self.dropout));
        }
        if self.resume && self.overwrite {
            return bad("--resume and --overwrite exclude each other".into());
        }
        check_representation(self.model, self.representation)?;
        self.meter.validate()?;
        match self.model {
            ModelKind::Transformer if self.pretrained.is_some() => bad(
                "--pretrained is for --model gin|gcn|graphsage|gat: the 1D encoder is pre-trained from scratch"
                    .into(),
            ),
            ModelKind::Gin | ModelKind::Gcn | ModelKind::Graphsage | ModelKind::Gat
                if self.encoder.vocab.is_some() =>
            {
                bad("--vocab is for --model transformer".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimisation_values_are_checked() {
        assert!(OptimConfig::default().validate().is_ok());
        for broken in [
            OptimConfig {
                epochs: 0,
                ..OptimConfig::default()
            },
            OptimConfig {
                batch_size: 0,
                ..OptimConfig::default()
            },
            OptimConfig {
                lr: f64::NAN,
                ..OptimConfig::default()
            },
            OptimConfig {
                clip_grad: -1.0,
                ..OptimConfig::default()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }

    #[test]
    fn finetune_combinations_are_checked() {
        let ok = FinetuneConfig::new("bbbp");
        assert!(ok.validate().is_ok());
        let mut anges_off = ok.clone();
        anges_off.stop = StopSpec::Anges(AngesParams::default());
        anges_off.meter.mode = MeterMode::Off;
        assert!(anges_off.validate().unwrap_err().0.contains("--stop anges"));
        let mut dropout = ok.clone();
        dropout.model.dropout = 1.0;
        assert!(dropout.validate().is_err());
        let mut prune = ok.clone();
        prune.prune.method = PruneMethod::Molpeg;
        prune.prune.keep_ratio = 0.0;
        assert!(prune.validate().unwrap_err().0.contains("--keep-ratio"));
        let mut resume = ok;
        resume.resume = true;
        assert!(resume.validate().is_err());
        resume.out = Some("runs/x".into());
        assert!(resume.validate().is_ok());
        resume.overwrite = true;
        assert!(resume.validate().unwrap_err().0.contains("--overwrite"));
    }

    #[test]
    fn pretrain_defaults_follow_pretrain_gnns_masking() {
        let c = PretrainConfig::new("c.csv");
        assert_eq!(c.model, ModelKind::Gin);
        assert_eq!((c.mask_rate, c.dropout, c.train.lr), (0.15, 0.0, 1e-3));
        assert!(c.validate().is_ok());
        let mut vocab = c.clone();
        vocab.model = ModelKind::Gcn;
        vocab.encoder.vocab = Some("vocab.txt".into());
        assert!(vocab.validate().is_err());
    }
}
