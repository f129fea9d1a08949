//! A featurised dataset: rows that gave a molecule, with their graph, scaffold and labels, and
//! the counted, named rows that did not.
//!
//! The task type is the registry's for a MoleculeNet set, else the one asked for
//! (`--task-type`), else guessed from a custom CSV's labels and logged as a guess: a column
//! whose labels are all 0/1, or all −1/1 (pretrain-gnns' convention, which some MoleculeNet
//! copies keep), is binary, and a table of binary columns is classification. Classification
//! labels that are neither are refused, naming the line. Rows that give no molecule are logged
//! in one summary line (each at `debug`); a run writes them all to its `skipped.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::{self, Metric, TaskType};
use super::table::{self, MAX_SMILES_LEN, Table};
use super::{DataError, DataOptions, cache, locate};
use crate::chem::Molecule;
use crate::featurize::{
    FEATURIZER_VERSION, FeaturizeError, GraphFeatures, SmilesTokenizer, TokenIds, TokenizeError,
};

/// What to load: `--dataset NAME|FILE`, `--smiles-column`, `--target`.
#[derive(Debug, Clone, Default)]
pub struct DatasetRequest {
    /// A registered name (`bbbp`, `esol`, …) or a path to a `.csv`/`.csv.gz` file.
    pub dataset: String,
    /// SMILES column (custom CSV; default `smiles`; overrides the registry's for a named set).
    pub smiles_column: Option<String>,
    /// Target columns (required for a custom CSV; a subset of tasks for a named set).
    pub targets: Vec<String>,
    /// Classification or regression (`--task-type`): must be the registry's for a named set;
    /// guessed from the labels of a custom CSV when `None`.
    pub task_type: Option<TaskType>,
}

/// Bumped when what [`table`] reads or the task-type guess gives changes, so that the feature
/// cache does not serve datasets built by the earlier rules (2: lines counted after CRLF and
/// blank lines; −1/1 labels guessed as classification).
const TABLE_RULES_VERSION: u32 = 2;

/// Why a row was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipKind {
    /// RDKit semantics reject the SMILES (syntax, valence, kekulisation, …).
    InvalidSmiles,
    /// The SMILES has no atom.
    EmptyMolecule,
    /// An element, chiral tag, bond type or direction the pretrain-gnns features cannot encode.
    UnsupportedFeature,
    /// The SMILES cell is longer than [`MAX_SMILES_LEN`] characters.
    TooLong,
    /// The scaffold could not be computed.
    Scaffold,
    /// The chemistry backend panicked on this molecule (a bug there; the row is skipped).
    BackendPanic,
}

impl SkipKind {
    /// The reason's name as logs and JSON files write it (`invalid-smiles`, …).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{self:?}"))
    }
}

/// A skipped row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    /// 0-based data row of the input file.
    pub row: usize,
    /// 1-based line of the input file.
    pub line: u64,
    /// The SMILES (first 80 characters).
    pub smiles: String,
    /// Why.
    pub kind: SkipKind,
    /// Details.
    pub message: String,
}

/// A featurised molecule with its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// 0-based data row of the input file (what `split.json` holds).
    pub row: usize,
    /// The SMILES as written in the file.
    pub smiles: String,
    /// pretrain-gnns graph features.
    pub graph: GraphFeatures,
    /// Bemis–Murcko scaffold (RDKit `MurckoScaffoldSmiles(includeChirality=True)`).
    pub scaffold: String,
    /// One label per task; `None` when missing.
    pub labels: Vec<Option<f32>>,
}

impl Row {
    /// pretrain-gnns label convention for classification: 1 positive, −1 negative, 0 missing.
    pub fn label_pm1(&self, task: usize) -> i64 {
        match self.labels.get(task).copied().flatten() {
            None => 0,
            Some(v) if v > 0.5 => 1,
            Some(_) => -1,
        }
    }

    /// All labels in the −1/0/1 convention.
    pub fn labels_pm1(&self) -> Vec<i64> {
        (0..self.labels.len()).map(|t| self.label_pm1(t)).collect()
    }
}

