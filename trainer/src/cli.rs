//! Command-line interface of `anges-train`.
//!
//! `anges-train --dataset sider --model gin` fine-tunes; the subcommands `pretrain`, `replay` and
//! `study` cover self-supervised pre-training, offline replay of stopping policies on a logged
//! run, and the full trade-off study.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use anges_trainer::config::{
    AngesOrder, AngesParams, CarbonConfig, ComputeConfig, ConfigError, DataConfig, DeviceChoice,
    EncoderSize, FinetuneConfig, IntensitySource, MeterConfig, MeterMode, ModelConfig, ModelKind,
    OptimConfig, PretrainConfig, PruneConfig, PruneMethod, SplitKind, StopPolicy, StopSpec,
};
use anges_trainer::replay::ReplayGrid;
use anges_trainer::study::StudyConfig;

/// The environment section of `--help`.
const ENVIRONMENT_HELP: &str = "\
Environment:
  ANGES_LOG, ANGES_DATA_DIR, ANGES_METER_SOCKET  defaults of --log, --data-dir, --socket
  GOMP_SPINCOUNT, OMP_WAIT_POLICY  OpenMP's waiting between operators. Unless either is set,
      anges-train restarts itself once with GOMP_SPINCOUNT=1000: a lone job runs at full speed
      and jobs that share the machine are not slowed by threads spinning for a descheduled
      partner (GOMP_SPINCOUNT=300000 restores libgomp's default).";

/// Emission-aware fine-tuning of pre-trained molecular models.
///
/// Fine-tunes a pre-trained 2D graph model (GIN/GCN, pretrain-gnns checkpoints) or 1D SMILES
/// Transformer on a MoleculeNet dataset, reads the CO2-eq the job has emitted from anges-meterd
/// after every epoch, and can stop early with the AN-GES rule (accuracy gained per gram of CO2
/// collapsing), prune data with MolPeg, and report the trade-off against a full run.
///
/// Example: anges-train --dataset sider --model gin --stop anges
#[derive(Debug, Clone, Parser)]
#[command(
    name = "anges-train",
    version,
    about,
    long_about,
    after_long_help = ENVIRONMENT_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "anges_trainer=debug".
    #[arg(
        long,
        global = true,
        value_name = "FILTER",
        env = "ANGES_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// What to run; without a subcommand, fine-tune.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Fine-tuning options (when no subcommand is given).
    #[command(flatten)]
    pub finetune: FinetuneArgs,
}

