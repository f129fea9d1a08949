//! `anges-train` as a library.
//!
//! The trainer's pipeline is `chem → data → models → training loop → green policies → reports`
//! (see `docs/architecture.md`). Runs are described by the validated types of [`config`]
//! (`FinetuneConfig`, `PretrainConfig`, `StopSpec`, …), which the `anges-train` binary's command
//! line (`src/cli.rs`, the only code that knows the flags) builds in one place; the library does
//! not depend on the flags.
//!
//! The modules: the libtorch runtime probe ([`runtime`]), chemistry ([`chem`]), datasets
//! ([`data`]), featurisation ([`featurize`]), splits ([`split`]), the models and their
//! checkpoints ([`models`], [`checkpoint`]), the one epoch loop and fine-tuning with MolPeg
//! pruning ([`train`]), self-supervised pre-training ([`pretrain`], a task of the same loop), the
//! per-epoch meter readings ([`emissions`]), the stopping policies as pure state machines
//! ([`policy`]) and their offline replay on logged runs ([`replay`]), and the trade-off study
//! ([`study`]) with its report ([`report`]), the comparison of stopping rules on logged runs
//! ([`evaluate`]) and a campaign's trade-off analysis across model families ([`tradeoff`]),
//! prediction with finished runs ([`predict`]), and SMILES ↔ SELFIES conversion of CSV files
//! ([`convert`]).
//!
//! The libtorch-free parts — the meter session ([`emissions`]), the stopping policies
//! ([`policy`]), the epoch records and the replay's core — live in the `anges-tracking` crate,
//! which the Python package shares; they are re-exported here under their old paths.

pub mod checkpoint;
pub mod chem;
pub mod config;
pub mod convert;
pub mod data;
pub use anges_tracking::emissions;
pub mod evaluate;
pub mod featurize;
pub(crate) mod files;
pub mod models;
pub use anges_tracking::policy;
pub mod predict;
pub mod pretrain;
pub mod progress;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod split;
pub mod study;
pub mod tradeoff;
pub mod train;

/// Helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Mutex, MutexGuard};

    static TORCH_RNG: Mutex<()> = Mutex::new(());

    /// Holds libtorch's process-global random generator for the calling test: unit tests run
    /// on parallel threads, and a test that checks seeded determinism fails if another test
    /// draws (weight initialisation, dropout) between its seeding and its draws.
    pub(crate) fn torch_rng() -> MutexGuard<'static, ()> {
        TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a run of the Python package into `dir` (through the tracking crate's `Session`,
    /// what `anges.Session` drives) under the in-process estimated meter and `--stop full`:
    /// one epoch per `(valid, test)` ROC-AUC pair.
    pub(crate) fn python_run(
        dir: &std::path::Path,
        labels: anges_tracking::session::RunLabels,
        epochs: &[(f64, f64)],
    ) {
        use anges_tracking::config::{MeterConfig, MeterMode};
        use anges_tracking::emissions::MeterOptions;
        use anges_tracking::session::{Session, SessionConfig};
        let mut s = Session::start(SessionConfig {
            dir: dir.to_owned(),
            metric: crate::data::Metric::RocAuc,
            stop: crate::policy::StopSpec::Full,
            meter: MeterConfig {
                mode: MeterMode::Local,
                ..MeterConfig::default()
            },
            meter_options: MeterOptions::estimated(),
            job_name: "python-run".into(),
            overwrite: false,
            labels,
        })
        .unwrap();
        for &(valid, test) in epochs {
            s.epoch(Some(valid), Some(0.4), Some(test)).unwrap();
        }
        s.finish().unwrap();
    }

    /// An epoch of a ROC-AUC run: validation and test metric, cumulative CO2 (grams) and
    /// energy (1 kJ per gram).
    pub(crate) fn epoch_record(
        epoch: usize,
        valid: f64,
        test: f64,
        co2: f64,
    ) -> crate::train::EpochRecord {
        use crate::train::EvalMetrics;
        crate::train::EpochRecord {
            epoch,
            valid: EvalMetrics {
                roc_auc: Some(valid),
                ..Default::default()
            },
            test: EvalMetrics {
                roc_auc: Some(test),
                ..Default::default()
            },
            cumulative_co2_g: Some(co2),
            cumulative_j: Some(co2 * 1000.0),
            ..Default::default()
        }
    }

    /// A logged ROC-AUC run without a summary, from its `(valid, test, cumulative CO2)` per epoch.
    pub(crate) fn logged_run(traj: &[(f64, f64, f64)]) -> crate::replay::LoggedRun {
        crate::replay::LoggedRun {
            dir: std::path::PathBuf::from("."),
            metric: crate::data::Metric::RocAuc,
            summary: None,
            epochs: traj
                .iter()
                .enumerate()
                .map(|(i, &(v, t, e))| epoch_record(i + 1, v, t, e))
                .collect(),
        }
    }

    /// The `summary.json` of a finished 100-epoch full GIN run on `dataset` (ROC-AUC), from
    /// `pretrained` or random weights, with the given test ROC-AUCs at the best-validation and
    /// the last epoch.
    pub(crate) fn summary_json(
        dataset: &str,
        pretrained: Option<&str>,
        best: f64,
        last: f64,
    ) -> String {
        let pretrained = pretrained.map_or("null".to_owned(), |p| format!("{p:?}"));
        let m = |v: f64| {
            format!(
                r#"{{"loss":0.5,"roc_auc":{v},"prc_auc":null,"rmse":null,"mae":null,"tasks_evaluated":1}}"#
            )
        };
        format!(
            r#"{{"run_dir":"x","dataset":"{dataset}","model":"gin","task_type":"classification",
            "metric":"roc-auc","stop":"full","stop_reason":"max-epochs","epochs_run":100,
            "best_epoch":40,"best_valid":{b},"best_test":{b},"final_train_loss":0.1,
            "final_valid":{l},"final_test":{l},
            "rows":{{"file_rows":10,"used":10,"dropped":{{}},"train":8,"valid":1,"test":1}},
            "pretrained":{pretrained},"seconds":300.0,"energy_j":2000.0,"co2_g":0.5}}"#,
            b = m(best),
            l = m(last),
        )
    }
}

/// The module layering `docs/architecture.md` describes, checked on the sources: the flags stay
/// in `cli` (read by `main.rs` only), and the top-level modules' uses of one another (outside
/// comments and doc text) form no cycle.
#[cfg(test)]
mod layering_tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Top-level module of each source file, and the `crate::<module>` paths its code uses.
    fn uses() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
            let deps = graph.entry(module.clone()).or_default();
            for line in code {
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if name != module && name != "test_support" && !name.is_empty() {
                        deps.insert(name);
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn only_the_binary_reads_the_flags() {
        let graph = uses();
        let readers: Vec<&String> = graph
            .iter()
            .filter(|(_, deps)| deps.contains("cli"))
            .map(|(m, _)| m)
            .collect();
        assert!(
            readers.is_empty(),
            "library modules that read cli: {readers:?}"
        );
    }

    #[test]
    fn modules_use_each_other_without_cycles() {
        let graph = uses();
        // Depth-first search for a back edge.
        fn visit<'g>(
            m: &'g str,
            graph: &'g BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'g str>,
            done: &mut BTreeSet<&'g str>,
        ) {
            if done.contains(m) {
                return;
            }
            if let Some(at) = path.iter().position(|p| *p == m) {
                panic!("module cycle: {} -> {m}", path[at..].join(" -> "));
            }
            path.push(m);
            for dep in graph.get(m).into_iter().flatten() {
                visit(dep, graph, path, done);
            }
            path.pop();
            done.insert(m);
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            visit(m, &graph, &mut Vec::new(), &mut done);
        }
        assert!(graph["config"].contains("policy") && graph["train"].contains("config"));
    }
}
