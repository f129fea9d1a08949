//! Resuming an interrupted run (`--resume`): the state written after every epoch, and the checks
//! and restores of a run that continues from it. Fine-tuning keeps it as `resume.safetensors` in
//! its run directory ([`load_run`]); pre-training beside its checkpoint
//! (`crate::pretrain::output::Output::state`), with the same file layout.
//!
//! The file holds what the next epoch depends on and the run's logs do not: every model variable
//! (batch-norm statistics included), Adam's moments and step counts, MolPeg's reference model and
//! sample scores, and, in the safetensors metadata, the epochs finished, the seconds spent and
//! the meter's running totals. The rest of the loop's state is rebuilt from the logs (the
//! stopping policy replays `epochs.jsonl`) or is keyed by `(seed, epoch)`: the data order, the
//! pruning choices and, because libtorch's generator is reseeded at the start of every epoch
//! ([`super::setup::seed_epoch`]), the dropout masks. A resumed CPU run with the same `--threads`
//! is therefore bit-identical to an uninterrupted one.
//!
//! Order within an epoch: the log lines, then the state (written beside itself and renamed: a
//! crash leaves the previous state whole), then `best.safetensors` if the epoch is the best so
//! far. On resume the logs are cut back to the state's epoch, so an epoch logged but not saved
//! runs again, to the same figures; `best.safetensors` never holds an epoch later than the
//! state's, and when the state's own epoch is the best ([`Progress::best_epoch`]) the resumed run
//! writes it again from the restored weights.
//!
//! A resumed GPU run continues from the same weights and moments but is not bit-identical: CUDA's
//! `index_add` sums in no fixed order, resumed or not.
//!
//! `anges-train --resume DIR` alone continues with the configuration the run recorded
//! ([`recorded_config`]); flags given with it must agree with it ([`check_config`]), as when
//! the run's flags are given in full.
//!
//! Not saved: libtorch's own optimiser state (parameters of mixed kinds or devices, which neither
//! of our Adams takes), which tch cannot read; such runs write no state and say so at the start.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::TrainError;
use super::optim::{Moments, Optimizer};
use super::prune::Pruner;
use super::rundir::replace_atomically;
use crate::checkpoint::{self, LoadOptions};
use crate::config::{FinetuneConfig, TaskType, legacy};
use crate::emissions::LedgerTotals;

/// The state file in a fine-tuning run directory.
pub const STATE_FILE: &str = "resume.safetensors";

/// Key of the [`Progress`] JSON in the file's safetensors metadata.
const META_KEY: &str = "anges.resume";

/// The largest safetensors header read when only the counters are wanted ([`saved_epochs`]):
/// the safetensors format's own bound.
const MAX_HEADER_LEN: usize = 100_000_000;

/// Layout version of the file; a file of another version is refused.
const FORMAT_VERSION: u32 = 1;

/// Flags that may differ between a run and its resumption: where things are and how the run is
/// metered, not what it computes. A different `--threads` changes the order of libtorch's sums
/// (allowed, with a warning: the figures are then no longer bit-identical).
/// `--overwrite` (pre-training) is how the interrupted run was started, not what it computes.
const MAY_CHANGE: &[&str] = &["out", "data_dir", "threads", "meter", "socket", "overwrite"];

/// Tensor-name prefixes inside the file.
const MODEL: &str = "model/";
const EXP_AVG: &str = "adam.exp_avg/";
const EXP_AVG_SQ: &str = "adam.exp_avg_sq/";
const REFERENCE: &str = "reference/";
const SCORES: &str = "prune/scores";

/// The counters of the run so far (the file's metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Layout version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Epochs finished.
    pub epochs: usize,
    /// Wall-clock seconds of the run so far, over all its processes.
    pub seconds: f64,
    /// The best validation epoch so far. When it is the saved epoch itself, `best.safetensors`
    /// may not have been written yet (it is written after the state): the resumed run writes it
    /// from the saved weights.
    pub best_epoch: Option<usize>,
    /// The meter's running totals (`None` with `--meter off`).
    pub meter: Option<LedgerTotals>,
    /// Adam's update count per parameter.
    pub optimizer_steps: BTreeMap<String, i32>,
}

