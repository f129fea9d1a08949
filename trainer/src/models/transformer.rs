//! The 1D models: a BERT/RoBERTa-style SMILES encoder compatible with Hugging Face checkpoints
//! (`config.json` + `model.safetensors` + `tokenizer.json`, e.g. ChemBERTa-2), [CLS] or mean
//! pooling, and a multi-task linear head.
//!
//! This module owns the architecture ([`TransformerConfig`], [`SmilesEncoder`]), the pooling
//! ([`Pooling`]), the task model ([`SequenceModel`]) and the mapping of Hugging Face keys onto
//! the var store ([`SequenceModel::from_hf_dir`]). Tokenisation lives in
//! [`crate::featurize::tokens`]; reading tensors from files in [`crate::checkpoint`].
//!
//! Variables live at var-store paths equal to the Hugging Face keys of a `RobertaForMaskedLM` /
//! `BertForMaskedLM` save: `roberta.embeddings.word_embeddings.weight`,
//! `roberta.encoder.layer.{i}.attention.self.query.weight`, … (`bert.` for BERT); the task head is
//! `head.weight` / `head.bias`. The forward pass is Hugging Face's eager one in eval mode:
//! post-LayerNorm blocks, exact (erf) GELU, absolute position embeddings — from 0 for BERT, and
//! `padding_idx + cumsum(non-pad)` for RoBERTa (`create_position_ids_from_input_ids`), pads
//! keeping `padding_idx` — token type 0 everywhere, and an additive attention mask of the
//! float32 minimum on pad keys.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

use super::ModelError;
use super::dropout::dropout;
use crate::checkpoint::{self, LoadOptions};
use crate::featurize::TokenIds;

/// Var-store prefix of the task head of a [`SequenceModel`].
pub const TRANSFORMER_HEAD_PREFIX: &str = "head";

/// Which Hugging Face architecture the encoder follows (`model_type` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// RoBERTa (ChemBERTa): positions start after the padding index; keys under `roberta.`.
    Roberta,
    /// BERT: positions start at 0; keys under `bert.`.
    Bert,
}

impl Architecture {
    /// The key prefix of the encoder in a task-model checkpoint (`roberta` or `bert`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Roberta => "roberta",
            Self::Bert => "bert",
        }
    }
}

fn default_gelu() -> String {
    "gelu".into()
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}

