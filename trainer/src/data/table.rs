//! Reading a molecule table (`.csv` or `.csv.gz`): the SMILES column and the label columns.
//!
//! Every failure names the file and the line: a missing column lists the columns that exist, a
//! record with the wrong number of fields (a file cut mid-line) or an unparsable label is an
//! error, and a truncated gzip stream is reported with the line it broke at.
//!
//! Lines are 1-based and count the header: the first data row of a plain file is line 2. A
//! quoted field may hold line breaks, so a row's line is that of its first character. The csv
//! crate's own record positions lag one line behind after a CRLF line ending or a blank line,
//! so the reader counts the line breaks itself ([`LineBreaks`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::DataError;

/// SMILES longer than this (characters) are skipped as implausible (a corrupted line, not a molecule).
pub const MAX_SMILES_LEN: usize = 10_000;

/// The raw contents of a molecule table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The task columns read, in order.
    pub task_names: Vec<String>,
    /// SMILES per data row (row index = position; the header is not a row).
    pub smiles: Vec<String>,
    /// Labels per data row and task; `None` for an empty cell or `nan`.
    pub labels: Vec<Vec<Option<f32>>>,
    /// The 1-based line each data row starts on.
    pub lines: Vec<u64>,
}

/// Opens a `.csv` or `.csv.gz` file as a byte stream.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads the header of a table.
pub fn read_header(path: &Path) -> Result<Vec<String>, DataError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(open(path)?);
    header_of(path, &mut reader)
}

/// The trimmed header of an open table (an empty one is [`DataError::Empty`]).
pub(crate) fn header_of<R: Read>(
    path: &Path,
    reader: &mut csv::Reader<R>,
) -> Result<Vec<String>, DataError> {
    let header = reader
        .headers()
        .map_err(|e| csv_error(path, e, 1))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect::<Vec<_>>();
    if header.iter().all(String::is_empty) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(header)
}

fn column(path: &Path, header: &[String], name: &str) -> Result<usize, DataError> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            available: header.to_vec(),
        })
}

/// The line breaks (`\r`, `\n`) a [`Marked`] stream has passed on, by byte offset, so that a
/// record's line can be told from its byte offset. Only the breaks not yet behind the last
/// record asked about are kept (at most a read buffer's worth).
#[derive(Debug, Default)]
struct LineBreaks {
    /// Offsets and bytes of the breaks not yet behind a record.
    marks: VecDeque<(u64, u8)>,
    /// `\n` bytes behind the last record asked about.
    passed: u64,
}

impl LineBreaks {
    /// The 1-based line of the record whose read started at byte `start`: its first byte is the
    /// first one at or after `start` that is no line break (what the previous record's CRLF
    /// left, and blank lines, come before it).
    fn line_of_record(&mut self, start: u64) -> u64 {
        let mut first = start;
        while let Some(&(at, byte)) = self.marks.front() {
            if at > first {
                break;
            }
            if at == first {
                first += 1;
            }
            self.passed += u64::from(byte == b'\n');
            self.marks.pop_front();
        }
        self.passed + 1
    }
}

/// A byte stream that notes where its line breaks are ([`LineBreaks`]).
struct Marked<R> {
    inner: R,
    offset: u64,
    breaks: Rc<RefCell<LineBreaks>>,
}

impl<R: Read> Read for Marked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for (i, &byte) in buf[..n].iter().enumerate() {
            if byte == b'\n' || byte == b'\r' {
                breaks.marks.push_back((self.offset + i as u64, byte));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

pub(crate) fn csv_error(path: &Path, err: csv::Error, fallback_line: u64) -> DataError {
    csv_error_at(path, err, |p| p.line(), fallback_line)
}

/// [`csv_error`] with the line of the error's position given by `line_of`.
fn csv_error_at(
    path: &Path,
    err: csv::Error,
    line_of: impl FnOnce(&csv::Position) -> u64,
    fallback_line: u64,
) -> DataError {
    let line = err.position().map_or(fallback_line, line_of);
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "record has {len} fields but the header has {expected_len} (file truncated or malformed?)"
        ),
        csv::ErrorKind::Io(e) => format!("read error: {e} (file truncated or corrupt?)"),
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".to_owned(),
        _ => err.to_string(),
    };
    DataError::Csv {
        path: path.to_owned(),
        line,
        message,
    }
}