/// What the loop saves after an epoch.
pub struct Snapshot<'a> {
    /// Epochs finished.
    pub epochs: usize,
    /// Seconds of the run so far.
    pub seconds: f64,
    /// The best validation epoch so far.
    pub best_epoch: Option<usize>,
    /// The meter's totals.
    pub meter: Option<LedgerTotals>,
    /// The model being tuned.
    pub model: &'a VarStore,
    /// Its optimiser.
    pub optimizer: &'a Optimizer,
    /// MolPeg's reference model.
    pub reference: Option<&'a VarStore>,
    /// The pruner (its scores).
    pub pruner: Option<&'a Pruner>,
}

/// A state read back from the file, to restore with [`Saved::restore`].
#[derive(Debug)]
pub struct Saved {
    /// Its counters.
    pub progress: Progress,
    path: PathBuf,
    model: Vec<(String, Tensor)>,
    moments: BTreeMap<String, Moments>,
    reference: Vec<(String, Tensor)>,
    scores: Option<Vec<f64>>,
}

/// Whether this optimiser's state can be saved (ours can, on any device; libtorch's cannot).
pub fn supported(optimizer: &Optimizer) -> bool {
    !matches!(optimizer, Optimizer::Libtorch(_))
}

/// Writes the state of `snap` to `target` (replacing the previous one whole); writes nothing when
/// the optimiser's state cannot be read ([`supported`]: the caller checks it once and says so).
pub fn save(target: &Path, snap: &Snapshot<'_>) -> Result<(), TrainError> {
    let Some(moments) = snap.optimizer.moments(snap.model)? else {
        return Ok(());
    };
    let mut blobs: Vec<(String, Blob)> = Vec::new();
    for (prefix, vs) in [(MODEL, Some(snap.model)), (REFERENCE, snap.reference)] {
        let Some(vs) = vs else { continue };
        for (name, t) in vs.variables() {
            blobs.push((format!("{prefix}{name}"), Blob::of_tensor(&t)?));
        }
    }
    let mut optimizer_steps = BTreeMap::new();
    for (name, m) in moments {
        let (first, second) = (
            Tensor::from_slice(&m.exp_avg),
            Tensor::from_slice(&m.exp_avg_sq),
        );
        blobs.push((format!("{EXP_AVG}{name}"), Blob::of_tensor(&first)?));
        blobs.push((format!("{EXP_AVG_SQ}{name}"), Blob::of_tensor(&second)?));
        optimizer_steps.insert(name, m.steps);
    }
    if let Some(p) = snap.pruner {
        let scores = Tensor::from_slice(&p.scores());
        blobs.push((SCORES.to_owned(), Blob::of_tensor(&scores)?));
    }
    let progress = Progress {
        version: FORMAT_VERSION,
        epochs: snap.epochs,
        seconds: snap.seconds,
        best_epoch: snap.best_epoch,
        meter: snap.meter,
        optimizer_steps,
    };
    let meta = serde_json::to_string(&progress)
        .map_err(|e| TrainError::io(target, std::io::Error::other(e)))?;
    let metadata = Some(std::collections::HashMap::from([(
        META_KEY.to_owned(),
        meta,
    )]));
    replace_atomically(target, |tmp| {
        safetensors::tensor::serialize_to_file(blobs, &metadata, tmp)
            .map_err(|e| TrainError::io(tmp, std::io::Error::other(e)))
    })
}

/// Removes the state file `path` of a finished run (nothing when there is none).
pub fn remove(path: &Path) -> Result<(), TrainError> {
    crate::files::remove_if_present(path).map_err(|e| TrainError::io(path, e))
}

/// Reads the state of the fine-tuning run in `dir`: a clear error when the run has finished,
/// when it never saved a state, or when the file is not one this version wrote.
pub fn load_run(dir: &Path) -> Result<Saved, TrainError> {
    let refuse = |why: String| TrainError::Options(format!("--resume {}: {why}", dir.display()));
    if dir.join("summary.json").is_file() {
        return Err(refuse(
            "this run has finished (summary.json); nothing to resume".into(),
        ));
    }
    read(&dir.join(STATE_FILE))?.ok_or_else(|| {
        refuse(format!(
            "no {STATE_FILE}: the run stopped before its first epoch ended, or it ran on a \
             device whose optimiser state cannot be saved; start it again without --resume"
        ))
    })
}

