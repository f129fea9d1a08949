//! Finding datasets: a file in --data-dir is found by stem in any case and `.csv.gz`; a missing
//! one is downloaded from the (here: local) MoleculeNet server into the cache folder and used,
//! while a download that is not the expected table is rejected and not kept.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use anges_trainer::data::{DataError, DataOptions, DatasetRequest, TaskType, load_dataset};

/// Serves `body` with status 200 to every GET, on a local port; returns the base URL.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}/datasets")
}

fn opts(data: &Path, cache: &Path, base: Option<String>) -> DataOptions {
    DataOptions {
        data_dir: Some(data.to_owned()),
        cache_dir: cache.to_owned(),
        allow_download: base.is_some(),
        download_base: base,
        use_feature_cache: false,
    }
}

fn request(name: &str) -> DatasetRequest {
    DatasetRequest {
        dataset: name.into(),
        ..Default::default()
    }
}

#[test]
fn finds_files_by_stem_any_case_and_gzip() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"smiles,logp\nCCO,-0.3\nc1ccccc1,2.1\n")
        .unwrap();
    std::fs::write(data.path().join("Delaney.CSV.gz"), gz.finish().unwrap()).unwrap();
    let ds = load_dataset(&request("esol"), &opts(data.path(), cache.path(), None)).unwrap();
    assert_eq!(ds.name, "ESOL");
    assert_eq!(ds.task_type, TaskType::Regression);
    assert_eq!(ds.task_names, vec!["logp".to_string()]);
    assert_eq!(ds.rows[1].labels, vec![Some(2.1)]);
}

#[test]
fn downloads_missing_dataset_into_the_cache() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let body = std::fs::read(common::moleculenet_dir().join("bace.csv")).unwrap();
    let base = serve(body.clone());
    let ds = load_dataset(
        &request("bace"),
        &opts(data.path(), cache.path(), Some(base)),
    )
    .unwrap();
    let kept = cache.path().join("moleculenet/bace.csv");
    assert_eq!(std::fs::read(&kept).unwrap(), body);
    assert_eq!(ds.source, kept);
    assert_eq!(ds.rows.len(), 1513);
    // Now found in the cache folder, with no server.
    let again = load_dataset(&request("bace"), &opts(data.path(), cache.path(), None)).unwrap();
    assert_eq!(again.rows, ds.rows);
}

#[test]
fn rejects_a_download_that_is_not_the_table() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let base = serve(b"<html>Access denied</html>\n".to_vec());
    let err = load_dataset(
        &request("bbbp"),
        &opts(data.path(), cache.path(), Some(base)),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::BadDownload { .. }), "{err:?}");
    assert!(err.to_string().contains("BBBP.csv"), "{err}");
    let left: Vec<_> = std::fs::read_dir(cache.path().join("moleculenet"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "a rejected download must not be kept: {left:?}"
    );
}