/// Subcommands besides plain fine-tuning.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Self-supervised pre-training: attribute masking (2D) or masked-language modelling (1D) on a
    /// SMILES corpus; writes a checkpoint that fine-tuning loads with --pretrained.
    ///
    /// --model gin|gcn learns attribute masking (Hu et al. 2020, pretrain-gnns): in every
    /// molecule some atoms get the mask type and the network predicts their element.
    /// --model transformer learns BERT-style masked-language modelling over atom-level regex
    /// tokens.
    ///
    /// Writes, for gin/gcn, one .safetensors file holding exactly the pretrain-gnns encoder keys
    /// (fine-tune it with --pretrained FILE --allow-partial: the task head starts fresh), and for
    /// the transformer a Hugging Face folder (config.json, model.safetensors, vocab.txt) that
    /// --model transformer --pretrained DIR loads as is. The checkpoint is rewritten after every
    /// epoch, next to a machine-readable log of the per-epoch loss and masked-prediction accuracy
    /// (NAME.pretrain.json beside the file, or pretrain.json in the folder). Without --out both go
    /// to the model cache folder, where fine-tuning finds them without --pretrained.
    ///
    /// Example: anges-train pretrain --corpus moses_train.csv.gz --limit 100000 --model gin
    /// --epochs 10 --batch-size 256
    Pretrain(Box<PretrainArgs>),
    /// Re-apply stopping policies and parameter grids offline to a logged run and print the
    /// trade-off of each.
    Replay(ReplayArgs),
    /// Run full, patience, AN-GES and MolPeg fine-tuning on one split and report their trade-offs
    /// (table, CSV/JSON, plots, HTML report).
    Study(Box<StudyArgs>),
    /// Summarise many fine-tuning runs: mean ± std over seeds of the test metric (at the
    /// best-validation epoch and at the last epoch), epochs, time, energy and CO2, one row per
    /// dataset, model, initialisation and policy.
    ///
    /// Searches the given folders (at any depth) for run directories' summary.json; one that
    /// cannot be read is skipped with a warning.
    ///
    /// Example: anges-train summarize runs/ --csv results.csv
    Summarize(SummarizeArgs),
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// MoleculeNet dataset name (bbbp, bace, clintox, sider, tox21, toxcast, muv, hiv, esol,
    /// freesolv, lipophilicity) or a path to a CSV file.
    #[arg(long, value_name = "NAME|FILE")]
    pub dataset: Option<String>,

    /// Folder holding the MoleculeNet CSVs (else $ANGES_DATA_DIR, else the user cache folder,
    /// downloading there when online).
    #[arg(long, value_name = "DIR", env = "ANGES_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// SMILES column of a custom CSV.
    #[arg(long, value_name = "COLUMN")]
    pub smiles_column: Option<String>,

    /// Target column(s) of a custom CSV (repeat or comma-separate).
    #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
    pub target: Vec<String>,

    /// How to split train/valid/test (80/10/10).
    #[arg(long, value_enum, default_value_t = SplitKind::Scaffold)]
    pub split: SplitKind,

    /// Reuse the split of an earlier run (its split.json).
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<PathBuf>,

    /// Seed of the split (random splits), the initialisation and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Use only the first N data rows of the file (quick runs, smoke tests).
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
}

/// Which model, from which weights, on which device.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model family.
    #[arg(long, value_enum, default_value_t = ModelKind::Gin)]
    pub model: ModelKind,

    /// Pre-trained weights: pretrain-gnns .pth (legacy torch.save), zip .pt, .safetensors, or a
    /// Hugging Face folder (config.json, model.safetensors, tokenizer.json) for --model
    /// transformer. Default: the model cache folder, else random init (said loudly).
    #[arg(long, value_name = "PATH")]
    pub pretrained: Option<PathBuf>,

    /// Start from random initialisation even when the model cache folder holds a checkpoint
    /// (baselines: pre-trained vs not at equal epochs and seed).
    #[arg(long, conflicts_with = "pretrained")]
    pub random_init: bool,

    /// Accept a checkpoint that lacks some weights (e.g. the task head).
    #[arg(long)]
    pub allow_partial: bool,

    /// 1D model: batch rows of similar SMILES length together (sorted within shuffled windows of
    /// 50 batches, batch order shuffled), so that less of each batch is padding. Changes which rows
    /// share a batch, not which rows are seen; ignored by the 2D models.
    #[arg(long)]
    pub group_by_length: bool,

    /// Pooling of the 1D model's token states: cls (first token) or mean (over non-pad tokens).
    #[arg(long, default_value = "cls", value_parser = ["cls", "mean"])]
    pub pooling: String,

    /// Dropout probability during fine-tuning (GIN/GCN; the Transformer uses its config's).
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f64,

    /// GCN only: L2-normalise each atom's row after the aggregation, as docs/spec.md §4.2 writes the layer.
    /// Off by default: pretrain-gnns' own GCNConv has no such step, and its published GCN
    /// checkpoints (gcn_contextpred.pth, …) were trained without it (docs/models.md).
    #[arg(long)]
    pub gcn_l2_normalize: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub compute: ComputeArgs,
}

/// Where the numbers are crunched (fine-tuning and pre-training).
#[derive(Debug, Clone, Args)]
pub struct ComputeArgs {
    /// Compute device: auto, cpu, or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceChoice,

    /// libtorch CPU threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Optimisation.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,

    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,

    /// Weight decay (0 = Adam, > 0 = AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,

    /// Clip the gradient norm to this value (0 = no clipping).
    #[arg(long, default_value_t = 0.0)]
    pub clip_grad: f64,
}

