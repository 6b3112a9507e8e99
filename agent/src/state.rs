//! The agent's state directory (`--state`, default /var/lib/vouch-agent, mode 0710): everything
//! that must survive a restart so the terminal keeps its identity and its measurement history.
//!
//! | file            | content                                                            |
//! |-----------------|--------------------------------------------------------------------|
//! | `device.key`    | Ed25519 device key, PKCS#8 PEM, 0600                               |
//! | `identity.cbor` | device id, model, EK/AK public parts, AK blobs (TPM-wrapped), 0600 |
//! | `firmware.cbor` | the measurement list of the current TPM boot (files, inventory)    |
//! | `view.cbor`     | what the agent last heard from the verifier (verdict, quarantine)  |
//! | `counter.cbor`  | last hello/status freshness counter (see `freshness`)              |
//! | `answered.cbor` | challenge nonces answered and not yet expired (see `freshness`)    |
//! | `eventlog-sent.cbor` | TPM boot, length and SHA-256 of the event log last sent       |
//! | `punches.redb`  | the punch buffer (redb, 0600; see `punch::buffer`)                 |
//! | `punch.sock`    | the daemon's punch intake socket, 0660 (see `punch::intake`)       |
//!
//! Every write is atomic and fsynced (see `vouch_common::fs`); the punch buffer commits each
//! write transaction durably instead.

use anyhow::{Context, Result, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use vouch_common::{fs, keys};
use vouch_protocol::agent::AgentView;
use vouch_protocol::appraisal::SentDigest;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::firmware::FirmwareLog;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::wire::{from_cbor_exact, to_cbor};
use zeroize::Zeroizing;

use crate::tpm::AkBlobs;

/// Upper bound on any state file.
const MAX_STATE_FILE: u64 = 8 * 1024 * 1024;

/// The terminal's enrolled identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredIdentity {
    pub device_id: DeviceId,
    pub model: String,
    pub ek_public: Bytes,
    pub ek_certificate: Option<Bytes>,
    pub ak_public: Bytes,
    pub ak_name: Bytes,
    /// TPM2B_PRIVATE contents of the AK: wrapped by the TPM, usable only on this TPM.
    pub ak_private: Bytes,
}

impl StoredIdentity {
    pub fn ak_blobs(&self) -> AkBlobs {
        AkBlobs {
            private: self.ak_private.0.clone(),
            public: self.ak_public.0.clone(),
        }
    }
}

/// The view file also records which verifier key it came from: a different pinned key means a
/// different verifier, whose `seq` numbers start over.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredView {
    verifier_key: Option<Bytes>,
    view: AgentView,
}

