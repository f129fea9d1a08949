//! The pre-training corpus: the SMILES column of a CSV or CSV.gz file (read with the datasets'
//! reader, [`crate::data::table`], stopping after `--limit` rows), featurised like a dataset
//! ([`crate::data::dataset::featurize_table`]) in chunks so that a large corpus never holds more
//! than one chunk of unneeded rows. Rows the chemistry rejects are skipped, logged (the first
//! few at `warn`, the rest at `debug`) and counted by reason; for GIN/GCN so are molecules the
//! embedding tables cannot hold (`model-vocabulary`, as in fine-tuning).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::PretrainError;
use crate::data::dataset::{available_threads, featurize_table};
use crate::data::table::{self, Table};
use crate::data::{DataError, Skip};
use crate::featurize::GraphFeatures;

/// Rows featurised at once.
const CHUNK_ROWS: usize = 50_000;
/// Skipped rows logged one by one at `warn` before the rest go to `debug`.
const WARN_SKIPS: usize = 20;
/// Skip reason of molecules the 2D embedding tables cannot hold.
pub const DROP_MODEL_VOCABULARY: &str = "model-vocabulary";

/// The usable molecules of a corpus and the rows that were not.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The file.
    pub path: PathBuf,
    /// Its SMILES column.
    pub column: String,
    /// Data rows read.
    pub rows_read: usize,
    /// Skipped rows by reason (`invalid-smiles`, …).
    pub skipped: BTreeMap<String, usize>,
    /// SMILES of the usable molecules, in file order.
    pub smiles: Vec<String>,
    /// Their graph features (only when graphs were asked for; same order as `smiles`).
    pub graphs: Vec<GraphFeatures>,
}

impl Corpus {
    /// Number of usable molecules.
    pub fn len(&self) -> usize {
        self.smiles.len()
    }

    /// Whether no molecule is usable.
    pub fn is_empty(&self) -> bool {
        self.smiles.is_empty()
    }

    /// BLAKE3 of the usable SMILES in order (hex): which molecules a run trains on, so that
    /// `--resume` can tell a corpus file rewritten since the run started.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for smiles in &self.smiles {
            hasher.update(smiles.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().to_hex().to_string()
    }