/// Reads `smiles_column` and `task_columns` of every data row.
pub fn read_table(
    path: &Path,
    smiles_column: &str,
    task_columns: &[String],
) -> Result<Table, DataError> {
    read_table_head(path, smiles_column, task_columns, None)
}

/// [`read_table`] of the first `limit` data rows only (all when `None`): the rest of the file is
/// not read, so a large corpus costs only what is used.
pub fn read_table_head(
    path: &Path,
    smiles_column: &str,
    task_columns: &[String],
    limit: Option<usize>,
) -> Result<Table, DataError> {
    let breaks = Rc::new(RefCell::new(LineBreaks::default()));
    let marked = Marked {
        inner: open(path)?,
        offset: 0,
        breaks: Rc::clone(&breaks),
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(marked);
    let header = header_of(path, &mut reader)?;
    let smiles_idx = column(path, &header, smiles_column)?;
    let task_idx = task_columns
        .iter()
        .map(|t| column(path, &header, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut table = Table {
        task_names: task_columns.to_vec(),
        ..Table::default()
    };
    let mut record = csv::StringRecord::new();
    let mut last_line = 1;
    while limit.is_none_or(|n| table.smiles.len() < n) {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line_of = |p: &csv::Position| breaks.borrow_mut().line_of_record(p.byte());
                return Err(csv_error_at(path, e, line_of, last_line + 1));
            }
        }
        let line = record.position().map_or(last_line + 1, |p| {
            breaks.borrow_mut().line_of_record(p.byte())
        });
        last_line = line;
        let smiles = record.get(smiles_idx).unwrap_or_default().trim();
        let mut labels = Vec::with_capacity(task_idx.len());
        for (&i, name) in task_idx.iter().zip(task_columns) {
            let cell = record.get(i).unwrap_or_default().trim();
            labels.push(parse_label(cell).ok_or_else(|| DataError::BadLabel {
                path: path.to_owned(),
                line,
                column: name.clone(),
                value: cell.chars().take(40).collect(),
            })?);
        }
        table.smiles.push(smiles.to_owned());
        table.labels.push(labels);
        table.lines.push(line);
    }
    if table.smiles.is_empty() {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(table)
}

fn parse_label(cell: &str) -> Option<Option<f32>> {
    if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
        return Some(None);
    }
    let v: f32 = cell.parse().ok()?;
    v.is_finite().then_some(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(parse_label(""), Some(None));
        assert_eq!(parse_label("NaN"), Some(None));
        assert_eq!(parse_label("1.0"), Some(Some(1.0)));
        assert_eq!(parse_label("-0.77"), Some(Some(-0.77)));
        assert_eq!(parse_label("x"), None);
        assert_eq!(parse_label("inf"), None);
    }

    /// Lines count the header and start at 1, whatever the line endings, blank lines or line
    /// breaks inside quoted fields (the csv crate's own positions said line 1 for the first
    /// data row of a CRLF file, and one line short after a blank line).
    #[test]
    fn rows_are_numbered_by_the_line_they_start_on() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("lf", "smiles,n,y\nC,a,1\nCC,b,0\nCCC,c,1\n", vec![2, 3, 4]),
            (
                "crlf",
                "smiles,n,y\r\nC,a,1\r\nCC,b,0\r\nCCC,c,1\r\n",
                vec![2, 3, 4],
            ),
            (
                "quoted",
                "smiles,n,y\r\nC,a,1\r\nCC,\"two\r\nlines\",0\r\nCCC,c,1",
                vec![2, 3, 5],
            ),
            (
                "blank",
                "smiles,n,y\n\nC,a,1\n\n\nCC,\"x\ny\",0\nCCC,c,1\n",
                vec![3, 6, 8],
            ),
        ];
        for (name, text, lines) in cases {
            let path = dir.path().join(format!("{name}.csv"));
            std::fs::write(&path, text).unwrap();
            let table = read_table(&path, "smiles", &["y".to_owned()]).unwrap();
            assert_eq!(table.lines, lines, "{name}");
            assert_eq!(table.smiles, ["C", "CC", "CCC"], "{name}");
        }
        // An error names the record's own line too.
        let path = dir.path().join("short.csv");
        std::fs::write(&path, "smiles,y\r\nC,1\r\nCC\r\n").unwrap();
        let err = read_table(&path, "smiles", &["y".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("short.csv:3:"), "{err}");
    }
}
