//! The error type of the reports ([`ReportError`]): every failure names the file it was reading
//! or writing.

use std::path::PathBuf;

/// Why a report could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading a folder of runs failed (or the path does not exist).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the folder or writing a file failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising `study.json` failed.
    #[error("writing JSON {}: {source}", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying serde_json error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing a CSV file failed.
    #[error("writing CSV {}: {source}", path.display())]
    Csv {
        /// The file concerned.
        path: PathBuf,
        /// The underlying csv error.
        #[source]
        source: csv::Error,
    },
    /// Drawing or encoding a plot failed.
    #[error("drawing plot {}: {message}", path.display())]
    Plot {
        /// The file concerned.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
}

impl ReportError {
    /// An [`ReportError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
