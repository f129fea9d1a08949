//! Fine-tuning of the 2D models (GIN/GCN): the training loop and what it writes.
//!
//! - [`finetune`]: the loop ([`run_finetune`]): data, split, model and weights, optimiser,
//!   epochs, evaluation, best-model selection, stopping.
//! - [`metrics`]: ROC-AUC / PRC-AUC / RMSE / MAE of a split.
//! - [`stopping`]: best-epoch tracking and the patience rule.
//! - [`rundir`]: the run directory and its files (`config.json`, `split.json`, `epochs.jsonl`,
//!   `epochs.csv`, `summary.json`, weights).
//!
//! Not built yet (each returns [`TrainError::NotBuilt`]): `--model transformer`, `--stop anges`,
//! `--prune molpeg|random`; emissions are not metered (their fields are `null`).

pub mod finetune;
pub mod metrics;
pub mod rundir;
pub mod stopping;

use std::path::{Path, PathBuf};

pub use finetune::run_finetune;
pub use metrics::EvalMetrics;
pub use rundir::{EpochRecord, RowCounts, RunDir, Summary};
pub use stopping::Patience;

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::models::ModelError;
use crate::runtime::DeviceUnavailable;
use crate::split::SplitError;

/// Why a fine-tuning run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An option whose implementation has not landed yet.
    #[error("{0} is not built yet (see the trainer issues)")]
    NotBuilt(String),
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

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
