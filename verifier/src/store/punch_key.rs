//! The key that encrypts punch records at rest (`punch.key` beside the database, i.e.
//! `DATA/punch.key`): 32 random bytes, created at the first start with mode 0600 by a durable
//! write, never stored in the database. The store records the key's id (a hash of the key) and
//! the verifier refuses to start when the file is missing, unreadable by the owner only, or a
//! different key than the one the mirror's rows were written with — a new key would make every
//! held punch unreadable, so one is never made silently.
//!
//! Each record is sealed with XChaCha20-Poly1305 under a fresh random 24-byte nonce, with the
//! device id and seq as associated data, so a ciphertext moved to another row fails to open.
//! (AES-GCM's 12-byte random nonces would pass the 2^-32 collision bound long before the 10^11
//! records a fleet writes under one key.)

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use vouch_protocol::ids::DeviceId;
use zeroize::Zeroizing;

/// The key file's name, beside the store's database file.
pub const PUNCH_KEY_FILE: &str = "punch.key";
/// Length of an AEAD nonce of a stored punch.
pub const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Domain separator of the key id: the id reveals nothing usable about the key.
const KEY_ID_DOMAIN: &[u8] = b"vouch/v1/punch-key-id\0";

/// One record sealed at rest: its nonce and the ciphertext (with the 16-byte tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// The punch key, ready to seal and open records.
#[derive(Clone)]
pub struct PunchKey {
    cipher: XChaCha20Poly1305,
    id: [u8; 32],
}

impl std::fmt::Debug for PunchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id is public (it is in the store); the key never is.
        f.debug_struct("PunchKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

/// The associated data of record `seq` of `device`: the device id's length, the id, the seq.
fn aad(device: &DeviceId, seq: u64) -> Vec<u8> {
    let id = device.as_str().as_bytes();
    let mut a = Vec::with_capacity(1 + id.len() + 8);
    a.push(id.len() as u8);
    a.extend_from_slice(id);
    a.extend_from_slice(&seq.to_be_bytes());
    a
}

impl PunchKey {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_ID_DOMAIN);
        h.update(bytes);
        Self {
            cipher: XChaCha20Poly1305::new(&(*bytes).into()),
            id: h.finalize().into(),
        }
    }

    /// The key's id as the store records it.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Seals the canonical encoding of record `seq` of `device` under a fresh random nonce.
    pub fn seal(&self, device: &DeviceId, seq: u64, plaintext: &[u8]) -> Result<Sealed> {
        let nonce = vouch_common::keys::random_bytes::<NONCE_LEN>()
            .context("drawing a punch record nonce")?;
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(device, seq),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing punch {seq} of {device} failed"))?;
        Ok(Sealed {
            nonce: *nonce,
            ciphertext,
        })
    }

    /// Opens record `seq` of `device`; fails if the row was altered, moved or sealed under
    /// another key.
    pub fn open(&self, device: &DeviceId, seq: u64, sealed: &Sealed) -> Result<Vec<u8>> {
        self.cipher
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(device, seq),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "stored punch {seq} of {device} does not decrypt with the punch key: the row is damaged or was written under another key"
                )
            })
    }
}

/// Where the punch key of the database at `db_path` lives.
pub fn key_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name(PUNCH_KEY_FILE)
}

/// Loads the key at `path`. `recorded` is the key id the store holds (`None`: the store has
/// never held a punch key, so a missing file is created now). Refuses a missing file when the
/// store recorded a key, a file others can read or write, a file of the wrong length, and a key
/// whose id is not the recorded one. Returns the key and whether it was created now.
pub fn load_or_create(path: &Path, recorded: Option<[u8; 32]>) -> Result<(PunchKey, bool)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_file() {
                bail!(
                    "the punch key {} is not a regular file; restore the verifier's punch key there",
                    path.display()
                );
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "the punch key {} has mode {mode:04o}: others may read it; set it to 0600 (chmod 600) and check who saw it",
                    path.display()
                );
            }
            let bytes = Zeroizing::new(
                vouch_common::fs::read_limited(path, KEY_LEN as u64 + 1)
                    .with_context(|| format!("reading the punch key {}", path.display()))?,
            );
            let Ok(arr) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) else {
                bail!(
                    "the punch key {} is {} bytes, not {KEY_LEN}: it is damaged; restore it from a backup",
                    path.display(),
                    bytes.len()
                );
            };
            let key = PunchKey::from_bytes(&Zeroizing::new(arr));
            if let Some(want) = recorded
                && want != key.id
            {
                bail!(
                    "the punch key {} is not the key the store's punch records were written with (key id {}, the store expects {}); restore the right punch.key — a different key cannot read the mirror",
                    path.display(),
                    hex::encode(key.id),
                    hex::encode(want)
                );
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(want) = recorded {
                bail!(
                    "the punch key {} is missing, but the store holds punch records written with key id {}; restore punch.key from a backup (a new key would make them unreadable)",
                    path.display(),
                    hex::encode(want)
                );
            }
            let bytes =
                vouch_common::keys::random_bytes::<KEY_LEN>().context("drawing a new punch key")?;
            vouch_common::fs::write_atomic(path, bytes.as_slice(), 0o600)
                .with_context(|| format!("creating the punch key {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new punch key");
            Ok((PunchKey::from_bytes(&bytes), true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the punch key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        s.parse().unwrap()
    }

    #[test]
    fn a_sealed_record_opens_only_under_its_own_device_and_seq() {
        let k = PunchKey::from_bytes(&[7; 32]);
        let s = k.seal(&dev("t1"), 5, b"record").unwrap();
        assert_eq!(k.open(&dev("t1"), 5, &s).unwrap(), b"record");
        assert!(k.open(&dev("t1"), 6, &s).is_err(), "moved to another seq");
        assert!(
            k.open(&dev("t2"), 5, &s).is_err(),
            "moved to another device"
        );
        let other = PunchKey::from_bytes(&[8; 32]);
        assert!(other.open(&dev("t1"), 5, &s).is_err(), "another key");
    }

    #[test]
    fn two_seals_of_one_record_use_different_nonces() {
        let k = PunchKey::from_bytes(&[7; 32]);
        let a = k.seal(&dev("t1"), 1, b"x").unwrap();
        let b = k.seal(&dev("t1"), 1, b"x").unwrap();
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn the_key_file_is_created_with_mode_0600_and_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUNCH_KEY_FILE);
        let (k, created) = load_or_create(&p, None).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&p, Some(k.id())).unwrap();
        assert!(!created);
        assert_eq!(again.id(), k.id());
    }

    #[test]
    fn a_missing_key_is_refused_once_the_store_recorded_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUNCH_KEY_FILE);
        let err = load_or_create(&p, Some([1; 32])).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("restore"), "{err}");
        assert!(!p.exists(), "no new key is made");
    }

    #[test]
    fn a_different_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUNCH_KEY_FILE);
        load_or_create(&p, None).unwrap();
        let err = load_or_create(&p, Some([1; 32])).unwrap_err().to_string();
        assert!(err.contains("not the key"), "{err}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUNCH_KEY_FILE);
        let (k, _) = load_or_create(&p, None).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&p, Some(k.id())).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PUNCH_KEY_FILE);
        vouch_common::fs::write_atomic(&p, &[1; 31], 0o600).unwrap();
        let err = load_or_create(&p, None).unwrap_err().to_string();
        assert!(err.contains("31 bytes"), "{err}");
    }
}
