//! `anges-train pretrain` end to end, through the real binary, on the MOSES corpus of
//! `../shared` (CPU, 2 threads, no meter):
//! - GIN attribute masking on 300 molecules: the loss falls, the masked-atom accuracy ends above
//!   the majority class (carbon); the checkpoint, written by default into the model cache, is
//!   found there by fine-tuning (no flag) and loads with `--pretrained` where only the task head
//!   is missing; a GCN checkpoint has exactly the keys, shapes and dtypes of pretrain-gnns'
//!   `gcn_contextpred.pth`, and GraphSAGE and GAT checkpoints those of theirs;
//! - masked-language modelling of a tiny 1D encoder on 200 molecules: the loss falls, the
//!   folder fine-tunes with `--model transformer --pretrained DIR`, and Hugging Face
//!   `transformers` loads it as a complete `BertForMaskedLM` giving the same logits;
//! - `--resume`: a GIN and a 1D run killed with SIGKILL mid-run and resumed give the same
//!   per-epoch figures and a byte-identical checkpoint as uninterrupted runs; misuse is refused;
//! - broken corpora: counted skips, clear errors, never a panic.

use crate::common;
use crate::common::binary::{self, read_json, stderr};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anges_trainer::checkpoint::{self, LoadOptions};
use anges_trainer::featurize::SmilesTokenizer;
use anges_trainer::models::{MaskedLmHead, SmilesEncoder, TransformerConfig};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The MOSES training SMILES (1.58 M rows, header `SMILES`).
fn moses() -> PathBuf {
    let path = common::repo_root().join("../shared/datasets/corpora/moses_train.csv.gz");
    assert!(
        path.is_file(),
        "the MOSES corpus is missing: {}",
        path.display()
    );
    path
}

/// `anges-train` with `args` on the CPU, without a meter, its caches in `cache`.
fn command(args: &[&str], cache: &Path) -> Command {
    let mut command = binary::anges_train(args, cache);
    command.args(["--meter", "off"]);
    command
}

/// Runs `anges-train` with `args` (see [`command`]).
fn anges_train(args: &[&str], cache: &Path) -> Output {
    command(args, cache).output().expect("run anges-train")
}

/// Runs `anges-train` and asserts it succeeded.
fn succeed(args: &[&str], cache: &Path) -> Output {
    binary::succeed(command(args, cache), args)
}

/// Runs `anges-train`, asserts it failed cleanly (an error, no panic); returns its stderr.
fn fail(args: &[&str], cache: &Path) -> String {
    binary::fail(command(args, cache), args)
}

/// `(loss, accuracy, majority_baseline)` of every epoch of a pre-training log.
fn curve(log: &Value) -> Vec<(f64, f64, f64)> {
    log["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("{k} in {e}"));
            (f("loss"), f("accuracy"), f("majority_baseline"))
        })
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// Key → (shape, dtype) of a checkpoint file.
fn signature(path: &Path) -> Vec<(String, Vec<i64>, Kind)> {
    let mut keys: Vec<_> = checkpoint::read_state_dict(path)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.size(), t.kind()))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

/// GIN attribute masking on the first 300 molecules of `corpus`, `epochs` epochs of batch 16.
fn gin_masking<'a>(corpus: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "pretrain",
        "--corpus",
        path_str(corpus),
        "--limit",
        "300",
        "--model",
        "gin",
        "--epochs",
        epochs,
        "--batch-size",
        "16",
    ]
}