/// A featurised dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    /// Dataset name (registry name, or the file stem of a custom CSV).
    pub name: String,
    /// The input file.
    pub source: PathBuf,
    /// The SMILES column read.
    pub smiles_column: String,
    /// Task (label column) names.
    pub task_names: Vec<String>,
    /// Classification or regression.
    pub task_type: TaskType,
    /// Whether the task type was guessed from the labels (a custom CSV without `--task-type`).
    #[serde(default)]
    pub task_type_guessed: bool,
    /// Metrics; the first drives model selection.
    pub metrics: Vec<Metric>,
    /// Rows that gave a molecule, in file order.
    pub rows: Vec<Row>,
    /// Rows that did not, in file order.
    pub skipped: Vec<Skip>,
    /// Number of data rows in the file.
    pub num_file_rows: usize,
    /// Whether this came from the on-disk feature cache.
    #[serde(skip)]
    pub from_cache: bool,
}

impl Dataset {
    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.task_names.len()
    }

    /// BLAKE3 (hex) of what training sees of the dataset: the task names, then per row in order
    /// its file row, SMILES and labels. Equal digests mean the same rows with the same labels,
    /// whatever file or cache they came from; `--resume` compares it with the run's.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for task in &self.task_names {
            hasher.update(task.as_bytes());
            hasher.update(&[0]);
        }
        for row in &self.rows {
            hasher.update(&(row.row as u64).to_le_bytes());
            hasher.update(row.smiles.as_bytes());
            hasher.update(&[0]);
            for label in &row.labels {
                match label {
                    Some(v) => hasher.update(&[1]).update(&v.to_bits().to_le_bytes()),
                    None => hasher.update(&[0]),
                };
            }
        }
        hasher.finalize().to_hex().to_string()
    }

    /// Skipped rows per reason.
    pub fn skip_counts(&self) -> BTreeMap<SkipKind, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.skipped {
            *counts.entry(s.kind).or_default() += 1;
        }
        counts
    }

    /// Token ids of every row's SMILES for the 1D models (same order as [`Dataset::rows`]).
    pub fn token_ids(
        &self,
        tokenizer: &SmilesTokenizer,
        max_len: usize,
    ) -> Result<Vec<TokenIds>, TokenizeError> {
        self.rows
            .iter()
            .map(|r| tokenizer.encode(&r.smiles, max_len))
            .collect()
    }

    /// One line for the run report: kept rows, and dropped rows by reason.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} of {} rows featurised",
            self.name,
            self.rows.len(),
            self.num_file_rows
        );
        for (kind, n) in self.skip_counts() {
            s.push_str(&format!(", {n} dropped ({kind:?})"));
        }
        s
    }
}

/// Loads, featurises (or reads from the cache) and returns a dataset.
pub fn load_dataset(req: &DatasetRequest, opts: &DataOptions) -> Result<Dataset, DataError> {
    let resolved = resolve(req, opts)?;
    let bytes = std::fs::read(&resolved.path).map_err(|e| DataError::io(&resolved.path, e))?;
    let key = format!(
        "file={} featurizer={FEATURIZER_VERSION} chem=cosmolkit-0.6.1 table={TABLE_RULES_VERSION} \
         smiles={:?} tasks={:?} type={:?}",
        blake3::hash(&bytes).to_hex(),
        resolved.smiles_column,
        resolved.tasks,
        resolved.task_type
    );
    drop(bytes);
    let cache_dir = opts.feature_cache_dir();
    if opts.use_feature_cache
        && let Some(mut ds) = cache::load::<Dataset>(&cache_dir, &key)
    {
        ds.name = resolved.name;
        ds.source = resolved.path;
        ds.from_cache = true;
        if ds.task_type_guessed {
            tracing::info!(
                "{}: task type guessed from the labels: {} (--task-type sets it)",
                ds.name,
                ds.task_type.name()
            );
        }
        log_loaded(&ds, " (from the feature cache)");
        return Ok(ds);
    }
    let table = table::read_table(&resolved.path, &resolved.smiles_column, &resolved.tasks)?;
    let task_type = match resolved.task_type {
        Some(TaskType::Classification) => {
            check_binary(&resolved.path, &table)?;
            TaskType::Classification
        }
        Some(TaskType::Regression) => TaskType::Regression,
        None => guess_task_type(&resolved.name, &resolved.path, &table),
    };
    let (rows, skipped) = featurize_table(&table, available_threads());
    if rows.is_empty() {
        return Err(DataError::NoMolecules {
            path: resolved.path,
            skipped: skipped.len(),
        });
    }
    let ds = Dataset {
        name: resolved.name,
        source: resolved.path,
        smiles_column: resolved.smiles_column,
        task_names: table.task_names.clone(),
        task_type,
        task_type_guessed: resolved.task_type.is_none(),
        metrics: resolved
            .metrics
            .unwrap_or_else(|| default_metrics(task_type)),
        rows,
        skipped,
        num_file_rows: table.smiles.len(),
        from_cache: false,
    };
    log_loaded(&ds, "");
    if opts.use_feature_cache
        && let Err(e) = cache::store(&cache_dir, &key, &ds)
    {
        tracing::warn!(error = %e, "cannot write the feature cache");
    }
    Ok(ds)
}

