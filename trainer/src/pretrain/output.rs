//! Where pre-training writes, and what: the output place ([`Output`]: one `.safetensors` file for
//! GIN/GCN, a Hugging Face folder for the 1D encoder; by default in the model cache folder), the
//! machine-readable log of the run ([`PretrainLog`], one [`PretrainEpoch`] per epoch), the
//! state `--resume` continues from ([`Output::state`], written by [`crate::train::resume`]), and
//! atomic replacement of all three, so that a run killed mid-write leaves the previous epoch's
//! files.
//!
//! | model | `--out` (default) | checkpoint | log | resume state (while running) |
//! | --- | --- | --- | --- | --- |
//! | gin, gcn, graphsage, gat | `<cache>/models/{gin,gcn,graphsage,gat}_attrmask.safetensors` | that file | `<stem>.pretrain.json` beside it | `<stem>.resume.safetensors` beside it |
//! | transformer | `<cache>/models/transformer_mlm/` (`--representation selfies`: `transformer_selfies_mlm/`) | `model.safetensors` (+ `config.json`, `vocab.txt`) | `pretrain.json` inside | `resume.safetensors` inside |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use super::PretrainError;
use super::corpus::Corpus;
use crate::checkpoint::CheckpointError;
use crate::config::{ModelKind, PretrainConfig};
use crate::data::DataOptions;
use crate::train::resume::STATE_FILE;

/// File name of the 1D folder's log.
pub const FOLDER_LOG: &str = "pretrain.json";
/// The files a 1D run writes into its folder (removed first with `--overwrite`).
const FOLDER_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "vocab.txt",
    "tokenizer.json",
    FOLDER_LOG,
    STATE_FILE,
];
/// Suffix of a 2D checkpoint's log (`gin_attrmask.safetensors` → `gin_attrmask.pretrain.json`).
pub const FILE_LOG_EXTENSION: &str = "pretrain.json";
/// Suffix of a 2D checkpoint's resume state (`gin_attrmask.resume.safetensors`).
pub const FILE_STATE_EXTENSION: &str = "resume.safetensors";

/// Where a run writes its checkpoint and log.
#[derive(Debug, Clone)]
pub enum Output {
    /// GIN/GCN: one safetensors file and its log beside it.
    File {
        /// The `.safetensors` checkpoint.
        checkpoint: PathBuf,
        /// The log.
        log: PathBuf,
    },
    /// The 1D encoder: a Hugging Face folder.
    Folder {
        /// The folder.
        dir: PathBuf,
    },
}

impl Output {
    /// The output of `args` (`--out`, else the default in the model cache folder); refuses an
    /// existing output without `--overwrite` or `--resume` and a 2D file not named
    /// `*.safetensors`; creates the folders and, but with `--resume`, removes a stale state and,
    /// for the 1D folder, the files a run writes.
    pub fn resolve(args: &PretrainConfig) -> Result<Self, PretrainError> {
        let models = DataOptions::default().cache_dir.join("models");
        let out = match args.model {
            ModelKind::Gin | ModelKind::Gcn | ModelKind::Graphsage | ModelKind::Gat => {
                let checkpoint = args.out.clone().unwrap_or_else(|| {
                    models.join(args.model.pretrained_name(args.representation))
                });
                if !checkpoint
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
                {
                    return Err(PretrainError::Options(format!(
                        "--out {}: a 2D (graph) checkpoint is written as a .safetensors file",
                        checkpoint.display()
                    )));
                }
                let log = checkpoint.with_extension(FILE_LOG_EXTENSION);
                Self::File { checkpoint, log }
            }
            ModelKind::Transformer => Self::Folder {
                dir: args.out.clone().unwrap_or_else(|| {
                    models.join(args.model.pretrained_name(args.representation))
                }),
            },
        };
        if args.resume {
            // What the interrupted run left is what the resumed one continues from.
            return Ok(out);
        }
        if !args.overwrite
            && let Some(existing) = out.existing()
        {
            return Err(PretrainError::OutputExists(existing));
        }
        let dir = out.dir();
        std::fs::create_dir_all(&dir).map_err(|e| PretrainError::io(&dir, e))?;
        // A stale tokenizer.json would shadow the vocab.txt written now (and vice versa); a
        // stale state would let --resume continue a run that this one replaced.
        let stale = match &out {
            Self::Folder { dir } => FOLDER_FILES.iter().map(|name| dir.join(name)).collect(),
            Self::File { .. } => vec![out.state()],
        };
        for path in stale {
            crate::files::remove_if_present(&path).map_err(|e| PretrainError::io(&path, e))?;
        }
        Ok(out)
    }