/// The AN-GES parameters that live runs and replays share (α, β and W differ: one value live,
/// a grid in a replay).
#[derive(Debug, Clone, Args)]
pub struct AngesVariantArgs {
    /// AN-GES initial EMA when the warm-up collected nothing.
    #[arg(long, default_value_t = 1e-3)]
    pub ema_init: f64,

    /// AN-GES variant: update the EMA then compare (Algorithm 1 as written), or compare with
    /// the previous EMA then update.
    #[arg(long, value_enum, default_value_t = AngesOrder::UpdateThenCompare)]
    pub anges_order: AngesOrder,

    /// AN-GES variant: stop only after K triggering epochs in a row (1 = the literal rule).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub anges_consecutive: usize,
}

/// Stopping policy and its parameters.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Stopping policy.
    #[arg(long, value_enum, default_value_t = StopPolicy::Full)]
    pub stop: StopPolicy,

    /// AN-GES smoothing α of the AER's EMA.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f64,

    /// AN-GES threshold β: stop when AER < β·EMA.
    #[arg(long, default_value_t = 0.2)]
    pub beta: f64,

    /// AN-GES warm-up epochs W.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub variant: AngesVariantArgs,

    /// Patience (epochs without validation improvement) for --stop patience.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,

    /// Minimum validation improvement that resets the patience counter.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,
}

/// Data pruning.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Data pruning method.
    #[arg(long, value_enum, default_value_t = PruneMethod::None)]
    pub prune: PruneMethod,

    /// Fraction of the training set KEPT each epoch (pruning ratio = 1 − keep ratio).
    #[arg(long, default_value_t = 0.5)]
    pub keep_ratio: f64,

    /// MolPeg: EMA factor of the reference model (θ_ref ← β·θ_ref + (1−β)·θ).
    #[arg(long, default_value_t = 0.5)]
    pub ema_beta: f64,
}

/// Emission metering.
#[derive(Debug, Clone, Args)]
pub struct MeterArgs {
    /// Where emissions come from.
    #[arg(long, value_enum, default_value_t = MeterMode::Auto)]
    pub meter: MeterMode,

    /// Meter socket (else $ANGES_METER_SOCKET, the system socket, the user-mode socket).
    #[arg(long, value_name = "PATH", env = "ANGES_METER_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Grid carbon intensity: a region code of the meter's table (FR, DE, US, WORLD, …). The
    /// in-process meter applies it; a daemon applies its own (with a warning).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["intensity", "intensity_csv"])]
    pub region: Option<String>,

    /// Grid carbon intensity: a constant, gCO2eq/kWh.
    #[arg(long, value_name = "G_PER_KWH", conflicts_with = "intensity_csv")]
    pub intensity: Option<f64>,

    /// Grid carbon intensity: a time series CSV (`timestamp,g_per_kwh`).
    #[arg(long, value_name = "FILE")]
    pub intensity_csv: Option<PathBuf>,

    /// Power usage effectiveness of the facility (≥ 1; default 1).
    #[arg(long, value_name = "PUE")]
    pub pue: Option<f64>,

    /// The meter daemon's configuration file whose `[carbon]` section gives the defaults of the
    /// four flags above (else $XDG_CONFIG_HOME/anges/meterd.toml, else /etc/anges/meterd.toml,
    /// when they exist).
    #[arg(long, value_name = "FILE")]
    pub meter_config: Option<PathBuf>,
}

/// Everything a fine-tuning run needs.
#[derive(Debug, Clone, Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub data: DataArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub train: TrainArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub stop: StopArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub prune: PruneArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub meter: MeterArgs,

    /// Run directory (default runs/<time>-<dataset>-<model>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Continue the interrupted run in --out DIR after its last saved epoch (a state is saved
    /// after every epoch on the CPU). Give the run's own flags: the configuration they give is
    /// checked against the one DIR/config.json records (--threads, --device, --meter, --socket,
    /// --data-dir may change). With the same --threads the result is bit-identical to an
    /// uninterrupted run.
    #[arg(long, requires = "out")]
    pub resume: bool,
}

