//! Checkpoint loading: reads a flat `state_dict` from a legacy (non-zip) `torch.save` `.pth`, a
//! zip-format `torch.save` `.pt` or a `.safetensors` file, and copies it into a [`VarStore`] by
//! exact key match.
//!
//! tch 0.26 cannot do this itself: `VarStore::load` and `Tensor::load_multi` read TorchScript /
//! libtorch `OutputArchive` files, not Python pickles, so the two `torch.save` formats go through
//! a small bounded pickle reader ([`pickle`]) that executes nothing. Tensors are materialised on
//! the CPU (CUDA-saved storages included) and copied onto the store's device.

pub mod pickle;
mod torch_file;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use tch::Tensor;
use tch::nn::VarStore;

/// Named tensors read from a checkpoint, in file order, on the CPU.
pub type StateDict = Vec<(String, Tensor)>;

/// Why a checkpoint could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read.
    #[error("reading checkpoint: {0}")]
    Io(#[from] std::io::Error),
    /// The file ends before the data it announces.
    #[error("checkpoint is truncated: {0}")]
    Truncated(String),
    /// The pickle stream is malformed or uses something this reader refuses.
    #[error("checkpoint pickle: {0}")]
    Pickle(String),
    /// The file's layout is not a supported checkpoint format.
    #[error("checkpoint format: {0}")]
    Format(String),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Keys do not match the model.
    #[error("{0}")]
    Mismatch(KeyMismatch),
}

/// The keys of a checkpoint that do not fit a model, all listed at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyMismatch {
    /// Model variables the checkpoint lacks (and that were not allowed to be missing).
    pub missing: Vec<String>,
    /// Checkpoint entries the model has no variable for.
    pub unknown: Vec<String>,
    /// `name: checkpoint shape vs model shape`.
    pub mis_shaped: Vec<String>,
}

impl KeyMismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unknown.is_empty() && self.mis_shaped.is_empty()
    }
}

impl std::fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint does not match the model:")?;
        for (label, list) in [
            ("missing", &self.missing),
            ("unknown", &self.unknown),
            ("mis-shaped", &self.mis_shaped),
        ] {
            if !list.is_empty() {
                write!(f, " {label} [{}];", list.join(", "))?;
            }
        }
        Ok(())
    }
}

/// The on-disk format of a checkpoint, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Legacy (non-zip) `torch.save`: a sequence of pickles and raw storages.
    LegacyTorch,
    /// Zip `torch.save` (torch ≥ 1.6).
    ZipTorch,
    /// Safetensors.
    Safetensors,
}

impl Format {
    /// Detects the format of file contents.
    pub fn detect(data: &[u8]) -> Result<Self, CheckpointError> {
        match data {
            [b'P', b'K', 3, 4, ..] => Ok(Self::ZipTorch),
            [0x80, 2..=5, ..] => Ok(Self::LegacyTorch),
            [a, b, c, d, e, f, g, h, b'{', ..] => {
                let header = u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if header < data.len() as u64 {
                    Ok(Self::Safetensors)
                } else {
                    Err(CheckpointError::Truncated(
                        "safetensors header past end of file".into(),
                    ))
                }
            }
            [] => Err(CheckpointError::Truncated("empty checkpoint file".into())),
            _ => Err(CheckpointError::Format(
                "unrecognised checkpoint (expected torch.save .pth/.pt or .safetensors)".into(),
            )),
        }
    }
}

/// Reads every tensor of a checkpoint file onto the CPU.
pub fn read_state_dict(path: &Path) -> Result<StateDict, CheckpointError> {
    let data = std::fs::read(path)?;
    parse_state_dict(&data)
}

