//! Ed25519 key files: private keys as PKCS#8 PEM (mode 0600), public keys as SPKI PEM
//! ("-----BEGIN PUBLIC KEY-----", what agents pin and relying parties use to check verdicts).
//! New keys come from the operating system's CSPRNG; seed bytes are zeroized after use.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::fs::{FsError, read_limited, read_optional, write_atomic};

/// Key files are tiny; anything larger is not a key file.
const MAX_KEY_FILE: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: not an Ed25519 {what} in PEM form ({reason})")]
    Format {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Fills `buf` from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

/// Generates a fresh signing key.
pub fn generate() -> Result<SigningKey, KeyError> {
    let seed = random_bytes::<32>()?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads the private key at `path`, or creates it (and writes its public key to `pub_path`
/// when given). Returns the key and whether it was created now.
pub fn load_or_create(
    path: &Path,
    pub_path: Option<&Path>,
) -> Result<(SigningKey, bool), KeyError> {
    if let Some(pem) = read_optional(path, MAX_KEY_FILE)? {
        let key = parse_private(path, &pem)?;
        if let Some(p) = pub_path {
            // Re-derive the public file if it went missing; never trust it over the private key.
            if read_optional(p, MAX_KEY_FILE)?.is_none() {
                write_public(p, &key.verifying_key())?;
            }
        }
        return Ok((key, false));
    }
    let key = generate()?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format {
            path: path.to_owned(),
            what: "private key",
            reason: e.to_string(),
        })?;
    write_atomic(path, pem.as_bytes(), 0o600)?;
    if let Some(p) = pub_path {
        write_public(p, &key.verifying_key())?;
    }
    Ok((key, true))
}

/// Loads an existing private key; a missing file is an error naming it.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = read_limited(path, MAX_KEY_FILE)?;
    parse_private(path, &pem)
}

fn parse_private(path: &Path, pem: &[u8]) -> Result<SigningKey, KeyError> {
    let fmt = |reason: String| KeyError::Format {
        path: path.to_owned(),
        what: "private key",
        reason,
    };
    let text =
        Zeroizing::new(String::from_utf8(pem.to_vec()).map_err(|_| fmt("not UTF-8".into()))?);
    SigningKey::from_pkcs8_pem(&text).map_err(|e| fmt(e.to_string()))
}

/// Writes a public key as SPKI PEM (mode 0644).
pub fn write_public(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    let pem = public_pem(key);
    write_atomic(path, pem.as_bytes(), 0o644)?;
    Ok(())
}

/// A public key as SPKI PEM text.
pub fn public_pem(key: &VerifyingKey) -> String {
    // Encoding a valid 32-byte Ed25519 key into a fixed-shape SPKI structure cannot fail; the
    // fallback keeps this function total without a panic path.
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Reads a public key from SPKI PEM.
pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = read_limited(path, MAX_KEY_FILE)?;
    let fmt = |reason: String| KeyError::Format {
        path: path.to_owned(),
        what: "public key",
        reason,
    };
    let text = String::from_utf8(pem).map_err(|_| fmt("not UTF-8".into()))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| fmt(e.to_string()))
}

/// A short fingerprint of a public key for logs and operator output.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&key.to_bytes()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_then_reload_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = (dir.path().join("k.pem"), dir.path().join("k.pub"));
        let (a, created) = load_or_create(&k, Some(&p)).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&k, Some(&p)).unwrap();
        assert!(!created);
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(read_public(&p).unwrap(), a.verifying_key());
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn garbage_key_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("bad.pem");
        std::fs::write(&k, "not a key").unwrap();
        let err = load_or_create(&k, None).unwrap_err().to_string();
        assert!(
            err.contains("bad.pem") && err.contains("private key"),
            "{err}"
        );
        let err = read_public(&k).unwrap_err().to_string();
        assert!(err.contains("public key"), "{err}");
    }
}
