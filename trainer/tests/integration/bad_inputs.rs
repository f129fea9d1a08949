//! Broken inputs each get a clear error naming the file (and line), or a counted, named skip:
//! garbage SMILES, a CSV cut mid-line, a wrong column name, an empty file, a 50 MB line, a
//! truncated gzip, a non-numeric label, an unknown dataset, and a missing dataset while offline.

use std::io::Write;
use std::path::{Path, PathBuf};

use anges_trainer::data::{DataError, DataOptions, DatasetRequest, SkipKind, load_dataset};
use anges_trainer::featurize::SmilesTokenizer;
use anges_trainer::featurize::tokens::RegexTokenizer;

pub(crate) fn opts(cache: &Path) -> DataOptions {
    DataOptions {
        data_dir: None,
        cache_dir: cache.to_owned(),
        allow_download: false,
        download_base: None,
        use_feature_cache: false,
    }
}

pub(crate) fn custom(path: &Path, target: &str) -> DatasetRequest {
    DatasetRequest {
        dataset: path.to_string_lossy().into_owned(),
        smiles_column: None,
        targets: vec![target.into()],
        ..Default::default()
    }
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn garbage_smiles_are_counted_named_skips() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "smiles,y\nCCO,1\nnot a smiles,0\nC1CC,1\nC(C)(C)(C)(C)C,0\n*CC,1\n,0\nc1ccccc1,0\n";
    let p = write(dir.path(), "mols.csv", csv);
    let ds = load_dataset(&custom(&p, "y"), &opts(dir.path())).unwrap();
    assert_eq!(ds.num_file_rows, 7);
    assert_eq!(
        ds.rows.iter().map(|r| r.row).collect::<Vec<_>>(),
        vec![0, 6]
    );
    let skipped: Vec<(usize, u64, SkipKind)> =
        ds.skipped.iter().map(|s| (s.row, s.line, s.kind)).collect();
    assert_eq!(
        skipped,
        vec![
            (1, 3, SkipKind::InvalidSmiles),
            (2, 4, SkipKind::InvalidSmiles),
            (3, 5, SkipKind::InvalidSmiles),
            (4, 6, SkipKind::UnsupportedFeature),
            (5, 7, SkipKind::EmptyMolecule),
        ]
    );
    assert_eq!(ds.skip_counts()[&SkipKind::InvalidSmiles], 3);
    let summary = ds.summary();
    assert!(
        summary.contains("2 of 7 rows") && summary.contains("3 dropped (InvalidSmiles)"),
        "{summary}"
    );
    assert_eq!(ds.rows[0].labels_pm1(), vec![1]);
    assert_eq!(ds.rows[1].labels_pm1(), vec![-1]);
    // Token ids for the 1D models follow the kept rows.
    let tok = SmilesTokenizer::Regex(RegexTokenizer::from_corpus(
        ds.rows.iter().map(|r| r.smiles.as_str()),
    ));
    let ids = ds.token_ids(&tok, 16).unwrap();
    assert_eq!(ids.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 10]);
}

#[test]
fn csv_cut_mid_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cut.csv", "smiles,a,b\nCCO,1,0\nCCN,0,1\nc1ccc");
    let err = load_dataset(&custom(&p, "a"), &opts(dir.path())).unwrap_err();
    assert!(matches!(err, DataError::Csv { line: 4, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("cut.csv:4") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn truncated_gzip_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("smiles,y\n");
    for i in 0..20_000 {
        text.push_str(&format!("{}O,{}\n", "C".repeat(1 + i % 7), i % 2));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let p = dir.path().join("cut.csv.gz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_dataset(&custom(&p, "y"), &opts(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Csv { .. }), "{err:?}");
    assert!(
        msg.contains("cut.csv.gz:") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn wrong_column_lists_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.csv", "smiles,p_np\nCCO,1\n");
    let err = load_dataset(&custom(&p, "label"), &opts(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MissingColumn { .. }), "{err:?}");
    assert!(
        msg.contains("\"label\"") && msg.contains("p_np") && msg.contains("m.csv"),
        "{msg}"
    );
    let mut req = custom(&p, "p_np");
    req.smiles_column = Some("SMILES".into());
    assert!(matches!(
        load_dataset(&req, &opts(dir.path())),
        Err(DataError::MissingColumn { .. })
    ));
}

#[test]
fn empty_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.csv", ""), ("header.csv", "smiles,y\n")] {
        let p = write(dir.path(), name, text);
        let err = load_dataset(&custom(&p, "y"), &opts(dir.path())).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn fifty_megabyte_line_is_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("smiles,y\nCCO,1\n");
    text.push_str(&"C".repeat(50 * 1024 * 1024));
    text.push_str(",0\nCCN,0\n");
    let p = write(dir.path(), "big.csv", &text);
    drop(text);
    let t = std::time::Instant::now();
    let ds = load_dataset(&custom(&p, "y"), &opts(dir.path())).unwrap();
    assert_eq!(
        ds.rows.iter().map(|r| r.row).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(
        (ds.skipped[0].row, ds.skipped[0].kind),
        (1, SkipKind::TooLong)
    );
    assert_eq!(
        ds.skipped[0].smiles.len(),
        80,
        "the report quotes a prefix only"
    );
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
}

#[test]
fn bad_labels_and_unknown_datasets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "l.csv", "smiles,y\nCCO,1\nCCN,active\n");
    let err = load_dataset(&custom(&p, "y"), &opts(dir.path())).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { line: 3, .. }),
        "{err:?}"
    );
    let req = DatasetRequest {
        dataset: "qm42".into(),
        ..Default::default()
    };
    let err = load_dataset(&req, &opts(dir.path())).unwrap_err();
    assert!(err.to_string().contains("bbbp"), "{err}");
    let req = DatasetRequest {
        dataset: p.to_string_lossy().into_owned(),
        ..Default::default()
    };
    assert!(matches!(
        load_dataset(&req, &opts(dir.path())),
        Err(DataError::CustomColumns { .. })
    ));
}

#[test]
fn missing_dataset_offline_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.data_dir = Some(dir.path().join("nothing-here"));
    o.allow_download = true;
    // Nothing listens on the discard port of localhost: the download fails at once, like offline.
    o.download_base = Some("http://127.0.0.1:9/datasets".into());
    let req = DatasetRequest {
        dataset: "bbbp".into(),
        ..Default::default()
    };
    let err = load_dataset(&req, &o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(
        msg.contains("http://127.0.0.1:9/datasets/BBBP.csv") && msg.contains("nothing-here"),
        "{msg}"
    );
    assert!(!dir.path().join("moleculenet/BBBP.csv").exists());
}
