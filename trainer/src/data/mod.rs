//! Datasets: the MoleculeNet registry, finding (or downloading) the files, reading CSVs,
//! featurising every molecule, and caching the featurised dataset on disk.
//!
//! Entry point: [`load_dataset`] with a [`DatasetRequest`] and [`DataOptions`]; the result is a
//! [`Dataset`] of featurised [`Row`]s (original row index, SMILES, graph, scaffold, labels) plus
//! the counted, named [`Skip`]s of rows that gave no molecule.

pub mod cache;
pub mod dataset;
pub mod locate;
pub mod registry;
pub mod table;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use dataset::{Dataset, DatasetRequest, Row, Skip, SkipKind, load_dataset};
pub use locate::DataOptions;
pub use registry::{DatasetSpec, Metric, TaskType};

/// Everything that can go wrong while getting a dataset.
#[derive(Debug, Error)]
pub enum DataError {
    /// `--dataset NAME` names no registered dataset and no existing file.
    #[error("unknown dataset {name:?}: not a file, and not one of {known:?}")]
    UnknownDataset {
        /// What was asked for.
        name: String,
        /// The registered names.
        known: Vec<&'static str>,
    },
    /// A custom CSV needs `--smiles-column` and `--target`.
    #[error("{path}: a custom CSV needs --target (and --smiles-column unless it is 'smiles')")]
    CustomColumns {
        /// The CSV.
        path: PathBuf,
    },
    /// The dataset file is nowhere and could not be downloaded.
    #[error(
        "{name}: no file found in {searched:?}, and the download of {url} failed: {message} \
         (offline? put the CSV in --data-dir or $ANGES_DATA_DIR)"
    )]
    NotFound {
        /// Dataset name.
        name: String,
        /// The folders searched.
        searched: Vec<PathBuf>,
        /// The URL tried.
        url: String,
        /// Why the download failed.
        message: String,
    },
    /// A downloaded file failed verification.
    #[error("download of {url} is not a valid {name} table: {message}")]
    BadDownload {
        /// Dataset name.
        name: String,
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A malformed or truncated CSV.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// An empty file (no header or no data row).
    #[error("{path}: the file is empty (no header or no data row)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A requested column does not exist.
    #[error("{path}: no column {column:?}; the columns are {available:?}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header.
        available: Vec<String>,
    },
    /// The registry's columns are not in the file's header.
    #[error("{path}: header {header:?} lacks the columns of {name}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// Dataset name.
        name: String,
        /// The header found.
        header: Vec<String>,
    },
    /// A label cell is not a number.
    #[error("{path}:{line}: column {column:?} holds {value:?}, not a number")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The column.
        column: String,
        /// The cell (first 40 characters).
        value: String,
    },
    /// A classification label other than 0/1 (or −1/1).
    #[error(
        "{path}:{line}: classification label {value} in column {column:?} is not 0/1 (or -1/1); \
         --task-type regression fits such labels as numbers"
    )]
    NotBinary {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The column.
        column: String,
        /// The value.
        value: f32,
    },
    /// A classification column that mixes the 0/1 and −1/1 conventions.
    #[error(
        "{path}:{line}: classification column {column:?} holds both 0 (line {zero}) and -1 \
         (line {minus}): use 0/1 or -1/1 for its negatives, not both"
    )]
    MixedBinary {
        /// The file.
        path: PathBuf,
        /// 1-based line where the column became mixed.
        line: u64,
        /// The column.
        column: String,
        /// Line of its first 0.
        zero: u64,
        /// Line of its first −1.
        minus: u64,
    },
    /// `--task-type` contradicts the registry's task type of a named dataset.
    #[error("--task-type {asked}: {name} is a {registered} dataset")]
    TaskTypeMismatch {
        /// Dataset name.
        name: String,
        /// The task type asked for.
        asked: &'static str,
        /// The registry's.
        registered: &'static str,
    },
    /// Every row was skipped.
    #[error("{path}: no row gave a molecule ({skipped} skipped)")]
    NoMolecules {
        /// The file.
        path: PathBuf,
        /// How many rows were skipped.
        skipped: usize,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
