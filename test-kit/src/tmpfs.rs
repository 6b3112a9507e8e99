//! A size-limited tmpfs for tests that run a disk full: mounted on a directory, unmounted on
//! drop after whatever used it. Needs root; a test that cannot mount fails and says why, rather
//! than passing without having run.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs. Declare it before whatever writes to it, so it is dropped (unmounted) last.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
    /// The temporary directory the tmpfs is mounted on, when [`Tmpfs::mount_temp`] made one.
    _temp: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `4m`, `16m`) on `dir`, creating it.
    pub fn mount(dir: &Path, size: &str) -> io::Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        mount_on(dir, size)?;
        Ok(Tmpfs {
            dir: dir.to_owned(),
            _temp: None,
        })
    }

    /// Mounts a tmpfs of `size` on a fresh temporary directory.
    pub fn mount_temp(size: &str) -> io::Result<Tmpfs> {
        let temp = tempfile::tempdir()?;
        mount_on(temp.path(), size)?;
        Ok(Tmpfs {
            dir: temp.path().to_owned(),
            _temp: Some(temp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

fn mount_on(dir: &Path, size: &str) -> io::Result<()> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "mounting a tmpfs on {} needs root: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes zeros into `dir/filler` until the filesystem refuses (ENOSPC), syncs what the page
/// cache holds, and returns the file's path (delete it to free the space again).
pub fn fill(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e),
        }
    }
    // Whatever the page cache still holds must hit the (full) filesystem too.
    let _ = f.sync_all();
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_filled_tmpfs_refuses_writes_until_the_filler_is_removed_and_is_unmounted_on_drop() {
        let fs = Tmpfs::mount_temp("1m").unwrap();
        let dir = fs.path().to_owned();
        let filler = fill(&dir).unwrap();
        let more = std::fs::write(dir.join("more"), vec![0u8; 256 * 1024]);
        assert_eq!(
            more.unwrap_err().kind(),
            io::ErrorKind::StorageFull,
            "a full tmpfs must refuse more data"
        );
        std::fs::remove_file(filler).unwrap();
        std::fs::write(dir.join("more"), vec![0u8; 256 * 1024]).unwrap();
        drop(fs);
        assert!(
            !dir.exists(),
            "the mount point (a temporary directory) is gone after drop"
        );
    }
}
