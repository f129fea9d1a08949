//! A custom CSV as a chemprop user brings it: its task type asked for (`--task-type`), checked,
//! or guessed and said to be a guess (−1/1 labels are classification); rows that give no
//! molecule summed up in one log line and listed, with their true line numbers, in the run's
//! `skipped.csv`.
//!
//! Seen failing before the change: −1/1 labels were fitted as regression without a word, every
//! skipped row had its own warning, no `skipped.csv` was written, and a CRLF file's rows were
//! numbered one line short.

use std::process::Command;

use anges_trainer::data::{DataError, DatasetRequest, TaskType, load_dataset};

use crate::bad_inputs::{custom, opts, write};

/// Loads `csv` (columns `smiles,y`) as a custom dataset, asking for `task_type`.
fn load(csv: &str, task_type: Option<TaskType>) -> Result<anges_trainer::data::Dataset, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "labels.csv", csv);
    let req = DatasetRequest {
        task_type,
        ..custom(&path, "y")
    };
    load_dataset(&req, &opts(dir.path()))
}

#[test]
fn task_types_are_taken_checked_or_guessed() {
    let pm1 = "smiles,y\nCCO,-1\nCCN,1\nCCC,\nCCCl,-1\n";
    let ds = load(pm1, None).unwrap();
    assert_eq!(
        (ds.task_type, ds.task_type_guessed),
        (TaskType::Classification, true)
    );
    let zero_one = "smiles,y\nCCO,0\nCCN,1\n";
    let ds = load(zero_one, Some(TaskType::Regression)).unwrap();
    assert_eq!(
        (ds.task_type, ds.task_type_guessed),
        (TaskType::Regression, false)
    );

    // Labels that are no classes: refused when classification is asked, naming the line.
    let numbers = "smiles,y\nCCO,0\nCCN,1\nCCC,2.5\n";
    let err = load(numbers, Some(TaskType::Classification)).unwrap_err();
    assert!(matches!(err, DataError::NotBinary { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("labels.csv:4:"), "{err}");
    assert_eq!(load(numbers, None).unwrap().task_type, TaskType::Regression);
    // 0 and -1 in one column: two conventions for the negatives, refused; guessed regression.
    let mixed = "smiles,y\nCCO,-1\nCCN,1\nCCC,0\n";
    let err = load(mixed, Some(TaskType::Classification)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::MixedBinary {
                line: 4,
                zero: 4,
                minus: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(load(mixed, None).unwrap().task_type, TaskType::Regression);
    // A MoleculeNet set keeps its own type.
    let req = DatasetRequest {
        dataset: "bbbp".into(),
        task_type: Some(TaskType::Regression),
        ..DatasetRequest::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = load_dataset(&req, &opts(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::TaskTypeMismatch { .. }), "{err}");
}

/// A CSV with CRLF line endings, a quoted name spanning two lines, −1/1 labels and bad SMILES
/// at known lines; returns its text and those lines.
fn csv_with_bad_rows() -> (String, Vec<u64>) {
    let mut text = String::from("smiles,name,y\r\n");
    let mut line = 2;
    let mut bad_lines = Vec::new();
    for i in 0..30 {
        let label = if i % 2 == 0 { "1" } else { "-1" };
        let (smiles, name) = match i {
            5 => ("not a smiles", "bad".to_owned()),
            9 => ("CC", "\"two\r\nlines\"".to_owned()),
            12 => ("C1CC", "open ring".to_owned()),
            20 => ("C(C)(C)(C)(C)C", "pentavalent".to_owned()),
            _ => ("", format!("m{i}")),
        };
        let smiles = if smiles.is_empty() {
            format!("{}{}", "C".repeat(1 + i % 7), ["O", "N", "Cl", ""][i % 4])
        } else {
            smiles.to_owned()
        };
        if [5, 12, 20].contains(&i) {
            bad_lines.push(line);
        }
        text.push_str(&format!("{smiles},{name},{label}\r\n"));
        line += 1 + name.matches('\n').count() as u64;
    }
    (text, bad_lines)
}

#[test]
fn skipped_rows_are_listed_with_their_lines_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (text, bad_lines) = csv_with_bad_rows();
    let csv = write(dir.path(), "mine.csv", &text);
    let run = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .arg("--dataset")
        .arg(&csv)
        .args(["--target", "y", "--split", "random", "--epochs", "1"])
        .args([
            "--device",
            "cpu",
            "--threads",
            "1",
            "--random-init",
            "--meter",
            "off",
        ])
        .arg("--out")
        .arg(&run)
        .env("ANGES_CACHE_DIR", dir.path().join("cache"))
        .env("ANGES_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");

    let listed = std::fs::read_to_string(run.join("skipped.csv")).expect("skipped.csv");
    let mut reader = csv::Reader::from_reader(listed.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["line", "smiles", "reason"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let lines: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(lines, bad_lines, "{listed}");
    assert_eq!(rows[0][1], *"not a smiles");
    assert!(
        rows.iter().all(|r| r[2].starts_with("invalid-smiles: ")),
        "{listed}"
    );

    // One summary line, not one per row.
    let mentions: Vec<&str> = log.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(mentions.len(), 1, "{log}");
    assert!(mentions[0].contains("3 row(s) skipped"), "{}", mentions[0]);

    // The −1/1 labels were taken as classes, and the guess said and recorded.
    assert!(
        log.contains("task type guessed from the labels: classification"),
        "{log}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["resolved"]["task_type"], "classification");
    assert_eq!(config["resolved"]["task_type_guessed"], true);
}