/// Parses checkpoint bytes (any supported [`Format`]) into CPU tensors.
pub fn parse_state_dict(data: &[u8]) -> Result<StateDict, CheckpointError> {
    match Format::detect(data)? {
        Format::LegacyTorch => torch_file::read_legacy(data),
        Format::ZipTorch => torch_file::read_zip(data),
        Format::Safetensors => {
            let st = safetensors::SafeTensors::deserialize(data)
                .map_err(|e| CheckpointError::Format(format!("safetensors: {e}")))?;
            st.tensors()
                .into_iter()
                .map(|(name, view)| Ok((name, Tensor::try_from(view)?)))
                .collect()
        }
    }
}

/// How [`load_into`] treats keys that do not match exactly.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Model variables under these prefixes may be absent from the checkpoint (e.g. the task head
    /// with `--allow-partial`); they keep their initial values.
    pub allow_missing_prefixes: Vec<String>,
    /// A prefix removed from checkpoint keys before matching (e.g. `gnn.` for pretrain-gnns'
    /// `GNN_graphpred` saves).
    pub strip_prefix: Option<String>,
}

/// What [`load_into`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables set from the checkpoint.
    pub loaded: Vec<String>,
    /// Variables left at their initial values (allowed to be missing).
    pub kept: Vec<String>,
}

/// Copies a state dict into a var store by exact name match, checking every key and shape first:
/// nothing is written unless the whole checkpoint fits.
pub fn load_into(
    vs: &VarStore,
    state: StateDict,
    opts: &LoadOptions,
) -> Result<LoadReport, CheckpointError> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut mismatch = KeyMismatch::default();
    let mut matched: Vec<(String, Tensor, Tensor)> = Vec::new();
    let mut seen = HashSet::new();
    for (key, tensor) in state {
        let name = match &opts.strip_prefix {
            Some(p) => key.strip_prefix(p.as_str()).unwrap_or(&key).to_owned(),
            None => key,
        };
        match vars.get(&name) {
            None => mismatch.unknown.push(name),
            Some(var) if var.size() != tensor.size() => {
                mismatch.mis_shaped.push(format!(
                    "{name}: {:?} in checkpoint, {:?} in model",
                    tensor.size(),
                    var.size()
                ));
            }
            Some(var) => {
                seen.insert(name.clone());
                matched.push((name, var.shallow_clone(), tensor));
            }
        }
    }
    let mut kept = Vec::new();
    for name in vars.keys().filter(|n| !seen.contains(*n)) {
        if opts
            .allow_missing_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
        {
            kept.push(name.clone());
        } else if !mismatch
            .mis_shaped
            .iter()
            .any(|m| m.starts_with(&format!("{name}:")))
        {
            mismatch.missing.push(name.clone());
        }
    }
    if !mismatch.is_empty() {
        return Err(CheckpointError::Mismatch(mismatch));
    }
    let mut loaded = Vec::with_capacity(matched.len());
    tch::no_grad(|| -> Result<(), CheckpointError> {
        for (name, mut var, tensor) in matched {
            let src = if tensor.kind() == var.kind() {
                tensor
            } else {
                tensor.f_to_kind(var.kind())?
            };
            var.f_copy_(&src)?;
            loaded.push(name);
        }
        Ok(())
    })?;
    Ok(LoadReport { loaded, kept })
}

/// Reads `path` and applies it to `vs` ([`read_state_dict`] then [`load_into`]).
pub fn load_file_into(
    vs: &VarStore,
    path: &Path,
    opts: &LoadOptions,
) -> Result<LoadReport, CheckpointError> {
    let state = read_state_dict(path)?;
    load_into(vs, state, opts)
}

/// Saves a var store as safetensors (all variables, buffers included), the format runs write.
pub fn save_safetensors(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    save_safetensors_where(vs, path, |_| true)
}

/// Saves the variables of `vs` whose name `keep` accepts (e.g. an encoder without the heads it
/// was trained with) as safetensors.
pub fn save_safetensors_where(
    vs: &VarStore,
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    let vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(k, _)| keep(k))
        .collect();
    let cpu: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(k, v)| Ok((k, v.f_to_device(tch::Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_, CheckpointError>>()?;
    Tensor::write_safetensors(&cpu, path)?;
    Ok(())
}