/// The epochs finished by the run in `dir` as its state records them (only the file's header is
/// read); `None` when it has no readable state. For messages, such as an interrupt handler's.
pub fn saved_epochs(dir: &Path) -> Option<usize> {
    use std::io::Read;
    let mut file = std::fs::File::open(dir.join(STATE_FILE)).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .filter(|&n| n <= MAX_HEADER_LEN)?;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    let meta = header.get("__metadata__")?.get(META_KEY)?.as_str()?;
    serde_json::from_str::<Progress>(meta)
        .ok()
        .map(|p| p.epochs)
}

/// Reads the state file `path`: `None` when there is none, an error naming the file when it is
/// not one this version wrote.
pub fn read(path: &Path) -> Result<Option<Saved>, TrainError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    let corrupt = |why: String| TrainError::io(path, std::io::Error::other(why));
    let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| corrupt(e.to_string()))?;
    let progress: Progress = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| corrupt(format!("no {META_KEY} metadata")))
        .and_then(|json| serde_json::from_str(json).map_err(|e| corrupt(e.to_string())))?;
    if progress.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "state version {}, this anges-train reads {FORMAT_VERSION}",
            progress.version
        )));
    }
    let file = SafeTensors::deserialize(&data).map_err(|e| corrupt(e.to_string()))?;
    let mut saved = Saved {
        progress,
        path: path.to_owned(),
        model: Vec::new(),
        moments: BTreeMap::new(),
        reference: Vec::new(),
        scores: None,
    };
    let mut first = BTreeMap::new();
    let mut second = BTreeMap::new();
    for (name, view) in file.tensors() {
        let tensor = Tensor::try_from(view)?;
        if let Some(var) = name.strip_prefix(MODEL) {
            saved.model.push((var.to_owned(), tensor));
        } else if let Some(var) = name.strip_prefix(REFERENCE) {
            saved.reference.push((var.to_owned(), tensor));
        } else if let Some(var) = name.strip_prefix(EXP_AVG) {
            first.insert(var.to_owned(), Vec::<f32>::try_from(&tensor)?);
        } else if let Some(var) = name.strip_prefix(EXP_AVG_SQ) {
            second.insert(var.to_owned(), Vec::<f32>::try_from(&tensor)?);
        } else if name == SCORES {
            saved.scores = Some(Vec::<f64>::try_from(&tensor)?);
        } else {
            return Err(corrupt(format!("unexpected tensor {name}")));
        }
    }
    for (name, &steps) in &saved.progress.optimizer_steps {
        let (Some(exp_avg), Some(exp_avg_sq)) = (first.remove(name), second.remove(name)) else {
            return Err(corrupt(format!("no Adam moments for {name}")));
        };
        saved.moments.insert(
            name.clone(),
            Moments {
                exp_avg,
                exp_avg_sq,
                steps,
            },
        );
    }
    if let Some(name) = first.keys().chain(second.keys()).next() {
        return Err(corrupt(format!(
            "Adam moments of {name} without a step count"
        )));
    }
    Ok(Some(saved))
}

impl Saved {
    /// Puts the saved weights, moments, reference model and scores back into a freshly built
    /// run; every key must fit exactly.
    pub fn restore(
        self,
        model: &VarStore,
        optimizer: &mut Optimizer,
        reference: Option<&VarStore>,
        pruner: Option<&mut Pruner>,
    ) -> Result<(), TrainError> {
        let path = self.path;
        let apply = |vs: &VarStore, state: Vec<(String, Tensor)>| {
            checkpoint::load_into(vs, state, &LoadOptions::default()).map_err(|source| {
                TrainError::Checkpoint {
                    path: path.clone(),
                    source,
                    hint: " (the saved state does not fit the model these flags build)".into(),
                }
            })
        };
        apply(model, self.model)?;
        optimizer
            .restore_moments(model, self.moments)
            .map_err(|e| TrainError::Options(format!("{}: {e}", path.display())))?;
        match (reference, self.reference.is_empty()) {
            (Some(vs), false) => {
                apply(vs, self.reference)?;
            }
            (None, true) => {}
            (Some(_), true) => {
                return Err(TrainError::Options(format!(
                    "{}: no MolPeg reference model saved",
                    path.display()
                )));
            }
            (None, false) => {
                return Err(TrainError::Options(format!(
                    "{}: a MolPeg reference model saved for a run without MolPeg",
                    path.display()
                )));
            }
        }
        match (pruner, self.scores) {
            (Some(p), Some(scores)) => p.restore_scores(&scores),
            (None, None) => Ok(()),
            _ => Err(TrainError::Options(format!(
                "{}: the saved pruning state does not fit --prune",
                path.display()
            ))),
        }
    }
}

