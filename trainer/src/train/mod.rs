//! The one epoch loop, and fine-tuning (GIN/GCN and the 1D SMILES Transformer) with what it
//! writes.
//!
//! - [`epochs`]: the epoch loop that fine-tuning and pre-training share ([`epochs::EpochTask`]):
//!   per-epoch seeding, the meter reading, the resume state.
//! - [`finetune`]: fine-tuning ([`run_finetune`]) as named steps: data, split, run directory,
//!   model and weights, the task (optimiser, pruning, the stopping policy of
//!   [`crate::policy`]), the loop, the summary.
//! - `network` (crate): the network being tuned (GIN/GCN or the SMILES Transformer), its
//!   per-row inputs, how it is built, and MolPeg's reference twin.
//! - `epoch` (private): one training pass (with MolPeg scoring) and the evaluation of a split.
//! - [`prune`]: MolPeg and random data pruning, and MolPeg's EMA reference model.
//! - [`metrics`]: ROC-AUC / PRC-AUC / RMSE / MAE of a split.
//! - [`rundir`]: the run directory and its files (`config.json`, `split.json`, `epochs.jsonl`,
//!   `epochs.csv`, `summary.json`, weights).
//! - `seeded` (crate): the loop's own seeded randomness (data order, pruning ties, and the
//!   masks of pre-training).
//! - `setup` (crate): threads, seed, optimiser and progress bar, shared with
//!   [`crate::pretrain`].
//! - [`optim`]: Adam/AdamW, fused on the CPU.
//! - [`predictions`]: batched inference in the dataset's units, shared by the run's end
//!   (`predictor.json`, `test_predictions.csv`) and `anges-train predict`.
//! - [`weights`]: where the starting weights come from (`--pretrained`, the model cache, the
//!   shipped and published defaults, `--random-init`), checked before any work.
//! - [`resume`]: the state saved after every epoch, and `--resume` from it (fine-tuning and
//!   pre-training).

mod epoch;
pub mod epochs;
pub mod finetune;
pub use anges_tracking::metrics;
pub(crate) mod network;
pub mod optim;
pub mod predictions;
pub mod prune;
pub mod resume;
pub mod rundir;
pub(crate) mod seeded;
pub(crate) mod setup;
pub mod weights;

use std::path::{Path, PathBuf};

pub use finetune::run_finetune;
pub use metrics::EvalMetrics;
pub use rundir::{EpochRecord, PruneSummary, RowCounts, RunDir, Summary};
pub use seeded::{LENGTH_GROUP_BATCHES, group_by_length};

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::models::ModelError;
use crate::runtime::DeviceUnavailable;
use crate::split::SplitError;

/// Why a fine-tuning run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An invalid combination or value of options.
    #[error("invalid options: {0}")]
    Options(String),
    /// The dataset could not be found, read or featurised.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The split could not be made, read or written.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The requested device is not available.
    #[error(transparent)]
    Device(#[from] DeviceUnavailable),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Pre-trained weights could not be read or do not fit the model.
    #[error("{}: {source}{hint}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        source: CheckpointError,
        /// A suggestion (may be empty).
        hint: String,
    },
    /// The meter could not be started as asked.
    #[error(transparent)]
    Meter(#[from] crate::emissions::MeterError),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file of the run could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<crate::config::ConfigError> for TrainError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Options(e.0)
    }
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
