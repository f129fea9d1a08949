//! Reading `torch.save` files of a flat `state_dict`: the legacy (non-zip) format that the
//! pretrain-gnns checkpoints use and the zip format of torch ≥ 1.6.
//!
//! Legacy layout: five consecutive pickles — magic number, protocol version (1001), system info,
//! the state dict (storages as persistent ids), the list of storage keys — then, per key in that
//! order, an int64 element count followed by the raw little-endian bytes. Zip layout:
//! `<prefix>/data.pkl` plus one `<prefix>/data/<key>` entry per storage. Tensors are built on the
//! CPU whatever device they were saved from (CUDA locations are ignored); callers move them.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use tch::Tensor;

use super::pickle::{self, StorageRef, TensorRef, Value};
use super::{CheckpointError, StateDict};

/// `torch.serialization.MAGIC_NUMBER`.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i128 = 1001;

/// Parses a legacy (non-zip) `torch.save` file held in memory.
pub fn read_legacy(data: &[u8]) -> Result<StateDict, CheckpointError> {
    let (magic, pos) = pickle::decode(data, 0)?;
    if magic != Value::Int(LEGACY_MAGIC) {
        return Err(CheckpointError::Format(
            "not a legacy torch.save file (bad magic number)".into(),
        ));
    }
    let (proto, pos) = pickle::decode(data, pos)?;
    if proto != Value::Int(LEGACY_PROTOCOL) {
        return Err(CheckpointError::Format(format!(
            "unsupported legacy torch.save protocol {proto:?}"
        )));
    }
    let (sys_info, pos) = pickle::decode(data, pos)?;
    check_little_endian(&sys_info)?;
    let (root, pos) = pickle::decode(data, pos)?;
    let (keys, mut pos) = pickle::decode(data, pos)?;
    let Value::List(keys) = keys else {
        return Err(CheckpointError::Format(
            "legacy storage key list is missing".into(),
        ));
    };
    let refs = tensor_refs(root)?;
    let mut wanted: HashMap<&str, &StorageRef> = HashMap::new();
    for (_, t) in &refs {
        wanted.insert(t.storage.key.as_str(), &t.storage);
    }
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(CheckpointError::Format(
                "legacy storage key is not a string".into(),
            ));
        };
        let count_bytes = data.get(pos..pos + 8).ok_or_else(|| {
            CheckpointError::Truncated(format!("storage {key}: size record past end of file"))
        })?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let count = u64::from_le_bytes(count);
        pos += 8;
        let storage = wanted.get(key.as_str()).ok_or_else(|| {
            CheckpointError::Format(format!("storage {key} is listed but used by no tensor"))
        })?;
        if count != storage.numel {
            return Err(CheckpointError::Format(format!(
                "storage {key}: file says {count} elements, its tensors say {}",
                storage.numel
            )));
        }
        let len = byte_len(storage)?;
        let bytes = data.get(pos..pos.saturating_add(len)).ok_or_else(|| {
            CheckpointError::Truncated(format!(
                "storage {key}: {len} bytes needed at offset {pos}, file has {}",
                data.len()
            ))
        })?;
        pos += len;
        storages.insert(key, bytes);
    }
    build(refs, |s| storages.get(&s.key).copied().map(<[u8]>::to_vec))
}

