//! On-disk cache of featurised datasets.
//!
//! One file per key (`<blake3 of key>.bin`): a magic tag, the blake3 checksum of the payload,
//! then the payload (postcard), which starts with the full key. A file whose magic, checksum,
//! encoding or key does not match is stale or corrupt: it is reported, ignored and rebuilt by the
//! caller, never trusted. Writes go to a temporary file renamed into place, so a crash never
//! leaves a half-written entry under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DataError;

const MAGIC: &[u8; 8] = b"ANGESFC1";

/// The cache file of `key` in `dir`.
pub fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{}.bin", blake3::hash(key.as_bytes()).to_hex()))
}

/// Reads the entry of `key`; `None` (with a log line saying why) when absent, stale or corrupt.
pub fn load<T: DeserializeOwned>(dir: &Path, key: &str) -> Option<T> {
    let path = entry_path(dir, key);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the feature cache; rebuilding");
            return None;
        }
    };
    match decode(&bytes, key) {
        Ok(v) => Some(v),
        Err(why) => {
            tracing::warn!(path = %path.display(), why, "feature cache entry is stale or corrupt; rebuilding");
            None
        }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], key: &str) -> Result<T, &'static str> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("bad magic")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (sum, payload) = rest.split_at(32);
    if blake3::hash(payload).as_bytes() != sum {
        return Err("checksum mismatch");
    }
    let (stored_key, value): (String, T) =
        postcard::from_bytes(payload).map_err(|_| "undecodable payload")?;
    if stored_key != key {
        return Err("key mismatch");
    }
    Ok(value)
}

/// Writes the entry of `key` atomically.
pub fn store<T: Serialize>(dir: &Path, key: &str, value: &T) -> Result<PathBuf, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let payload = postcard::to_stdvec(&(key, value)).map_err(|e| {
        DataError::io(
            dir,
            std::io::Error::other(format!("cannot encode cache entry: {e}")),
        )
    })?;
    let path = entry_path(dir, key);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(blake3::hash(&payload).as_bytes())?;
        f.write_all(&payload)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DataError::io(&path, e)
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let v = vec![1i64, 2, 3];
        let path = store(dir.path(), "k1", &v).unwrap();
        assert_eq!(load::<Vec<i64>>(dir.path(), "k1"), Some(v));
        assert_eq!(load::<Vec<i64>>(dir.path(), "k2"), None);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(load::<Vec<i64>>(dir.path(), "k1"), None);
        std::fs::write(&path, b"ANGESFC1short").unwrap();
        assert_eq!(load::<Vec<i64>>(dir.path(), "k1"), None);
    }
}