struct Resolved {
    name: String,
    path: PathBuf,
    smiles_column: String,
    tasks: Vec<String>,
    task_type: Option<TaskType>,
    metrics: Option<Vec<Metric>>,
}

fn resolve(req: &DatasetRequest, opts: &DataOptions) -> Result<Resolved, DataError> {
    let as_path = Path::new(&req.dataset);
    if let Some(spec) = registry::lookup(&req.dataset).filter(|_| !as_path.is_file()) {
        if let Some(asked) = req.task_type.filter(|&t| t != spec.task_type) {
            return Err(DataError::TaskTypeMismatch {
                name: spec.name.to_owned(),
                asked: asked.name(),
                registered: spec.task_type.name(),
            });
        }
        let path = locate::locate(spec, opts)?;
        let header = table::read_header(&path)?;
        let (smiles, tasks) = spec
            .select_columns(&header)
            .ok_or_else(|| DataError::Layout {
                path: path.clone(),
                name: spec.name.to_owned(),
                header,
            })?;
        return Ok(Resolved {
            name: spec.name.to_owned(),
            path,
            smiles_column: req.smiles_column.clone().unwrap_or(smiles),
            tasks: if req.targets.is_empty() {
                tasks
            } else {
                req.targets.clone()
            },
            task_type: Some(spec.task_type),
            metrics: Some(spec.metrics.to_vec()),
        });
    }
    if !as_path.is_file() {
        return Err(DataError::UnknownDataset {
            name: req.dataset.clone(),
            known: registry::names(),
        });
    }
    if req.targets.is_empty() {
        return Err(DataError::CustomColumns {
            path: as_path.to_owned(),
        });
    }
    let name = as_path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".gz")
                .trim_end_matches(".csv")
                .to_owned()
        })
        .unwrap_or_else(|| req.dataset.clone());
    Ok(Resolved {
        name,
        path: as_path.to_owned(),
        smiles_column: req.smiles_column.clone().unwrap_or_else(|| "smiles".into()),
        tasks: req.targets.clone(),
        task_type: req.task_type,
        metrics: None,
    })
}

/// The task type of a custom CSV given without `--task-type`: classification when every label
/// column is binary ([`check_binary`]), else regression; logged as a guess, with why.
fn guess_task_type(name: &str, path: &Path, table: &Table) -> TaskType {
    match check_binary(path, table) {
        Ok(()) => {
            tracing::info!(
                "{name}: task type guessed from the labels: classification (every label column \
                 holds only 0/1 or only -1/1; --task-type regression to fit them as numbers)"
            );
            TaskType::Classification
        }
        Err(why) => {
            tracing::info!(
                "{name}: task type guessed from the labels: regression ({why}; --task-type sets \
                 it)"
            );
            TaskType::Regression
        }
    }
}

/// Logs the dataset's row counts: one line, a warning naming the first skipped row's line when
/// rows gave no molecule (each skipped row is logged at `debug`; a run's `skipped.csv` lists
/// them all).
fn log_loaded(ds: &Dataset, origin: &str) {
    let Some(first) = ds.skipped.first() else {
        tracing::info!("{}{origin}", ds.summary());
        return;
    };
    for s in &ds.skipped {
        tracing::debug!(
            row = s.row,
            line = s.line,
            smiles = %s.smiles,
            "skipped row: {}: {}",
            s.kind.name(),
            s.message
        );
    }
    tracing::warn!(
        "{}{origin}; {} row(s) skipped, the first at line {} ({}: {}); a fine-tuning run lists \
         them all in its skipped.csv",
        ds.summary(),
        ds.skipped.len(),
        first.line,
        first.kind.name(),
        first.message
    );
}