    /// What of this output already exists, if anything (a non-empty folder counts).
    fn existing(&self) -> Option<PathBuf> {
        match self {
            Self::File { checkpoint, log } => [checkpoint.clone(), log.clone(), self.state()]
                .into_iter()
                .find(|p| p.exists()),
            Self::Folder { dir } => std::fs::read_dir(dir)
                .ok()
                .and_then(|mut entries| entries.next())
                .map(|_| dir.clone()),
        }
    }

    /// The folder the files go into.
    pub fn dir(&self) -> PathBuf {
        match self {
            Self::File { checkpoint, .. } => checkpoint
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            Self::Folder { dir } => dir.clone(),
        }
    }

    /// The weights file.
    pub fn checkpoint(&self) -> PathBuf {
        match self {
            Self::File { checkpoint, .. } => checkpoint.clone(),
            Self::Folder { dir } => dir.join("model.safetensors"),
        }
    }

    /// The log file.
    pub fn log(&self) -> PathBuf {
        match self {
            Self::File { log, .. } => log.clone(),
            Self::Folder { dir } => dir.join(FOLDER_LOG),
        }
    }

    /// The state `--resume` continues from, saved after every epoch but the last and removed
    /// when the run ends.
    pub fn state(&self) -> PathBuf {
        match self {
            Self::File { checkpoint, .. } => checkpoint.with_extension(FILE_STATE_EXTENSION),
            Self::Folder { dir } => dir.join(STATE_FILE),
        }
    }

    /// Writes the log (atomically).
    pub fn write_log(&self, log: &PretrainLog) -> Result<(), PretrainError> {
        write_json(&self.log(), log)
    }
}

/// The part of a [`PretrainLog`] read back on `--resume`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggedRun {
    /// The epochs finished and logged.
    pub epochs: Vec<PretrainEpoch>,
    /// The corpus as that run read it: rows read, molecules, skipped by reason.
    #[serde(flatten)]
    pub corpus: CorpusCounts,
}

/// What a run read of its corpus; a resumed run must read the same (else the file changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusCounts {
    /// Data rows read (at most `--limit`).
    pub rows_read: usize,
    /// Molecules trained on.
    pub molecules: usize,
    /// Rows skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// BLAKE3 of the molecules read, in order ([`Corpus::digest`]).
    pub corpus_digest: String,
}

/// Writes `path` through `write` on a temporary file beside it, then renames it over `path`
/// ([`crate::files::replace_file`]).
pub fn replace_file<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), PretrainError>
where
    PretrainError: From<E>,
{
    crate::files::replace_file(
        path,
        |tmp| write(tmp).map_err(PretrainError::from),
        PretrainError::io,
    )
}

/// Writes the checkpoint `path` (atomically) through `write`, naming the file in an error.
pub fn replace_checkpoint(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), PretrainError> {
    replace_file(path, |tmp| {
        write(tmp).map_err(|source| PretrainError::Checkpoint {
            path: tmp.to_owned(),
            source,
        })
    })
}

/// Writes `value` as pretty JSON to `path` (atomically).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PretrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| PretrainError::io(path, std::io::Error::other(e)))?;
    replace_file(path, |tmp| {
        std::fs::write(tmp, text + "\n").map_err(|e| PretrainError::io(tmp, e))
    })
}

/// One epoch of pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean cross-entropy per masked prediction.
    pub loss: f64,
    /// Share of masked atoms / selected tokens predicted right (training mode).
    pub accuracy: f64,
    /// The accuracy of always answering the most frequent label of this epoch's masked
    /// predictions (carbon, for atoms): what `accuracy` must beat to have learnt anything.
    pub majority_baseline: f64,
    /// Masked predictions made (atoms or tokens).
    pub predictions: usize,
    /// Molecules trained on.
    pub molecules: usize,
    /// Wall-clock seconds of the epoch (training pass and checkpoint).
    pub seconds: f64,
    /// This epoch's energy, joules (when metered).
    pub energy_j: Option<f64>,
    /// This epoch's CO2-eq, grams (when metered).
    pub co2_g: Option<f64>,
    /// Where the epoch's energy figure came from (daemon, local, …).
    pub meter_source: Option<String>,
}

