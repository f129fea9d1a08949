//! `anges-train predict` and the `test_predictions.csv` of every run: tiny runs (the first 120
//! rows of BBBP or ESOL, 40 for the 1D model; one epoch, random initialisation, no meter) trained
//! once and shared by the tests, then predicted from.
//!
//! Seen failing: before `predict` existed every test here failed (no subcommand, no
//! `test_predictions.csv`); the test-split agreement failed on the regression run while the
//! outputs were left standardised, and would on the 1D run with a vocabulary rebuilt from other
//! SMILES than the run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::common;

/// The shared runs, each trained once per test process.
struct Runs {
    bbbp_gin_0: PathBuf,
    bbbp_gin_1: PathBuf,
    esol_gin: PathBuf,
    bbbp_transformer: PathBuf,
}

/// Trains one tiny run on the first `rows` rows into `out` (replacing what was there).
fn train(out: &Path, rows: &str, flags: &[&str]) {
    let _ = std::fs::remove_dir_all(out);
    let o = Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .args(["--max-rows", rows, "--epochs", "1", "--batch-size", "32"])
        .args(["--device", "cpu", "--threads", "1", "--random-init"])
        .args(["--meter", "off"])
        .args(flags)
        .arg("--out")
        .arg(out)
        .env("ANGES_DATA_DIR", common::moleculenet_dir())
        .env_remove("ANGES_METER_SOCKET")
        .output()
        .expect("run anges-train");
    assert!(
        o.status.success(),
        "anges-train {flags:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("predict-runs");
        let runs = Runs {
            bbbp_gin_0: root.join("bbbp-gin-0"),
            bbbp_gin_1: root.join("bbbp-gin-1"),
            esol_gin: root.join("esol-gin"),
            bbbp_transformer: root.join("bbbp-transformer"),
        };
        let gin = ["--dataset", "bbbp", "--model", "gin"];
        train(
            &runs.bbbp_gin_0,
            "120",
            &[&gin[..], &["--seed", "0"]].concat(),
        );
        train(
            &runs.bbbp_gin_1,
            "120",
            &[&gin[..], &["--seed", "1"]].concat(),
        );
        train(
            &runs.esol_gin,
            "120",
            &["--dataset", "esol", "--model", "gin"],
        );
        // The 1D model (4 × 192 from scratch) costs most: 40 rows, one batch of training.
        train(
            &runs.bbbp_transformer,
            "40",
            &["--dataset", "bbbp", "--model", "transformer"],
        );
        runs
    })
}

/// Runs `anges-train predict` with `args`.
fn predict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anges-train"))
        .arg("predict")
        .args(["--device", "cpu", "--threads", "1"])
        .args(args)
        .output()
        .expect("run anges-train predict")
}

fn predict_ok(args: &[&str]) {
    let o = predict(args);
    assert!(
        o.status.success(),
        "anges-train predict {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A CSV: its header and rows as maps column → cell.
fn read_csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (header, rows)
}

fn num(cell: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// (d) Every run writes its test rows with labels and the best weights' predictions.
#[test]
fn every_run_writes_its_test_predictions() {
    let runs = runs();
    for (dir, task) in [(&runs.bbbp_gin_0, "p_np"), (&runs.esol_gin, "logp")] {
        let (header, rows) = read_csv(&dir.join("test_predictions.csv"));
        assert_eq!(header[..2], ["row", "smiles"]);
        assert!(header.iter().any(|h| h == task), "{header:?}");
        let pred = format!("{task}_pred");
        assert!(header.contains(&pred), "{header:?}");
        assert_eq!(
            rows.len() as u64,
            summary(dir)["rows"]["test"].as_u64().unwrap()
        );
        let split: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("split.json")).unwrap())
                .unwrap();
        let test: Vec<u64> = split["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let written: Vec<u64> = rows.iter().map(|r| num(&r["row"]) as u64).collect();
        assert_eq!(written, test, "the test rows of split.json, in order");
        for r in &rows {
            assert!(num(&r[&pred]).is_finite());
        }
    }
}

/// (b) Predicting the test rows gives the run's own `test_predictions.csv`: same weights, same
/// featurisation (graphs, or the run's own vocabulary), regression back in the dataset's units.
#[test]
fn predictions_on_the_test_split_equal_the_runs_own() {
    let runs = runs();
    let dir = tempfile::tempdir().unwrap();
    for (run, task) in [
        (&runs.bbbp_gin_0, "p_np"),
        (&runs.esol_gin, "logp"),
        (&runs.bbbp_transformer, "p_np"),
    ] {
        let own = run.join("test_predictions.csv");
        let out = dir.path().join("out.csv");
        predict_ok(&[
            "--run",
            path(run),
            "--input",
            path(&own),
            "--out",
            path(&out),
        ]);
        let (_, want) = read_csv(&own);
        let (header, got) = read_csv(&out);
        // The input has the label column `task` and the prediction `task_pred` already.
        let column = format!("{task}_pred_pred");
        assert!(header.contains(&column), "{header:?}");
        assert_eq!(got.len(), want.len());
        let mut labels = Vec::new();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["reason"], "");
            let (a, b) = (num(&g[&column]), num(&w[&format!("{task}_pred")]));
            assert!((a - b).abs() <= 1e-6, "{}: {a} vs {b}", run.display());
            if !w[task].is_empty() {
                labels.push(num(&w[task]));
            }
        }
        if task == "logp" {
            // In log mol/L, not standardised: the predictions sit in the labels' range.
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let preds: Vec<f64> = got.iter().map(|g| num(&g[&column])).collect();
            assert!(
                (mean(&preds) - mean(&labels)).abs() < 3.0,
                "{preds:?} vs {labels:?}"
            );
        }
    }
}