#[test]
fn gin_attribute_masking_learns_and_fine_tuning_picks_it_up() {
    let cache = tempfile::tempdir().unwrap();
    let corpus = moses();
    // No --out: the checkpoint goes to <cache>/models/gin_attrmask.safetensors.
    let out = succeed(&gin_masking(&corpus, "5"), cache.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("attribute-masking"), "{stdout}");
    let models = cache.path().join("models");
    let weights = models.join("gin_attrmask.safetensors");
    let log = read_json(&models.join("gin_attrmask.pretrain.json"));
    assert_eq!(log["objective"], "attribute-masking");
    assert_eq!(log["rows_read"], 300);
    let epochs = curve(&log);
    assert_eq!(epochs.len(), 5);
    let (first, last) = (epochs[0], epochs[4]);
    assert!(last.0 < first.0, "masking loss {} → {}", first.0, last.0);
    assert!(
        last.1 > last.2 + 0.01,
        "masked-atom accuracy {} does not beat the majority class ({})",
        last.1,
        last.2
    );
    // A mask that leaked the atom type would be predicted almost perfectly at once.
    assert!(last.1 < 0.95, "accuracy {} is implausibly high", last.1);

    // The encoder keys only: those of the GIN minus its task head.
    let keys: Vec<String> = signature(&weights).into_iter().map(|k| k.0).collect();
    assert_eq!(keys.len(), 2 + 5 * 6 + 5 * 5, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.starts_with("graph_pred_linear") && !k.starts_with("linear_pred_atoms"))
    );

    // Fine-tuning finds it in the cache by itself; its task head starts fresh.
    let run = cache.path().join("run-cached");
    let finetune = |extra: &[&str], run: &Path| {
        let mut args = vec![
            "--dataset",
            "bbbp",
            "--model",
            "gin",
            "--epochs",
            "1",
            "--max-rows",
            "200",
            "--out",
            path_str(run),
        ];
        args.extend(extra);
        anges_train(&args, cache.path())
    };
    let out = finetune(&[], &run);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["pretrained"], path_str(&weights));

    // Given explicitly, it loads with --allow-partial, and without it the only complaint is the
    // task head: no encoder key is missing, unknown or mis-shaped.
    let run = cache.path().join("run-explicit");
    let out = finetune(
        &["--pretrained", path_str(&weights), "--allow-partial"],
        &run,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // (--overwrite: the folder holds the run just made, which is otherwise refused.)
    let out = finetune(&["--pretrained", path_str(&weights), "--overwrite"], &run);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("missing [graph_pred_linear.bias, graph_pred_linear.weight]")
            && !err.contains("unknown")
            && !err.contains("mis-shaped")
            && err.contains("--allow-partial"),
        "{err}"
    );
}

#[test]
fn gcn_checkpoint_has_exactly_the_pretrain_gnns_keys() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("gcn.safetensors");
    let corpus = moses();
    let args = [
        "pretrain",
        "--corpus",
        path_str(&corpus),
        "--limit",
        "40",
        "--model",
        "gcn",
        "--epochs",
        "1",
        "--out",
        path_str(&weights),
    ];
    succeed(&args, dir.path());
    let published = common::repo_root().join("../shared/models/pretrain-gnns/gcn_contextpred.pth");
    assert_eq!(signature(&weights), signature(&published));
    // An existing output is not replaced silently.
    let err = fail(&args, dir.path());
    assert!(
        err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
}

/// `--model graphsage|gat` pre-train too (one epoch on 40 molecules) and write, under their
/// default names in the model cache, exactly the keys, shapes and dtypes of the published
/// `graphsage_contextpred.pth` and `gat_contextpred.pth`.
#[test]
fn graphsage_and_gat_checkpoints_have_exactly_the_pretrain_gnns_keys() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = moses();
    for model in ["graphsage", "gat"] {
        let args = [
            "pretrain",
            "--corpus",
            path_str(&corpus),
            "--limit",
            "40",
            "--model",
            model,
            "--epochs",
            "1",
        ];
        succeed(&args, dir.path());
        let weights = dir
            .path()
            .join(format!("models/{model}_attrmask.safetensors"));
        let published = common::repo_root().join(format!(
            "../shared/models/pretrain-gnns/{model}_contextpred.pth"
        ));
        assert_eq!(signature(&weights), signature(&published), "{model}");
        let log = read_json(
            &dir.path()
                .join(format!("models/{model}_attrmask.pretrain.json")),
        );
        assert!(
            curve(&log).iter().all(|(loss, _, _)| loss.is_finite()),
            "{log}"
        );
    }
}

/// Masked-LM pre-training of a 2-layer, 32-wide, 2-head encoder (dropout 0.1) on the first 200
/// molecules of `corpus`: 6 epochs of batch 16, a few seconds.
fn tiny_mlm(corpus: &Path) -> Vec<&str> {
    vec![
        "pretrain",
        "--corpus",
        path_str(corpus),
        "--limit",
        "200",
        "--model",
        "transformer",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--heads",
        "2",
        "--epochs",
        "6",
        "--batch-size",
        "16",
    ]
}

