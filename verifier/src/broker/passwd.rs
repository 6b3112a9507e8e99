//! The broker's password file (`DATA/broker/passwd`, Mosquitto's `user:$7$...` lines), kept by
//! the verifier: rebuilt from the store's enrollments on start, extended on every enrollment,
//! each time rewritten atomically (mode 0600) and followed by a reload of the broker (SIGHUP to
//! the managed Mosquitto, or the operator's reload command for an external one).
//!
//! Each change rewrites the whole file: O(devices) per enrollment. That is fine for enrollments
//! at operator pace up to ~100k terminals (a few MB written); a factory batch should enroll
//! through `enroll_batch` and reload once.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use vouch_common::fs;
use vouch_protocol::enrollment::check_mqtt_password_hash;

/// How the broker is told to re-read its password and ACL files.
#[derive(Debug, Clone)]
pub enum Reload {
    /// SIGHUP to the managed child, whose current pid comes from the supervisor.
    Managed(std::sync::Arc<super::BrokerHealth>),
    /// An operator command run with `sh -c` (external broker), e.g. `systemctl reload mosquitto`.
    Command(String),
    /// Nothing to tell (external broker reloaded by other means).
    None,
}

/// The password file and the broker reload that follows each change.
#[derive(Debug)]
pub struct PasswordFile {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, String>>,
    reload: Reload,
    /// The last reload failed: the broker may not have the file's content yet, so the next
    /// upsert reloads even when it changes nothing (an operator retrying an enrollment).
    reload_failed: AtomicBool,
}

impl PasswordFile {
    /// A password file at `path` holding exactly `entries` (user, hash), written now.
    pub fn create(
        path: &Path,
        entries: impl IntoIterator<Item = (String, String)>,
        reload: Reload,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (user, hash) in entries {
            check_entry(&user, &hash)?;
            map.insert(user, hash);
        }
        write(path, &map)?;
        Ok(Self {
            path: path.to_owned(),
            entries: Mutex::new(map),
            reload,
            reload_failed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds or replaces `user`'s hash; when that changed the file, rewrites it and reloads the
    /// broker. Returns whether anything changed.
    pub fn upsert(&self, user: &str, hash: &str) -> Result<bool> {
        check_entry(user, hash)?;
        let mut map = self
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("password file lock poisoned"))?;
        if map.get(user).is_some_and(|h| h == hash) {
            drop(map);
            if self.reload_failed.load(Ordering::SeqCst) {
                self.reload()?;
            }
            return Ok(false);
        }
        map.insert(user.to_owned(), hash.to_owned());
        write(&self.path, &map)?;
        drop(map);
        self.reload()?;
        Ok(true)
    }

    /// Tells the broker to re-read the password and ACL files.
    pub fn reload(&self) -> Result<()> {
        let result = self.reload_now();
        self.reload_failed.store(result.is_err(), Ordering::SeqCst);
        result
    }

    fn reload_now(&self) -> Result<()> {
        match &self.reload {
            Reload::Managed(health) => {
                // No child at the moment (restarting): it reads the new file when it starts.
                if let Some(pid) = health.broker_pid() {
                    super::supervisor::signal(pid, "HUP")?;
                }
            }
            Reload::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .output()
                    .with_context(|| format!("cannot run mqtt_reload_command {cmd:?}"))?;
                if !out.status.success() {
                    bail!(
                        "mqtt_reload_command {cmd:?} failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
            Reload::None => {}
        }
        Ok(())
    }
}

fn check_entry(user: &str, hash: &str) -> Result<()> {
    if user.is_empty() || user.len() > 256 || user.contains([':', '\n', '\r']) {
        bail!("MQTT user name {user:?} cannot be written to a password file");
    }
    check_mqtt_password_hash(hash).with_context(|| format!("MQTT user {user}"))?;
    Ok(())
}

fn write(path: &Path, map: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::with_capacity(map.len() * 128);
    for (user, hash) in map {
        text.push_str(user);
        text.push(':');
        text.push_str(hash);
        text.push('\n');
    }
    fs::write_atomic(path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write the broker password file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const H1: &str = "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==";

    #[test]
    fn upsert_rewrites_privately_and_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("passwd");
        let f = PasswordFile::create(&p, [("a".into(), H1.into())], Reload::None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("a:{H1}\n"));
        assert!(f.upsert("b", H1).unwrap());
        assert!(!f.upsert("b", H1).unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("a:{H1}\nb:{H1}\n")
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn lines_that_would_break_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = PasswordFile::create(&dir.path().join("p"), [], Reload::None).unwrap();
        assert!(f.upsert("a:b", H1).is_err());
        assert!(f.upsert("a\nb", H1).is_err());
        assert!(f.upsert("a", "plain").is_err());
    }

    #[test]
    fn a_failing_reload_command_is_an_error_and_retried_by_the_next_upsert() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("broker-down");
        std::fs::write(&flag, "").unwrap();
        let count = dir.path().join("reloads");
        let cmd = format!(
            "test ! -e {} && echo x >> {}",
            flag.display(),
            count.display()
        );
        let f = PasswordFile::create(&dir.path().join("p"), [], Reload::Command(cmd)).unwrap();
        assert!(f.upsert("a", H1).is_err());
        std::fs::remove_file(&flag).unwrap();
        // Same line again (the operator retries): nothing changed, but the reload is redone.
        assert!(!f.upsert("a", H1).unwrap());
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");
        // Once it succeeded, an unchanged upsert does not reload again.
        assert!(!f.upsert("a", H1).unwrap());
        assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\n");
    }
}
