//! The featurised-dataset cache: the second load comes from disk in well under a second and
//! equals the first; a corrupt or stale entry is rebuilt, not trusted; a file found by name in
//! --data-dir is used with the registry's columns.

use crate::common;

use std::time::Instant;

use anges_trainer::data::{DataOptions, DatasetRequest, Metric, TaskType, load_dataset};

#[test]
fn second_load_is_cached_and_corruption_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // A copy under another name in its own folder, so the test may change it.
    let src = common::moleculenet_dir().join("BBBP.csv");
    let path = data.path().join("bbbp.csv");
    std::fs::copy(&src, &path).unwrap();
    let opts = DataOptions {
        data_dir: Some(data.path().to_owned()),
        cache_dir: cache.path().to_owned(),
        allow_download: false,
        download_base: None,
        use_feature_cache: true,
    };
    let req = DatasetRequest {
        dataset: "BBBP".into(),
        ..Default::default()
    };
    let cold = load_dataset(&req, &opts).unwrap();
    assert!(!cold.from_cache);
    assert_eq!(cold.task_names, vec!["p_np".to_string()]);
    assert_eq!(
        (cold.task_type, cold.metrics[0]),
        (TaskType::Classification, Metric::RocAuc)
    );
    assert_eq!(cold.rows.len(), 2039);

    let t = Instant::now();
    let warm = load_dataset(&req, &opts).unwrap();
    let elapsed = t.elapsed();
    println!("BBBP from the cache in {elapsed:?}");
    assert!(warm.from_cache);
    assert!(elapsed.as_secs_f64() < 1.0, "cached load took {elapsed:?}");
    assert_eq!(warm.rows, cold.rows);
    assert_eq!(warm.skipped, cold.skipped);

    // Corrupt every cache entry: the next load rebuilds (and equals the first).
    for e in std::fs::read_dir(cache.path().join("features")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(&p, bytes).unwrap();
    }
    let rebuilt = load_dataset(&req, &opts).unwrap();
    assert!(!rebuilt.from_cache);
    assert_eq!(rebuilt.rows, cold.rows);
    assert!(load_dataset(&req, &opts).unwrap().from_cache);

    // A changed file is a different key: stale features are never served.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("CCO,1\n");
    std::fs::write(&path, text).unwrap();
    let changed = load_dataset(&req, &opts).unwrap();
    assert!(!changed.from_cache);
    assert_eq!(changed.rows.len(), 2040);
    assert_eq!(changed.rows.last().unwrap().smiles, "CCO");
}
