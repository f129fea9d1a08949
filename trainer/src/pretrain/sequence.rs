//! Masked-language modelling for the 1D SMILES encoder: a BERT-layout
//! [`SmilesEncoder`](crate::models::SmilesEncoder) trained from scratch (`--hidden-size`,
//! `--layers`, `--heads`; feed-forward 4× wide) over the atom-level regex vocabulary of the
//! corpus (or `--vocab`), with Hugging Face's masked-LM head ([`MaskedLmHead`],
//! `cls.predictions.*`) and cross-entropy on the selected tokens ([`super::token_masking`]).
//!
//! The output folder is a Hugging Face `BertForMaskedLM` save that
//! `anges-train --model transformer --pretrained DIR` loads as is: `config.json`
//! (`model_type` `bert`, `architectures` `["BertForMaskedLM"]`, and ANGES's `representation`,
//! `smiles` or `selfies`, which fine-tuning checks against its `--representation`),
//! `model.safetensors` (the encoder under `bert.`, the head under `cls.predictions.`, the decoder
//! tied to the word embeddings) and the tokeniser (`vocab.txt`, or `tokenizer.json` when
//! `--vocab` was one). With `--representation selfies` the vocabulary is of the corpus' SELFIES
//! symbols and molecules SELFIES cannot express are skipped and counted.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::PretrainError;
use super::corpus::Corpus;
use super::output::{Output, replace_checkpoint, write_json};
use super::task::{BatchOutput, Objective};
use super::token_masking::{MaskedTokens, TokenMasker};
use crate::checkpoint;
use crate::config::{EncoderSize, PretrainConfig};
use crate::featurize::tokens::REPRESENTATION_KEY;
use crate::featurize::{RegexTokenizer, Representation, SmilesTokenizer, TokenIds, TokenizeError};
use crate::models::{
    Architecture, MaskedLmHead, ModelError, SmilesEncoder, TransformerConfig, pad_tokens,
};
use crate::train::seeded::Stream;

/// Skip reason of corpus molecules the tokeniser cannot encode.
pub const DROP_UNTOKENIZABLE: &str = "untokenizable";
/// Skip reason of corpus molecules SELFIES cannot express (`--representation selfies`).
pub const DROP_NO_SELFIES: &str = "no-selfies";
/// Untokenizable molecules logged one by one at `warn`.
const WARN_DROPS: usize = 20;

/// Masked-language modelling over the corpus' token ids.
#[derive(Debug)]
pub struct MaskedLanguageModelling {
    vs: VarStore,
    encoder: SmilesEncoder,
    head: MaskedLmHead,
    tokens: Vec<TokenIds>,
    pad: i64,
    masker: TokenMasker,
    device: Device,
    checkpoint: std::path::PathBuf,
}

/// The encoder configuration of `size` over `tokenizer`'s vocabulary (BERT layout, positions
/// from 0, 512 of them, dropout 0.1).
pub fn encoder_config(
    size: &EncoderSize,
    tokenizer: &SmilesTokenizer,
) -> Result<TransformerConfig, ModelError> {
    let vocab = i64::try_from(tokenizer.vocab_size())
        .map_err(|_| ModelError::Config("vocabulary too large".into()))?;
    let mut cfg = TransformerConfig::small(vocab, tokenizer.pad_id());
    cfg.hidden_size = size.hidden_size;
    cfg.num_hidden_layers = size.layers;
    cfg.num_attention_heads = size.heads;
    cfg.intermediate_size = size.hidden_size.saturating_mul(4);
    cfg.position_embedding_type = Some("absolute".into());
    cfg.validate()?;
    Ok(cfg)
}

/// Writes `config.json` of `cfg` with the fields Hugging Face needs to load the folder as a
/// masked-LM model, and the representation its tokens are of.
fn write_config(
    dir: &Path,
    cfg: &TransformerConfig,
    representation: Representation,
) -> Result<(), PretrainError> {
    let path = dir.join("config.json");
    let mut json = serde_json::to_value(cfg)
        .map_err(|e| PretrainError::io(&path, std::io::Error::other(e)))?;
    let architecture = match cfg.model_type {
        Architecture::Bert => "BertForMaskedLM",
        Architecture::Roberta => "RobertaForMaskedLM",
    };
    if let Some(map) = json.as_object_mut() {
        map.insert("architectures".into(), serde_json::json!([architecture]));
        map.insert("tie_word_embeddings".into(), serde_json::json!(true));
        map.insert(
            REPRESENTATION_KEY.into(),
            serde_json::json!(representation.name()),
        );
    }
    write_json(&path, &json)
}

