//! What the figures were measured on: cores, CPU model, load when the bench started (other
//! work on the machine shows up there), and whether the verifier's data directory is on a
//! real disk or in memory (tmpfs makes durable commits nearly free, so it must be said).

use std::path::Path;

/// Logical CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The 1-minute load average.
pub fn load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The file system type and device `path` lives on (the longest mount point that contains it,
/// from /proc/mounts), e.g. `("ext4", "/dev/vda")` or `("tmpfs", "tmpfs")`.
pub fn filesystem(path: &Path) -> Option<(String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            // /proc/mounts escapes spaces and the like as octal: good enough for a prefix test.
            path.starts_with(at)
                .then(|| (at.len(), fs.to_owned(), dev.to_owned()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fs, dev)| (fs, dev))
}

/// "disk (ext4 on /dev/vda)" or "MEMORY (tmpfs): durable commits cost almost nothing".
pub fn describe_storage(path: &Path) -> String {
    match filesystem(path) {
        Some((fs, _)) if matches!(fs.as_str(), "tmpfs" | "ramfs") => {
            format!("MEMORY ({fs}): fsync costs nothing here, so these are not disk figures")
        }
        Some((fs, dev)) => format!("disk ({fs} on {dev})"),
        None => "unknown file system".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_tmpfs_directory_is_reported_as_memory_not_disk() {
        // /dev/shm is tmpfs on every Linux this bench runs on; skip where it is not.
        let shm = Path::new("/dev/shm");
        if filesystem(shm).is_some_and(|(fs, _)| fs == "tmpfs") {
            assert!(describe_storage(shm).starts_with("MEMORY"));
        }
        let root = filesystem(Path::new("/")).unwrap();
        assert!(!root.0.is_empty());
    }
}