/// Hyper-parameters of a [`SmilesEncoder`]; deserialises from a Hugging Face `config.json`
/// (`model_type` `roberta` or `bert`; unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// The architecture (`roberta` or `bert`).
    pub model_type: Architecture,
    /// Rows of the token embedding.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of Transformer blocks.
    pub num_hidden_layers: i64,
    /// Attention heads per block (must divide `hidden_size`).
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Feed-forward activation; only exact `gelu` is supported.
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
    /// Rows of the position embedding.
    pub max_position_embeddings: i64,
    /// Rows of the token-type embedding (only type 0 is used).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token (RoBERTa's `padding_idx`); `None` means 1 for RoBERTa, 0 for BERT.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Dropout on embeddings and block outputs (training only).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the task head; `None` uses `hidden_dropout_prob`.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Position embedding kind; only `absolute` (the default) is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl TransformerConfig {
    /// A small native encoder for training from scratch with the regex tokeniser: BERT layout
    /// (positions from 0, `[PAD]` = `pad_token_id`), 4 blocks of width 192, 6 heads, 768-wide
    /// feed-forward, 512 positions, dropout 0.1 — the shape of the SMILES encoder ANGES ships
    /// (`models/transformer_mlm`, chosen in `models/README.md`), so that a `--random-init` 1D
    /// run is its baseline.
    pub fn small(vocab_size: i64, pad_token_id: i64) -> Self {
        Self {
            model_type: Architecture::Bert,
            vocab_size,
            hidden_size: 192,
            num_hidden_layers: 4,
            num_attention_heads: 6,
            intermediate_size: 768,
            hidden_act: default_gelu(),
            max_position_embeddings: 512,
            type_vocab_size: 1,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(pad_token_id),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            classifier_dropout: None,
            position_embedding_type: None,
        }
    }

    /// Reads a Hugging Face `config.json`, then [`validate`](Self::validate)s it.
    pub fn from_json_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Config(format!("cannot read {}: {e}", path.display())))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The padding token id (explicit, else 1 for RoBERTa and 0 for BERT).
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id.unwrap_or(match self.model_type {
            Architecture::Roberta => 1,
            Architecture::Bert => 0,
        })
    }

    /// The longest input sequence the position embedding can hold.
    pub fn max_len(&self) -> i64 {
        match self.model_type {
            Architecture::Roberta => self.max_position_embeddings - self.pad_id() - 1,
            Architecture::Bert => self.max_position_embeddings,
        }
    }

    /// Checks sizes, probabilities and the supported activation / position kinds.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act {:?} is not supported (only exact \"gelu\")",
                self.hidden_act
            ));
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return bad(format!(
                "position_embedding_type {p:?} is not supported (only \"absolute\")"
            ));
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, v)) = sizes.iter().find(|(_, v)| *v < 1) {
            return bad(format!("{name} must be at least 1, not {v}"));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(0..self.vocab_size).contains(&self.pad_id()) {
            return bad(format!(
                "pad_token_id {} outside the vocabulary of {}",
                self.pad_id(),
                self.vocab_size
            ));
        }
        if self.max_len() < 1 {
            return bad(format!(
                "max_position_embeddings {} leaves no room for tokens",
                self.max_position_embeddings
            ));
        }
        let probs = [
            self.hidden_dropout_prob,
            self.attention_probs_dropout_prob,
            self.classifier_dropout.unwrap_or(0.0),
        ];
        if probs.iter().any(|p| !(0.0..1.0).contains(p)) {
            return bad(format!(
                "dropout probabilities must be in [0, 1): {probs:?}"
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad(format!(
                "layer_norm_eps must be positive, not {}",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// Hugging Face's initialisation (normal 0.02, zero bias) for training from scratch.
pub(crate) fn hf_linear(p: nn::Path, input: i64, output: i64) -> nn::Linear {
    nn::linear(
        p,
        input,
        output,
        nn::LinearConfig {
            ws_init: Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        },
    )
}

fn hf_embedding(p: nn::Path, rows: i64, dim: i64) -> nn::Embedding {
    nn::embedding(
        p,
        rows,
        dim,
        nn::EmbeddingConfig {
            ws_init: Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        },
    )
}

pub(crate) fn hf_layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// One post-LayerNorm Transformer block (`encoder.layer.{i}`).
#[derive(Debug)]
struct Block {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    attn_norm: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    out_norm: nn::LayerNorm,
}

impl Block {
    fn new(p: nn::Path, cfg: &TransformerConfig) -> Self {
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let att = &p / "attention";
        Self {
            query: hf_linear(&att / "self" / "query", h, h),
            key: hf_linear(&att / "self" / "key", h, h),
            value: hf_linear(&att / "self" / "value", h, h),
            attn_out: hf_linear(&att / "output" / "dense", h, h),
            attn_norm: hf_layer_norm(&att / "output" / "LayerNorm", h, eps),
            intermediate: hf_linear(&p / "intermediate" / "dense", h, f),
            output: hf_linear(&p / "output" / "dense", f, h),
            out_norm: hf_layer_norm(&p / "output" / "LayerNorm", h, eps),
        }
    }

    /// `x`: `[B, L, H]`; `mask_add`: `[B, 1, 1, L]` additive attention mask.
    fn forward(
        &self,
        x: &Tensor,
        mask_add: &Tensor,
        cfg: &TransformerConfig,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let (b, l) = (x.size()[0], x.size()[1]);
        let heads = cfg.num_attention_heads;
        let dh = cfg.hidden_size / heads;
        let split = |t: Tensor| t.view([b, l, heads, dh]).transpose(1, 2);
        let q = split(self.query.forward(x));
        let k = split(self.key.forward(x));
        let v = split(self.value.forward(x));
        let scores = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt() + mask_add;
        let probs = dropout(
            &scores.softmax(-1, scores.kind()),
            cfg.attention_probs_dropout_prob,
            train,
        )?;
        let ctx = probs
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([b, l, cfg.hidden_size]);
        let attended = dropout(&self.attn_out.forward(&ctx), cfg.hidden_dropout_prob, train)?;
        let attn = self.attn_norm.forward(&(attended + x));
        let inner = self.intermediate.forward(&attn).gelu("none");
        let out = dropout(&self.output.forward(&inner), cfg.hidden_dropout_prob, train)?;
        Ok(self.out_norm.forward(&(out + &attn)))
    }
}

/// The BERT/RoBERTa encoder: embeddings and `num_hidden_layers` blocks, no pooler.
#[derive(Debug)]
pub struct SmilesEncoder {
    cfg: TransformerConfig,
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    emb_norm: nn::LayerNorm,
    blocks: Vec<Block>,
}

impl SmilesEncoder {
    /// Creates the encoder's variables under `p` (`root / "roberta"` or `root / "bert"` for
    /// Hugging Face key names, see [`Architecture::prefix`]).
    pub fn new(p: &nn::Path, cfg: TransformerConfig) -> Result<Self, ModelError> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let emb = p / "embeddings";
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(p / "encoder" / "layer" / i, &cfg))
            .collect();
        Ok(Self {
            word: hf_embedding(&emb / "word_embeddings", cfg.vocab_size, h),
            position: hf_embedding(&emb / "position_embeddings", cfg.max_position_embeddings, h),
            token_type: hf_embedding(&emb / "token_type_embeddings", cfg.type_vocab_size, h),
            emb_norm: hf_layer_norm(&emb / "LayerNorm", h, cfg.layer_norm_eps),
            blocks,
            cfg,
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The token embedding table `[vocab_size, hidden_size]` (what a masked-LM head decodes
    /// with, tied as in Hugging Face).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word.ws
    }

    /// Position ids `[B, L]`: `0..L` for BERT; for RoBERTa `padding_idx + cumsum(non-pad)` on
    /// tokens and `padding_idx` on pads (Hugging Face's `create_position_ids_from_input_ids`).
    pub fn position_ids(&self, input_ids: &Tensor) -> Tensor {
        let (b, l) = (input_ids.size()[0], input_ids.size()[1]);
        match self.cfg.model_type {
            Architecture::Bert => Tensor::arange(l, (Kind::Int64, input_ids.device()))
                .unsqueeze(0)
                .expand([b, l], false),
            Architecture::Roberta => {
                let pad = self.cfg.pad_id();
                let mask = input_ids.ne(pad).to_kind(Kind::Int64);
                mask.cumsum(1, Kind::Int64) * &mask + pad
            }
        }
    }

    /// Last hidden states `[B, L, H]` of `input_ids` (`[B, L]`, int64) under `attention_mask`
    /// (`[B, L]`, 1 = token, 0 = pad); dropout only when `train`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let size = input_ids.size();
        let &[_, l] = size.as_slice() else {
            return Err(ModelError::Shape(format!(
                "input_ids must be [batch, length], not {size:?}"
            )));
        };
        if attention_mask.size() != size {
            return Err(ModelError::Shape(format!(
                "attention_mask {:?} does not match input_ids {size:?}",
                attention_mask.size()
            )));
        }
        if input_ids.kind() != Kind::Int64 {
            return Err(ModelError::Shape(format!(
                "input_ids must be int64, not {:?}",
                input_ids.kind()
            )));
        }
        if l > self.cfg.max_len() {
            return Err(ModelError::Shape(format!(
                "sequence length {l} exceeds the model's maximum {}",
                self.cfg.max_len()
            )));
        }
        if input_ids.numel() > 0 {
            let lo = input_ids.f_min()?.f_int64_value(&[])?;
            let hi = input_ids.f_max()?.f_int64_value(&[])?;
            if lo < 0 || hi >= self.cfg.vocab_size {
                return Err(ModelError::Shape(format!(
                    "token ids in [{lo}, {hi}] outside the vocabulary of {}",
                    self.cfg.vocab_size
                )));
            }
        }
        let kind = self.word.ws.kind();
        let positions = self.position_ids(input_ids);
        let x = self.word.forward(input_ids)
            + self.position.forward(&positions)
            + self.token_type.ws.get(0);
        let mut x = dropout(
            &self.emb_norm.forward(&x),
            self.cfg.hidden_dropout_prob,
            train,
        )?;
        let mask_add = ((1.0_f64 - attention_mask.to_kind(kind)) * f64::from(f32::MIN))
            .unsqueeze(1)
            .unsqueeze(1);
        for block in &self.blocks {
            x = block.forward(&x, &mask_add, &self.cfg, train)?;
        }
        Ok(x)
    }
}

/// `[B, L]` input ids of the rows of `tokens` at `positions`, padded with `pad` to the longest of
/// them, and the `[B, L]` attention mask (1 = token, 0 = pad), on `device`: a batch for
/// [`SmilesEncoder::forward`] (fine-tuning, pre-training, benchmarks).
pub fn pad_tokens(
    tokens: &[TokenIds],
    positions: &[usize],
    pad: i64,
    device: Device,
) -> Result<(Tensor, Tensor), tch::TchError> {
    let len = positions
        .iter()
        .map(|&p| tokens[p].len())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut ids = Vec::with_capacity(positions.len() * len);
    let mut mask = Vec::with_capacity(positions.len() * len);
    for &p in positions {
        let row = &tokens[p];
        ids.extend(
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, len - row.len())),
        );
        mask.extend(
            std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, len - row.len())),
        );
    }
    let shape = [positions.len() as i64, len as i64];
    let ids = Tensor::f_from_slice(&ids)?
        .f_view(shape)?
        .f_to_device(device)?;
    let mask = Tensor::f_from_slice(&mask)?
        .f_view(shape)?
        .f_to_device(device)?;
    Ok((ids, mask))
}

/// How per-token hidden states become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The hidden state of the first token (`<s>` / `[CLS]`).
    #[default]
    Cls,
    /// The mean over non-pad tokens.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            other => Err(ModelError::Config(format!(
                "unknown pooling {other:?} (cls|mean)"
            ))),
        }
    }
}

