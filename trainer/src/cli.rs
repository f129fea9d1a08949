//! Command-line interface of `anges-train`.
//!
//! `anges-train --dataset sider --model gin` fine-tunes; the subcommands `pretrain`, `replay` and
//! `study` cover self-supervised pre-training, offline replay of stopping policies on a logged
//! run, and the full trade-off study.
//!
//! `anges-train --resume DIR` continues a run with the configuration DIR/config.json records:
//! the flags given explicitly (on the command line or through their environment variable, as
//! clap's `ArgMatches::value_source` tells) are laid over it, the others take the recorded
//! values ([`FinetuneArgs::to_run_config`]); the run then refuses a given flag that contradicts
//! its record.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand};

use anges_trainer::config::{
    AngesOrder, AngesParams, AngesSignal, AngesVariant, CarbonConfig, ComputeConfig, ConfigError,
    DataConfig, DeviceChoice, EncoderSize, FinetuneConfig, IntensitySource, MeterConfig, MeterMode,
    ModelConfig, ModelKind, OptimConfig, PretrainConfig, PruneConfig, PruneMethod, Representation,
    SplitKind, StopPolicy, StopSpec, TaskType,
};
use anges_trainer::convert::ConvertConfig;
use anges_trainer::predict::PredictConfig;
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
/// Fine-tunes a pre-trained 2D graph model (GIN/GCN/GraphSAGE/GAT, pretrain-gnns checkpoints) or 1D SMILES
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
    /// What the terminal shows: -q, -v, --json, --log.
    #[command(flatten)]
    pub output: OutputArgs,

    /// What to run; without a subcommand, fine-tune.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Fine-tuning options (when no subcommand is given).
    #[command(flatten)]
    pub finetune: FinetuneArgs,
}

/// What goes to the terminal (every subcommand takes them).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Quiet: only warnings, errors and the final summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Verbose: also the start-up details (the trainer's debug lines).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Print the result as JSON on stdout, and nothing else there (logs stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "anges_trainer=debug"); wins over
    /// -q/-v. Default: $ANGES_LOG, else "info" without the meter's start-up report (-q: "warn",
    /// -v: the trainer's debug lines and the meter's report).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
}

/// The default filter: the in-process meter's start-up report (sensors tried, rates) is a detail
/// under its warnings.
const DEFAULT_FILTER: &str = "info,anges_meter_engine=warn";

/// The filter of `-v`: the trainer at debug level, the meter's report, everything else at info.
const VERBOSE_FILTER: &str = "info,anges_trainer=debug,anges_train=debug";

impl OutputArgs {
    /// The log filter these flags ask for, given `$ANGES_LOG` (`env`): `--log` first, then
    /// `-q`/`-v` (the command line wins over the environment), then `env`, else
    /// [`DEFAULT_FILTER`].
    pub fn log_filter(&self, env: Option<String>) -> String {
        match (&self.log, self.quiet, self.verbose) {
            (Some(filter), _, _) => filter.clone(),
            (None, true, _) => "warn".to_owned(),
            (None, _, true) => VERBOSE_FILTER.to_owned(),
            (None, false, false) => env.unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
        }
    }
}