/// The machine-readable log of a pre-training run (rewritten after every epoch).
#[derive(Debug, Clone, Serialize)]
pub struct PretrainLog {
    /// `attribute-masking` (GIN/GCN) or `masked-language-modelling` (transformer).
    pub objective: &'static str,
    /// The flags as given.
    pub args: PretrainConfig,
    /// The corpus file.
    pub corpus: PathBuf,
    /// Its SMILES column.
    pub smiles_column: String,
    /// What was read of it (`rows_read`, `molecules`, `skipped`, `corpus_digest` in the JSON).
    #[serde(flatten)]
    pub read: CorpusCounts,
    /// The weights written.
    pub checkpoint: PathBuf,
    /// Parameters of the encoder written (the heads excluded for GIN/GCN).
    pub parameters: i64,
    /// Device of the run.
    pub device: String,
    /// libtorch CPU threads.
    pub threads: i32,
    /// One entry per finished epoch.
    pub epochs: Vec<PretrainEpoch>,
    /// Wall-clock seconds of the whole run (corpus reading included).
    pub seconds: f64,
    /// The meter used, if any.
    pub meter: Option<String>,
    /// Energy of the run, joules (when metered): the epochs' and the tail the meter charged
    /// after the last one ([`crate::emissions::MeterFinal::total`]).
    pub energy_j: Option<f64>,
    /// CO2-eq of the run, grams (when metered), likewise.
    pub co2_g: Option<f64>,
    /// Whether the energy came from hardware counters only.
    pub measured: Option<bool>,
    /// `anges-train`'s version.
    pub trainer_version: &'static str,
}

