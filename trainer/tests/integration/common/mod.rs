//! Shared test helpers: where the repository and the shared datasets are, the reference scripts
//! of `scripts/` run with the project venv's Python, and the RDKit oracle
//! (`scripts/rdkit_oracle.py`) and the SELFIES oracle (`scripts/selfies_oracle.py`), cached under
//! the target folder keyed by the input file and the script; and the lock on libtorch's random generator that the tests of this binary share.

#![allow(dead_code)]

pub mod binary;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;

/// Holds libtorch's process-global random generator for the calling test. The tests of this
/// binary run on parallel threads of one process: a test that seeds the generator, or draws from
/// it (random weight initialisation, dropout, a fine-tuning run), holds this for as long as it
/// does, so that a seeded test sees only its own draws and stays deterministic.
pub fn torch_rng() -> MutexGuard<'static, ()> {
    static TORCH_RNG: Mutex<()> = Mutex::new(());
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("trainer/ has a parent")
        .to_owned()
}

/// `../shared/datasets/moleculenet` relative to the repository root.
pub fn moleculenet_dir() -> PathBuf {
    let dir = repo_root().join("../shared/datasets/moleculenet");
    assert!(
        dir.is_dir(),
        "the MoleculeNet CSVs are missing: expected them in {}",
        dir.display()
    );
    dir
}

/// Runs `scripts/<script>` with the project venv's Python (torch, RDKit, transformers) and
/// `args`; panics with a clear message when the venv is missing or the script fails.
pub fn run_venv_script<I, S>(script: &str, args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup to create the venv with torch, RDKit and transformers",
        python.display()
    );
    let status = Command::new(&python)
        .arg(root.join("scripts").join(script))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(status.success(), "scripts/{script} failed: {status}");
}

/// One row of the oracle's output.
#[derive(Debug, Deserialize)]
pub struct OracleRow {
    pub row: usize,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub x: Vec<i64>,
    #[serde(default)]
    pub edge_index: Vec<i64>,
    #[serde(default)]
    pub edge_attr: Vec<i64>,
    #[serde(default)]
    pub scaffold: Option<String>,
}

/// The reference split.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct OracleSplit {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

/// The oracle's output for one file.
#[derive(Debug, Deserialize)]
pub struct Oracle {
    pub rdkit_version: String,
    pub rows: Vec<OracleRow>,
    pub scaffold_split: OracleSplit,
}

/// Runs (or reads the cached output of) the RDKit oracle on `input`.
pub fn oracle(input: &Path) -> Oracle {
    let out = cached_script_output("rdkit_oracle.py", "rdkit-oracle", input);
    serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("parse the oracle's output")
}

/// The output file of `scripts/<script> INPUT OUTPUT`, computed once and cached under the target
/// folder's `<cache>/` keyed by the input file and the script.
fn cached_script_output(script: &str, cache: &str, input: &Path) -> PathBuf {
    let script_path = repo_root().join("scripts").join(script);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::fs::read(input).expect("read the dataset"));
    hasher.update(&std::fs::read(&script_path).expect("read the oracle script"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(cache);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{}.json", hasher.finalize().to_hex()));
    // Several tests of this process ask for the same file (the parity and the split tests): the
    // first computes it while the others wait for it, rather than writing the same temporary.
    static COMPUTING: Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>> = Mutex::new(BTreeMap::new());
    let slot = Arc::clone(
        COMPUTING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(out.clone())
            .or_default(),
    );
    {
        let _computing = slot.lock().unwrap_or_else(|e| e.into_inner());
        if !out.is_file() {
            let tmp = out.with_extension(format!("tmp{}", std::process::id()));
            run_venv_script(script, [input, tmp.as_path()]);
            std::fs::rename(&tmp, &out).unwrap();
        }
    }
    out
}

/// One row of the SELFIES oracle's output (`scripts/selfies_oracle.py`).
#[derive(Debug, Deserialize)]
pub struct SelfiesOracleRow {
    pub row: usize,
    /// The SMILES encoded (the cell, trimmed).
    pub smiles: String,
    /// `selfies.encoder(smiles)`, `None` when it raised.
    pub selfies: Option<String>,
    /// What it raised.
    pub error: Option<String>,
    /// `selfies.decoder(selfies)` of an encoded row.
    #[serde(default)]
    pub decoded: Option<String>,
    /// Whether RDKit finds the package's own round trip the same molecule (`None`: RDKit cannot
    /// read the input).
    #[serde(default)]
    pub roundtrip: Option<bool>,
}

/// The SELFIES oracle's output for one file.
#[derive(Debug, Deserialize)]
pub struct SelfiesOracle {
    pub selfies_version: String,
    pub rdkit_version: String,
    pub rows: Vec<SelfiesOracleRow>,
}

/// Runs (or reads the cached output of) the SELFIES oracle on `input`.
pub fn selfies_oracle(input: &Path) -> SelfiesOracle {
    let out = cached_script_output("selfies_oracle.py", "selfies-oracle", input);
    serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("parse the oracle's output")
}

/// Starts `cmd` (its output discarded), waits until `progress()` reaches `at_least` (at most 10
/// minutes; the run must not end before), then kills it with SIGKILL and returns `progress()`
/// after the kill: an interruption at an arbitrary point, as a crash or an OOM kill would be.
pub fn kill_once(mut cmd: Command, progress: impl Fn() -> usize, at_least: usize) -> usize {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start anges-train");
    let deadline = Instant::now() + Duration::from_secs(600);
    while progress() < at_least {
        assert!(
            Instant::now() < deadline,
            "no progress {at_least} in 10 minutes"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    progress()
}
