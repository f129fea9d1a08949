//! `anges-train convert`: a column of SMILES translated into SELFIES, or of SELFIES into
//! SMILES ([`crate::chem::selfies`]), row by row.
//!
//! The output has one row per input row, in input order: the input's columns, then the
//! conversion (`selfies`, or `smiles`; `<name>_converted` when the input already has a column of
//! that name) and `reason`: empty when the row was converted, else why not (its conversion cell
//! is empty): `constraints: …` for a molecule SELFIES cannot write under its default semantic
//! constraints, `unreadable: …` for a SMILES the SELFIES reader refuses, `symbol: …` for a SELFIES
//! string with an unknown symbol, `empty` for an empty cell. The file is read and written as a
//! stream, so a corpus of millions of rows costs little memory, and replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::chem::selfies::{self, SelfiesError};
use crate::data::DataError;
use crate::data::table;
use crate::featurize::Representation;

/// What `anges-train convert` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertConfig {
    /// The representation written: SELFIES from SMILES, or SMILES from SELFIES.
    pub to: Representation,
    /// The input CSV (`.csv` or `.csv.gz`).
    pub input: PathBuf,
    /// The output CSV.
    pub out: PathBuf,
    /// The column converted (`None`: `smiles` in any case, else `mol`, else the only column; for
    /// `--to smiles`, `selfies` in any case, else the only column).
    pub column: Option<String>,
}

/// Why a conversion could not run (a row that fails is not an error: it gets a reason).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input could not be read, or lacks the column.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The output could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOutcome {
    /// Input rows (= output rows).
    pub rows: usize,
    /// Rows converted.
    pub converted: usize,
    /// Rows not converted, by reason ([`SelfiesError::kind`], or `empty`).
    pub failed: BTreeMap<String, usize>,
    /// The output file.
    pub out: PathBuf,
}

/// The conversion of one cell: the converted string, or the reason.
pub fn convert_one(to: Representation, text: &str) -> Result<String, (String, String)> {
    let text = text.trim();
    if text.is_empty() {
        return Err(("empty".into(), "empty".into()));
    }
    let result = match to {
        Representation::Selfies => selfies::encode(text),
        Representation::Smiles => selfies::decode(text),
    };
    result.map_err(|e: SelfiesError| (e.kind().to_owned(), format!("{}: {e}", e.kind())))
}

/// The default column of `header` for a conversion to `to`.
fn default_column(header: &[String], to: Representation) -> Option<usize> {
    let named = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let found = match to {
        Representation::Selfies => named("smiles").or_else(|| named("mol")),
        Representation::Smiles => named("selfies"),
    };
    found.or_else(|| (header.len() == 1).then_some(0))
}

/// `name`, or `name_converted` (then `name_converted2`, …) when the header has it already.
fn free_name(name: &str, header: &[String]) -> String {
    if !header.iter().any(|h| h == name) {
        return name.to_owned();
    }
    let mut candidate = format!("{name}_converted");
    let mut n = 2;
    while header.contains(&candidate) {
        candidate = format!("{name}_converted{n}");
        n += 1;
    }
    candidate
}

