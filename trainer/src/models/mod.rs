//! Molecular models trained by `anges-train`. Today: the 2D graph networks of pretrain-gnns
//! (GIN, GCN, GraphSAGE, GAT; docs/spec.md §4.2) in [`gnn`], their mini-batch collation in [`batch`] and the multi-task
//! losses in [`loss`]; training-mode dropout with a fast CPU mask in [`dropout`]; the 1D
//! BERT/RoBERTa SMILES encoder with Hugging Face checkpoints in [`transformer`] and its
//! masked-language-model head (pre-training) in [`lm_head`].
//! Checkpoints are read by [`crate::checkpoint`].

pub mod batch;
#[cfg(test)]
mod checkpoint_tests;
pub mod dropout;
pub mod gnn;
pub mod lm_head;
pub mod loss;
pub mod transformer;

use crate::featurize::Representation;

pub use batch::{Collator, GraphBatch};
pub use gnn::{Gnn, GnnConfig, GnnKind, HEAD_PREFIX};
pub use lm_head::{MaskedLmHead, lm_head_prefix};
pub use transformer::{
    Architecture, Pooling, SequenceModel, SmilesEncoder, TransformerConfig, pad_tokens,
};

/// Model families.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Graph Isomorphism Network, 5×300, as pretrain-gnns (2D).
    Gin,
    /// Graph Convolutional Network, 5×300, as pretrain-gnns (2D).
    Gcn,
    /// GraphSAGE (mean aggregation, row L2 normalisation), 5×300, as pretrain-gnns (2D).
    Graphsage,
    /// Graph attention network (2 heads), 5×300, as pretrain-gnns (2D).
    Gat,
    /// RoBERTa/BERT-style SMILES Transformer (1D), Hugging Face compatible.
    Transformer,
}

impl ModelKind {
    /// `gin`, `gcn`, `graphsage`, `gat` or `transformer` (the name in files and folders).
    pub fn name(self) -> &'static str {
        match self {
            Self::Gin => "gin",
            Self::Gcn => "gcn",
            Self::Graphsage => "graphsage",
            Self::Gat => "gat",
            Self::Transformer => "transformer",
        }
    }

    /// The name under which `anges-train pretrain` writes this family's weights by default, in
    /// the model cache folder, which is where fine-tuning's lookup finds them (and the name under
    /// which ANGES ships its own). The SELFIES encoder has its own name, so that it never replaces
    /// the SMILES one.
    pub fn pretrained_name(self, representation: Representation) -> &'static str {
        match (self, representation) {
            (Self::Gin, _) => "gin_attrmask.safetensors",
            (Self::Gcn, _) => "gcn_attrmask.safetensors",
            (Self::Graphsage, _) => "graphsage_attrmask.safetensors",
            (Self::Gat, _) => "gat_attrmask.safetensors",
            (Self::Transformer, Representation::Smiles) => "transformer_mlm",
            (Self::Transformer, Representation::Selfies) => "transformer_selfies_mlm",
        }
    }

    /// Whether this is a 2D (graph) model.
    pub fn is_graph(self) -> bool {
        self.gnn_kind().is_some()
    }

    /// The message-passing layer of a 2D model (`None` for the transformer).
    pub fn gnn_kind(self) -> Option<GnnKind> {
        match self {
            Self::Gin => Some(GnnKind::Gin),
            Self::Gcn => Some(GnnKind::Gcn),
            Self::Graphsage => Some(GnnKind::Graphsage),
            Self::Gat => Some(GnnKind::Gat),
            Self::Transformer => None,
        }
    }
}

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Invalid hyper-parameters.
    #[error("model configuration: {0}")]
    Config(String),
    /// A graph or a batch that cannot be collated.
    #[error("batch: {0}")]
    Batch(String),
    /// Tensors of incompatible shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A pretrained checkpoint that cannot be read or does not fit the model (the error names
    /// the missing, unknown or mis-shaped keys).
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        /// The weights file.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: crate::checkpoint::CheckpointError,
    },
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
