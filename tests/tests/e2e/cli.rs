//! The binaries start, explain themselves, and find libtorch without LD_LIBRARY_PATH.

use std::process::Command;

use anges_e2e::{binary, repo_root, shared_dir};

fn help_of(package: &str, bin: &str) -> String {
    let path = binary(package, bin).expect("binary");
    let out = Command::new(&path)
        .arg("--help")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn meterd_help_lists_its_options() {
    let _turn = crate::turn(module_path!());
    let help = help_of("anges-meterd", "anges-meterd");
    for flag in [
        "--user",
        "--socket",
        "--sensor",
        "--rate-hz",
        "--sysfs-root",
        "--intensity",
        "--pue",
    ] {
        assert!(
            help.contains(flag),
            "anges-meterd --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn train_help_lists_its_options_and_subcommands() {
    let _turn = crate::turn(module_path!());
    let help = help_of("anges-trainer", "anges-train");
    for word in [
        "--dataset",
        "--model",
        "--stop",
        "--beta",
        "--prune",
        "--keep-ratio",
        "--meter",
        "pretrain",
        "replay",
        "study",
        "summarize",
        "evaluate",
        "tradeoff",
    ] {
        assert!(
            help.contains(word),
            "anges-train --help lacks {word}:\n{help}"
        );
    }
}

/// `anges-meter --help` opens with what the program is, the daemon's client (it opened with the
/// daemon's own description, its package's, before).
#[test]
fn meter_help_opens_with_the_client() {
    let _turn = crate::turn(module_path!());
    let help = help_of("anges-meterd", "anges-meter");
    let first = help.lines().next().unwrap_or_default();
    assert!(first.starts_with("Command-line client"), "{help}");
    assert!(!first.contains("daemon:"), "{first}");
}

/// `anges-train study --help` lists the study's flags, not the ones the study sets itself (it
/// listed --stop and --prune among ≈60 fine-tuning flags before).
#[test]
fn study_help_leaves_out_what_the_study_sets() {
    let _turn = crate::turn(module_path!());
    let path = binary("anges-trainer", "anges-train").expect("binary");
    let out = Command::new(&path)
        .args(["study", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for hidden in ["--stop <", "--prune <"] {
        assert!(
            !help.contains(hidden),
            "study --help lists {hidden}:\n{help}"
        );
    }
    assert!(help.contains("--keep-ratios <"), "{help}");
}

#[test]
fn anges_train_resolves_libtorch_through_its_rpath() {
    let _turn = crate::turn(module_path!());
    let path = binary("anges-trainer", "anges-train").expect("binary");
    let out = Command::new("ldd")
        .arg(&path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let torch = text
        .lines()
        .find(|l| l.contains("libtorch_cpu.so"))
        .unwrap_or_else(|| panic!("libtorch_cpu.so not linked:\n{text}"));
    assert!(
        torch.contains("=> /"),
        "libtorch_cpu.so not resolved to a path: {torch}"
    );
}

#[test]
fn summarize_reads_real_runs_and_rejects_a_missing_folder() {
    let _turn = crate::turn(module_path!());
    let train = binary("anges-trainer", "anges-train").expect("binary");
    let runs = tempfile::tempdir().unwrap();
    let data = shared_dir().join("datasets/moleculenet");
    for seed in ["0", "1"] {
        let out = Command::new(&train)
            .args([
                "--dataset",
                "bbbp",
                "--model",
                "gin",
                "--random-init",
                "--max-rows",
                "300",
            ])
            .args([
                "--epochs",
                "2",
                "--meter",
                "off",
                "--threads",
                "1",
                "--seed",
                seed,
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(runs.path().join(format!("bbbp-s{seed}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fine-tuning failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A broken summary beside them is skipped and counted, not fatal.
    std::fs::create_dir_all(runs.path().join("broken")).unwrap();
    std::fs::write(runs.path().join("broken/summary.json"), "{").unwrap();
    let csv = runs.path().join("runs.csv");
    let out = Command::new(&train)
        .arg("summarize")
        .arg(runs.path())
        .arg("--json")
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "summarize failed: {stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["dataset"], "BBBP");
    assert_eq!(rows[0]["runs"], 2);
    assert_eq!(rows[0]["init"], "random");
    assert!(rows[0]["best_test_mean"].is_number(), "{rows:?}");
    assert!(
        stderr.contains("2 run(s) in 1 group(s); 1 summary file(s) skipped"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 2);

    let missing = runs.path().join("no-such-folder");
    let out = Command::new(&train)
        .arg("summarize")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-folder"), "{stderr}");
}

/// `anges-train tradeoff` over the committed pre-training comparison (54 logged runs, six
/// families on BACE, BBBP and SIDER): every group and family, one frontier over the three
/// datasets with a consistent answer, every file; its full-run figures agree with
/// `summarize`'s, which reads the summaries rather than replaying the logs.
#[test]
fn tradeoff_reads_the_committed_campaign_logs_and_agrees_with_summarize() {
    let _turn = crate::turn(module_path!());
    let train = binary("anges-trainer", "anges-train").expect("binary");
    let runs = repo_root().join("docs/results/pretraining/runs");
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(&train)
        .arg("tradeoff")
        .arg(&runs)
        .arg("--out")
        .arg(out_dir.path())
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tradeoff failed: {stderr}");
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let groups = t["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 18, "3 datasets × 6 families");
    assert_eq!(t["families"].as_array().unwrap().len(), 6);
    let frontier = &t["frontiers"][0];
    assert_eq!(
        frontier["datasets"],
        serde_json::json!(["BACE", "BBBP", "SIDER"])
    );
    let points = frontier["points"].as_array().unwrap();
    assert_eq!(points.len(), 24, "6 families × 4 policies");
    let test = |i: &serde_json::Value| {
        points[i.as_u64().unwrap() as usize]["test"]
            .as_f64()
            .unwrap()
    };
    let co2 = |i: &serde_json::Value| {
        points[i.as_u64().unwrap() as usize]["co2_g"]
            .as_f64()
            .unwrap()
    };
    let (best, answer) = (&frontier["best"], &frontier["cheapest_within_tolerance"]);
    let max = points
        .iter()
        .map(|p| p["test"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(test(best), max);
    assert!(100.0 * (test(best) - test(answer)) <= 1.0 && co2(answer) <= co2(best));
    assert!(
        points[answer.as_u64().unwrap() as usize]["pareto"]
            .as_bool()
            .unwrap()
    );

    let summarize = Command::new(&train)
        .arg("summarize")
        .arg(&runs)
        .arg("--json")
        .output()
        .unwrap();
    assert!(summarize.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&summarize.stdout).unwrap();
    for g in groups {
        let init = g["family"]["init"].as_str().unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["dataset"] == g["dataset"]
                    && r["model"] == g["family"]["model"]
                    && r["init"] == init
            })
            .unwrap_or_else(|| panic!("no summarize row for {g}"));
        let full = &g["policies"][0];
        assert_eq!(full["policy"], "full");
        let same = |a: &serde_json::Value, b: &serde_json::Value| {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9
        };
        assert!(
            same(&full["test"]["mean"], &row["best_test_mean"]),
            "{g} / {row}"
        );
        assert!(
            same(&full["co2_g"]["mean"], &row["co2_g_mean"]),
            "{g} / {row}"
        );
    }

    for name in [
        "tradeoff.md",
        "tradeoff.csv",
        "tradeoff.json",
        "frontier-roc-auc.png",
        "frontier-roc-auc.svg",
        "energy.png",
        "energy.svg",
    ] {
        let len = std::fs::metadata(out_dir.path().join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 500, "{name}: {len} bytes");
    }
    let md = std::fs::read_to_string(out_dir.path().join("tradeoff.md")).unwrap();
    assert!(md.contains("**Answer** (over BACE, BBBP, SIDER)"), "{md}");
    let csv = std::fs::read_to_string(out_dir.path().join("tradeoff.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 18 * 4);
}
