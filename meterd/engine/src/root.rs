//! The filesystem root that every procfs/sysfs read goes through, and a cheap re-readable file.
//!
//! Production uses `/`; tests point the engine at a fixture tree they write (a fake
//! `sys/class/powercap`, a fake `proc/stat`) so that the real parsing and accounting code runs on
//! data the test controls.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Root directory under which `/proc` and `/sys` are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot(PathBuf);

impl SysRoot {
    /// A root at `dir` (use `/` for the real system).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SysRoot(dir.into())
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// `abs` (an absolute system path such as `/proc/stat`) resolved under this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::new("/")
    }
}

/// A procfs/sysfs file kept open and re-read from offset 0 (`pread`), so that a high-rate
/// sampler pays for one syscall per read rather than open + read + close.
///
/// procfs and sysfs regenerate the content on every read at offset 0. For `/proc/<pid>/stat` the
/// open descriptor also pins the original process: once it has exited, reads fail with `ESRCH`
/// instead of silently returning a recycled PID's figures.
#[derive(Debug)]
pub struct ReadableFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl ReadableFile {
    /// Opens `path` for repeated reads.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        let file = File::open(&path)?;
        Ok(ReadableFile {
            file,
            path,
            buf: vec![0; 4096],
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the whole file and returns its text (lossless for the ASCII files we read).
    ///
    /// One `pread` when the content fits the buffer: a read that does not fill the space offered
    /// has reached the end of these files, so no second read is made to see EOF. That matters for
    /// procfs, whose seq files regenerate the whole content on a read at a non-zero offset: the
    /// EOF probe used to format `/proc/<pid>/stat` twice. Only a full buffer is grown and read on.
    pub fn read(&mut self) -> io::Result<&str> {
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let space = self.buf.len() - len;
            let n = self.file.read_at(&mut self.buf[len..], len as u64)?;
            len += n;
            if n < space {
                break;
            }
        }
        std::str::from_utf8(&self.buf[..len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Reads a small text file and parses its trimmed content.
pub fn read_parse<T: std::str::FromStr>(path: &Path) -> io::Result<T>
where
    T::Err: std::fmt::Display,
{
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|e: T::Err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: cannot parse {:?}: {e}", path.display(), text.trim()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_joined_under_root() {
        let r = SysRoot::new("/tmp/x");
        assert_eq!(r.path("/proc/stat"), PathBuf::from("/tmp/x/proc/stat"));
        assert_eq!(
            SysRoot::default().path("/proc/stat"),
            PathBuf::from("/proc/stat")
        );
    }

    #[test]
    fn readable_file_sees_new_content_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "1").unwrap();
        let mut f = ReadableFile::open(p.clone()).unwrap();
        assert_eq!(f.read().unwrap(), "1");
        let big = "x".repeat(10_000);
        std::fs::write(&p, &big).unwrap();
        assert_eq!(f.read().unwrap(), big);
        // Exactly the buffer's size: the full read is followed by one that sees the end.
        let exact = "y".repeat(16_384);
        std::fs::write(&p, &exact).unwrap();
        assert_eq!(f.read().unwrap(), exact);
        std::fs::write(&p, "2").unwrap();
        assert_eq!(f.read().unwrap(), "2");
    }
}