impl Pooling {
    /// Pools `hidden` (`[B, L, H]`) to `[B, H]`; `attention_mask` (`[B, L]`) marks the tokens.
    pub fn pool(self, hidden: &Tensor, attention_mask: &Tensor) -> Tensor {
        match self {
            Self::Cls => hidden.select(1, 0),
            Self::Mean => {
                let m = attention_mask.to_kind(hidden.kind()).unsqueeze(-1);
                let sum = (hidden * &m).sum_dim_intlist(1, false, hidden.kind());
                sum / m.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1.0)
            }
        }
    }
}

/// A SMILES encoder, pooling, dropout and a linear task head `head.{weight,bias}`.
#[derive(Debug)]
pub struct SequenceModel {
    /// The encoder (variables under `roberta.` / `bert.`).
    pub encoder: SmilesEncoder,
    head: nn::Linear,
    pooling: Pooling,
    dropout: f64,
    num_tasks: i64,
}

impl SequenceModel {
    /// Creates the model's variables under `root` (use the var store's root so that the names
    /// equal Hugging Face keys).
    pub fn new(
        root: &nn::Path,
        cfg: TransformerConfig,
        num_tasks: i64,
        pooling: Pooling,
    ) -> Result<Self, ModelError> {
        if num_tasks < 1 {
            return Err(ModelError::Config(format!(
                "num_tasks must be at least 1, not {num_tasks}"
            )));
        }
        let dropout = cfg.classifier_dropout.unwrap_or(cfg.hidden_dropout_prob);
        let h = cfg.hidden_size;
        let encoder = SmilesEncoder::new(&(root / cfg.model_type.prefix()), cfg)?;
        Ok(Self {
            encoder,
            head: hf_linear(root / TRANSFORMER_HEAD_PREFIX, h, num_tasks),
            pooling,
            dropout,
            num_tasks,
        })
    }

