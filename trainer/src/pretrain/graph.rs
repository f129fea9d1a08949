//! Attribute masking for the 2D models (GIN, GCN, GraphSAGE, GAT) (pretrain-gnns `pretrain_masking.py`): the encoder of
//! [`crate::models::Gnn`] (5 × 300, `--dropout` default 0 as there), a `Linear(d, 119)` head
//! `linear_pred_atoms` on the node states of the masked atoms ([`super::atom_masking`]), and
//! cross-entropy against their original atom types.
//!
//! The checkpoint holds exactly the pretrain-gnns encoder keys (`x_embedding1.weight`,
//! `gnns.N.*`, `batch_norms.N.*`; docs/spec.md §4.4): neither the masking head nor the unused task head
//! `graph_pred_linear` is written, so fine-tuning loads it like a pretrain-gnns `.pth`.

use std::path::Path;

use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

use super::PretrainError;
use super::atom_masking;
use super::corpus::Corpus;
use super::output::{Output, replace_checkpoint};
use super::task::{BatchOutput, Objective};
use crate::checkpoint::{self, LoadOptions};
use crate::config::PretrainConfig;
use crate::featurize::GraphFeatures;
use crate::featurize::graph::MASK_ATOM_TYPE;
use crate::models::gnn::torch_linear;
use crate::models::{Collator, Gnn, GnnConfig, GnnKind, HEAD_PREFIX};
use crate::train::seeded::Stream;

/// Var-store prefix of the masking head (pretrain-gnns' name; never saved).
pub const ATOM_HEAD_PREFIX: &str = "linear_pred_atoms";

/// Whether a variable belongs to the encoder written to the checkpoint.
pub fn is_encoder_key(name: &str) -> bool {
    ![HEAD_PREFIX, ATOM_HEAD_PREFIX].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// 2D attribute masking over the corpus' graphs.
#[derive(Debug)]
pub struct AttributeMasking {
    vs: VarStore,
    gnn: Gnn,
    head: nn::Linear,
    graphs: Vec<GraphFeatures>,
    collator: Collator,
    rate: f64,
    device: Device,
    checkpoint: std::path::PathBuf,
}

impl AttributeMasking {
    /// The model of `args` on `device` (from `--pretrained` when given) over `corpus`' graphs,
    /// saving to `out`.
    pub fn new(
        args: &PretrainConfig,
        corpus: Corpus,
        device: Device,
        out: &Output,
    ) -> Result<Self, PretrainError> {
        let kind = args.model.gnn_kind().unwrap_or(GnnKind::Gin);
        let vs = VarStore::new(device);
        let gnn = Gnn::new(
            &vs.root(),
            GnnConfig {
                kind,
                dropout: args.dropout,
                gcn_l2_normalize: args.gcn_l2_normalize,
                ..GnnConfig::default()
            },
        )?;
        let d = gnn.config().emb_dim;
        let head = torch_linear(vs.root() / ATOM_HEAD_PREFIX, d, MASK_ATOM_TYPE);
        if let Some(path) = &args.pretrained {
            load_encoder(&vs, path)?;
        }
        Ok(Self {
            vs,
            gnn,
            head,
            graphs: corpus.graphs,
            collator: Collator::new(),
            rate: args.mask_rate,
            device,
            checkpoint: out.checkpoint(),
        })
    }
}

/// Loads the encoder of a checkpoint (a task head in it, e.g. a fine-tuned run's, is ignored).
fn load_encoder(vs: &VarStore, path: &Path) -> Result<(), PretrainError> {
    let err = |source| PretrainError::Checkpoint {
        path: path.to_owned(),
        source,
    };
    let state: Vec<(String, Tensor)> = checkpoint::read_state_dict(path)
        .map_err(err)?
        .into_iter()
        .filter(|(k, _)| is_encoder_key(k))
        .collect();
    let opts = LoadOptions {
        allow_missing_prefixes: vec![format!("{HEAD_PREFIX}."), format!("{ATOM_HEAD_PREFIX}.")],
        strip_prefix: None,
    };
    let report = checkpoint::load_into(vs, state, &opts).map_err(err)?;
    tracing::info!(
        loaded = report.loaded.len(),
        "starting from the encoder of {}",
        path.display()
    );
    Ok(())
}

impl Objective for AttributeMasking {
    fn molecules(&self) -> usize {
        self.graphs.len()
    }

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn encoder_parameters(&self) -> i64 {
        self.vs
            .variables()
            .iter()
            .filter(|(k, _)| is_encoder_key(k))
            .map(|(_, v)| v.numel() as i64)
            .sum()
    }

    fn forward(
        &mut self,
        items: &[usize],
        masks: &mut Stream,
    ) -> Result<Option<BatchOutput>, PretrainError> {
        let graphs: Vec<&GraphFeatures> = items.iter().map(|&i| &self.graphs[i]).collect();
        let mask = atom_masking::choose(&graphs, self.rate, masks);
        let mut batch = self.collator.collate(&graphs, self.device)?;
        if batch.num_atoms < 2 {
            // Training-mode batch norm needs two values per channel.
            return Ok(None);
        }
        let positions = atom_masking::apply(&mut batch, &mask)?;
        let nodes = self.gnn.node_embeddings(&batch, true)?;
        let logits = nodes
            .f_index_select(0, &positions)?
            .f_linear(&self.head.ws, self.head.bs.as_ref())?;
        let targets = Tensor::f_from_slice(&mask.labels)?.f_to_device(self.device)?;
        Ok(Some(BatchOutput {
            logits,
            targets,
            target_values: mask.labels,
        }))
    }

    fn save(&self) -> Result<(), PretrainError> {
        replace_checkpoint(&self.checkpoint, |tmp| {
            checkpoint::save_safetensors_where(&self.vs, tmp, is_encoder_key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_not_encoder_keys() {
        assert!(is_encoder_key("x_embedding1.weight"));
        assert!(is_encoder_key("gnns.4.mlp.2.bias"));
        assert!(is_encoder_key("batch_norms.0.num_batches_tracked"));
        assert!(!is_encoder_key("graph_pred_linear.weight"));
        assert!(!is_encoder_key("linear_pred_atoms.bias"));
        assert!(
            is_encoder_key("linear_pred_atoms_x.bias"),
            "prefix, not substring"
        );
    }
}
