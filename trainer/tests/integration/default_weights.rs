//! Pre-trained is the default: `anges-train` with no weight flag fine-tunes from the shipped
//! GIN (`models/gin_attrmask.safetensors`), the shipped SMILES encoder
//! (`models/transformer_mlm`) or the published `*_supervised_contextpred.pth` of pretrain-gnns
//! (`../shared/models/pretrain-gnns`), records it in `summary.json`, and starts from random
//! weights only with `--random-init`; a family with no default anywhere is refused before any
//! work, with where to put weights.
//!
//! The real binary, an empty model cache, one epoch (200 rows except the acceptance command).

use crate::common;
use crate::common::binary::{anges_train, fail, read_json, succeed};

use std::path::{Path, PathBuf};

/// Runs `anges-train args… --epochs 1 --meter off --out <tmp>/run` with an empty cache and
/// returns the run's `summary.json`.
fn summary_of(args: &[&str], tmp: &Path) -> serde_json::Value {
    let out = tmp.join("run");
    let mut all: Vec<&str> = args.to_vec();
    let out_text = out.display().to_string();
    all.extend(["--epochs", "1", "--meter", "off", "--out", &out_text]);
    succeed(anges_train(&all, &tmp.join("cache")), &all);
    read_json(&out.join("summary.json"))
}

fn starting_weights(summary: &serde_json::Value) -> (Option<PathBuf>, String) {
    (
        summary["pretrained"].as_str().map(PathBuf::from),
        summary["weights_source"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn gin_on_bace_with_no_weight_flag_starts_from_the_shipped_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = summary_of(&["--dataset", "bace", "--model", "gin"], tmp.path());
    let (path, source) = starting_weights(&summary);
    let path = path.expect("summary.json names the starting weights");
    let shipped = common::repo_root().join("models/gin_attrmask.safetensors");
    assert_eq!(
        std::fs::canonicalize(&path).unwrap(),
        std::fs::canonicalize(&shipped).unwrap()
    );
    assert_eq!(source, "default");
}

#[test]
fn each_family_has_its_default_and_random_init_is_the_only_way_to_random_weights() {
    let published = common::repo_root().join("../shared/models/pretrain-gnns");
    let shipped = common::repo_root().join("models");
    for (model, want) in [
        ("gcn", published.join("gcn_supervised_contextpred.pth")),
        (
            "graphsage",
            published.join("graphsage_supervised_contextpred.pth"),
        ),
        ("gat", published.join("gat_supervised_contextpred.pth")),
        ("transformer", shipped.join("transformer_mlm")),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let args = ["--dataset", "bace", "--model", model, "--max-rows", "200"];
        let (path, source) = starting_weights(&summary_of(&args, tmp.path()));
        let path = path.unwrap_or_else(|| panic!("{model}: no starting weights recorded"));
        assert_eq!(
            std::fs::canonicalize(&path).unwrap(),
            std::fs::canonicalize(&want).unwrap(),
            "{model}"
        );
        assert_eq!(source, "default", "{model}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--dataset",
        "bace",
        "--model",
        "transformer",
        "--max-rows",
        "200",
        "--random-init",
    ];
    let (path, source) = starting_weights(&summary_of(&args, tmp.path()));
    assert_eq!((path, source.as_str()), (None, "random-init"));
}

#[test]
fn a_family_without_a_default_is_refused_before_any_work_saying_where_weights_go() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out_text = out.display().to_string();
    let args = [
        "--dataset",
        "bace",
        "--model",
        "transformer",
        "--representation",
        "selfies",
        "--epochs",
        "1",
        "--out",
        &out_text,
    ];
    let err = fail(anges_train(&args, &tmp.path().join("cache")), &args);
    let cache_models = tmp.path().join("cache/models").display().to_string();
    for needle in [
        "no pre-trained weights",
        "transformer_selfies_mlm",
        &cache_models,
        "--pretrained PATH",
        "--random-init",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    assert!(!out.exists(), "a refused run leaves no run folder");
}
