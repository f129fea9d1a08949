//! Featurisers: molecules → model inputs.
//!
//! - [`graph`]: the pretrain-gnns graph features of Hu et al. (docs/spec.md §4.1) for the 2D models.
//! - [`tokens`]: SMILES tokenisers for the 1D models (atom-level regex tokeniser, and Hugging Face
//!   `tokenizer.json` files so ChemBERTa-style checkpoints are used as published), over SMILES or
//!   SELFIES symbols ([`Representation`]).

pub mod graph;
pub mod tokens;

pub use graph::{FEATURIZER_VERSION, FeaturizeError, GraphFeatures, featurize_smiles};
pub use tokens::{RegexTokenizer, Representation, SmilesTokenizer, TokenIds, TokenizeError};
