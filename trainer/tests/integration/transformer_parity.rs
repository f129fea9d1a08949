//! Parity of the Rust SMILES Transformer with Hugging Face `transformers`
//! (`scripts/roberta_reference.py`, run with the project venv).
//!
//! The script builds a real `tokenizer.json` with the `tokenizers` library and tiny seeded random
//! models that use it — a `RobertaForMaskedLM` (keys `roberta.*` + `lm_head.*`), the same encoder
//! saved as a bare `RobertaModel` (no prefix, `pooler.*`) and a `BertModel` — and writes the
//! padded token ids and eval-mode last hidden states of 20 SMILES. The Rust tokeniser must give
//! the same ids from the same `tokenizer.json`, and the Rust encoders the same hidden states on
//! non-pad positions to 1e-4.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anges_trainer::featurize::SmilesTokenizer;
use anges_trainer::models::transformer::Architecture;
use anges_trainer::models::{ModelError, Pooling, SequenceModel};
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

/// Runs the reference script once per test binary; returns its output folder.
fn reference() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("transformer_parity");
        common::run_venv_script("roberta_reference.py", [&out]);
        out
    })
}

/// The script's outputs: SMILES and the named tensors of `reference.safetensors`.
struct Reference {
    smiles: Vec<String>,
    tensors: Vec<(String, Tensor)>,
}

impl Reference {
    fn load() -> Self {
        let dir = reference();
        let smiles = serde_json::from_slice(&std::fs::read(dir.join("smiles.json")).unwrap())
            .expect("parse smiles.json");
        let tensors = Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap();
        Self { smiles, tensors }
    }

    fn get(&self, name: &str) -> &Tensor {
        &self
            .tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from reference.safetensors"))
            .1
    }
}

/// Max |a - b| over positions where `mask` is 1.
fn max_abs_err(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.to_kind(Kind::Float).unsqueeze(-1);
    ((a - b).abs() * m).max().double_value(&[])
}

#[test]
fn rust_tokenizer_matches_python_ids() {
    let r = Reference::load();
    let tok = SmilesTokenizer::from_path(&reference().join("mlm")).unwrap();
    let ids = r.get("input_ids");
    let mask = r.get("attention_mask");
    let width = ids.size()[1];
    assert_eq!(tok.pad_id(), 1);
    for (i, smiles) in r.smiles.iter().enumerate() {
        let len = mask.get(i as i64).sum(Kind::Int64).int64_value(&[]);
        let expected: Vec<i64> = Vec::try_from(ids.get(i as i64).narrow(0, 0, len)).unwrap();
        let got = tok.encode(smiles, width as usize).unwrap();
        assert_eq!(got, expected, "token ids of {smiles}");
    }
}

