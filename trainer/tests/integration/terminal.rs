//! What `anges-train` shows on a terminal, a pipe or a file (issue 28, item 6): no colour codes
//! off a terminal, start-up details at debug level (`-v`) with the thread count in force, the
//! result alone on stdout with `--json`, errors as one line with each cause once, and bad
//! arguments (a keep ratio, a checkpoint that is missing, truncated or of the other model
//! family) refused before any work: no featurisation, no run folder.
//!
//! Each was seen failing on the code before the change: colour codes in a pipe, `2 CPU
//! thread(s)` under `--threads 1`, `Error:` then `Caused by:` repeating the text, a run folder
//! left by `--keep-ratio 1.5` and by a missing checkpoint, and a list of 60 keys for a GCN
//! checkpoint given to `--model gin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;

/// A bound on a refusal's time (the binary starts twice and loads libtorch: seconds on a busy
/// 2-core machine); that it comes before any work is checked on what it logged.
const QUICK: Duration = Duration::from_secs(60);

/// The published GCN checkpoint of pretrain-gnns (`../shared/models/pretrain-gnns/`).
fn gcn_checkpoint() -> PathBuf {
    let path = common::repo_root().join("../shared/models/pretrain-gnns/gcn_contextpred.pth");
    assert!(path.is_file(), "missing {}", path.display());
    path
}

/// `anges-train` on a few BBBP molecules, one epoch, unmetered, on one CPU thread, in `dir`
/// (its working directory and cache folder, so that a default run folder would land there),
/// with stderr and stdout captured as a pipe and no colour preference in the environment.
fn run_in(dir: &Path, flags: &[&str]) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anges-train"));
    cmd.args(["--dataset", "bbbp", "--max-rows", "60", "--epochs", "1"])
        .args(["--meter", "off", "--device", "cpu", "--threads", "1"])
        .args(flags)
        .current_dir(dir)
        .env("ANGES_DATA_DIR", common::moleculenet_dir())
        .env("ANGES_CACHE_DIR", dir.join("cache"))
        .env("RUST_BACKTRACE", "1")
        .env_remove("NO_COLOR")
        .env_remove("ANGES_LOG")
        .env_remove("ANGES_METER_SOCKET");
    let t0 = Instant::now();
    let out = cmd.output().expect("run anges-train");
    (out, t0.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The entries of `dir` besides the cache folder (a run folder, `runs/`).
fn left_behind(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache")
        .collect()
}

/// Runs `flags`, which must be refused: non-zero, quickly, one `error:` line naming `needle`
/// once, no backtrace, and nothing left in the working directory.
fn refused(flags: &[&str], needle: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_in(dir.path(), flags);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{flags:?} was accepted:\n{err}");
    assert!(
        took < QUICK,
        "{flags:?} took {took:?} to be refused:\n{err}"
    );
    assert!(
        !err.contains("featurised"),
        "{flags:?}: refused after featurisation:\n{err}"
    );
    assert_eq!(
        left_behind(dir.path()),
        Vec::<String>::new(),
        "{flags:?}:\n{err}"
    );
    assert_eq!(
        err.matches(needle).count(),
        1,
        "{flags:?}: {needle:?}:\n{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{flags:?}:\n{err}");
    for noise in ["Caused by", "backtrace", "panicked"] {
        assert!(!err.contains(noise), "{flags:?}: {noise}:\n{err}");
    }
    errors[0].to_owned()
}

#[test]
fn a_piped_run_has_no_colour_codes_and_json_alone_on_stdout() {
    let _rng = common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let (out, _) = run_in(
        dir.path(),
        &[
            "--random-init",
            "--json",
            "-v",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !out.stderr.contains(&0x1b),
        "escape codes in a pipe:\n{err}"
    );
    assert!(!out.stdout.contains(&0x1b));
    // Start-up details at debug level (-v), with the thread count in force.
    let runtime = err
        .lines()
        .find(|l| l.contains("libtorch:"))
        .unwrap_or_else(|| panic!("no runtime line under -v:\n{err}"));
    assert!(runtime.contains("libtorch: 1 CPU thread(s)"), "{runtime}");
    assert!(
        !err.contains("anges_trainer::"),
        "module paths in the log:\n{err}"
    );
    // --json: the summary as one JSON document, and nothing else on stdout.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&out.stdout)));
    assert_eq!(summary["epochs_run"], 1, "{summary}");
    assert_eq!(summary["dataset"], "BBBP", "{summary}");
}

#[test]
fn a_bad_keep_ratio_is_refused_before_any_work() {
    let line = refused(
        &["--random-init", "--keep-ratio", "1.5"],
        "--keep-ratio 1.5",
    );
    assert!(line.contains("(0, 1]"), "{line}");
}

#[test]
fn a_missing_checkpoint_is_refused_before_any_work_and_said_once() {
    let line = refused(
        &["--model", "gcn", "--pretrained", "no-such-checkpoint.pth"],
        "No such file or directory",
    );
    assert!(line.contains("no-such-checkpoint.pth"), "{line}");
}

#[test]
fn a_truncated_checkpoint_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gcn_checkpoint()).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let line = refused(
        &[
            "--model",
            "gcn",
            "--allow-partial",
            "--pretrained",
            cut.to_str().unwrap(),
        ],
        "cut.pth",
    );
    assert!(line.contains("truncated") || line.contains("end"), "{line}");
}

#[test]
fn a_gcn_checkpoint_given_to_gin_says_use_model_gcn() {
    let gcn = gcn_checkpoint();
    let line = refused(
        &[
            "--model",
            "gin",
            "--allow-partial",
            "--pretrained",
            gcn.to_str().unwrap(),
        ],
        "use --model gcn",
    );
    assert!(line.contains("looks like a GCN checkpoint"), "{line}");
    assert!(
        !line.contains("gnns.0.linear.weight"),
        "lists the keys: {line}"
    );
}

/// The README names the dataset cache folder that the code searches and its error message lists
/// (it named `~/.cache/anges/datasets`, where nothing ever looked).
#[test]
fn the_readme_names_the_dataset_cache_folder_the_code_searches() {
    let home_cache = anges_trainer::data::DataOptions {
        cache_dir: PathBuf::from("~/.cache/anges"),
        ..anges_trainer::data::DataOptions::default()
    };
    let folder = home_cache.download_dir().display().to_string();
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("`{folder}`")),
        "README lacks {folder}"
    );
    assert!(!readme.contains("~/.cache/anges/datasets"));
}
