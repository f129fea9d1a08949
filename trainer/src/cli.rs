//! Command-line interface of `anges-train`.
//!
//! `anges-train --dataset sider --model gin` fine-tunes; the subcommands `pretrain`, `replay` and
//! `study` cover self-supervised pre-training, offline replay of stopping policies on a logged
//! run, and the full trade-off study.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::policy::AngesOrder;
use crate::runtime::DeviceChoice;

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
    Pretrain(PretrainArgs),
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

/// Model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Graph Isomorphism Network, 5×300, as pretrain-gnns (2D).
    Gin,
    /// Graph Convolutional Network, 5×300, as pretrain-gnns (2D).
    Gcn,
    /// RoBERTa/BERT-style SMILES Transformer (1D), Hugging Face compatible.
    Transformer,
}

/// Dataset splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Bemis–Murcko scaffold split exactly as Hu et al. (deterministic).
    Scaffold,
    /// Seeded random split.
    Random,
    /// Seeded random assignment of scaffold groups.
    RandomScaffold,
}

/// Stopping policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopPolicy {
    /// The fixed number of epochs (classic fine-tuning).
    Full,
    /// Classic validation early stopping (--patience, --min-delta).
    Patience,
    /// AN-GES: stop when accuracy gained per % of CO2 collapses below β × its EMA.
    Anges,
}

/// Data pruning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Train on every sample every epoch.
    None,
    /// MolPeg: keep the samples with the largest online/EMA-reference loss discrepancy.
    Molpeg,
    /// Dynamic random pruning with the same keep ratio (baseline).
    Random,
}

/// Where emissions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterMode {
    /// The daemon when one answers, else the in-process meter.
    Auto,
    /// Register with anges-meterd (fail if none answers).
    Daemon,
    /// Run the meter's sensors and accounting in this process.
    Local,
    /// No emissions (AN-GES unavailable).
    Off,
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, Args, Serialize)]
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
#[derive(Debug, Clone, Args, Serialize)]
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

    /// GCN only: L2-normalise each atom's row after the aggregation, as SPEC §4 writes the layer.
    /// Off by default: pretrain-gnns' own GCNConv has no such step, and its published GCN
    /// checkpoints (gcn_contextpred.pth, …) were trained without it (docs/models.md).
    #[arg(long)]
    pub gcn_l2_normalize: bool,

    #[command(flatten)]
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub compute: ComputeArgs,
}

/// Where the numbers are crunched (fine-tuning and pre-training).
#[derive(Debug, Clone, Args, Serialize)]
pub struct ComputeArgs {
    /// Compute device: auto, cpu, or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    #[serde(skip)]
    pub device: DeviceChoice,

    /// libtorch CPU threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Optimisation.
#[derive(Debug, Clone, Args, Serialize)]
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
#[derive(Debug, Clone, Args, Serialize)]
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
#[derive(Debug, Clone, Args, Serialize)]
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
#[derive(Debug, Clone, Args, Serialize)]
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
#[derive(Debug, Clone, Args, Serialize)]
pub struct MeterArgs {
    /// Where emissions come from.
    #[arg(long, value_enum, default_value_t = MeterMode::Auto)]
    pub meter: MeterMode,

    /// Meter socket (else $ANGES_METER_SOCKET, the system socket, the user-mode socket).
    #[arg(long, value_name = "PATH", env = "ANGES_METER_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// Everything a fine-tuning run needs.
#[derive(Debug, Clone, Args, Serialize)]
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
    /// after every epoch on the CPU). Give the run's own flags: they are checked against
    /// DIR/config.json (--threads, --device, --meter, --socket, --data-dir may change). With the
    /// same --threads the result is bit-identical to an uninterrupted run.
    #[arg(long, requires = "out")]
    #[serde(skip)]
    pub resume: bool,
}

/// `anges-train pretrain` (see [`Command::Pretrain`]).
#[derive(Debug, Clone, Args, Serialize)]
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

    /// gcn only: L2-normalise each atom's row after the aggregation (SPEC §4's literal layer;
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
    #[serde(skip)]
    pub resume: bool,
}

/// Size of a 1D encoder trained from scratch (BERT layout, exact GELU, feed-forward 4× wide).
#[derive(Debug, Clone, Args, Serialize)]
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
}