/// Subcommands besides plain fine-tuning.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Self-supervised pre-training: attribute masking (2D) or masked-language modelling (1D) on a
    /// SMILES corpus; writes a checkpoint that fine-tuning loads with --pretrained.
    ///
    /// --model gin|gcn|graphsage|gat learns attribute masking (Hu et al. 2020, pretrain-gnns): in every
    /// molecule some atoms get the mask type and the network predicts their element.
    /// --model transformer learns BERT-style masked-language modelling over atom-level regex
    /// tokens (or SELFIES symbols, with --representation selfies).
    ///
    /// Writes, for the 2D models, one .safetensors file holding exactly the pretrain-gnns encoder keys
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
    /// Compare stopping rules on logged full runs, with their parameters chosen on other
    /// datasets: every AN-GES variant, patience and fixed epoch budgets, over their grids.
    ///
    /// Nothing is trained: each rule is replayed on the logs (runs with --stop full, found at
    /// any depth under the given folders; others are skipped with a warning). Per held-out
    /// dataset, each family's parameters are chosen on the other datasets' runs by one
    /// criterion (the most CO2 saved with a mean test loss ≤ --tolerance: ROC-AUC points, or
    /// percent of an error metric) and reported on the held-out runs; the tolerance sweep draws
    /// each family's held-out frontier. The hindsight bound is the earliest stop, run by run,
    /// that loses at most the tolerance. Random-init and pre-trained runs are evaluated apart.
    ///
    /// Writes evaluation.json, evaluation.csv, runs.csv and frontier-<group>.{png,svg} into
    /// --out, and prints the held-out table (the JSON document with --json).
    ///
    /// Example: anges-train evaluate docs/results/runs --out evaluation
    Evaluate(EvaluateArgs),
    /// The trade-off analysis of a campaign of logged full runs, across model families: per
    /// dataset and family (model × starting weights) the energy of an epoch and of a run, the
    /// epoch of the best validation, and where each stopping policy stops and what it keeps.
    ///
    /// Nothing is trained: full runs (--stop full, every epoch metered) found at any depth under
    /// the given folders are replayed with four policies: full, patience (--patience), the
    /// literal AN-GES rule and the AN-GES default. Per family, the same averaged over its
    /// datasets. The frontier puts every family × policy on one plane, mean test metric against
    /// mean CO2 per run over the datasets all families share, and names the cheapest point
    /// within --tolerance of the best. Runs trained with data pruning (MolPeg, random) are
    /// compared with the full runs of their family.
    ///
    /// Writes tradeoff.md (the tables), tradeoff.json, tradeoff.csv, frontier-<metric>.{png,svg}
    /// and energy.{png,svg} into --out, and prints the tables (the JSON document with --json).
    ///
    /// Example: anges-train tradeoff docs/results/runs --out docs/results/tradeoff
    Tradeoff(TradeoffArgs),
    /// Compare full, patience, AN-GES and MolPeg fine-tuning on one split and report their
    /// trade-offs (table, CSV/JSON, plots, HTML report).
    ///
    /// Per seed, only the runs that change the trajectory are trained: the full run and MolPeg
    /// (and random pruning) at each keep ratio. Patience and AN-GES are replayed on the full
    /// run's log, AN-GES + MolPeg on the MolPeg run's log, since a stopping policy only decides
    /// where the same trajectory ends (bit-identical for the same seed and thread count);
    /// --live-policies also trains them to show live = replay.
    ///
    /// The study sets each run's stopping policy, pruning and seed itself: --stop, --prune,
    /// --keep-ratio and --seed are not its flags (see --seeds, --keep-ratios).
    #[command(
        mut_arg("stop", |a| a.hide(true)),
        mut_arg("prune", |a| a.hide(true)),
        mut_arg("keep_ratio", |a| a.hide(true)),
        mut_arg("seed", |a| a.hide(true))
    )]
    Study(Box<StudyArgs>),
    /// Summarise many fine-tuning runs: mean ± std over seeds of the test metric (at the
    /// best-validation epoch and at the last epoch), epochs, time, energy and CO2, one row per
    /// dataset, model, initialisation and policy.
    ///
    /// Searches the given folders (at any depth) for run directories' summary.json; one that
    /// cannot be read is skipped with a warning. Runs of the Python package (anges.Session, its
    /// Lightning and Hugging Face callbacks) are grouped by the labels they were given
    /// (dataset, model, init; "unlabelled" where missing).
    ///
    /// Example: anges-train summarize runs/ --csv results.csv
    Summarize(SummarizeArgs),
    /// Predict the tasks of a finished fine-tuning run (or the mean of several: an ensemble over
    /// seeds) for the molecules of a CSV file.
    ///
    /// Writes one row per input row, in input order: the input's columns, one column per task
    /// (probability for classification, value in the dataset's units for regression; named
    /// <task>_pred when the input has a column of that name), with several --run the mean and a
    /// <task>_std column, and `reason`: empty, or why the row has no prediction (an invalid
    /// SMILES, an atom the model cannot embed). The runs' best weights are used.
    ///
    /// Example: anges-train predict --run runs/bbbp-seed0 --run runs/bbbp-seed1 --input
    /// molecules.csv --out predictions.csv
    Predict(PredictArgs),
    /// Convert a column of SMILES into SELFIES (--to selfies), or of SELFIES into SMILES (--to
    /// smiles), as the selfies package 2.2 does.
    ///
    /// Writes one row per input row, in input order: the input's columns, the conversion (a
    /// `selfies` or `smiles` column) and `reason`: empty, or why the row has no conversion (a
    /// molecule SELFIES cannot express under its default constraints, an unreadable SMILES, an
    /// unknown SELFIES symbol, an empty cell).
    ///
    /// Example: anges-train convert --to selfies --input bbbp.csv --out bbbp_selfies.csv
    Convert(ConvertArgs),
}

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Data")]
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

    /// Classification (labels 0/1 or -1/1) or regression. Default: the dataset's for a
    /// MoleculeNet name; for a custom CSV, guessed from its labels (classification when every
    /// label column holds only 0/1 or only -1/1) and logged as a guess.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub task_type: Option<TaskType>,
}

/// Which model, from which weights, on which device.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Model family.
    #[arg(long, value_enum, default_value_t = ModelKind::Gin)]
    pub model: ModelKind,

    /// Pre-trained weights: pretrain-gnns .pth (legacy torch.save), zip .pt, .safetensors, or a
    /// Hugging Face folder (config.json, model.safetensors, tokenizer.json) for --model
    /// transformer. Default: a checkpoint of the model's family in the model cache folder
    /// (<cache>/models), else the family's default: gin_attrmask.safetensors and
    /// transformer_mlm/ pre-trained by ANGES (the repository's models/), or pretrain-gnns'
    /// published <gcn|graphsage|gat>_supervised_contextpred.pth; none found is an error that
    /// says where to put them.
    #[arg(long, value_name = "PATH")]
    pub pretrained: Option<PathBuf>,

    /// Start from random initialisation instead of pre-trained weights (baselines: pre-trained
    /// vs not at equal epochs and seed).
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

    /// 1D model: the string form it reads: smiles (atom-level regex tokens) or selfies (each
    /// SMILES translated into SELFIES, one token per symbol; molecules SELFIES cannot express are
    /// dropped, counted and logged). A --pretrained folder must have been pre-trained on the
    /// same representation.
    #[arg(long, value_enum, default_value_t = Representation::Smiles)]
    pub representation: Representation,

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
#[command(next_help_heading = "Compute")]
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
#[command(next_help_heading = "Optimisation")]
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

/// The AN-GES variant and its knobs, shared by live runs and replays (α, β and W are apart: one
/// value live, a grid in a replay). A knob left out takes the variant's default.
#[derive(Debug, Clone, Args)]
pub struct AngesVariantArgs {
    /// AN-GES variant (docs/green.md, "AN-GES variants"): literal = Algorithm 1 as written
    /// (stops at the first validation dip after the warm-up); history = compare with the EMA
    /// of the earlier epochs; smoothed = history on the metric's EMA; consecutive = history,
    /// K triggers in a row; plateau = history on the best metric so far, K triggers in a row;
    /// window = history, AER over several epochs. Sets every knob below that is not given.
    #[arg(long, value_enum, value_name = "VARIANT", default_value_t = AngesVariant::DEFAULT)]
    pub anges_variant: AngesVariant,