    /// Number of outputs of the head.
    pub fn num_tasks(&self) -> i64 {
        self.num_tasks
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Pooled sequence embeddings `[B, H]` (before dropout and head).
    pub fn embed(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let hidden = self.encoder.forward(input_ids, attention_mask, train)?;
        Ok(self.pooling.pool(&hidden, attention_mask))
    }

    /// Task logits `[B, num_tasks]`.
    pub fn forward_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let pooled = self.embed(input_ids, attention_mask, train)?;
        Ok(self.head.forward(&dropout(&pooled, self.dropout, train)?))
    }

    /// Loads a Hugging Face folder: `config.json`, then `model.safetensors` (else
    /// `pytorch_model.bin`) into a new var store on `device`. Keys may carry the `roberta.` /
    /// `bert.` prefix (task or masked-LM saves) or not (bare `RobertaModel` / `BertModel` saves);
    /// `lm_head.*`, `cls.*`, `pooler.*` and position/token-type id buffers are ignored (listed
    /// at debug level). The head keeps its fresh initialisation. Missing or mis-shaped encoder
    /// tensors are an error naming them, and nothing is loaded then.
    pub fn from_hf_dir(
        dir: &Path,
        num_tasks: i64,
        pooling: Pooling,
        device: Device,
    ) -> Result<(nn::VarStore, Self), ModelError> {
        let cfg = TransformerConfig::from_json_file(&dir.join("config.json"))?;
        let weights = ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "{} holds neither model.safetensors nor pytorch_model.bin",
                    dir.display()
                ))
            })?;
        let prefix = cfg.model_type.prefix();
        let vs = nn::VarStore::new(device);
        let model = Self::new(&vs.root(), cfg, num_tasks, pooling)?;
        let checkpoint_err = |source: checkpoint::CheckpointError| ModelError::Checkpoint {
            path: weights.clone(),
            source,
        };
        let state = checkpoint::read_state_dict(&weights).map_err(checkpoint_err)?;
        let mut ignored = Vec::new();
        let mut kept = Vec::with_capacity(state.len());
        for (key, tensor) in state {
            let bare = key
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('.'))
                .unwrap_or(&key);
            let encoder_key = bare.starts_with("embeddings.") || bare.starts_with("encoder.");
            let buffer = bare.ends_with("position_ids") || bare.ends_with("token_type_ids");
            if encoder_key && !buffer {
                kept.push((format!("{prefix}.{bare}"), tensor));
            } else {
                ignored.push(key);
            }
        }
        tracing::debug!(
            checkpoint = %weights.display(),
            "ignoring checkpoint keys outside the encoder: {}",
            ignored.join(", ")
        );
        let opts = LoadOptions {
            allow_missing_prefixes: vec![format!("{TRANSFORMER_HEAD_PREFIX}.")],
            strip_prefix: None,
        };
        checkpoint::load_into(&vs, kept, &opts).map_err(checkpoint_err)?;
        Ok((vs, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_padded_to_their_longest_row() {
        let tokens = vec![vec![2, 7, 3], vec![2, 3], vec![2, 8, 9, 9, 3]];
        let (ids, mask) = pad_tokens(&tokens, &[1, 0], 0, Device::Cpu).unwrap();
        assert_eq!(ids.size(), [2, 3]);
        assert_eq!(
            Vec::<i64>::try_from(ids.view([-1])).unwrap(),
            [2, 3, 0, 2, 7, 3]
        );
        assert_eq!(
            Vec::<i64>::try_from(mask.view([-1])).unwrap(),
            [1, 1, 0, 1, 1, 1]
        );
    }

    #[test]
    fn config_rejects_unsupported() {
        let mut cfg = TransformerConfig::small(20, 0);
        assert!(cfg.validate().is_ok());
        cfg.hidden_act = "relu".into();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("relu"), "{err}");
        let json = r#"{"model_type":"gpt2","vocab_size":5,"hidden_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":8,"max_position_embeddings":8}"#;
        assert!(serde_json::from_str::<TransformerConfig>(json).is_err());
    }

    #[test]
    fn small_model_runs_and_pools() {
        let _rng = crate::test_support::torch_rng();
        let mut cfg = TransformerConfig::small(12, 0);
        cfg.hidden_size = 16;
        cfg.num_attention_heads = 4;
        cfg.intermediate_size = 32;
        cfg.num_hidden_layers = 2;
        let vs = nn::VarStore::new(Device::Cpu);
        let model = SequenceModel::new(&vs.root(), cfg, 3, Pooling::Mean).unwrap();
        let ids = Tensor::from_slice(&[2_i64, 5, 6, 3, 2, 7, 3, 0]).view([2, 4]);
        let mask = ids.ne(0).to_kind(Kind::Int64);
        let logits = model.forward_logits(&ids, &mask, true).unwrap();
        assert_eq!(logits.size(), vec![2, 3]);
        assert!(
            vs.variables()
                .contains_key("bert.encoder.layer.1.output.LayerNorm.weight")
        );
        assert!(vs.variables().contains_key("head.weight"));
        let too_big = Tensor::from_slice(&[2_i64, 12]).view([1, 2]);
        assert!(
            model
                .forward_logits(&too_big, &too_big.ones_like(), false)
                .is_err()
        );
    }
}