/// Tokenises the reference SMILES in Rust, padded with `pad` to the longest.
fn rust_batch(dir: &Path, smiles: &[String]) -> (Tensor, Tensor) {
    let tok = SmilesTokenizer::from_path(dir).unwrap();
    let seqs: Vec<Vec<i64>> = smiles.iter().map(|s| tok.encode(s, 512).unwrap()).collect();
    let width = seqs.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for s in &seqs {
        ids.extend(s.iter().copied());
        ids.extend(std::iter::repeat_n(tok.pad_id(), width - s.len()));
        mask.extend(std::iter::repeat_n(1_i64, s.len()));
        mask.extend(std::iter::repeat_n(0_i64, width - s.len()));
    }
    let shape = [seqs.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

fn check_hidden(folder: &str, reference_key: &str, arch: Architecture) {
    let _rng = common::torch_rng();
    let r = Reference::load();
    let dir = reference().join(folder);
    let (vs, model) = SequenceModel::from_hf_dir(&dir, 3, Pooling::Cls, Device::Cpu).unwrap();
    assert_eq!(model.encoder.config().model_type, arch);
    let (ids, mask) = rust_batch(&dir, &r.smiles);
    assert!(
        ids.equal(r.get("input_ids")),
        "{folder}: Rust and Python ids differ"
    );
    let hidden = tch::no_grad(|| model.encoder.forward(&ids, &mask, false)).unwrap();
    let err = max_abs_err(&hidden, r.get(reference_key), &mask);
    println!("{folder}: max abs error of the last hidden states (non-pad) = {err:.3e}");
    assert!(
        err <= TOLERANCE,
        "{folder}: max abs error {err} > {TOLERANCE}"
    );
    let vars = vs.variables();
    let prefix = arch.prefix();
    assert!(vars.contains_key(&format!(
        "{prefix}.encoder.layer.1.attention.self.query.weight"
    )));
    assert!(
        !vars
            .keys()
            .any(|k| k.contains("pooler") || k.contains("lm_head"))
    );
}

#[test]
fn roberta_masked_lm_checkpoint_matches_transformers() {
    check_hidden("mlm", "roberta_hidden", Architecture::Roberta);
}

#[test]
fn bare_roberta_model_checkpoint_matches_transformers() {
    check_hidden("base", "roberta_hidden", Architecture::Roberta);
}

#[test]
fn bert_checkpoint_matches_transformers() {
    check_hidden("bert", "bert_hidden", Architecture::Bert);
}

#[test]
fn pooling_and_head_shapes() {
    let _rng = common::torch_rng();
    let r = Reference::load();
    let dir = reference().join("mlm");
    let (ids, mask) = rust_batch(&dir, &r.smiles);
    let n = r.smiles.len() as i64;
    let hidden = r.get("roberta_hidden");
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let (_vs, model) = SequenceModel::from_hf_dir(&dir, 3, pooling, Device::Cpu).unwrap();
        let pooled = model.embed(&ids, &mask, false).unwrap();
        assert_eq!(pooled.size(), vec![n, 32]);
        let logits = model.forward_logits(&ids, &mask, true).unwrap();
        assert_eq!(logits.size(), vec![n, 3]);
        // Pooling of the reference hidden states, computed independently.
        let expected = match pooling {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Mean => {
                let m = mask.to_kind(Kind::Float).unsqueeze(-1);
                (hidden * &m).sum_dim_intlist(1, false, Kind::Float)
                    / m.sum_dim_intlist(1, false, Kind::Float)
            }
        };
        let err = (pooled - expected).abs().max().double_value(&[]);
        assert!(err <= TOLERANCE, "{pooling:?} pooling error {err}");
    }
    assert_eq!("mean".parse::<Pooling>().unwrap(), Pooling::Mean);
    assert!("max".parse::<Pooling>().is_err());
}

#[test]
fn missing_key_is_named() {
    let _rng = common::torch_rng();
    let src = reference().join("mlm");
    let dir = tempfile::tempdir().unwrap();
    let dropped = "roberta.encoder.layer.1.intermediate.dense.weight";
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(src.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != dropped)
        .collect();
    Tensor::write_safetensors(&tensors, dir.path().join("model.safetensors")).unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let err = SequenceModel::from_hf_dir(dir.path(), 1, Pooling::Cls, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains(dropped), "{err}");

    // One more layer in the config than in the weights: every tensor of layer 2 is missing.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["num_hidden_layers"] = 3.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let err = SequenceModel::from_hf_dir(dir.path(), 1, Pooling::Cls, Device::Cpu).unwrap_err();
    assert!(
        err.to_string()
            .contains("roberta.encoder.layer.2.attention.self.query.weight"),
        "{err}"
    );

    // An unsupported activation is refused by name.
    config["num_hidden_layers"] = 2.into();
    config["hidden_act"] = "gelu_new".into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = SequenceModel::from_hf_dir(dir.path(), 1, Pooling::Cls, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("gelu_new"), "{err}");
}

/// The fine-tuning loop runs the 1D model from a Hugging Face folder (the tiny RoBERTa above, its
/// `tokenizer.json` included), with MolPeg's reference twin, and learns: the training loss falls.
#[test]
fn finetuning_starts_from_the_hugging_face_folder() {
    use anges_trainer::config::{FinetuneConfig, MeterMode, ModelKind, PruneMethod};
    let _rng = common::torch_rng();
    let out = tempfile::tempdir().unwrap();
    let dir = reference().join("mlm");
    // `--dataset bbbp --model transformer --pretrained DIR --max-rows 160 --epochs 6 --lr 3e-4
    //  --threads 2 --meter off --prune molpeg --keep-ratio 0.75 --group-by-length`
    let mut config = FinetuneConfig::new("bbbp");
    config.model.kind = ModelKind::Transformer;
    config.model.pretrained = Some(dir.clone());
    config.data.max_rows = Some(160);
    config.data.data_dir = Some(common::moleculenet_dir());
    config.train.epochs = 6;
    config.train.lr = 3e-4;
    config.compute.threads = 2;
    config.meter.mode = MeterMode::Off;
    config.prune.method = PruneMethod::Molpeg;
    config.prune.keep_ratio = 0.75;
    // Batches of similar length: the same rows each epoch, grouped differently.
    config.model.group_by_length = true;
    config.out = Some(out.path().to_owned());
    let s = anges_trainer::train::run_finetune(&config).expect("1D fine-tuning runs");
    assert_eq!(s.epochs_run, 6);
    assert_eq!(s.pretrained.as_deref(), Some(dir.as_path()));
    let prune = s.prune.as_ref().expect("MolPeg summary");
    assert_eq!(prune.samples_used, 6 * (s.rows.train * 3).div_ceil(4));
    let epochs: Vec<anges_trainer::train::EpochRecord> =
        std::fs::read_to_string(s.run_dir.join("epochs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let (first, last) = (epochs[0].train_loss, epochs[5].train_loss);
    assert!(
        first.is_finite() && last < first,
        "train loss {first} → {last}"
    );
    assert!(s.best_valid.get(s.metric).is_some());
    assert!(s.run_dir.join("best.safetensors").is_file());
}