/// Checks that `args` are the flags of the interrupted pre-training, as logged under `"args"` in
/// its log `logged`, but those in [`MAY_CHANGE`]; lists every difference. Returns the log's JSON,
/// which the caller checks further (its corpus, its epochs) without reading it again.
pub fn check_flags(logged: &Path, args: &impl Serialize) -> Result<Value, TrainError> {
    let file = read_json(logged)?;
    let then = file
        .get("args")
        .ok_or_else(|| TrainError::io(logged, std::io::Error::other("no \"args\"")))?;
    compare(logged, then, &to_json(logged, args)?)?;
    Ok(file)
}

/// Checks that `config` is the configuration of the interrupted fine-tuning whose `config.json`
/// is `path` (that of a run written before [`FinetuneConfig`] is migrated: [`legacy`]), but the
/// fields of [`MAY_CHANGE`]; lists every difference. Returns the file's JSON, whose data digest
/// [`check_data`] checks next.
pub fn check_config(path: &Path, config: &FinetuneConfig) -> Result<Value, TrainError> {
    let (file, recorded) = read_recorded(path)?;
    compare(path, &to_json(path, &recorded)?, &to_json(path, config)?)?;
    Ok(file)
}

/// The configuration the fine-tuning run in `dir` recorded in its `config.json` (that of a run
/// written before [`FinetuneConfig`] migrated: [`legacy`]): what `anges-train --resume DIR`
/// continues with when no other flag is given.
pub fn recorded_config(dir: &Path) -> Result<FinetuneConfig, TrainError> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(TrainError::Options(format!(
            "--resume {}: no config.json there: not the folder of an anges-train run",
            dir.display()
        )));
    }
    Ok(read_recorded(&path)?.1)
}

/// The JSON of the `config.json` at `path` and the configuration it records.
fn read_recorded(path: &Path) -> Result<(Value, FinetuneConfig), TrainError> {
    let file = read_json(path)?;
    let recorded = legacy::recorded_config(&file)
        .map_err(|e| TrainError::Options(format!("--resume: {}: {}", path.display(), e.0)))?;
    Ok((file, recorded))
}

/// `value` as JSON, for the comparison with what the file `path` recorded.
fn to_json(path: &Path, value: &impl Serialize) -> Result<Value, TrainError> {
    serde_json::to_value(value).map_err(|e| TrainError::io(path, std::io::Error::other(e)))
}

fn read_json(path: &Path) -> Result<Value, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::io(path, std::io::Error::other(e)))
}

/// Refuses, listing every difference, a configuration `now` other than the recorded `then` (of
/// the file `logged`) but in the fields of [`MAY_CHANGE`]; warns when `--threads` differs.
fn compare(logged: &Path, then: &Value, now: &Value) -> Result<(), TrainError> {
    let mut differences = Vec::new();
    differ("", then, now, &mut differences);
    if !differences.is_empty() {
        return Err(TrainError::Options(format!(
            "--resume: the flags differ from the run's ({}): {}; give the run's own flags",
            logged.display(),
            differences.join("; ")
        )));
    }
    let earlier = find_key(then, "threads");
    if earlier != find_key(now, "threads") {
        let earlier = earlier.map_or_else(|| "unknown".to_owned(), Value::to_string);
        tracing::warn!(
            "--resume with another --threads than the run's ({earlier} then): the figures will \
             not be bit-identical to an uninterrupted run"
        );
    }
    Ok(())
}

/// Refuses `--resume` over data other than the run's: `digest` (of the rows used now, from
/// `source`) must equal the `data_digest` that fine-tuning's `config.json` (`config`, as
/// [`check_flags`] returned it) recorded. A run started before the digest was recorded resumes
/// with a warning.
pub fn check_data(config: &Value, digest: &str, source: &Path) -> Result<(), TrainError> {
    match config
        .pointer("/resolved/data_digest")
        .and_then(Value::as_str)
    {
        Some(then) if then == digest => Ok(()),
        Some(then) => Err(TrainError::Options(format!(
            "--resume: {} does not hold the data the run started on (its rows, SMILES or labels \
             changed: digest {then:.12} then, {digest:.12} now); resume over the run's data, or \
             start a new run",
            source.display()
        ))),
        None => {
            tracing::warn!(
                "--resume: the run's config.json records no data digest (an older run); the data \
                 cannot be checked"
            );
            Ok(())
        }
    }
}