    /// AN-GES initial EMA when the warm-up collected nothing [default: the variant's].
    #[arg(long)]
    pub ema_init: Option<f64>,

    /// AN-GES order: update the EMA then compare (Algorithm 1 as written), or compare with the
    /// previous EMA then update [default: the variant's].
    #[arg(long, value_enum)]
    pub anges_order: Option<AngesOrder>,

    /// AN-GES: stop only after K triggering epochs in a row [default: the variant's].
    #[arg(long, value_name = "K")]
    pub anges_consecutive: Option<usize>,

    /// AN-GES performance signal: the raw validation metric, its EMA (--anges-smoothing), or
    /// the best so far [default: the variant's].
    #[arg(long, value_enum)]
    pub anges_signal: Option<AngesSignal>,

    /// AN-GES: weight γ of the history in the metric's EMA, in [0, 1) [default: the variant's].
    #[arg(long, value_name = "GAMMA")]
    pub anges_smoothing: Option<f64>,

    /// AN-GES: epochs the AER spans [default: the variant's].
    #[arg(long, value_name = "EPOCHS")]
    pub anges_window: Option<usize>,
}

/// Stopping policy and its parameters.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Stopping")]
pub struct StopArgs {
    /// Stopping policy.
    #[arg(long, value_enum, default_value_t = StopPolicy::Full)]
    pub stop: StopPolicy,

    /// AN-GES smoothing α of the AER's EMA [default: the variant's].
    #[arg(long)]
    pub alpha: Option<f64>,

    /// AN-GES threshold β: stop when AER < β·EMA [default: the variant's].
    #[arg(long)]
    pub beta: Option<f64>,

    /// AN-GES warm-up epochs W [default: the variant's].
    #[arg(long)]
    pub warmup: Option<usize>,

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
#[command(next_help_heading = "Pruning")]
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
#[command(next_help_heading = "Metering")]
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

    /// Run directory (default runs/<time>-<dataset>-<model>/). A folder that already holds a
    /// run is refused unless --overwrite is given.
    #[arg(long, value_name = "DIR", help_heading = "Run")]
    pub out: Option<PathBuf>,

    /// Replace the run that --out DIR already holds (its logs, weights and saved state).
    #[arg(long)]
    pub overwrite: bool,

    /// Continue the interrupted run in DIR after its last saved epoch (a state is saved after
    /// every epoch on the CPU): `--resume DIR` alone continues with the configuration
    /// DIR/config.json records; flags given with it must agree with that record (--threads,
    /// --device, --meter, --socket, --data-dir may change). `--out DIR --resume` with the run's
    /// flags works too. With the same --threads the result is bit-identical to an
    /// uninterrupted run.
    #[arg(
        long,
        value_name = "DIR",
        num_args = 0..=1,
        conflicts_with = "overwrite",
        help_heading = "Run"
    )]
    pub resume: Option<Option<PathBuf>>,
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

    /// Model family: gin, gcn, graphsage or gat (attribute masking) or transformer (masked-language
    /// modelling).
    #[arg(long, value_enum, default_value_t = ModelKind::Gin)]
    pub model: ModelKind,

    /// Share of each molecule to predict: atoms (2D models: int(n·rate + 1) atoms per molecule, as
    /// pretrain-gnns; never zero) or non-special tokens (transformer: each selected with this
    /// probability, at least one per molecule; 80 % become [MASK], 10 % a random token, 10 % stay).
    #[arg(long, value_name = "RATE", default_value_t = 0.15)]
    pub mask_rate: f64,

    /// 2D models only: start from this checkpoint (.pth, .pt or .safetensors) instead of random
    /// initialisation.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,

    /// 2D models only: dropout after every layer (pretrain-gnns' masking default is 0).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,

    /// gcn only: L2-normalise each atom's row after the aggregation (docs/spec.md §4.2's literal layer;
    /// off as in pretrain-gnns, see the fine-tuning flag of the same name).
    #[arg(long)]
    pub gcn_l2_normalize: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub encoder: EncoderSizeArgs,

    /// transformer only: the string form it learns: smiles (atom-level regex tokens) or selfies
    /// (each SMILES translated into SELFIES, one token per symbol). Recorded in the folder's
    /// config.json; fine-tuning it needs the same --representation.
    #[arg(long, value_enum, default_value_t = Representation::Smiles)]
    pub representation: Representation,

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

    /// Where to write: a .safetensors file (2D models) or a folder (transformer). Default: the
    /// model cache folder, <cache>/models/<model>_attrmask.safetensors (gin, gcn, graphsage, gat)
    /// or transformer_mlm/ (transformer_selfies_mlm/ with --representation selfies), where
    /// fine-tuning finds it without --pretrained.
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
/// The defaults are the shape of the shipped encoder (models/transformer_mlm).
#[derive(Debug, Clone, Args)]
pub struct EncoderSizeArgs {
    /// transformer only: width of the hidden states.
    #[arg(long, value_name = "N", default_value_t = 192)]
    pub hidden_size: i64,

    /// transformer only: number of Transformer blocks.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub layers: i64,

    /// transformer only: attention heads per block (must divide --hidden-size).
    #[arg(long, value_name = "N", default_value_t = 6)]
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

    /// Grid of AN-GES β values (comma-separated) [default: the variant's β].
    #[arg(long, value_delimiter = ',')]
    pub beta: Vec<f64>,

    /// Grid of AN-GES α values (comma-separated) [default: the variant's α].
    #[arg(long, value_delimiter = ',')]
    pub alpha: Vec<f64>,

    /// Grid of AN-GES warm-up lengths (comma-separated) [default: the variant's W].
    #[arg(long, value_delimiter = ',')]
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
}

