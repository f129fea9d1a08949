//! File-system steps the trainer's writers share: replacing a file whole (write beside it, then
//! rename) and removing a file that may not exist.

use std::io;
use std::path::Path;

/// Writes `path` through `write` on a temporary file beside it (`.<name>.tmp`), then renames it
/// over `path`: readers, and a process that dies meanwhile, see the old file or the new one,
/// never half of one. A failed write removes the temporary file; `rename_error` turns a failed
/// rename into the caller's error.
pub(crate) fn replace_file<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    rename_error: impl FnOnce(&Path, io::Error) -> E,
) -> Result<(), E> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| rename_error(path, e))
}

/// Removes `path`; a file that is not there is not an error.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