/// Refuses `--resume` when the data's task type now (`task_type`, e.g. guessed by other rules
/// than the run's) is not the one the run resolved (`config`, as [`check_config`] returned it):
/// the run would go on with another loss and metric. A run that recorded none resumes.
pub fn check_task_type(config: &Value, task_type: TaskType) -> Result<(), TrainError> {
    match config
        .pointer("/resolved/task_type")
        .and_then(Value::as_str)
    {
        Some(then) if then != task_type.name() => Err(TrainError::Options(format!(
            "--resume: the run trained for {then}, its data now gives {} (guessed by other \
             rules than the run's); finish it with the anges-train that started it, or start a \
             new run",
            task_type.name()
        ))),
        _ => Ok(()),
    }
}

/// The first value under `key` in `value`, at any depth (the flag structs nest differently).
fn find_key<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        _ => None,
    }
}

/// Appends to `out` the paths where `then` and `now` differ (`train.epochs: 100 then, 50 now`),
/// skipping the keys of [`MAY_CHANGE`].
fn differ(at: &str, then: &Value, now: &Value, out: &mut Vec<String>) {
    match (then, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                if MAY_CHANGE.contains(&key.as_str()) {
                    continue;
                }
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                let null = Value::Null;
                differ(
                    &path,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} then, {b} now")),
        _ => {}
    }
}

/// One tensor's bytes, owned, as the safetensors writer takes them (copied out of libtorch with
/// one `memcpy` per tensor).
struct Blob {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Blob {
    fn of_tensor(t: &Tensor) -> Result<Self, TrainError> {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let kind = t.kind();
        let dtype = Dtype::try_from(kind)?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        Ok(Self { dtype, shape, data })
    }
}

impl View for Blob {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_listed_by_path_and_movable_flags_ignored() {
        let then = serde_json::json!({
            "data": {"dataset": "bbbp", "data_dir": "/a", "seed": 0},
            "model": {"model": "gin", "threads": 2},
            "train": {"epochs": 100, "lr": 0.001},
            "meter": {"meter": "auto", "socket": null},
            "out": "runs/x"
        });
        let mut now = then.clone();
        now["data"]["data_dir"] = "/b".into();
        now["model"]["threads"] = 1.into();
        now["meter"]["meter"] = "off".into();
        now["out"] = "elsewhere".into();
        let mut out = Vec::new();
        differ("", &then, &now, &mut out);
        assert!(out.is_empty(), "{out:?}");
        now["train"]["epochs"] = 50.into();
        now["data"]["seed"] = 1.into();
        now["model"]["extra"] = true.into();
        differ("", &then, &now, &mut out);
        assert_eq!(
            out,
            vec![
                "data.seed: 0 then, 1 now",
                "model.extra: null then, true now",
                "train.epochs: 100 then, 50 now"
            ]
        );
    }

    #[test]
    fn threads_are_found_at_any_depth_and_overwrite_may_change() {
        let finetune = serde_json::json!({"model": {"compute": {"threads": 2}}, "out": "x"});
        let pretrain = serde_json::json!({"compute": {"threads": 1}, "overwrite": true});
        assert_eq!(find_key(&finetune, "threads"), Some(&Value::from(2)));
        assert_eq!(find_key(&pretrain, "threads"), Some(&Value::from(1)));
        assert_eq!(find_key(&pretrain, "seed"), None);
        let mut out = Vec::new();
        let mut now = pretrain.clone();
        now["overwrite"] = false.into();
        differ("", &pretrain, &now, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn data_digests_must_match_and_runs_without_one_resume() {
        let source = Path::new("BBBP.csv");
        let config = serde_json::json!({"args": {}, "resolved": {"data_digest": "abc123"}});
        assert!(check_data(&config, "abc123", source).is_ok());
        let err = check_data(&config, "def456", source)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BBBP.csv does not hold the data the run started on")
                && err.contains("abc123 then, def456 now"),
            "{err}"
        );
        let older = serde_json::json!({"args": {}, "resolved": {}});
        assert!(check_data(&older, "def456", source).is_ok());
        // The file behind it is read (and refused when broken) by check_flags.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, "{").unwrap();
        assert!(check_flags(&file, &serde_json::json!({})).is_err());
    }
}
