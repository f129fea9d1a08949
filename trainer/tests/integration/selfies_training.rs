//! The 1D model on SELFIES end to end, through the real binary on the CPU: masked-LM
//! pre-training on the first 300 MOSES molecules with `--representation selfies`, fine-tuning
//! that folder on the first 300 rows of ESOL (16 of which SELFIES cannot express: dropped and
//! counted), prediction with the run, and the refusals a representation mismatch gets.
//!
//! Seen failing: before `--representation` existed the flag was refused; with the folder's
//! representation not recorded, fine-tuning it as SMILES ran on a vocabulary of SELFIES symbols
//! (every SMILES token unknown) instead of stopping.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common;
use crate::common::binary::{self, read_json};

/// Runs `anges-train` with `args` on the CPU, its caches in `cache`; asserts it succeeded.
fn succeed(args: &[&str], cache: &Path) -> Output {
    binary::succeed(binary::anges_train(args, cache), args)
}

/// Runs `anges-train`, asserts it failed cleanly; returns its stderr.
fn fail(args: &[&str], cache: &Path) -> String {
    binary::fail(binary::anges_train(args, cache), args)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

#[test]
fn selfies_pretraining_and_fine_tuning_work_end_to_end() {
    let cache = tempfile::tempdir().unwrap();
    let folder = cache.path().join("mlm_selfies");
    let corpus = common::repo_root().join("../shared/datasets/corpora/moses_train.csv.gz");
    assert!(corpus.is_file(), "missing {}", corpus.display());
    succeed(
        &[
            "pretrain",
            "--corpus",
            s(&corpus),
            "--limit",
            "300",
            "--model",
            "transformer",
            "--representation",
            "selfies",
            "--hidden-size",
            "32",
            "--layers",
            "2",
            "--heads",
            "2",
            "--epochs",
            "8",
            "--batch-size",
            "16",
            "--lr",
            "0.002",
            "--meter",
            "off",
            "--out",
            s(&folder),
        ],
        cache.path(),
    );
    // The folder records its representation; its vocabulary is of SELFIES symbols.
    let config = read_json(&folder.join("config.json"));
    assert_eq!(config["representation"], "selfies");
    let vocab = std::fs::read_to_string(folder.join("vocab.txt")).unwrap();
    let symbols: Vec<&str> = vocab.lines().skip(5).collect();
    assert!(symbols.len() > 10, "{symbols:?}");
    assert!(
        symbols
            .iter()
            .all(|t| *t == "." || (t.starts_with('[') && t.ends_with(']'))),
        "{symbols:?}"
    );
    for symbol in ["[C]", "[=C]", "[Ring1]", "[Branch1]", "[=O]"] {
        assert!(
            symbols.contains(&symbol),
            "{symbol} missing from {symbols:?}"
        );
    }
    let log = read_json(&folder.join("pretrain.json"));
    assert_eq!(log["args"]["representation"], "selfies");
    let epochs = log["epochs"].as_array().unwrap();
    let loss = |e: &Value| e["loss"].as_f64().unwrap();
    let accuracy = |e: &Value| e["accuracy"].as_f64().unwrap();
    let (first, last) = (&epochs[0], &epochs[epochs.len() - 1]);
    assert!(loss(last) < loss(first), "MLM loss {epochs:?}");
    assert!(
        accuracy(last) > last["majority_baseline"].as_f64().unwrap(),
        "the masked symbols are predicted better than the most frequent one: {last}"
    );

    // Fine-tuning on SELFIES from that folder; ESOL's nitro compounds have no SELFIES.
    let run = cache.path().join("run");
    let finetune = |representation: &str, out: &Path| {
        vec![
            "--dataset".to_owned(),
            "esol".into(),
            "--model".into(),
            "transformer".into(),
            "--representation".into(),
            representation.into(),
            "--pretrained".into(),
            s(&folder).into(),
            "--epochs".into(),
            "3".into(),
            "--max-rows".into(),
            "300".into(),
            "--batch-size".into(),
            "32".into(),
            "--meter".into(),
            "off".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    let argv = finetune("selfies", &run);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    succeed(&argv, cache.path());
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["epochs_run"], 3);
    assert_eq!(summary["rows"]["dropped"]["no-selfies"], 16, "{summary}");
    assert_eq!(summary["rows"]["used"], 300 - 16);
    let test_rmse = summary["best_test"]["rmse"].as_f64();
    assert!(
        test_rmse.is_some_and(f64::is_finite),
        "a finite test RMSE: {summary}"
    );
    let recorded = read_json(&run.join("config.json"));
    assert_eq!(
        recorded["config"]["model"]["representation"], "selfies",
        "{recorded}"
    );

    // The folder is refused as SMILES, naming both representations, before any work.
    let wrong = cache.path().join("wrong");
    let argv = finetune("smiles", &wrong);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let err = fail(&argv, cache.path());
    assert!(
        err.contains("--representation smiles")
            && err.contains("pre-trained on selfies")
            && err.contains("--representation selfies"),
        "{err}"
    );
    assert!(!wrong.join("summary.json").exists());

    // Prediction reads the run's SELFIES vocabulary; a nitro compound gets a reason.
    let input = cache.path().join("in.csv");
    std::fs::write(&input, "smiles\nCCO\nc1ccccc1O\nCC[N+](=O)[O-]\nCN(=O)=O\n").unwrap();
    let out = cache.path().join("pred.csv");
    succeed(
        &[
            "predict",
            "--run",
            s(&run),
            "--input",
            s(&input),
            "--out",
            s(&out),
        ],
        cache.path(),
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for line in &lines[1..4] {
        assert!(line.ends_with(','), "predicted, no reason: {line}");
    }
    assert!(lines[4].contains("no SELFIES"), "{text}");
}