/// Token ids of every SMILES; those the tokeniser cannot encode are dropped (logged) and
/// counted by reason: [`DROP_NO_SELFIES`] or [`DROP_UNTOKENIZABLE`].
fn tokenize(
    smiles: &[String],
    tokenizer: &SmilesTokenizer,
    max_len: usize,
) -> (Vec<TokenIds>, BTreeMap<String, usize>) {
    let mut tokens = Vec::with_capacity(smiles.len());
    let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
    let mut logged = 0;
    for s in smiles {
        match tokenizer.encode(s, max_len) {
            Ok(ids) => tokens.push(ids),
            Err(why) => {
                if logged < WARN_DROPS {
                    tracing::warn!(smiles = %s, "corpus molecule skipped: {why}");
                    logged += 1;
                }
                let reason = match why {
                    TokenizeError::Selfies { .. } => DROP_NO_SELFIES,
                    _ => DROP_UNTOKENIZABLE,
                };
                *dropped.entry(reason.to_owned()).or_default() += 1;
            }
        }
    }
    (tokens, dropped)
}

impl MaskedLanguageModelling {
    /// The tokeniser (`--vocab`, else the corpus' vocabulary of `--representation` tokens), the
    /// encoder of `args` and its head on `device`; writes `config.json` and the tokeniser into
    /// `out`'s folder. Returns the objective and the molecules the tokeniser could not encode, by
    /// reason.
    pub fn new(
        args: &PretrainConfig,
        corpus: Corpus,
        device: Device,
        out: &Output,
    ) -> Result<(Self, BTreeMap<String, usize>), PretrainError> {
        let representation = args.representation;
        let tokenizer = match &args.encoder.vocab {
            Some(path) => SmilesTokenizer::from_path_as(path, representation)?,
            None => SmilesTokenizer::Regex(RegexTokenizer::from_corpus_as(
                corpus.smiles.iter().map(String::as_str),
                representation,
            )),
        };
        let cfg = encoder_config(&args.encoder, &tokenizer)?;
        let no_mask = || PretrainError::Options("the vocabulary has no mask token".into());
        let masker = TokenMasker::new(
            args.mask_rate,
            tokenizer.vocab_size(),
            &tokenizer.special_ids(),
            tokenizer.mask_id().ok_or_else(no_mask)?,
        )
        .ok_or_else(|| PretrainError::Options("the vocabulary has only special tokens".into()))?;
        let max_len = usize::try_from(cfg.max_len()).unwrap_or(0);
        let (tokens, dropped) = tokenize(&corpus.smiles, &tokenizer, max_len);
        if tokens.is_empty() {
            return Err(PretrainError::EmptyCorpus {
                path: corpus.path,
                rows: corpus.rows_read,
                skipped: dropped
                    .iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let dir = out.dir();
        write_config(&dir, &cfg, representation)?;
        tokenizer.save_into(&dir)?;
        let vs = VarStore::new(device);
        let encoder = SmilesEncoder::new(&(vs.root() / cfg.model_type.prefix()), cfg.clone())?;
        let head = MaskedLmHead::new(&vs.root(), &cfg);
        tracing::info!(
            "1D encoder: {} layers × {}, {} heads, vocabulary of {} {representation} tokens",
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.vocab_size
        );
        let objective = Self {
            vs,
            encoder,
            head,
            tokens,
            pad: tokenizer.pad_id(),
            masker,
            device,
            checkpoint: out.checkpoint(),
        };
        Ok((objective, dropped))
    }
}

impl Objective for MaskedLanguageModelling {
    fn molecules(&self) -> usize {
        self.tokens.len()
    }

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn encoder_parameters(&self) -> i64 {
        let prefix = format!("{}.", self.encoder.config().model_type.prefix());
        self.vs
            .variables()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.numel() as i64)
            .sum()
    }

    fn forward(
        &mut self,
        items: &[usize],
        masks: &mut Stream,
    ) -> Result<Option<BatchOutput>, PretrainError> {
        let masked: Vec<MaskedTokens> = items
            .iter()
            .map(|&i| self.masker.mask(&self.tokens[i], masks))
            .collect();
        let labels: Vec<i64> = masked
            .iter()
            .flat_map(|m| m.labels.iter().copied())
            .collect();
        if labels.is_empty() {
            return Ok(None);
        }
        let (rows, masked): (Vec<TokenIds>, Vec<Vec<usize>>) =
            masked.into_iter().map(|m| (m.ids, m.positions)).unzip();
        let all: Vec<usize> = (0..rows.len()).collect();
        let (ids, attention) = pad_tokens(&rows, &all, self.pad, self.device)?;
        let width = ids.size()[1];
        let flat: Vec<i64> = masked
            .iter()
            .enumerate()
            .flat_map(|(b, positions)| positions.iter().map(move |&p| b as i64 * width + p as i64))
            .collect();
        let hidden = self.encoder.forward(&ids, &attention, true)?;
        let h = self.encoder.config().hidden_size;
        let selected = hidden
            .f_reshape([-1, h])?
            .f_index_select(0, &Tensor::f_from_slice(&flat)?.f_to_device(self.device)?)?;
        let logits = self
            .head
            .forward(&selected, self.encoder.word_embeddings())?;
        let targets = Tensor::f_from_slice(&labels)?.f_to_device(self.device)?;
        Ok(Some(BatchOutput {
            logits,
            targets,
            target_values: labels,
        }))
    }

    fn save(&self) -> Result<(), PretrainError> {
        replace_checkpoint(&self.checkpoint, |tmp| {
            checkpoint::save_safetensors(&self.vs, tmp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_sized_by_the_flags_and_checked() {
        let tok = SmilesTokenizer::Regex(RegexTokenizer::from_corpus(["CCO", "c1ccccc1"]));
        let size = EncoderSize {
            hidden_size: 32,
            layers: 2,
            heads: 4,
            vocab: None,
        };
        let cfg = encoder_config(&size, &tok).unwrap();
        assert_eq!((cfg.vocab_size, cfg.pad_id()), (9, 0));
        assert_eq!((cfg.hidden_size, cfg.intermediate_size), (32, 128));
        assert_eq!(cfg.model_type, Architecture::Bert);
        let bad = EncoderSize { heads: 5, ..size };
        assert!(
            encoder_config(&bad, &tok).is_err(),
            "5 heads do not divide 32"
        );
    }

    #[test]
    fn config_json_is_read_back_and_names_the_masked_lm_class() {
        let tok = SmilesTokenizer::Regex(RegexTokenizer::from_corpus(["CCO"]));
        let size = EncoderSize {
            hidden_size: 16,
            layers: 1,
            heads: 2,
            vocab: None,
        };
        let cfg = encoder_config(&size, &tok).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &cfg, Representation::Selfies).unwrap();
        let back = TransformerConfig::from_json_file(&dir.path().join("config.json")).unwrap();
        assert_eq!(back, cfg);
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains("BertForMaskedLM"), "{text}");
        assert!(text.contains(r#""representation": "selfies""#), "{text}");
    }

    #[test]
    fn untokenizable_molecules_are_counted() {
        let tok = SmilesTokenizer::Regex(RegexTokenizer::from_corpus(["CCO"]));
        let smiles = vec!["CCO".to_owned(), "CC&O".to_owned(), "OCC".to_owned()];
        let (ids, dropped) = tokenize(&smiles, &tok, 16);
        assert_eq!(ids.len(), 2);
        assert_eq!(dropped.get(DROP_UNTOKENIZABLE), Some(&1));
        let tok = SmilesTokenizer::Regex(RegexTokenizer::from_corpus_as(
            ["CCO"],
            Representation::Selfies,
        ));
        let smiles = vec!["CCO".to_owned(), "CN(=O)=O".to_owned()];
        let (ids, dropped) = tokenize(&smiles, &tok, 16);
        assert_eq!(ids, vec![vec![2, 5, 5, 6, 3]], "[C] [C] [O]");
        assert_eq!(dropped.get(DROP_NO_SELFIES), Some(&1));
    }
}