/// (a) A custom SMILES column, an invalid SMILES kept with its reason, probabilities.
#[test]
fn predict_keeps_every_row_and_says_why_one_has_no_prediction() {
    let runs = runs();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id,mol\na,CCO\nb,C1CC(\nc,c1ccccc1O\n").unwrap();
    let out = dir.path().join("out.csv");
    predict_ok(&[
        "--run",
        path(&runs.bbbp_gin_0),
        "--input",
        path(&input),
        "--out",
        path(&out),
        "--smiles-column",
        "mol",
    ]);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["id", "mol", "p_np", "reason"]);
    assert_eq!(
        rows.iter().map(|r| r["id"].as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(rows[1]["p_np"], "");
    assert!(
        rows[1]["reason"].starts_with("invalid-smiles"),
        "{}",
        rows[1]["reason"]
    );
    for r in [&rows[0], &rows[2]] {
        assert_eq!(r["reason"], "");
        let p = num(&r["p_np"]);
        assert!((0.0..=1.0).contains(&p), "{p}");
    }

    // Without --smiles-column the column `smiles` is missing: a clear error.
    let o = predict(&[
        "--run",
        path(&runs.bbbp_gin_0),
        "--input",
        path(&input),
        "--out",
        path(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no column \"smiles\""), "{err}");
}

/// (c) Two runs give the mean of their predictions and its spread; runs of other tasks or
/// another model family are refused.
#[test]
fn two_runs_give_the_mean_and_the_std() {
    let runs = runs();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "smiles\nCCO\nc1ccccc1O\nCC(=O)Nc1ccc(O)cc1\n").unwrap();
    let single = |run: &Path, name: &str| {
        let out = dir.path().join(name);
        predict_ok(&[
            "--run",
            path(run),
            "--input",
            path(&input),
            "--out",
            path(&out),
        ]);
        read_csv(&out).1
    };
    let a = single(&runs.bbbp_gin_0, "a.csv");
    let b = single(&runs.bbbp_gin_1, "b.csv");
    let out = dir.path().join("both.csv");
    predict_ok(&[
        "--run",
        path(&runs.bbbp_gin_0),
        "--run",
        path(&runs.bbbp_gin_1),
        "--input",
        path(&input),
        "--out",
        path(&out),
    ]);
    let (header, both) = read_csv(&out);
    assert_eq!(header, ["smiles", "p_np", "p_np_std", "reason"]);
    let mut spread = 0.0;
    for ((m, x), y) in both.iter().zip(&a).zip(&b) {
        let (x, y) = (num(&x["p_np"]), num(&y["p_np"]));
        assert!((num(&m["p_np"]) - (x + y) / 2.0).abs() < 1e-12);
        assert!((num(&m["p_np_std"]) - (x - y).abs() / 2.0).abs() < 1e-12);
        spread += (x - y).abs();
    }
    assert!(spread > 0.0, "two seeds should not predict identically");

    for other in [&runs.esol_gin, &runs.bbbp_transformer] {
        let o = predict(&[
            "--run",
            path(&runs.bbbp_gin_0),
            "--run",
            path(other),
            "--input",
            path(&input),
            "--out",
            path(&out),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot form an ensemble"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