fn default_metrics(t: TaskType) -> Vec<Metric> {
    match t {
        TaskType::Classification => vec![Metric::RocAuc, Metric::PrcAuc],
        TaskType::Regression => vec![Metric::Rmse, Metric::Mae],
    }
}

/// Checks that every label column is binary: its labels all 0/1, or all −1/1 (a column that
/// mixes −1 and 0 is refused: 0 is a negative in the one convention and a missing label in
/// pretrain-gnns' −1/0/1 one). The error names the first line that breaks the rule.
fn check_binary(path: &Path, table: &Table) -> Result<(), DataError> {
    // Per column, the line of its first 0 and of its first -1.
    let mut seen: Vec<(Option<u64>, Option<u64>)> = vec![(None, None); table.task_names.len()];
    for (r, labels) in table.labels.iter().enumerate() {
        let line = table.lines[r];
        for (t, v) in labels.iter().enumerate() {
            let Some(v) = *v else { continue };
            let (zero, minus) = &mut seen[t];
            if v == 0.0 {
                zero.get_or_insert(line);
            } else if v == -1.0 {
                minus.get_or_insert(line);
            } else if v != 1.0 {
                return Err(DataError::NotBinary {
                    path: path.to_owned(),
                    line,
                    column: table.task_names[t].clone(),
                    value: v,
                });
            }
            if let (Some(zero), Some(minus)) = (*zero, *minus) {
                return Err(DataError::MixedBinary {
                    path: path.to_owned(),
                    line,
                    column: table.task_names[t].clone(),
                    zero,
                    minus,
                });
            }
        }
    }
    Ok(())
}

/// The number of threads featurisation uses (every core this process may run on).
pub(crate) fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Featurises one SMILES: its graph and scaffold, or why it gives none.
pub fn featurize_row(smiles: &str) -> Result<(GraphFeatures, String), (SkipKind, String)> {
    if smiles.chars().count() > MAX_SMILES_LEN {
        return Err((
            SkipKind::TooLong,
            format!(
                "{} characters (limit {MAX_SMILES_LEN})",
                smiles.chars().count()
            ),
        ));
    }
    let mol =
        Molecule::from_smiles(smiles).map_err(|e| (SkipKind::InvalidSmiles, e.to_string()))?;
    let graph = GraphFeatures::from_graph(&mol.graph()).map_err(|e| match e {
        FeaturizeError::Empty => (SkipKind::EmptyMolecule, e.to_string()),
        FeaturizeError::Unsupported(_) => (SkipKind::UnsupportedFeature, e.to_string()),
        FeaturizeError::Chem(_) => (SkipKind::InvalidSmiles, e.to_string()),
    })?;
    let scaffold = mol
        .murcko_scaffold()
        .map_err(|e| (SkipKind::Scaffold, e.to_string()))?;
    Ok((graph, scaffold))
}

/// Featurises every row of a table on `threads` threads, keeping file order.
pub fn featurize_table(table: &Table, threads: usize) -> (Vec<Row>, Vec<Skip>) {
    let n = table.smiles.len();
    let threads = threads.clamp(1, n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let indices: Vec<usize> = (0..n).collect();
    let results: Vec<Vec<Result<Row, Skip>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|&i| one(table, i)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut rows = Vec::with_capacity(n);
    let mut skipped = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(row) => rows.push(row),
            Err(skip) => skipped.push(skip),
        }
    }
    (rows, skipped)
}

fn one(table: &Table, i: usize) -> Result<Row, Skip> {
    let smiles = &table.smiles[i];
    // A panic inside the chemistry backend on one odd molecule must not end the run.
    let result = std::panic::catch_unwind(|| featurize_row(smiles)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err((
            SkipKind::BackendPanic,
            format!("the chemistry backend panicked: {what}"),
        ))
    });
    match result {
        Ok((graph, scaffold)) => Ok(Row {
            row: i,
            smiles: smiles.clone(),
            graph,
            scaffold,
            labels: table.labels[i].clone(),
        }),
        Err((kind, message)) => Err(Skip {
            row: i,
            line: table.lines[i],
            smiles: smiles.chars().take(80).collect(),
            kind,
            message,
        }),
    }
}