/// `anges-train pretrain` (see [`Command::Pretrain`]).
#[derive(Debug, Clone, Args)]
pub struct PretrainArgs {
    /// SMILES corpus: a CSV or CSV.gz file with a header row. Rows whose SMILES the chemistry
    /// cannot read are skipped, logged and counted.
    #[arg(long, value_name = "FILE")]
    pub corpus: PathBuf,

    /// Column holding the SMILES (default: the column named "smiles" in any case, else the only
    /// column).
    #[arg(long, value_name = "COLUMN")]
    pub smiles_column: Option<String>,

    /// Use only the first N data rows of the corpus (skipped rows included in the N).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Model family: gin or gcn (attribute masking) or transformer (masked-language modelling).
    #[arg(long, value_enum, default_value_t = ModelKind::Gin)]
    pub model: ModelKind,

    /// Share of each molecule to predict: atoms (gin/gcn: int(n·rate + 1) atoms per molecule, as
    /// pretrain-gnns; never zero) or non-special tokens (transformer: each selected with this
    /// probability, at least one per molecule; 80 % become [MASK], 10 % a random token, 10 % stay).
    #[arg(long, value_name = "RATE", default_value_t = 0.15)]
    pub mask_rate: f64,

    /// gin/gcn only: start from this checkpoint (.pth, .pt or .safetensors) instead of random
    /// initialisation.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,

    /// gin/gcn only: dropout after every layer (pretrain-gnns' masking default is 0).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,

    /// gcn only: L2-normalise each atom's row after the aggregation (docs/spec.md §4.2's literal layer;
    /// off as in pretrain-gnns, see the fine-tuning flag of the same name).
    #[arg(long)]
    pub gcn_l2_normalize: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub encoder: EncoderSizeArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub compute: ComputeArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub train: TrainArgs,

    /// Seed of the initialisation, the data order and the masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub meter: MeterArgs,

    /// Where to write: a .safetensors file (gin/gcn) or a folder (transformer). Default: the
    /// model cache folder, <cache>/models/gin_attrmask.safetensors, gcn_attrmask.safetensors or
    /// transformer_mlm/, where fine-tuning finds it without --pretrained.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Replace what --out already holds (else an existing output is an error).
    #[arg(long)]
    pub overwrite: bool,

    /// Continue the interrupted pre-training at --out (or the default output) after its last
    /// saved epoch: a state is saved beside the checkpoint after every epoch (<stem>.resume.
    /// safetensors, or resume.safetensors in the 1D folder) and removed when the run ends. Give
    /// the run's own flags: they are checked against its log (--threads, --device, --meter,
    /// --socket may change). With the same --threads the result is bit-identical to an
    /// uninterrupted run.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
}

/// Size of a 1D encoder trained from scratch (BERT layout, exact GELU, feed-forward 4× wide).
#[derive(Debug, Clone, Args)]
pub struct EncoderSizeArgs {
    /// transformer only: width of the hidden states.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub hidden_size: i64,

    /// transformer only: number of Transformer blocks.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub layers: i64,

    /// transformer only: attention heads per block (must divide --hidden-size).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub heads: i64,

    /// transformer only: a vocab.txt (one token per line, [PAD] [UNK] [CLS] [SEP] [MASK] first)
    /// or a Hugging Face tokenizer.json (with a mask token) instead of the vocabulary of the
    /// corpus' regex tokens.
    #[arg(long, value_name = "FILE")]
    pub vocab: Option<PathBuf>,
}

/// `anges-train replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Run directory of a logged run (its epochs.jsonl, summary.json or config.json).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,

    /// Policy to replay.
    #[arg(long, value_enum, default_value_t = StopPolicy::Anges)]
    pub stop: StopPolicy,

    /// Grid of AN-GES β values (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.2")]
    pub beta: Vec<f64>,

    /// Grid of AN-GES α values (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.9")]
    pub alpha: Vec<f64>,

    /// Grid of AN-GES warm-up lengths (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "5")]
    pub warmup: Vec<usize>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub variant: AngesVariantArgs,

    /// Grid of patience values for --stop patience (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub patience: Vec<usize>,

    /// Minimum validation improvement for --stop patience.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,

    /// Print JSON (one object per grid point) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `anges-train summarize` (see [`Command::Summarize`]).