/// `anges-train tradeoff` (see [`Command::Tradeoff`]).
#[derive(Debug, Clone, Args)]
pub struct TradeoffArgs {
    /// Run directories, or folders holding them at any depth.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Folder for tradeoff.md, tradeoff.json, tradeoff.csv and the plots.
    #[arg(long, value_name = "DIR", default_value = "tradeoff")]
    pub out: PathBuf,

    /// Patience of the patience policy (epochs without a validation improvement).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,

    /// How far below the best mean test metric (ROC-AUC points, or percent of an error) the
    /// frontier's answer, the cheapest family × policy, may lie.
    #[arg(long, default_value_t = 1.0)]
    pub tolerance: f64,
}

impl TradeoffArgs {
    /// The analysis these flags ask for.
    pub fn to_config(&self) -> anges_trainer::tradeoff::TradeoffConfig {
        anges_trainer::tradeoff::TradeoffConfig {
            paths: self.paths.clone(),
            patience: self.patience,
            tolerance: self.tolerance,
        }
    }
}

/// `anges-train evaluate` (see [`Command::Evaluate`]).
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Run directories, or folders holding them at any depth.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Folder for evaluation.json, evaluation.csv, runs.csv and the frontier plots.
    #[arg(long, value_name = "DIR", default_value = "evaluation")]
    pub out: PathBuf,

    /// The criterion's largest mean test loss (ROC-AUC points, or percent of an error metric).
    #[arg(long, default_value_t = 1.0)]
    pub tolerance: f64,

    /// Tolerances whose held-out choices draw the frontiers (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,1,1.5,2,3,5")]
    pub sweep: Vec<f64>,

    /// CO2 saving (percent of the full runs') the goal asks for at --tolerance.
    #[arg(long, default_value_t = 40.0)]
    pub goal_saved: f64,
}

impl EvaluateArgs {
    /// The evaluation these flags ask for.
    pub fn to_config(&self) -> anges_trainer::evaluate::EvaluateConfig {
        anges_trainer::evaluate::EvaluateConfig {
            paths: self.paths.clone(),
            tolerance: self.tolerance,
            sweep: self.sweep.clone(),
            goal_saved_pct: self.goal_saved,
        }
    }
}

/// `anges-train summarize` (see [`Command::Summarize`]).
#[derive(Debug, Clone, Args)]
pub struct SummarizeArgs {
    /// Run directories, or folders holding them at any depth.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Also write the rows to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

/// `anges-train predict` (see [`Command::Predict`]).
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Run directory of a finished fine-tuning run; repeat for an ensemble (same model family
    /// and tasks).
    #[arg(long = "run", value_name = "DIR", required = true)]
    pub runs: Vec<PathBuf>,

    /// CSV (.csv or .csv.gz) of the molecules to predict.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,

    /// Output CSV.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The input's SMILES column.
    #[arg(long, value_name = "NAME", default_value = "smiles")]
    pub smiles_column: String,

    /// Molecules per batch (default: the first run's training batch size).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub compute: ComputeArgs,
}

/// `anges-train convert` (see [`Command::Convert`]).
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// What to write: selfies (from a SMILES column) or smiles (from a SELFIES column).
    #[arg(long, value_enum)]
    pub to: Representation,

    /// CSV (.csv or .csv.gz, with a header row) holding the column to convert.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,

    /// Output CSV.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The column to convert. Default: with --to selfies the column named smiles (in any
    /// case), else mol, else the only column; with --to smiles the column named selfies, else
    /// the only column.
    #[arg(long, visible_alias = "column", value_name = "NAME")]
    pub smiles_column: Option<String>,
}

impl ConvertArgs {
    /// The conversion these flags ask for.
    pub fn to_config(&self) -> ConvertConfig {
        ConvertConfig {
            to: self.to,
            input: self.input.clone(),
            out: self.out.clone(),
            column: self.smiles_column.clone(),
        }
    }
}

/// `anges-train study`.
///
/// Per seed, on one split: trains the full fine-tuning (`--epochs`) and MolPeg at each keep
/// ratio, derives the patience baseline (`--patience`) and AN-GES (`--alpha --beta --warmup …`)
/// by replay of the full run's log (and AN-GES + MolPeg of the MolPeg run's; `--live-policies`
/// trains them as well), then replays the full run over the β grid. `--stop`, `--prune`,
/// `--keep-ratio` and `--seed` are hidden from its `--help` and ignored: the study runs every
/// policy, and every seed, itself.
#[derive(Debug, Clone, Args)]
pub struct StudyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub finetune: FinetuneArgs,

    /// MolPeg keep ratios to include (comma-separated fractions KEPT; empty, `--keep-ratios ''`,
    /// to skip MolPeg).
    #[arg(
        long,
        value_parser = parse_keep_ratios,
        default_value = "0.5",
        help_heading = "Study"
    )]
    pub keep_ratios: KeepRatios,

    /// Also run dynamic random pruning at each keep ratio (the MolPeg baseline).
    #[arg(long, help_heading = "Study")]
    pub with_random: bool,

    /// Also report AN-GES combined with MolPeg at each keep ratio (replayed on the MolPeg run's
    /// log).
    #[arg(long, help_heading = "Study")]
    pub combine: bool,

    /// Also train the replayed policies live (patience-live, anges-live, and with --combine
    /// anges+molpeg-R-live, each in its own run folder and metered as its own job), and check
    /// that each stops at its replay's stop epoch with the same best epoch: the first epochs of
    /// a run are bit-identical for the same seed and thread count, so live = replay (a mismatch
    /// is a warning, recorded in the report). AN-GES also reads the meter, whose noise a second
    /// run does not reproduce: an AN-GES run right at its threshold may stop an epoch apart.
    /// Costs one training per replayed policy and seed.
    #[arg(long, help_heading = "Study")]
    pub live_policies: bool,

    /// Seeds to run and aggregate (mean ± std), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0",
        help_heading = "Study"
    )]
    pub seeds: Vec<u64>,

    /// β grid replayed on each full run for the %ΔPerf/%ΔEmiss frontier (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.05,0.1,0.2,0.3,0.5,0.7,1.0",
        help_heading = "Study"
    )]
    pub frontier_betas: Vec<f64>,
}