impl PretrainLog {
    /// The log of a run that has not trained yet.
    pub fn new(args: &PretrainConfig, corpus: &Corpus, out: &Output, device: Device) -> Self {
        Self {
            objective: match args.model {
                ModelKind::Transformer => "masked-language-modelling",
                ModelKind::Gin | ModelKind::Gcn | ModelKind::Graphsage | ModelKind::Gat => {
                    "attribute-masking"
                }
            },
            args: args.clone(),
            corpus: corpus.path.clone(),
            smiles_column: corpus.column.clone(),
            read: CorpusCounts {
                rows_read: corpus.rows_read,
                molecules: corpus.len(),
                skipped: corpus.skipped.clone(),
                corpus_digest: corpus.digest(),
            },
            checkpoint: out.checkpoint(),
            parameters: 0,
            device: format!("{device:?}"),
            threads: tch::get_num_threads(),
            epochs: Vec::new(),
            seconds: 0.0,
            meter: None,
            energy_j: None,
            co2_g: None,
            measured: None,
            trainer_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// `gin`, `gcn` or `transformer`.
    pub fn model_name(&self) -> &'static str {
        self.args.model.name()
    }

    /// One line for the terminal: epochs, loss and accuracy from first to last, the output.
    pub fn summary_line(&self) -> String {
        let (Some(first), Some(last)) = (self.epochs.first(), self.epochs.last()) else {
            return format!("{}: no epoch finished", self.objective);
        };
        format!(
            "{} {} on {} molecules: {} epoch(s), loss {:.4} → {:.4}, accuracy {:.3} → {:.3} \
             (majority baseline {:.3}), {:.1} s; checkpoint {}",
            self.model_name(),
            self.objective,
            self.read.molecules,
            self.epochs.len(),
            first.loss,
            last.loss,
            first.accuracy,
            last.accuracy,
            last.majority_baseline,
            self.seconds,
            self.checkpoint.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration of `anges-train pretrain --corpus c.csv FLAGS` (the flags these tests
    /// use).
    fn args(flags: &[&str]) -> PretrainConfig {
        let mut c = PretrainConfig::new("c.csv");
        let mut it = flags.iter();
        while let Some(&flag) = it.next() {
            match flag {
                "--out" => c.out = it.next().map(PathBuf::from),
                "--model" => {
                    c.model = match it.next() {
                        Some(&"gcn") => ModelKind::Gcn,
                        Some(&"transformer") => ModelKind::Transformer,
                        _ => ModelKind::Gin,
                    }
                }
                "--overwrite" => c.overwrite = true,
                "--resume" => c.resume = true,
                other => panic!("no such flag in these tests: {other}"),
            }
        }
        c
    }

    #[test]
    fn outputs_are_files_for_graphs_and_folders_for_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/gin.safetensors");
        let out = Output::resolve(&args(&["--out", file.to_str().unwrap()])).unwrap();
        assert_eq!(out.checkpoint(), file);
        assert_eq!(out.log(), dir.path().join("sub/gin.pretrain.json"));
        assert!(
            dir.path().join("sub").is_dir(),
            "the parent folder is created"
        );

        let bad = dir.path().join("gin.pt");
        let err = Output::resolve(&args(&["--out", bad.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains(".safetensors"), "{err}");

        let folder = dir.path().join("mlm");
        let flags = ["--model", "transformer", "--out", folder.to_str().unwrap()];
        let out = Output::resolve(&args(&flags)).unwrap();
        assert_eq!(out.checkpoint(), folder.join("model.safetensors"));
        assert_eq!(out.log(), folder.join("pretrain.json"));
    }

    #[test]
    fn existing_outputs_need_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gcn.safetensors");
        std::fs::write(&file, b"old").unwrap();
        let flags = ["--model", "gcn", "--out", file.to_str().unwrap()];
        let err = Output::resolve(&args(&flags)).unwrap_err();
        assert!(matches!(err, PretrainError::OutputExists(_)), "{err}");
        assert!(err.to_string().contains("--overwrite"), "{err}");
        let mut with = flags.to_vec();
        with.push("--overwrite");
        assert!(Output::resolve(&args(&with)).is_ok());

        let folder = dir.path().join("mlm");
        std::fs::create_dir_all(&folder).unwrap();
        let flags = ["--model", "transformer", "--out", folder.to_str().unwrap()];
        assert!(
            Output::resolve(&args(&flags)).is_ok(),
            "an empty folder is fine"
        );
        std::fs::write(folder.join("tokenizer.json"), b"{}").unwrap();
        assert!(Output::resolve(&args(&flags)).is_err());
        let mut with = flags.to_vec();
        with.push("--overwrite");
        Output::resolve(&args(&with)).unwrap();
        assert!(
            !folder.join("tokenizer.json").exists(),
            "stale files are removed"
        );
    }

    #[test]
    fn resume_states_sit_beside_the_checkpoint_and_go_with_a_fresh_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gin.safetensors");
        let flags = ["--out", file.to_str().unwrap()];
        let state = dir.path().join("gin.resume.safetensors");
        assert_eq!(Output::resolve(&args(&flags)).unwrap().state(), state);

        // A state alone is an existing output; --resume keeps it, --overwrite removes it.
        std::fs::write(&state, b"state").unwrap();
        let err = Output::resolve(&args(&flags)).unwrap_err();
        assert!(
            matches!(err, PretrainError::OutputExists(ref p) if *p == state),
            "{err}"
        );
        let mut resume = flags.to_vec();
        resume.push("--resume");
        Output::resolve(&args(&resume)).unwrap();
        assert!(state.is_file(), "--resume keeps the state");
        let mut overwrite = flags.to_vec();
        overwrite.push("--overwrite");
        Output::resolve(&args(&overwrite)).unwrap();
        assert!(!state.exists(), "a fresh run removes a stale state");

        let folder = dir.path().join("mlm");
        let flags = ["--model", "transformer", "--out", folder.to_str().unwrap()];
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(STATE_FILE), b"state").unwrap();
        let mut resume = flags.to_vec();
        resume.push("--resume");
        let out = Output::resolve(&args(&resume)).unwrap();
        assert_eq!(out.state(), folder.join("resume.safetensors"));
        assert!(out.state().is_file(), "--resume keeps the folder's files");
        let mut overwrite = flags.to_vec();
        overwrite.push("--overwrite");
        Output::resolve(&args(&overwrite)).unwrap();
        assert!(
            !out.state().exists(),
            "--overwrite clears the folder's state"
        );
    }

    #[test]
    fn replacement_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        write_json(&path, &[1, 2]).unwrap();
        let failed = replace_file(&path, |tmp| {
            std::fs::write(tmp, b"[half").unwrap();
            Err(PretrainError::Options("disk full".into()))
        });
        assert!(failed.is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains('2'), "the old file stays: {text}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