#[derive(Debug, Clone, Args)]
pub struct SummarizeArgs {
    /// Run directories, or folders holding them at any depth.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Print JSON (an array of rows) instead of a Markdown table.
    #[arg(long)]
    pub json: bool,

    /// Also write the rows to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

/// `anges-train study`.
///
/// Runs, per seed, on one split: the full fine-tuning (`--epochs`), the patience baseline
/// (`--patience`), AN-GES live (`--alpha --beta --warmup …`) and MolPeg at each keep ratio, then
/// replays the full run over the β grid. `--stop`, `--prune` and `--keep-ratio` are ignored: the
/// study runs every policy itself.
#[derive(Debug, Clone, Args)]
pub struct StudyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub finetune: FinetuneArgs,

    /// MolPeg keep ratios to include (comma-separated fractions KEPT; empty to skip MolPeg).
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub keep_ratios: Vec<f64>,

    /// Also run dynamic random pruning at each keep ratio (the MolPeg baseline).
    #[arg(long)]
    pub with_random: bool,

    /// Also run AN-GES combined with MolPeg at each keep ratio.
    #[arg(long)]
    pub combine: bool,

    /// Seeds to run and aggregate (mean ± std), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,

    /// β grid replayed on each full run for the %ΔPerf/%ΔEmiss frontier (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.05,0.1,0.2,0.3,0.5,0.7,1.0"
    )]
    pub frontier_betas: Vec<f64>,
}

// From flags to the library's validated configuration: the one place that maps the one onto the
// other. The checks themselves are the configuration types' (`anges_trainer::config`).

impl ComputeArgs {
    fn to_config(&self) -> ComputeConfig {
        ComputeConfig {
            device: self.device,
            threads: self.threads,
        }
    }
}

impl TrainArgs {
    fn to_config(&self) -> OptimConfig {
        OptimConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            clip_grad: self.clip_grad,
        }
    }
}

impl MeterArgs {
    fn to_config(&self) -> MeterConfig {
        let intensity = match (&self.region, self.intensity, &self.intensity_csv) {
            (Some(code), _, _) => Some(IntensitySource::Region(code.clone())),
            (_, Some(g), _) => Some(IntensitySource::Constant(g)),
            (_, _, Some(path)) => Some(IntensitySource::Csv(path.clone())),
            _ => None,
        };
        MeterConfig {
            mode: self.meter,
            socket: self.socket.clone(),
            carbon: CarbonConfig {
                intensity,
                pue: self.pue,
                meter_config: self.meter_config.clone(),
            },
        }
    }
}

impl AngesVariantArgs {
    /// The AN-GES parameters with these variant flags and the given α, β, W.
    fn params(&self, alpha: f64, beta: f64, warmup: usize) -> AngesParams {
        AngesParams {
            alpha,
            beta,
            warmup,
            ema_init: self.ema_init,
            order: self.anges_order,
            consecutive: self.anges_consecutive,
        }
    }
}

impl StopArgs {
    fn anges(&self) -> AngesParams {
        self.variant.params(self.alpha, self.beta, self.warmup)
    }

    fn to_spec(&self) -> Result<StopSpec, ConfigError> {
        StopSpec::from_parts(self.stop, self.anges(), self.patience, self.min_delta)
            .map_err(ConfigError)
    }
}