/// `--keep-ratios`: a comma-separated list of fractions, where the empty string is the empty list
/// (a list flag split by clap would refuse `''` as a number).
#[derive(Debug, Clone, PartialEq)]
pub struct KeepRatios(pub Vec<f64>);

fn parse_keep_ratios(text: &str) -> Result<KeepRatios, String> {
    if text.trim().is_empty() {
        return Ok(KeepRatios(Vec::new()));
    }
    text.split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .map_err(|e| format!("{:?} is not a number: {e}", r.trim()))
        })
        .collect::<Result<_, _>>()
        .map(KeepRatios)
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
    /// The variant's parameters with the knobs given laid over them, and α, β, W where given.
    fn params(&self, alpha: Option<f64>, beta: Option<f64>, warmup: Option<usize>) -> AngesParams {
        let mut p = self.anges_variant.preset();
        let or = |given: Option<f64>, default: f64| given.unwrap_or(default);
        p.alpha = or(alpha, p.alpha);
        p.beta = or(beta, p.beta);
        p.warmup = warmup.unwrap_or(p.warmup);
        p.ema_init = or(self.ema_init, p.ema_init);
        p.order = self.anges_order.unwrap_or(p.order);
        p.consecutive = self.anges_consecutive.unwrap_or(p.consecutive);
        p.signal = self.anges_signal.unwrap_or(p.signal);
        p.smoothing = or(self.anges_smoothing, p.smoothing);
        p.window = self.anges_window.unwrap_or(p.window);
        p
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

impl Cli {
    /// Usage errors that the argument parser cannot see: `--resume` without a folder.
    pub fn check_usage(&self) -> Result<(), clap::Error> {
        let f = &self.finetune;
        if self.command.is_none() && matches!(f.resume, Some(None)) && f.out.is_none() {
            return Err(Self::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--resume needs the run's folder: --resume DIR, or --out DIR --resume",
            ));
        }
        Ok(())
    }
}

/// Whether the flag `id` was given (on the command line or through its environment variable)
/// rather than left at its default.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl FinetuneArgs {
    /// The configuration of the run these flags start (`matches`, where they were parsed, tell
    /// the flags given from the defaults): with `--resume DIR`, the configuration the run
    /// recorded, with the flags given laid over it (the run refuses those that contradict it);
    /// else [`FinetuneArgs::to_config`].
    pub fn to_run_config(&self, matches: &ArgMatches) -> anyhow::Result<FinetuneConfig> {
        let Some(Some(dir)) = &self.resume else {
            return Ok(self.to_config()?);
        };
        let recorded = anges_trainer::train::resume::recorded_config(dir)?;
        let mut args = self.clone();
        args.keep_recorded(&recorded, &|id| given(matches, id));
        Ok(args.to_config()?)
    }

    /// Sets every flag that was not `given` to the value the configuration `r` records. The
    /// flags that are no part of a recorded configuration (--device, --out, --overwrite,
    /// --resume) keep theirs.
    fn keep_recorded(&mut self, r: &FinetuneConfig, given: &dyn Fn(&str) -> bool) {
        macro_rules! recorded {
            ($($id:literal: $flag:expr => $value:expr;)*) => {{
                $(if !given($id) {
                    $flag = $value;
                })*
            }};
        }
        let (d, m, t) = (&mut self.data, &mut self.model, &mut self.train);
        recorded! {
            "dataset": d.dataset => Some(r.data.dataset.clone());
            "data_dir": d.data_dir => r.data.data_dir.clone();
            "smiles_column": d.smiles_column => r.data.smiles_column.clone();
            "target": d.target => r.data.targets.clone();
            "split": d.split => r.data.split;
            "split_file": d.split_file => r.data.split_file.clone();
            "seed": d.seed => r.data.seed;
            "max_rows": d.max_rows => r.data.max_rows;
            "task_type": d.task_type => r.data.task_type;
            "model": m.model => r.model.kind;
            "pretrained": m.pretrained => r.model.pretrained.clone();
            "random_init": m.random_init => r.model.random_init;
            "allow_partial": m.allow_partial => r.model.allow_partial;
            "group_by_length": m.group_by_length => r.model.group_by_length;
            "pooling": m.pooling => serde_json::to_value(r.model.pooling)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| m.pooling.clone());
            "dropout": m.dropout => r.model.dropout;
            "gcn_l2_normalize": m.gcn_l2_normalize => r.model.gcn_l2_normalize;
            "representation": m.representation => r.model.representation;
            "threads": m.compute.threads => r.compute.threads;
            "epochs": t.epochs => r.train.epochs;
            "batch_size": t.batch_size => r.train.batch_size;
            "lr": t.lr => r.train.lr;
            "weight_decay": t.weight_decay => r.train.weight_decay;
            "clip_grad": t.clip_grad => r.train.clip_grad;
            "stop": self.stop.stop => r.stop.kind();
            "prune": self.prune.prune => r.prune.method;
            "keep_ratio": self.prune.keep_ratio => r.prune.keep_ratio;
            "ema_beta": self.prune.ema_beta => r.prune.ema_beta;
            "meter": self.meter.meter => r.meter.mode;
            "socket": self.meter.socket => r.meter.socket.clone();
            "pue": self.meter.pue => r.meter.carbon.pue;
            "meter_config": self.meter.meter_config => r.meter.carbon.meter_config.clone();
        }
        // The recorded intensity, unless one of its three flags was given.
        let c = &mut self.meter;
        if !["region", "intensity", "intensity_csv"]
            .iter()
            .any(|id| given(id))
        {
            (c.region, c.intensity, c.intensity_csv) = match &r.meter.carbon.intensity {
                Some(IntensitySource::Region(code)) => (Some(code.clone()), None, None),
                Some(IntensitySource::Constant(g)) => (None, Some(*g), None),
                Some(IntensitySource::Csv(path)) => (None, None, Some(path.clone())),
                None => (None, None, None),
            };
        }
        // The parameters of the recorded policy (those of the others are not recorded, and
        // not used).
        let s = &mut self.stop;
        match r.stop {
            StopSpec::Full => {}
            StopSpec::Patience {
                patience,
                min_delta,
            } => recorded! {
                "patience": s.patience => patience;
                "min_delta": s.min_delta => min_delta;
            },
            // A variant given on the command line brings its own knobs: a run recorded with
            // another one is then refused by the resume check.
            StopSpec::Anges(p) if !given("anges_variant") => recorded! {
                "alpha": s.alpha => Some(p.alpha);
                "beta": s.beta => Some(p.beta);
                "warmup": s.warmup => Some(p.warmup);
                "ema_init": s.variant.ema_init => Some(p.ema_init);
                "anges_order": s.variant.anges_order => Some(p.order);
                "anges_consecutive": s.variant.anges_consecutive => Some(p.consecutive);
                "anges_signal": s.variant.anges_signal => Some(p.signal);
                "anges_smoothing": s.variant.anges_smoothing => Some(p.smoothing);
                "anges_window": s.variant.anges_window => Some(p.window);
            },
            StopSpec::Anges(_) => {}
        }
    }

    /// The validated configuration these flags describe.
    pub fn to_config(&self) -> Result<FinetuneConfig, ConfigError> {
        let (out, resume) = match &self.resume {
            None => (self.out.clone(), false),
            Some(None) => (self.out.clone(), true),
            Some(Some(dir)) => match &self.out {
                Some(out) if out != dir => {
                    return Err(ConfigError(format!(
                        "--resume {} and --out {}: name the run's folder once",
                        dir.display(),
                        out.display()
                    )));
                }
                _ => (Some(dir.clone()), true),
            },
        };
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
                task_type: d.task_type,
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
                representation: m.representation,
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
            out,
            resume,
            overwrite: self.overwrite,
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
            representation: self.representation,
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
            anges: self.variant.params(None, None, None),
            alpha: self.alpha.clone(),
            beta: self.beta.clone(),
            warmup: self.warmup.clone(),
            patience: self.patience.clone(),
            min_delta: self.min_delta,
        }
    }
}

