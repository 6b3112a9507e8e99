//! Durable file writes: write to a temporary file in the same directory, fsync it, rename it over
//! the target and fsync the directory, so a crash leaves either the old or the new content and
//! never a torn file. Also private directories and size-bounded reads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors naming the path and the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is {len} bytes, over the {max}-byte limit")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) if needed with mode 0700, and tightens an existing one to 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    ensure_dir_mode(dir, 0o700)
}

/// Creates `dir` (and parents) if needed with `mode`, and sets an existing one to exactly
/// `mode` (for a directory whose group may traverse it, e.g. 0710, to reach one socket).
pub fn ensure_dir_mode(dir: &Path, mode: u32) -> Result<(), FsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io_err("create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(io_err("set permissions on", dir))
}

/// Atomically replaces `path` with `data`, created with `mode`, and makes it durable.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A fresh, unpredictable name created exclusively: O_EXCL also refuses to follow a symlink
    // someone planted at the temporary path.
    let suffix = crate::keys::random_bytes::<8>()
        .map(|b| hex::encode(*b))
        .unwrap_or_else(|_| std::process::id().to_string());
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole file, refusing one larger than `max` bytes before reading it.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    if len > max {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            len,
            max,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // take() also bounds a file that grows while we read it.
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read", path))?;
    if buf.len() as u64 > max {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            len: buf.len() as u64,
            max,
        });
    }
    Ok(buf)
}

/// SHA-256 of a file's contents, streamed (firmware images can be large).
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

/// Reads a file if it exists; `Ok(None)` when it does not.
pub fn read_optional(path: &Path, max: u64) -> Result<Option<Vec<u8>>, FsError> {
    match read_limited(path, max) {
        Ok(b) => Ok(Some(b)),
        Err(FsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn read_limited_refuses_large_files_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        fs::write(&p, vec![0u8; 100]).unwrap();
        assert!(matches!(
            read_limited(&p, 10),
            Err(FsError::TooLarge { .. })
        ));
        assert_eq!(read_limited(&p, 100).unwrap().len(), 100);
        let missing = dir.path().join("missing");
        assert!(
            read_limited(&missing, 10)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        assert_eq!(read_optional(&missing, 10).unwrap(), None);
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