impl FinetuneArgs {
    /// The validated configuration these flags describe.
    pub fn to_config(&self) -> Result<FinetuneConfig, ConfigError> {
        let Some(dataset) = self.data.dataset.clone() else {
            return Err(ConfigError::new(
                "--dataset is required (a MoleculeNet name such as bbbp, or a CSV file)",
            ));
        };
        let (d, m) = (&self.data, &self.model);
        let config = FinetuneConfig {
            data: DataConfig {
                dataset,
                data_dir: d.data_dir.clone(),
                smiles_column: d.smiles_column.clone(),
                targets: d.target.clone(),
                split: d.split,
                split_file: d.split_file.clone(),
                seed: d.seed,
                max_rows: d.max_rows,
            },
            model: ModelConfig {
                kind: m.model,
                pretrained: m.pretrained.clone(),
                random_init: m.random_init,
                allow_partial: m.allow_partial,
                group_by_length: m.group_by_length,
                pooling: m
                    .pooling
                    .parse()
                    .map_err(|e| ConfigError(format!("--pooling: {e}")))?,
                dropout: m.dropout,
                gcn_l2_normalize: m.gcn_l2_normalize,
            },
            compute: m.compute.to_config(),
            train: self.train.to_config(),
            stop: self.stop.to_spec()?,
            prune: PruneConfig {
                method: self.prune.prune,
                keep_ratio: self.prune.keep_ratio,
                ema_beta: self.prune.ema_beta,
            },
            meter: self.meter.to_config(),
            out: self.out.clone(),
            resume: self.resume,
        };
        config.validate()?;
        Ok(config)
    }
}

impl PretrainArgs {
    /// The validated configuration these flags describe.
    pub fn to_config(&self) -> Result<PretrainConfig, ConfigError> {
        let config = PretrainConfig {
            corpus: self.corpus.clone(),
            smiles_column: self.smiles_column.clone(),
            limit: self.limit,
            model: self.model,
            mask_rate: self.mask_rate,
            pretrained: self.pretrained.clone(),
            dropout: self.dropout,
            gcn_l2_normalize: self.gcn_l2_normalize,
            encoder: EncoderSize {
                hidden_size: self.encoder.hidden_size,
                layers: self.encoder.layers,
                heads: self.encoder.heads,
                vocab: self.encoder.vocab.clone(),
            },
            compute: self.compute.to_config(),
            train: self.train.to_config(),
            seed: self.seed,
            meter: self.meter.to_config(),
            out: self.out.clone(),
            overwrite: self.overwrite,
            resume: self.resume,
        };
        config.validate()?;
        Ok(config)
    }
}

impl ReplayArgs {
    /// The parameter grid these flags describe (checked when the grid is built).
    pub fn to_grid(&self) -> ReplayGrid {
        ReplayGrid {
            stop: self.stop,
            alpha: self.alpha.clone(),
            beta: self.beta.clone(),
            warmup: self.warmup.clone(),
            ema_init: self.variant.ema_init,
            order: self.variant.anges_order,
            consecutive: self.variant.anges_consecutive,
            patience: self.patience.clone(),
            min_delta: self.min_delta,
        }
    }
}

impl StudyArgs {
    /// The validated study these flags describe: the runs' shared configuration (its `--stop`,
    /// `--prune` and `--keep-ratio` are the study's to set), the live AN-GES and patience
    /// parameters, and the study's own lists.
    pub fn to_config(&self) -> Result<StudyConfig, ConfigError> {
        let mut base = self.finetune.clone();
        base.stop.stop = StopPolicy::Full;
        base.prune.prune = PruneMethod::None;
        let stop = &self.finetune.stop;
        let config = StudyConfig {
            base: base.to_config()?,
            anges: stop.anges(),
            patience: stop.patience,
            min_delta: stop.min_delta,
            keep_ratios: self.keep_ratios.clone(),
            with_random: self.with_random,
            combine: self.combine,
            seeds: self.seeds.clone(),
            frontier_betas: self.frontier_betas.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn plain_invocation_fine_tunes() {
        let cli =
            Cli::try_parse_from(["anges-train", "--dataset", "sider", "--model", "gin"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.finetune.data.dataset.as_deref(), Some("sider"));
        assert_eq!(cli.finetune.model.model, ModelKind::Gin);
        assert_eq!(cli.finetune.stop.stop, StopPolicy::Full);
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["anges-train", "replay", "runs/x", "--beta", "0.1,0.2,0.3"])
            .unwrap();
        match cli.command {
            Some(Command::Replay(r)) => assert_eq!(r.beta, vec![0.1, 0.2, 0.3]),
            other => panic!("expected replay, got {other:?}"),
        }
    }

    #[test]
    fn bad_device_is_an_error() {
        assert!(Cli::try_parse_from(["anges-train", "--device", "tpu"]).is_err());
    }

    fn finetune(flags: &[&str]) -> Result<FinetuneConfig, ConfigError> {
        let argv = [&["anges-train", "--dataset", "bbbp"][..], flags].concat();
        Cli::try_parse_from(argv).unwrap().finetune.to_config()
    }

    fn pretrain(flags: &[&str]) -> Result<PretrainConfig, ConfigError> {
        let argv = [&["anges-train", "pretrain", "--corpus", "c.csv"][..], flags].concat();
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Pretrain(a)) => a.to_config(),
            other => panic!("expected pretrain, got {other:?}"),
        }
    }

