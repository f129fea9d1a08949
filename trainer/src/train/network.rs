//! The network a run fine-tunes, whatever its family: a GIN/GCN over molecular graphs or a
//! BERT/RoBERTa encoder over SMILES tokens, with the per-row inputs each needs, how it is built
//! (from pre-trained weights or from scratch), and MolPeg's reference twin of it.
//!
//! 1D specifics: from a pre-trained folder (`--pretrained DIR` or the default of
//! [`super::weights`]; a Hugging Face folder: `config.json`, `model.safetensors` or
//! `pytorch_model.bin`, `tokenizer.json` or `vocab.txt`) the encoder and its tokeniser come from
//! the folder and the task head starts fresh; with `--random-init`, a small native BERT
//! ([`TransformerConfig::small`], the shipped encoder's shape) and an atom-level regex tokeniser
//! built from the dataset's SMILES start from random initialisation. Rows the tokeniser cannot encode are dropped,
//! counted and logged. `--dropout` applies to the 2D models; the Transformer uses its config's.
//!
//! `--representation selfies` tokenises the SELFIES of each SMILES instead; a pre-trained folder
//! records the representation it was trained on (`"representation"` in its `config.json`,
//! SMILES when absent), and a folder of the other one is refused before any work.

use std::path::Path;

use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

use super::TrainError;
use crate::config::{ModelConfig, ModelKind};
use crate::data::Dataset;
use crate::featurize::tokens::REPRESENTATION_KEY;
use crate::featurize::{
    GraphFeatures, RegexTokenizer, Representation, SmilesTokenizer, TokenIds, TokenizeError,
};
use crate::models::{
    Collator, Gnn, GnnConfig, GnnKind, Pooling, SequenceModel, TransformerConfig, pad_tokens,
};

/// The network being fine-tuned (or MolPeg's reference copy of it).
#[derive(Debug)]
pub(crate) enum Network {
    /// GIN/GCN over molecular graphs.
    Graph(Gnn),
    /// A BERT/RoBERTa encoder over SMILES tokens (boxed: it is much larger than a GNN handle).
    Sequence(Box<SequenceModel>),
}

/// The model inputs of every dataset row.
pub(crate) enum Inputs<'a> {
    /// pretrain-gnns graph features.
    Graphs(Vec<&'a GraphFeatures>),
    /// Token ids (with the begin/end tokens) and the padding id.
    Tokens(&'a [TokenIds], i64),
}

impl Network {
    /// Logits `[B, T]` of the rows at `positions`.
    pub(crate) fn forward(
        &self,
        inputs: &Inputs<'_>,
        collator: &mut Collator,
        positions: &[usize],
        device: Device,
        train: bool,
    ) -> Result<Tensor, TrainError> {
        match (self, inputs) {
            (Network::Graph(gnn), Inputs::Graphs(graphs)) => {
                let batch: Vec<&GraphFeatures> = positions.iter().map(|&p| graphs[p]).collect();
                let batch = collator.collate(&batch, device)?;
                Ok(gnn.forward(&batch, train)?)
            }
            (Network::Sequence(model), Inputs::Tokens(tokens, pad)) => {
                let (ids, mask) = pad_tokens(tokens, positions, *pad, device)?;
                Ok(model.forward_logits(&ids, &mask, train)?)
            }
            _ => Err(TrainError::Options(
                "internal: the model and its inputs are of different kinds".into(),
            )),
        }
    }
}

/// Skip reason of rows whose SMILES has no SELFIES (`--representation selfies`).
pub(crate) const DROP_NO_SELFIES: &str = "no-selfies";

/// The representation the 1D folder `dir` was pre-trained on: the `"representation"` of its
/// `config.json`, SMILES when absent (Hugging Face folders, folders written before it).
pub fn folder_representation(dir: &Path) -> Result<Representation, TrainError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::io(&path, std::io::Error::other(e)))?;
    match json.get(REPRESENTATION_KEY) {
        None => Ok(Representation::Smiles),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            TrainError::Options(format!(
                "{}: \"{REPRESENTATION_KEY}\" is {v}, not \"smiles\" or \"selfies\"",
                path.display()
            ))
        }),
    }
}

