//! The scaffold split of BBBP, SIDER and BACE, computed through the real loading path
//! (`load_dataset` + `make_split`), is identical (index sets) to the RDKit-based reference
//! procedure of Hu et al. run by the oracle script; and `split.json` round-trips through
//! `--split-file` reuse.

use crate::common;

use anges_trainer::config::SplitKind;
use anges_trainer::data::{DataOptions, DatasetRequest, load_dataset};
use anges_trainer::split::{Split, make_split};

fn check(dataset: &str, file: &str) {
    let oracle = common::oracle(&common::moleculenet_dir().join(file));
    let cache = tempfile::tempdir().unwrap();
    let opts = DataOptions {
        data_dir: Some(common::moleculenet_dir()),
        cache_dir: cache.path().to_owned(),
        allow_download: false,
        download_base: None,
        use_feature_cache: true,
    };
    let req = DatasetRequest {
        dataset: dataset.into(),
        ..Default::default()
    };
    let ds = load_dataset(&req, &opts).unwrap();
    let split = make_split(&ds, SplitKind::Scaffold, 0);
    let reference = &oracle.scaffold_split;
    println!(
        "{dataset}: train/valid/test = {}/{}/{} (reference {}/{}/{})",
        split.train.len(),
        split.valid.len(),
        split.test.len(),
        reference.train.len(),
        reference.valid.len(),
        reference.test.len()
    );
    assert_eq!(split.train, reference.train, "{dataset}: train differs");
    assert_eq!(split.valid, reference.valid, "{dataset}: valid differs");
    assert_eq!(split.test, reference.test, "{dataset}: test differs");

    // split.json written by one run and reused by another maps to the same rows.
    let path = cache.path().join("split.json");
    split.write(&path).unwrap();
    let reused = Split::read(&path).unwrap();
    assert_eq!(reused, split);
    let pos = reused.positions(&ds).unwrap();
    assert_eq!(
        pos.train.len() + pos.valid.len() + pos.test.len(),
        ds.rows.len()
    );
    for (positions, rows) in [
        (&pos.train, &split.train),
        (&pos.valid, &split.valid),
        (&pos.test, &split.test),
    ] {
        assert!(
            positions
                .iter()
                .zip(rows)
                .all(|(&p, &r)| ds.rows[p].row == r)
        );
    }
}

#[test]
fn bbbp_scaffold_split_matches_reference() {
    check("bbbp", "BBBP.csv");
}

#[test]
fn sider_scaffold_split_matches_reference() {
    check("sider", "sider.csv");
}

#[test]
fn bace_scaffold_split_matches_reference() {
    check("bace", "bace.csv");
}