/// The state directory's mode: the owner's; its group (the terminal app's user) may traverse it
/// to reach the punch socket (0660) by name, but not list it. Every file in it is 0600.
pub const STATE_DIR_MODE: u32 = 0o710;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory, with mode [`STATE_DIR_MODE`].
    pub fn open(root: &Path) -> Result<Self> {
        fs::ensure_dir_mode(root, STATE_DIR_MODE)
            .with_context(|| format!("cannot use state directory {}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens an existing state directory without creating it (for read-only commands).
    pub fn existing(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!(
                "state directory {} does not exist: run `vouch-agent enroll` first",
                root.display()
            );
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The Ed25519 device key of an enrolled terminal. Never created here: a terminal whose key
    /// is gone must be re-enrolled, not silently given a key the verifier does not know.
    pub fn require_device_key(&self) -> Result<SigningKey> {
        let path = self.path("device.key");
        keys::load(&path).with_context(|| {
            format!(
                "cannot load the device key {}: if it is lost, move the state directory away and \
                 enroll the terminal again",
                path.display()
            )
        })
    }

    /// Exclusive lock held while measuring and quoting, so two processes never extend the same
    /// firmware measurement twice. `run` and `attest` already hold the session lock
    /// (`agent.lock`) for their lifetime; this one also covers any other caller. Released on drop.
    pub fn lock(&self) -> Result<std::fs::File> {
        self.lock_file("lock")
    }

    /// Blocks until this process holds the exclusive lock on the state-directory file `name`
    /// (created if missing); released when the returned file is dropped.
    pub(crate) fn lock_file(&self, name: &str) -> Result<std::fs::File> {
        let path = self.path(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(f)
    }

    /// The Ed25519 device key, created on first use (enrollment only).
    pub fn device_key(&self) -> Result<SigningKey> {
        let (key, created) = keys::load_or_create(&self.path("device.key"), None)?;
        if created {
            tracing::info!(fingerprint = %keys::fingerprint(&key.verifying_key()), "created device key");
        }
        Ok(key)
    }

    pub fn identity(&self) -> Result<Option<StoredIdentity>> {
        self.read_cbor("identity.cbor")
    }

    /// The identity, or an error telling the operator to enroll first.
    pub fn require_identity(&self) -> Result<StoredIdentity> {
        self.identity()?.with_context(|| {
            format!(
                "no identity in {}: run `vouch-agent enroll` first",
                self.root.display()
            )
        })
    }

    pub fn save_identity(&self, id: &StoredIdentity) -> Result<()> {
        let bytes = Zeroizing::new(to_cbor(id));
        fs::write_atomic(&self.path("identity.cbor"), &bytes, 0o600)?;
        Ok(())
    }

    pub fn firmware_log(&self) -> Result<FirmwareLog> {
        Ok(self.read_cbor("firmware.cbor")?.unwrap_or_default())
    }

    pub fn save_firmware_log(&self, log: &FirmwareLog) -> Result<()> {
        fs::write_atomic(&self.path("firmware.cbor"), &to_cbor(log), 0o600)?;
        Ok(())
    }

    /// The agent's view for `verifier`; a view recorded under another verifier key is dropped.
    pub fn view(&self, verifier: &VerifyingKey) -> Result<AgentView> {
        let stored: StoredView = self.read_cbor("view.cbor")?.unwrap_or_default();
        match stored.verifier_key {
            Some(k) if k.0 == verifier.to_bytes() => Ok(stored.view),
            _ => Ok(AgentView::default()),
        }
    }

    /// The view regardless of which verifier it came from (for `status`).
    pub fn last_view(&self) -> Result<AgentView> {
        let stored: StoredView = self.read_cbor("view.cbor")?.unwrap_or_default();
        Ok(stored.view)
    }

    pub fn save_view(&self, verifier: &VerifyingKey, view: &AgentView) -> Result<()> {
        let stored = StoredView {
            verifier_key: Some(Bytes(verifier.to_bytes().to_vec())),
            view: view.clone(),
        };
        fs::write_atomic(&self.path("view.cbor"), &to_cbor(&stored), 0o600)?;
        Ok(())
    }

    /// What the agent last sent of its event log. A corrupt record is as good as none: the
    /// agent then sends the whole log, which is always safe.
    pub fn sent_eventlog(&self) -> Option<SentDigest> {
        match self.read_cbor("eventlog-sent.cbor") {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "ignoring the event-log record; sending the whole log");
                None
            }
        }
    }

    pub fn save_sent_eventlog(&self, sent: &SentDigest) -> Result<()> {
        fs::write_atomic(&self.path("eventlog-sent.cbor"), &to_cbor(sent), 0o600)?;
        Ok(())
    }

    pub(crate) fn read_cbor<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        let Some(bytes) = fs::read_optional(&path, MAX_STATE_FILE)? else {
            return Ok(None);
        };
        let value = from_cbor_exact(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))?;
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_lets_its_group_traverse_but_not_list() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        StateDir::open(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o710, "created 0710");
        // An existing directory (an older agent made it 0700, or someone opened it up) is set.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = StateDir::open(&root).unwrap();
        assert_eq!(mode(&root), 0o710, "an existing one is set to 0710");
        drop(s.lock_file("some.lock").unwrap());
        assert_eq!(
            mode(&root.join("some.lock")),
            0o600,
            "lock files are owner-only"
        );
    }

    #[test]
    fn corrupt_state_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("identity.cbor"), b"\xff\x00garbage").unwrap();
        let err = s.identity().unwrap_err().to_string();
        assert!(
            err.contains("identity.cbor") && err.contains("corrupt"),
            "{err}"
        );
    }

    #[test]
    fn sent_eventlog_round_trips_and_a_corrupt_record_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert_eq!(s.sent_eventlog(), None);
        let sent = SentDigest::of(b"log", 4);
        s.save_sent_eventlog(&sent).unwrap();
        assert_eq!(s.sent_eventlog(), Some(sent));
        std::fs::write(dir.path().join("eventlog-sent.cbor"), b"\xff").unwrap();
        assert_eq!(s.sent_eventlog(), None);
    }

    #[test]
    fn view_from_another_verifier_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        let a = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let b = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let view = AgentView {
            quarantined: Some("x".into()),
            ..AgentView::default()
        };
        s.save_view(&a, &view).unwrap();
        assert_eq!(s.view(&a).unwrap(), view);
        assert_eq!(s.view(&b).unwrap(), AgentView::default());
        assert_eq!(s.last_view().unwrap(), view);
    }
}