/// The tokeniser and encoder configuration of a 1D run over `representation`: from a Hugging
/// Face folder pre-trained on it (another representation is refused, naming both), or a regex
/// vocabulary over `smiles` and the small native configuration.
pub(crate) fn sequence_setup<'a>(
    pretrained: Option<&Path>,
    smiles: impl IntoIterator<Item = &'a str>,
    representation: Representation,
) -> Result<(SmilesTokenizer, TransformerConfig), TrainError> {
    match pretrained {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(TrainError::Options(format!(
                    "{}: --model transformer takes a Hugging Face folder (config.json, \
                     model.safetensors, tokenizer.json) as --pretrained",
                    dir.display()
                )));
            }
            let trained_on = folder_representation(dir)?;
            if trained_on != representation {
                return Err(TrainError::Options(format!(
                    "--representation {representation}, but {} was pre-trained on {trained_on} \
                     (its config.json says \"{REPRESENTATION_KEY}\": \"{trained_on}\"): fine-tune \
                     it with --representation {trained_on}, or pre-train on {representation} \
                     (anges-train pretrain --model transformer --representation {representation})",
                    dir.display()
                )));
            }
            let tokenizer = SmilesTokenizer::from_path_as(dir, representation)
                .map_err(|e| TrainError::Options(format!("{}: {e}", dir.display())))?;
            let cfg = TransformerConfig::from_json_file(&dir.join("config.json"))?;
            Ok((tokenizer, cfg))
        }
        None => {
            let tokenizer =
                SmilesTokenizer::Regex(RegexTokenizer::from_corpus_as(smiles, representation));
            let cfg = TransformerConfig::small(tokenizer.vocab_size() as i64, tokenizer.pad_id());
            Ok((tokenizer, cfg))
        }
    }
}

/// Token ids of every row of `ds`; rows the tokeniser cannot encode are dropped (logged) and
/// their counts returned: those without SELFIES ([`DROP_NO_SELFIES`]) and the others.
pub(crate) fn tokenize_rows(
    ds: &mut Dataset,
    tokenizer: &SmilesTokenizer,
    max_len: usize,
) -> (Vec<TokenIds>, usize, usize) {
    let mut tokens = Vec::with_capacity(ds.rows.len());
    let mut no_selfies = 0;
    let before = ds.rows.len();
    ds.rows
        .retain(|r| match tokenizer.encode(&r.smiles, max_len) {
            Ok(ids) => {
                tokens.push(ids);
                true
            }
            Err(why) => {
                if matches!(why, TokenizeError::Selfies { .. }) {
                    no_selfies += 1;
                }
                tracing::warn!(row = r.row, smiles = %r.smiles, "dropped row: {why}");
                false
            }
        });
    let dropped = before - ds.rows.len();
    (tokens, no_selfies, dropped - no_selfies)
}

/// The 2D network (GIN, GCN, GraphSAGE or GAT) of `model` on `device`, freshly initialised from libtorch's
/// generator: what a run fine-tunes, and what `anges-train predict` loads a run's weights into.
pub(crate) fn graph_network(
    model: &ModelConfig,
    num_tasks: i64,
    device: Device,
) -> Result<(VarStore, Network), TrainError> {
    let vs = VarStore::new(device);
    let gnn = Gnn::new(
        &vs.root(),
        GnnConfig {
            kind: gnn_kind(model.kind),
            dropout: model.dropout,
            num_tasks,
            gcn_l2_normalize: model.gcn_l2_normalize,
            ..GnnConfig::default()
        },
    )?;
    Ok((vs, Network::Graph(gnn)))
}

/// The graph layer kind of a 2D model kind (GIN for the transformer, which never gets here).
fn gnn_kind(kind: ModelKind) -> GnnKind {
    kind.gnn_kind().unwrap_or(GnnKind::Gin)
}

/// The 1D network on `device`: the Hugging Face encoder of `pretrained`, or `cfg` from scratch.
pub(crate) fn sequence_network(
    pretrained: Option<&Path>,
    cfg: TransformerConfig,
    num_tasks: i64,
    pooling: Pooling,
    device: Device,
) -> Result<(VarStore, Network), TrainError> {
    match pretrained {
        Some(dir) => {
            let (vs, model) = SequenceModel::from_hf_dir(dir, num_tasks, pooling, device)?;
            tracing::info!("loaded the pre-trained encoder of {}", dir.display());
            Ok((vs, Network::Sequence(Box::new(model))))
        }
        None => {
            let vs = VarStore::new(device);
            let model = SequenceModel::new(&vs.root(), cfg, num_tasks, pooling)?;
            tracing::info!(
                "--random-init: the native SMILES Transformer starts from random weights"
            );
            Ok((vs, Network::Sequence(Box::new(model))))
        }
    }
}

/// A network of the same architecture as `net` under `root` (MolPeg's reference model; its
/// weights are then copied from the online model).
pub(crate) fn twin(net: &Network, root: &nn::Path) -> Result<Network, TrainError> {
    Ok(match net {
        Network::Graph(g) => Network::Graph(Gnn::new(root, g.config().clone())?),
        Network::Sequence(m) => Network::Sequence(Box::new(SequenceModel::new(
            root,
            m.encoder.config().clone(),
            m.num_tasks(),
            m.pooling(),
        )?)),
    })
}