    fn skip(&mut self, reason: String, line: u64, smiles: &str, message: &str) {
        let count = self.skipped.values().sum::<usize>();
        if count < WARN_SKIPS {
            tracing::warn!(line, smiles, "corpus row skipped: {reason}: {message}");
        } else {
            tracing::debug!(line, smiles, "corpus row skipped: {reason}: {message}");
        }
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// The SMILES column of `header`: `column` when given, else the one named `smiles` in any case,
/// else the only column.
fn smiles_column(
    path: &Path,
    header: &[String],
    column: Option<&str>,
) -> Result<String, DataError> {
    let found = match column {
        Some(c) => header.iter().find(|h| *h == c),
        None => header
            .iter()
            .find(|h| h.eq_ignore_ascii_case("smiles"))
            .or(match header {
                [only] => Some(only),
                _ => None,
            }),
    };
    found.cloned().ok_or_else(|| DataError::MissingColumn {
        path: path.to_owned(),
        column: column.unwrap_or("smiles").to_owned(),
        available: header.to_vec(),
    })
}

/// Reads the first `limit` rows (all when `None`) of the corpus at `path` and featurises them;
/// keeps the graphs when `graphs` is set. At least one molecule must be usable.
pub fn read_corpus(
    path: &Path,
    column: Option<&str>,
    limit: Option<usize>,
    graphs: bool,
) -> Result<Corpus, PretrainError> {
    if !path.is_file() {
        return Err(PretrainError::NoCorpus(path.to_owned()));
    }
    let header = table::read_header(path)?;
    let column = smiles_column(path, &header, column)?;
    let table = table::read_table_head(path, &column, &[], limit)?;
    let mut corpus = Corpus {
        path: path.to_owned(),
        column,
        rows_read: table.smiles.len(),
        ..Corpus::default()
    };
    let threads = available_threads();
    for start in (0..table.smiles.len()).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(table.smiles.len());
        let chunk = Table {
            task_names: Vec::new(),
            smiles: table.smiles[start..end].to_vec(),
            labels: vec![Vec::new(); end - start],
            lines: table.lines[start..end].to_vec(),
        };
        let (rows, skips) = featurize_table(&chunk, threads);
        let mut skips = skips.into_iter().peekable();
        // Rows and skips are both in file order: merge them so the log follows the file.
        for row in rows {
            while let Some(s) = skips.next_if(|s| s.row < row.row) {
                record_skip(&mut corpus, &s);
            }
            if graphs && let Err(why) = row.graph.validate() {
                let line = chunk.lines[row.row];
                corpus.skip(DROP_MODEL_VOCABULARY.into(), line, &row.smiles, &why);
                continue;
            }
            if graphs {
                corpus.graphs.push(row.graph);
            }
            corpus.smiles.push(row.smiles);
        }
        for s in skips {
            record_skip(&mut corpus, &s);
        }
        if table.smiles.len() > CHUNK_ROWS {
            tracing::info!("corpus: featurised {end} of {} rows", table.smiles.len());
        }
    }
    if corpus.is_empty() {
        return Err(PretrainError::EmptyCorpus {
            path: corpus.path,
            rows: corpus.rows_read,
            skipped: format!("{:?}", corpus.skipped),
        });
    }
    Ok(corpus)
}

fn record_skip(corpus: &mut Corpus, s: &Skip) {
    corpus.skip(s.kind.name(), s.line, &s.smiles, &s.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn invalid_rows_are_counted_skips_and_limit_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let text = "id,SMILES\n1,CCO\n2,not a smiles\n3,C1CC\n4,c1ccccc1\n5,*C\n6,CC(C)[C@H](N)C(=O)O\n7,CN\n";
        let p = write(dir.path(), "c.csv", text);
        let c = read_corpus(&p, None, None, true).unwrap();
        assert_eq!(c.column, "SMILES");
        assert_eq!(c.rows_read, 7);
        assert_eq!(c.smiles, ["CCO", "c1ccccc1", "CC(C)[C@H](N)C(=O)O", "CN"]);
        assert_eq!(c.graphs.len(), 4);
        assert_eq!(c.skipped["invalid-smiles"], 2);
        assert_eq!(c.skipped["unsupported-feature"], 1);

        let head = read_corpus(&p, None, Some(2), false).unwrap();
        assert_eq!((head.rows_read, head.smiles.len()), (2, 1));
        assert!(head.graphs.is_empty(), "graphs only when asked for");
    }

    #[test]
    fn column_is_found_or_the_columns_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let single = write(dir.path(), "one.csv", "mol\nCCO\n");
        assert_eq!(
            read_corpus(&single, None, None, false).unwrap().column,
            "mol"
        );
        let two = write(dir.path(), "two.csv", "a,b\nCCO,1\n");
        let err = read_corpus(&two, None, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a\"") && err.contains("two.csv"), "{err}");
        assert_eq!(read_corpus(&two, Some("a"), None, false).unwrap().len(), 1);
    }

    #[test]
    fn missing_and_useless_corpora_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_corpus(&dir.path().join("nope.csv.gz"), None, None, true).unwrap_err();
        assert!(matches!(err, PretrainError::NoCorpus(_)), "{err}");
        assert!(err.to_string().contains("nope.csv.gz"), "{err}");
        let bad = write(dir.path(), "bad.csv", "smiles\nxyz\nC1C\n");
        let err = read_corpus(&bad, None, None, true).unwrap_err().to_string();
        assert!(
            err.contains("no usable molecule") && err.contains("invalid-smiles"),
            "{err}"
        );
    }
}