    /// The flags' defaults are the configuration's: one source of truth for a run that the
    /// command line, a test or a binding may start.
    #[test]
    fn flag_defaults_are_the_configurations_defaults() {
        assert_eq!(finetune(&[]).unwrap(), FinetuneConfig::new("bbbp"));
        assert_eq!(pretrain(&[]).unwrap(), PretrainConfig::new("c.csv"));
        let study = match Cli::try_parse_from(["anges-train", "study", "--dataset", "bbbp"])
            .unwrap()
            .command
        {
            Some(Command::Study(s)) => s.to_config().unwrap(),
            other => panic!("expected study, got {other:?}"),
        };
        assert_eq!(study.base, FinetuneConfig::new("bbbp"));
        assert_eq!(study.anges, AngesParams::default());
        let replay = Cli::try_parse_from(["anges-train", "replay", "runs/x"]).unwrap();
        match replay.command {
            Some(Command::Replay(r)) => assert_eq!(r.to_grid(), ReplayGrid::default()),
            other => panic!("expected replay, got {other:?}"),
        }
    }

    #[test]
    fn flags_resolve_to_one_stopping_policy() {
        let anges = finetune(&["--stop", "anges", "--beta", "0.3", "--patience", "4"]).unwrap();
        assert_eq!(
            anges.stop,
            StopSpec::Anges(AngesParams {
                beta: 0.3,
                ..AngesParams::default()
            })
        );
        let patience = finetune(&["--stop", "patience", "--patience", "4", "--beta", "9"]);
        assert_eq!(
            patience.unwrap().stop,
            StopSpec::Patience {
                patience: 4,
                min_delta: 0.0
            }
        );
        assert!(finetune(&["--pooling", "mean"]).is_ok());
    }

    #[test]
    fn bad_flags_are_refused_before_any_work() {
        for flags in [
            &["--stop", "patience", "--patience", "0"][..],
            &["--stop", "anges", "--alpha", "0"],
            &["--stop", "anges", "--meter", "off"],
            &["--epochs", "0"],
            &["--lr=-1"],
            &["--dropout", "1"],
            &["--max-rows", "0"],
            &["--prune", "molpeg", "--keep-ratio", "0"],
        ] {
            let err = finetune(flags).unwrap_err().to_string();
            assert!(err.starts_with("invalid options"), "{flags:?}: {err}");
        }
        let no_dataset = Cli::try_parse_from(["anges-train"]).unwrap();
        assert!(
            no_dataset
                .finetune
                .to_config()
                .unwrap_err()
                .0
                .contains("--dataset")
        );
        for flags in [
            &["--mask-rate", "0"][..],
            &["--mask-rate", "1.5"],
            &["--limit", "0"],
            &["--epochs", "0"],
            &["--dropout", "1"],
            &["--model", "transformer", "--pretrained", "x.pth"],
            &["--model", "gcn", "--vocab", "vocab.txt"],
        ] {
            let err = pretrain(flags).unwrap_err().to_string();
            assert!(err.starts_with("invalid options"), "{flags:?}: {err}");
        }
    }

    #[test]
    fn random_init_and_pretrained_exclude_each_other() {
        let both = ["anges-train", "--random-init", "--pretrained", "x.pth"];
        assert!(Cli::try_parse_from(both).is_err());
    }
}