/// Converts the column of `config.input` and writes `config.out`.
pub fn run_convert(config: &ConvertConfig) -> Result<ConvertOutcome, ConvertError> {
    let input = &config.input;
    let mut reader = csv::ReaderBuilder::new().from_reader(table::open(input)?);
    let header = table::header_of(input, &mut reader)?;
    let index = match &config.column {
        Some(name) => header.iter().position(|h| h == name),
        None => default_column(&header, config.to),
    }
    .ok_or_else(|| DataError::MissingColumn {
        path: input.clone(),
        column: config.column.clone().unwrap_or_else(|| match config.to {
            Representation::Selfies => "smiles".into(),
            Representation::Smiles => "selfies".into(),
        }),
        available: header.clone(),
    })?;
    let mut out_header = header.clone();
    let converted_name = free_name(config.to.name(), &out_header);
    out_header.push(converted_name);
    let reason_name = free_name("reason", &out_header);
    out_header.push(reason_name);

    let io = |path: &Path, e: std::io::Error| ConvertError::Io {
        path: path.to_owned(),
        source: e,
    };
    let mut outcome = ConvertOutcome {
        rows: 0,
        converted: 0,
        failed: BTreeMap::new(),
        out: config.out.clone(),
    };
    let mut logged = 0usize;
    crate::files::replace_file(
        &config.out,
        |tmp| {
            let mut w = csv::Writer::from_path(tmp).map_err(|e| io(tmp, e.into()))?;
            w.write_record(&out_header).map_err(|e| io(tmp, e.into()))?;
            let mut record = csv::StringRecord::new();
            let mut line = 1u64;
            loop {
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => return Err(table::csv_error(input, e, line + 1).into()),
                }
                line = record.position().map_or(line + 1, csv::Position::line);
                outcome.rows += 1;
                let cell = record.get(index).unwrap_or_default();
                let (value, reason) = match convert_one(config.to, cell) {
                    Ok(v) => {
                        outcome.converted += 1;
                        (v, String::new())
                    }
                    Err((kind, why)) => {
                        if logged < 20 {
                            tracing::warn!(line, cell, "not converted: {why}");
                            logged += 1;
                        }
                        *outcome.failed.entry(kind).or_default() += 1;
                        (String::new(), why)
                    }
                };
                let mut cells: Vec<&str> = record.iter().collect();
                // A short record (fewer cells than the header) keeps its cells, then ours.
                cells.resize(header.len().max(cells.len()), "");
                cells.push(&value);
                cells.push(&reason);
                w.write_record(&cells).map_err(|e| io(tmp, e.into()))?;
            }
            w.flush().map_err(|e| io(tmp, e))
        },
        io,
    )?;
    tracing::info!(
        "{} of {} row(s) converted to {}, {} not ({:?}): {}",
        outcome.converted,
        outcome.rows,
        config.to,
        outcome.rows - outcome.converted,
        outcome.failed,
        config.out.display()
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(path)
            .unwrap();
        r.records()
            .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn converts_each_row_and_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(
            &input,
            "id,SMILES,label\n1,C=CF,0\n2,CN(=O)=O,1\n3,,0\n4,C*,1\n5, c1ccccc1 ,0\n",
        )
        .unwrap();
        let out = dir.path().join("out.csv");
        let config = ConvertConfig {
            to: Representation::Selfies,
            input: input.clone(),
            out: out.clone(),
            column: None,
        };
        let done = run_convert(&config).unwrap();
        assert_eq!((done.rows, done.converted), (5, 2));
        assert_eq!(done.failed.get("constraints"), Some(&1));
        assert_eq!(done.failed.get("empty"), Some(&1));
        assert_eq!(done.failed.get("unreadable"), Some(&1));
        let rows = read(&out);
        assert_eq!(rows[0], ["id", "SMILES", "label", "selfies", "reason"]);
        assert_eq!(rows[1][3], "[C][=C][F]");
        assert_eq!(rows[1][4], "");
        assert_eq!(rows[2][3], "");
        assert!(rows[2][4].starts_with("constraints: "), "{:?}", rows[2]);
        assert_eq!(rows[5][3], "[C][=C][C][=C][C][=C][Ring1][=Branch1]");

        // And back: the SELFIES column of the output, decoded.
        let back = dir.path().join("back.csv");
        let done = run_convert(&ConvertConfig {
            to: Representation::Smiles,
            input: out,
            out: back.clone(),
            column: None,
        })
        .unwrap();
        assert_eq!((done.rows, done.converted), (5, 2));
        let rows = read(&back);
        assert_eq!(rows[0][5..], ["smiles", "reason_converted"]);
        assert_eq!(rows[1][5], "C=CF");
        assert_eq!(rows[5][5], "C1=CC=CC=C1");
        assert_eq!(rows[2][6], "empty");
    }

    #[test]
    fn a_missing_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "a,b\n1,2\n").unwrap();
        let config = ConvertConfig {
            to: Representation::Selfies,
            input,
            out: dir.path().join("out.csv"),
            column: None,
        };
        let err = run_convert(&config).unwrap_err().to_string();
        assert!(err.contains("smiles"), "{err}");
        assert!(!dir.path().join("out.csv").exists());
        let named = ConvertConfig {
            column: Some("b".into()),
            ..config
        };
        let done = run_convert(&named).unwrap();
        assert_eq!((done.rows, done.converted), (1, 0), "'2' is no SMILES");
    }
}