impl PredictArgs {
    /// The prediction these flags ask for.
    pub fn to_config(&self) -> PredictConfig {
        PredictConfig {
            runs: self.runs.clone(),
            input: self.input.clone(),
            out: self.out.clone(),
            smiles_column: self.smiles_column.clone(),
            batch_size: self.batch_size,
            compute: self.compute.to_config(),
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
            keep_ratios: self.keep_ratios.0.clone(),
            with_random: self.with_random,
            combine: self.combine,
            live_policies: self.live_policies,
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
    fn a_variant_sets_the_knobs_not_given_and_the_literal_rule_stays_reachable() {
        let stop = |flags: &[&str]| match finetune(flags).unwrap().stop {
            StopSpec::Anges(p) => p,
            other => panic!("expected AN-GES, got {other:?}"),
        };
        assert_eq!(stop(&["--stop", "anges"]), AngesVariant::DEFAULT.preset());
        assert_eq!(
            stop(&["--stop", "anges", "--anges-variant", "literal"]),
            AngesParams::literal()
        );
        assert_eq!(
            stop(&[
                "--stop",
                "anges",
                "--anges-variant",
                "plateau",
                "--anges-consecutive",
                "7",
                "--warmup",
                "3"
            ]),
            AngesParams {
                consecutive: 7,
                warmup: 3,
                ..AngesVariant::Plateau.preset()
            }
        );
        assert_eq!(
            stop(&[
                "--stop",
                "anges",
                "--anges-signal",
                "ema",
                "--anges-smoothing",
                "0.5"
            ]),
            AngesParams {
                signal: AngesSignal::Ema,
                smoothing: 0.5,
                ..AngesVariant::DEFAULT.preset()
            }
        );
        let err = finetune(&["--stop", "anges", "--anges-window", "0"]).unwrap_err();
        assert!(err.to_string().contains("--anges-window"), "{err}");
        // A replay grid varies α, β, W over the variant's other knobs.
        let cli = Cli::try_parse_from([
            "anges-train",
            "replay",
            "runs/x",
            "--anges-variant",
            "window",
            "--beta",
            "0.1,0.2",
        ])
        .unwrap();
        let Some(Command::Replay(r)) = cli.command else {
            panic!("expected replay")
        };
        let grid = r.to_grid();
        assert_eq!(grid.anges, AngesVariant::Window.preset());
        assert_eq!(grid.beta, [0.1, 0.2]);
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

    /// `--keep-ratios ''` is the empty list (no MolPeg run); `--live-policies` reaches the
    /// study's configuration.
    #[test]
    fn study_keep_ratios_may_be_empty() {
        let study = |flags: &[&str]| {
            let args = ["anges-train", "study", "--dataset", "bace"];
            match Cli::try_parse_from(args.iter().chain(flags))
                .unwrap()
                .command
            {
                Some(Command::Study(s)) => s.to_config().unwrap(),
                other => panic!("expected study, got {other:?}"),
            }
        };
        assert_eq!(study(&[]).keep_ratios, vec![0.5]);
        assert!(!study(&[]).live_policies);
        let none = study(&["--keep-ratios", "", "--seeds", "0", "--live-policies"]);
        assert!(none.keep_ratios.is_empty());
        assert!(none.live_policies);
        assert_eq!(
            study(&["--keep-ratios", "0.3, 0.5"]).keep_ratios,
            vec![0.3, 0.5]
        );
        let bad = [
            "anges-train",
            "study",
            "--dataset",
            "bace",
            "--keep-ratios",
            "0.3,,0.5",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    /// `study --help` shows what the study uses, not the flags it sets itself (they were listed
    /// among ≈60 fine-tuning flags before).
    #[test]
    fn study_help_hides_the_flags_the_study_sets() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("study")
            .expect("a study subcommand")
            .render_long_help()
            .to_string();
        for hidden in ["--stop <", "--prune <", "--keep-ratio <", "--seed <"] {
            assert!(
                !help.contains(hidden),
                "study --help lists {hidden}:\n{help}"
            );
        }
        for shown in [
            "Study:",
            "--keep-ratios <",
            "--seeds <",
            "--beta <",
            "--patience <",
            "--live-policies",
            "--epochs <",
        ] {
            assert!(help.contains(shown), "study --help lacks {shown}:\n{help}");
        }
        // Fine-tuning itself still offers them, grouped by what they set.
        let help = Cli::command().render_long_help().to_string();
        for shown in [
            "--stop <",
            "--keep-ratio <",
            "Stopping:",
            "Pruning:",
            "Output:",
        ] {
            assert!(help.contains(shown), "--help lacks {shown}:\n{help}");
        }
    }

    #[test]
    fn output_flags_pick_the_log_filter() {
        let output = |argv: &[&str]| {
            Cli::try_parse_from([&["anges-train"][..], argv].concat())
                .unwrap()
                .output
        };
        let env = || Some("anges_trainer=trace".to_owned());
        assert_eq!(output(&[]).log_filter(None), DEFAULT_FILTER);
        assert_eq!(output(&[]).log_filter(env()), "anges_trainer=trace");
        assert_eq!(output(&["-q"]).log_filter(env()), "warn");
        assert_eq!(output(&["-v"]).log_filter(None), VERBOSE_FILTER);
        assert_eq!(output(&["-v", "--log", "debug"]).log_filter(None), "debug");
        assert!(Cli::try_parse_from(["anges-train", "-q", "-v"]).is_err());
        // Global: after a subcommand too, and `--json` for every subcommand.
        let cli = Cli::try_parse_from(["anges-train", "replay", "runs/x", "--json", "-q"]).unwrap();
        assert!(cli.output.json && cli.output.quiet);
    }

    /// Each refusal names the one flag at fault (`--epochs 0` named `--batch-size` too).
    #[test]
    fn a_refusal_names_only_the_flag_at_fault() {
        let err = finetune(&["--epochs", "0"]).unwrap_err().to_string();
        assert!(
            err.contains("--epochs") && !err.contains("--batch-size"),
            "{err}"
        );
        let err = finetune(&["--batch-size", "0"]).unwrap_err().to_string();
        assert!(
            err.contains("--batch-size") && !err.contains("--epochs"),
            "{err}"
        );
        // Out of range whatever the pruning method: refused, not ignored.
        let err = finetune(&["--keep-ratio", "1.5"]).unwrap_err().to_string();
        assert!(err.contains("--keep-ratio 1.5"), "{err}");
    }

    /// The matches and the fine-tuning flags of `argv`.
    fn parsed(argv: &[&str]) -> (ArgMatches, FinetuneArgs) {
        use clap::FromArgMatches;
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        (matches, cli.finetune)
    }

    /// A recorded configuration with no field at its default.
    fn recorded() -> FinetuneConfig {
        let mut r = FinetuneConfig::new("my.csv");
        r.data.data_dir = Some("/d".into());
        r.data.smiles_column = Some("smi".into());
        r.data.targets = vec!["y1".into(), "y2".into()];
        r.data.split = SplitKind::Random;
        r.data.split_file = Some("s.json".into());
        r.data.seed = 7;
        r.data.max_rows = Some(50);
        r.data.task_type = Some(TaskType::Classification);
        r.model = ModelConfig {
            kind: ModelKind::Gcn,
            pretrained: Some("w.pth".into()),
            random_init: false,
            allow_partial: true,
            group_by_length: true,
            pooling: anges_trainer::config::Pooling::Mean,
            dropout: 0.25,
            gcn_l2_normalize: true,
            representation: Representation::Smiles,
        };
        r.compute.threads = 3;
        r.train = OptimConfig {
            epochs: 9,
            batch_size: 16,
            lr: 0.01,
            weight_decay: 0.1,
            clip_grad: 1.0,
        };
        r.stop = StopSpec::Anges(AngesParams {
            alpha: 0.8,
            beta: 0.3,
            warmup: 2,
            ema_init: 0.01,
            order: AngesOrder::CompareThenUpdate,
            consecutive: 2,
            signal: AngesSignal::Ema,
            smoothing: 0.5,
            window: 3,
        });
        r.prune = PruneConfig {
            method: PruneMethod::Molpeg,
            keep_ratio: 0.7,
            ema_beta: 0.9,
        };
        r.meter = MeterConfig {
            mode: MeterMode::Local,
            socket: Some("/s".into()),
            carbon: CarbonConfig {
                intensity: Some(IntensitySource::Region("FR".into())),
                pue: Some(1.3),
                // A file named here must exist when the configuration is checked.
                meter_config: None,
            },
        };
        r
    }

    /// [`recorded`] with the patience policy (the other policy with parameters).
    fn recorded_patience() -> FinetuneConfig {
        FinetuneConfig {
            stop: StopSpec::Patience {
                patience: 3,
                min_delta: 0.5,
            },
            ..recorded()
        }
    }

    /// `--resume DIR` alone gives the recorded configuration back, whatever it holds; a flag
    /// given explicitly is kept, even at its default value (the run then refuses it).
    #[test]
    fn resume_dir_alone_takes_the_recorded_configuration() {
        let (matches, args) = parsed(&["anges-train", "--resume", "runs/r"]);
        for rec in [recorded(), recorded_patience()] {
            let mut merged = args.clone();
            merged.keep_recorded(&rec, &|id| given(&matches, id));
            let want = FinetuneConfig {
                out: Some("runs/r".into()),
                resume: true,
                ..rec
            };
            assert_eq!(merged.to_config().unwrap(), want);
        }
        let (matches, args) = parsed(&["anges-train", "--resume", "r", "--epochs", "100"]);
        let mut merged = args.clone();
        merged.keep_recorded(&recorded(), &|id| given(&matches, id));
        let config = merged.to_config().unwrap();
        assert_eq!((config.train.epochs, config.train.lr), (100, 0.01));
    }

    /// Every fine-tuning flag that a run records is taken from the record unless given: a flag
    /// added later and forgotten in `keep_recorded` fails here.
    #[test]
    fn every_recorded_flag_is_taken_from_the_record() {
        let asked = std::cell::RefCell::new(Vec::<String>::new());
        for rec in [recorded(), recorded_patience()] {
            let (_, mut args) = parsed(&["anges-train", "--resume", "r"]);
            args.keep_recorded(&rec, &|id| {
                asked.borrow_mut().push(id.to_owned());
                false
            });
        }
        let not_recorded = [
            "log",
            "quiet",
            "verbose",
            "json",
            "device",
            "out",
            "overwrite",
            "resume",
            "help",
            "version",
        ];
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            assert!(
                not_recorded.contains(&id) || asked.borrow().iter().any(|a| a == id),
                "--resume DIR ignores the recorded value of {id}"
            );
        }
    }

    #[test]
    fn resume_overwrite_and_task_type_flags() {
        let c = finetune(&["--task-type", "classification", "--overwrite"]).unwrap();
        assert_eq!(c.data.task_type, Some(TaskType::Classification));
        assert!(c.overwrite && !c.resume);
        let (_, args) = parsed(&["anges-train", "--out", "a", "--resume", "--dataset", "x"]);
        let c = args.to_config().unwrap();
        assert_eq!((c.out.unwrap(), c.resume), (PathBuf::from("a"), true));
        let (_, args) = parsed(&[
            "anges-train",
            "--resume",
            "b",
            "--out",
            "a",
            "--dataset",
            "x",
        ]);
        assert!(args.to_config().unwrap_err().0.contains("once"));
        assert!(Cli::try_parse_from(["anges-train", "--resume", "b", "--overwrite"]).is_err());
        assert!(Cli::try_parse_from(["anges-train", "--task-type", "binary"]).is_err());
        let alone = Cli::try_parse_from(["anges-train", "--dataset", "x", "--resume"]).unwrap();
        assert!(alone.check_usage().is_err());
        let dir = Cli::try_parse_from(["anges-train", "--resume", "runs/r"]).unwrap();
        assert!(dir.check_usage().is_ok());
    }

    #[test]
    fn representation_and_convert_flags() {
        let c = finetune(&["--model", "transformer", "--representation", "selfies"]).unwrap();
        assert_eq!(c.model.representation, Representation::Selfies);
        let err = finetune(&["--representation", "selfies"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--representation selfies is for --model transformer"),
            "{err}"
        );
        let p = pretrain(&["--model", "transformer", "--representation", "selfies"]).unwrap();
        assert_eq!(p.representation, Representation::Selfies);
        assert!(pretrain(&["--model", "gcn", "--representation", "selfies"]).is_err());
        // --resume DIR takes the recorded representation.
        let rec = FinetuneConfig {
            model: ModelConfig {
                kind: ModelKind::Transformer,
                representation: Representation::Selfies,
                ..ModelConfig::default()
            },
            ..recorded()
        };
        let (matches, args) = parsed(&["anges-train", "--resume", "runs/r"]);
        let mut merged = args.clone();
        merged.keep_recorded(&rec, &|id| given(&matches, id));
        assert_eq!(
            merged.to_config().unwrap().model.representation,
            Representation::Selfies
        );
        let convert = |argv: &[&str]| {
            let argv = [&["anges-train", "convert"][..], argv].concat();
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Some(Command::Convert(c))) => Ok(c.to_config()),
                Ok(other) => panic!("expected convert, got {other:?}"),
                Err(e) => Err(e),
            }
        };
        let c = convert(&["--to", "smiles", "--input", "a.csv", "--out", "b.csv"]).unwrap();
        assert_eq!(
            c,
            ConvertConfig {
                to: Representation::Smiles,
                input: "a.csv".into(),
                out: "b.csv".into(),
                column: None,
            }
        );
        let c = convert(&[
            "--to", "selfies", "--input", "a", "--out", "b", "--column", "smi",
        ]);
        assert_eq!(c.unwrap().column.as_deref(), Some("smi"));
        assert!(convert(&["--to", "inchi", "--input", "a", "--out", "b"]).is_err());
        assert!(
            convert(&["--input", "a", "--out", "b"]).is_err(),
            "--to is required"
        );
    }

    #[test]
    fn random_init_and_pretrained_exclude_each_other() {
        let both = ["anges-train", "--random-init", "--pretrained", "x.pth"];
        assert!(Cli::try_parse_from(both).is_err());
    }
}