#[test]
fn transformer_mlm_learns_and_fine_tunes_from_its_folder() {
    let cache = tempfile::tempdir().unwrap();
    let folder = cache.path().join("mlm");
    let corpus = moses();
    let mut flags = tiny_mlm(&corpus);
    flags.extend(["--out", path_str(&folder)]);
    succeed(&flags, cache.path());
    for file in [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "pretrain.json",
    ] {
        assert!(folder.join(file).is_file(), "{file} missing");
    }
    let log = read_json(&folder.join("pretrain.json"));
    assert_eq!(log["objective"], "masked-language-modelling");
    let epochs = curve(&log);
    assert_eq!(epochs.len(), 6);
    assert!(epochs[5].0 < epochs[0].0, "MLM loss {:?}", epochs);

    let run = cache.path().join("run");
    succeed(
        &[
            "--dataset",
            "bbbp",
            "--model",
            "transformer",
            "--pretrained",
            path_str(&folder),
            "--epochs",
            "1",
            "--max-rows",
            "200",
            "--out",
            path_str(&run),
        ],
        cache.path(),
    );
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["pretrained"], path_str(&folder));
    assert_eq!(summary["epochs_run"], 1);

    hugging_face_gives_the_same_logits(&folder);
}

/// Hugging Face loads the folder as a complete `BertForMaskedLM` (no missing or unexpected
/// weight) and its eval-mode logits equal those of the Rust encoder and head to 1e-4.
fn hugging_face_gives_the_same_logits(folder: &Path) {
    let _rng = common::torch_rng();
    let cfg = TransformerConfig::from_json_file(&folder.join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let encoder = SmilesEncoder::new(&(vs.root() / cfg.model_type.prefix()), cfg.clone()).unwrap();
    let head = MaskedLmHead::new(&vs.root(), &cfg);
    // Every weight of the file, and nothing else, fits the encoder and head.
    checkpoint::load_file_into(
        &vs,
        &folder.join("model.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    let tokenizer = SmilesTokenizer::from_path(folder).unwrap();
    let rows: Vec<Vec<i64>> = ["CCO", "c1ccccc1C(=O)N", "CC[Se]C"]
        .iter()
        .map(|s| tokenizer.encode(s, 64).unwrap())
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for r in &rows {
        ids.extend(
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(0, width - r.len())),
        );
        mask.extend((0..width).map(|i| i64::from(i < r.len())));
    }
    let shape = [rows.len() as i64, width as i64];
    let ids = Tensor::from_slice(&ids).view(shape);
    let mask = Tensor::from_slice(&mask).view(shape);
    let hidden = encoder.forward(&ids, &mask, false).unwrap();
    let logits = head
        .forward(
            &hidden.view([-1, cfg.hidden_size]),
            encoder.word_embeddings(),
        )
        .unwrap()
        .view([shape[0], shape[1], cfg.vocab_size]);

    let dir = tempfile::tempdir().unwrap();
    let (inputs, reference) = (
        dir.path().join("inputs.safetensors"),
        dir.path().join("hf.safetensors"),
    );
    Tensor::write_safetensors(&[("input_ids", &ids), ("attention_mask", &mask)], &inputs).unwrap();
    common::run_venv_script(
        "mlm_reference.py",
        [folder, inputs.as_path(), reference.as_path()],
    );
    let hf = Tensor::read_safetensors(&reference).unwrap().remove(0).1;
    let on_tokens = mask.to_kind(Kind::Float).unsqueeze(-1);
    let err = f64::try_from(((logits - hf).abs() * on_tokens).max()).unwrap();
    assert!(
        err < 1e-4,
        "masked-LM logits differ from transformers' by {err}"
    );
}

#[test]
fn broken_corpora_give_counted_skips_or_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let out = |name: &str| dir.path().join(name).display().to_string();

    // Invalid SMILES: skipped, logged and counted; the run goes on.
    let mixed = dir.path().join("mixed.csv");
    std::fs::write(
        &mixed,
        "smiles\nCCO\nnot a smiles\nC1CC\nc1ccccc1O\n*C\nCC(=O)N\nCl\n",
    )
    .unwrap();
    let target = out("mixed.safetensors");
    let run = succeed(
        &[
            "pretrain",
            "--corpus",
            path_str(&mixed),
            "--epochs",
            "1",
            "--out",
            &target,
        ],
        cache,
    );
    let log = read_json(&dir.path().join("mixed.pretrain.json"));
    assert_eq!(log["rows_read"], 7);
    assert_eq!(log["molecules"], 4);
    assert_eq!(log["skipped"]["invalid-smiles"], 2);
    assert_eq!(log["skipped"]["unsupported-feature"], 1);
    assert!(
        stderr(&run).contains("corpus row skipped"),
        "{}",
        stderr(&run)
    );

    // A gzip cut in the middle: a clear error naming the file; --limit stops before the cut.
    let mut text = String::from("SMILES\n");
    for i in 0..20_000 {
        text.push_str(&format!("{}O\n", "C".repeat(1 + i % 7)));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let cut = dir.path().join("cut.csv.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let target = out("cut.safetensors");
    let err = fail(
        &[
            "pretrain",
            "--corpus",
            path_str(&cut),
            "--epochs",
            "1",
            "--out",
            &target,
        ],
        cache,
    );
    assert!(
        err.contains("cut.csv.gz:") && err.contains("truncated"),
        "{err}"
    );
    succeed(
        &[
            "pretrain",
            "--corpus",
            path_str(&cut),
            "--limit",
            "100",
            "--epochs",
            "1",
            "--out",
            &target,
        ],
        cache,
    );

    // No such corpus; a corpus without one usable molecule; a wrong column.
    let missing = dir.path().join("nowhere.csv.gz");
    let err = fail(&["pretrain", "--corpus", path_str(&missing)], cache);
    assert!(
        err.contains("nowhere.csv.gz") && err.contains("no such file"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, "smiles\nxyz\nC1CC\n").unwrap();
    let target = out("garbage.safetensors");
    let err = fail(
        &["pretrain", "--corpus", path_str(&garbage), "--out", &target],
        cache,
    );
    assert!(err.contains("no usable molecule"), "{err}");
    let err = fail(
        &[
            "pretrain",
            "--corpus",
            path_str(&mixed),
            "--smiles-column",
            "mol",
            "--out",
            &target,
        ],
        cache,
    );
    assert!(err.contains("\"mol\"") && err.contains("smiles"), "{err}");
}

/// Where a pre-training run writes: its checkpoint, log and resume state.
struct Written {
    checkpoint: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

impl Written {
    /// A GIN/GCN file output `<dir>/<name>.safetensors`.
    fn file(dir: &Path, name: &str) -> Self {
        Self {
            checkpoint: dir.join(format!("{name}.safetensors")),
            log: dir.join(format!("{name}.pretrain.json")),
            state: dir.join(format!("{name}.resume.safetensors")),
        }
    }

    /// A 1D folder output.
    fn folder(dir: &Path) -> Self {
        Self {
            checkpoint: dir.join("model.safetensors"),
            log: dir.join("pretrain.json"),
            state: dir.join("resume.safetensors"),
        }
    }

    /// Epochs the log lists so far (0 while there is no log; it is replaced atomically).
    fn logged(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|log| log["epochs"].as_array().map(Vec::len))
            .unwrap_or(0)
    }
}

/// The per-epoch figures that must not depend on an interruption (not the seconds).
fn figures(log: &Value) -> Vec<Value> {
    log["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| {
            let keep = [
                "epoch",
                "loss",
                "accuracy",
                "majority_baseline",
                "predictions",
            ];
            keep.iter()
                .map(|k| (k.to_string(), e[*k].clone()))
                .collect()
        })
        .collect()
}

fn borrow(argv: &[String]) -> Vec<&str> {
    argv.iter().map(String::as_str).collect()
}

/// Runs the pre-training `flags` (without `--out`) uninterrupted into `straight`, then again into
/// `interrupted`, killed with SIGKILL once `kill_after` epochs are logged, refuses misuse, resumes
/// it with `--resume`, and asserts both runs logged the same figures, wrote byte-identical
/// checkpoints and left no state.
fn resumed_equals_uninterrupted(
    flags: &[&str],
    straight: (&str, &Written),
    interrupted: (&str, &Written),
    epochs: usize,
    kill_after: usize,
    cache: &Path,
) {
    let with_out = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut argv: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        argv.extend(["--out".into(), out.into()]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    };
    succeed(&borrow(&with_out(straight.0, &[])), cache);
    let (out, files) = interrupted;
    assert!(
        !straight.1.state.exists(),
        "a finished run leaves no resume state"
    );

    let logged = common::kill_once(
        command(&borrow(&with_out(out, &[])), cache),
        || files.logged(),
        kill_after,
    );
    assert!(
        (kill_after..epochs).contains(&logged),
        "interrupted after {logged} of {epochs} epochs"
    );
    assert!(
        files.state.is_file(),
        "no resume state after {logged} epochs"
    );

    // Misuse: other flags, a fresh start over the interrupted run, --resume with --overwrite.
    let err = fail(
        &borrow(&with_out(out, &["--resume", "--mask-rate", "0.3"])),
        cache,
    );
    assert!(err.contains("mask_rate: 0.15 then, 0.3 now"), "{err}");
    let err = fail(&borrow(&with_out(out, &[])), cache);
    assert!(err.contains("--overwrite"), "{err}");
    let clash = anges_train(&borrow(&with_out(out, &["--resume", "--overwrite"])), cache);
    assert_eq!(clash.status.code(), Some(2), "{}", stderr(&clash));
    assert!(
        stderr(&clash).contains("cannot be used with"),
        "{}",
        stderr(&clash)
    );

    let resumed = succeed(&borrow(&with_out(out, &["--resume"])), cache);
    assert!(
        stderr(&resumed).contains("resuming"),
        "{}",
        stderr(&resumed)
    );
    let (a, b) = (read_json(&straight.1.log), read_json(&files.log));
    assert_eq!(figures(&a).len(), epochs);
    assert_eq!(figures(&a), figures(&b), "per-epoch figures");
    assert!(
        std::fs::read(&straight.1.checkpoint).unwrap() == std::fs::read(&files.checkpoint).unwrap(),
        "the resumed checkpoint differs from the uninterrupted one"
    );
    assert!(!files.state.exists(), "the state is removed at the end");
    let err = fail(&borrow(&with_out(out, &["--resume"])), cache);
    assert!(err.contains("has finished"), "{err}");
}

#[test]
fn gin_pretraining_resumes_bit_identically() {
    let cache = tempfile::tempdir().unwrap();
    let corpus = moses();
    let flags = gin_masking(&corpus, "6");
    let (a, b) = (cache.path().join("a"), cache.path().join("b"));
    let (out_a, out_b) = (a.join("gin.safetensors"), b.join("gin.safetensors"));
    resumed_equals_uninterrupted(
        &flags,
        (path_str(&out_a), &Written::file(&a, "gin")),
        (path_str(&out_b), &Written::file(&b, "gin")),
        6,
        2,
        cache.path(),
    );
}

#[test]
fn transformer_pretraining_resumes_bit_identically() {
    let cache = tempfile::tempdir().unwrap();
    let corpus = moses();
    // Dropout 0.1 in the encoder: the per-epoch reseed is what makes this pass.
    let flags = tiny_mlm(&corpus);
    let (a, b) = (cache.path().join("a"), cache.path().join("b"));
    resumed_equals_uninterrupted(
        &flags,
        (path_str(&a), &Written::folder(&a)),
        (path_str(&b), &Written::folder(&b)),
        6,
        2,
        cache.path(),
    );
}

#[test]
fn resume_refuses_a_corpus_that_changed_since_the_run_started() {
    let cache = tempfile::tempdir().unwrap();
    let corpus = cache.path().join("corpus.csv");
    let rows = |n: usize, hetero: &str| {
        let mut text = String::from("SMILES\n");
        for i in 0..n {
            text.push_str(&format!("{}{hetero}\n", "C".repeat(1 + i % 7)));
        }
        text
    };
    std::fs::write(&corpus, rows(300, "O")).unwrap();
    let files = Written::file(cache.path(), "gin");
    let flags = [
        "pretrain",
        "--corpus",
        path_str(&corpus),
        "--model",
        "gin",
        "--epochs",
        "50",
        "--out",
        path_str(&files.checkpoint),
    ];
    // After 2 logged epochs the state of epoch 1 at least is there (it follows each log write).
    common::kill_once(command(&flags, cache.path()), || files.logged(), 2);
    assert!(files.state.is_file(), "no resume state to refuse");

    let mut resume = flags.to_vec();
    resume.push("--resume");
    // Fewer rows; then as many rows, but other molecules.
    std::fs::write(&corpus, rows(290, "O")).unwrap();
    let err = fail(&resume, cache.path());
    assert!(
        err.contains("is not the corpus the run started on")
            && err.contains("then 300 rows read")
            && err.contains("now 290 rows read"),
        "{err}"
    );
    std::fs::write(&corpus, rows(300, "N")).unwrap();
    let err = fail(&resume, cache.path());
    assert!(
        err.contains("is not the corpus the run started on") && err.contains("now 300 rows read"),
        "{err}"
    );
    assert!(files.state.is_file(), "a refused resume keeps the state");
}