/// Parses a zip-format `torch.save` archive held in memory.
pub fn read_zip(data: &[u8]) -> Result<StateDict, CheckpointError> {
    let zip_err = |e: zip::result::ZipError| CheckpointError::Format(format!("zip archive: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(zip_err)?;
    let pkl_name = archive
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_owned)
        .ok_or_else(|| CheckpointError::Format("zip archive has no data.pkl".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    if let Ok(mut order) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        order.read_to_string(&mut s)?;
        if s.trim() != "little" {
            return Err(CheckpointError::Format(format!(
                "unsupported byte order {s:?}"
            )));
        }
    }
    let pkl = read_entry(&mut archive, &pkl_name, 1 << 30)?;
    let (root, _) = pickle::decode(&pkl, 0)?;
    let refs = tensor_refs(root)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, t) in &refs {
        if storages.contains_key(&t.storage.key) {
            continue;
        }
        let len = byte_len(&t.storage)?;
        let name = format!("{prefix}data/{}", t.storage.key);
        let bytes = read_entry(&mut archive, &name, len)?;
        storages.insert(t.storage.key.clone(), bytes);
    }
    build(refs, |s| storages.get(&s.key).cloned())
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    expect_max: usize,
) -> Result<Vec<u8>, CheckpointError> {
    let mut entry = archive
        .by_name(name)
        .map_err(|e| CheckpointError::Format(format!("zip entry {name}: {e}")))?;
    let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
    if size > expect_max {
        return Err(CheckpointError::Format(format!(
            "zip entry {name} holds {size} bytes, at most {expect_max} expected"
        )));
    }
    let mut out = Vec::with_capacity(size);
    entry.read_to_end(&mut out)?;
    Ok(out)
}

fn check_little_endian(sys_info: &Value) -> Result<(), CheckpointError> {
    if let Value::Dict(items) = sys_info {
        for (k, v) in items {
            if *k == Value::Str("little_endian".into()) && *v == Value::Bool(false) {
                return Err(CheckpointError::Format(
                    "big-endian checkpoints are unsupported".into(),
                ));
            }
        }
    }
    Ok(())
}

fn byte_len(s: &StorageRef) -> Result<usize, CheckpointError> {
    usize::try_from(s.numel)
        .ok()
        .and_then(|n| n.checked_mul(s.kind.element_size()))
        .ok_or_else(|| CheckpointError::Format(format!("storage {} is too large", s.key)))
}

/// Flattens the root object into `(name, tensor view)` pairs. Accepts a flat state dict, or a
/// dict holding one under `state_dict` / `model_state_dict` / `model`.
fn tensor_refs(root: Value) -> Result<Vec<(String, TensorRef)>, CheckpointError> {
    let Value::Dict(items) = root else {
        return Err(CheckpointError::Format(
            "checkpoint is not a dict of tensors".into(),
        ));
    };
    if !items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        for wrapper in ["state_dict", "model_state_dict", "model"] {
            if let Some((_, inner @ Value::Dict(_))) =
                items.iter().find(|(k, _)| *k == Value::Str(wrapper.into()))
            {
                return tensor_refs(inner.clone());
            }
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => out.push((name, t)),
            (Value::Str(name), _) => {
                return Err(CheckpointError::Format(format!(
                    "entry {name} is not a tensor"
                )));
            }
            _ => {
                return Err(CheckpointError::Format(
                    "state dict key is not a string".into(),
                ));
            }
        }
    }
    Ok(out)
}

/// Materialises each view as a contiguous CPU tensor after checking it lies inside its storage.
fn build(
    refs: Vec<(String, TensorRef)>,
    bytes_of: impl Fn(&StorageRef) -> Option<Vec<u8>>,
) -> Result<StateDict, CheckpointError> {
    let mut base: HashMap<String, Tensor> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        check_view(&name, &t)?;
        if !base.contains_key(&t.storage.key) {
            let bytes = bytes_of(&t.storage).ok_or_else(|| {
                CheckpointError::Format(format!("{name}: storage {} has no data", t.storage.key))
            })?;
            if bytes.len() != byte_len(&t.storage)? {
                return Err(CheckpointError::Truncated(format!(
                    "{name}: storage {} holds {} bytes, {} expected",
                    t.storage.key,
                    bytes.len(),
                    byte_len(&t.storage)?
                )));
            }
            let numel = i64::try_from(t.storage.numel)
                .map_err(|_| CheckpointError::Format(format!("{name}: storage too large")))?;
            let flat = Tensor::f_from_data_size(&bytes, &[numel], t.storage.kind.tch_kind())?;
            base.insert(t.storage.key.clone(), flat);
        }
        let flat = base.get(&t.storage.key).ok_or_else(|| {
            CheckpointError::Format(format!("{name}: storage {} missing", t.storage.key))
        })?;
        let view = flat
            .f_as_strided(&t.size, &t.stride, Some(t.offset))?
            .f_contiguous()?;
        out.push((name, view));
    }
    Ok(out)
}

/// Every element the view addresses must lie inside its storage.
fn check_view(name: &str, t: &TensorRef) -> Result<(), CheckpointError> {
    let bad = || {
        CheckpointError::Format(format!(
            "{name}: view (offset {}, size {:?}, stride {:?}) exceeds its storage of {} elements",
            t.offset, t.size, t.stride, t.storage.numel
        ))
    };
    if t.offset < 0 || t.size.iter().any(|&s| s < 0) || t.stride.iter().any(|&s| s < 0) {
        return Err(bad());
    }
    if t.size.contains(&0) {
        return Ok(());
    }
    let mut last = i128::from(t.offset);
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        last += i128::from(s - 1) * i128::from(st);
    }
    if last >= i128::from(t.storage.numel) {
        return Err(bad());
    }
    Ok(())
}
