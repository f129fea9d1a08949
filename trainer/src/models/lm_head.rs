//! The masked-language-model head of the 1D encoder, with Hugging Face's names and maths, so
//! that a pre-trained folder is a complete `BertForMaskedLM` / `RobertaForMaskedLM` save:
//! `dense (H→H) → GELU → LayerNorm → decoder`, where the decoder's weight is the encoder's word
//! embedding (tied, as Hugging Face does by default, so it is not stored twice) plus its own
//! bias.
//!
//! | architecture | variables |
//! | --- | --- |
//! | BERT | `cls.predictions.transform.dense.{weight,bias}`, `cls.predictions.transform.LayerNorm.{weight,bias}`, `cls.predictions.bias` |
//! | RoBERTa | `lm_head.dense.{weight,bias}`, `lm_head.layer_norm.{weight,bias}`, `lm_head.bias` |
//!
//! [`SequenceModel::from_hf_dir`](super::SequenceModel::from_hf_dir) ignores these keys when it
//! loads a folder for fine-tuning.

use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::ModelError;
use super::transformer::{Architecture, TransformerConfig, hf_layer_norm, hf_linear};

/// Var-store paths of the head's parts for one architecture.
struct Names {
    root: &'static [&'static str],
    dense: &'static [&'static str],
    norm: &'static [&'static str],
}

fn names(arch: Architecture) -> Names {
    match arch {
        Architecture::Bert => Names {
            root: &["cls", "predictions"],
            dense: &["transform", "dense"],
            norm: &["transform", "LayerNorm"],
        },
        Architecture::Roberta => Names {
            root: &["lm_head"],
            dense: &["dense"],
            norm: &["layer_norm"],
        },
    }
}

/// `p / parts[0] / parts[1] / …`.
fn at<'a>(p: &nn::Path<'a>, parts: &[&str]) -> nn::Path<'a> {
    parts.iter().fold(p.clone(), |acc, part| acc / *part)
}

/// The key prefix of the head for `arch` (`cls.predictions` or `lm_head`).
pub fn lm_head_prefix(arch: Architecture) -> String {
    names(arch).root.join(".")
}

/// Hugging Face's masked-language-model head (see the module doc).
#[derive(Debug)]
pub struct MaskedLmHead {
    dense: nn::Linear,
    norm: nn::LayerNorm,
    bias: Tensor,
}

impl MaskedLmHead {
    /// Creates the head's variables under `root` (the var store's root, so that names equal
    /// Hugging Face keys) for the architecture and sizes of `cfg`.
    pub fn new(root: &nn::Path, cfg: &TransformerConfig) -> Self {
        let n = names(cfg.model_type);
        let head = at(root, n.root);
        let h = cfg.hidden_size;
        Self {
            dense: hf_linear(at(&head, n.dense), h, h),
            norm: hf_layer_norm(at(&head, n.norm), h, cfg.layer_norm_eps),
            bias: head.var("bias", &[cfg.vocab_size], Init::Const(0.0)),
        }
    }

    /// Vocabulary logits `[N, V]` of hidden states `[N, H]`, decoding with the tied
    /// `word_embeddings` `[V, H]`.
    pub fn forward(&self, hidden: &Tensor, word_embeddings: &Tensor) -> Result<Tensor, ModelError> {
        let (h, v) = (hidden.size(), word_embeddings.size());
        if h.len() != 2 || v.len() != 2 || h[1] != v[1] || v[0] != self.bias.size()[0] {
            return Err(ModelError::Shape(format!(
                "masked-LM head: hidden {h:?}, word embeddings {v:?}, bias {:?}",
                self.bias.size()
            )));
        }
        let x = self
            .norm
            .forward(&self.dense.forward(hidden).f_gelu("none")?);
        Ok(x.f_matmul(&word_embeddings.f_tr()?)?
            .f_add(&self.bias)?
            .f_to_kind(Kind::Float)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::SmilesEncoder;
    use tch::Device;

    fn tiny(arch: Architecture) -> TransformerConfig {
        let mut cfg = TransformerConfig::small(11, 0);
        (cfg.model_type, cfg.hidden_size, cfg.num_attention_heads) = (arch, 8, 2);
        (cfg.intermediate_size, cfg.num_hidden_layers) = (16, 1);
        cfg
    }

    #[test]
    fn names_follow_hugging_face_and_logits_cover_the_vocabulary() {
        let _rng = crate::test_support::torch_rng();
        for (arch, expected) in [
            (
                Architecture::Bert,
                [
                    "cls.predictions.bias",
                    "cls.predictions.transform.LayerNorm.bias",
                    "cls.predictions.transform.LayerNorm.weight",
                    "cls.predictions.transform.dense.bias",
                    "cls.predictions.transform.dense.weight",
                ],
            ),
            (
                Architecture::Roberta,
                [
                    "lm_head.bias",
                    "lm_head.dense.bias",
                    "lm_head.dense.weight",
                    "lm_head.layer_norm.bias",
                    "lm_head.layer_norm.weight",
                ],
            ),
        ] {
            let cfg = tiny(arch);
            let vs = nn::VarStore::new(Device::Cpu);
            let encoder = SmilesEncoder::new(&(vs.root() / arch.prefix()), cfg.clone()).unwrap();
            let head = MaskedLmHead::new(&vs.root(), &cfg);
            let mut keys: Vec<String> = vs
                .variables()
                .into_keys()
                .filter(|k| !k.starts_with(arch.prefix()))
                .collect();
            keys.sort();
            assert_eq!(keys, expected);
            assert!(expected[0].starts_with(&lm_head_prefix(arch)));
            let hidden = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
            let logits = head.forward(&hidden, encoder.word_embeddings()).unwrap();
            assert_eq!(logits.size(), [3, 11]);
            assert!(
                head.forward(&hidden.view([1, 3, 8]), encoder.word_embeddings())
                    .is_err()
            );
        }
    }
}
