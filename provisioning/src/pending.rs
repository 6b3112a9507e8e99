//! The station's pending credential challenges: for each challenge `vouch-provision challenge`
//! made, the secret it wrapped, the request it was made for and when it expires, kept until
//! `vouch-provision issue` checks the terminal's response against it and removes it (a
//! challenge is good for one issue).
//!
//! One file per enrollment request, named by the request's SHA-256 digest in hex, in a
//! directory of mode 0700 (`--pending DIR`, default [`DEFAULT_DIR`]); each file is CBOR, mode
//! 0600, written atomically and durably (`vouch_common::fs`). The secret never leaves this
//! directory except inside the challenge, wrapped to the terminal's EK.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vouch_common::fs::{self, FsError};
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::credential::{
    ActivationError, CredentialFormatError, CredentialResponse, check_response, request_digest,
};
use vouch_protocol::ids::DeviceId;
use vouch_protocol::wire::{from_cbor_exact, to_cbor};
use zeroize::Zeroize;

/// Where `challenge` keeps its pending records unless told otherwise.
pub const DEFAULT_DIR: &str = "./vouch-provision-pending";
/// Largest pending file read.
const MAX_PENDING_FILE: u64 = 4096;

/// What the station keeps for one outstanding challenge.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub device: DeviceId,
    /// SHA-256 of the enrollment request file the challenge was made for.
    pub request_digest: Sha256Digest,
    /// The secret the credential wraps; zeroized on drop.
    pub secret: Bytes,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.secret.0.zeroize();
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("device", &self.device)
            .field("request_digest", &self.request_digest)
            .field("secret", &format_args!("<{} bytes>", self.secret.0.len()))
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Pending {
    /// Checks the terminal's response against this record at `now`: same request, not
    /// expired, same secret (see [`check_response`]).
    pub fn check(&self, response: &CredentialResponse, now: u64) -> Result<(), ActivationError> {
        check_response(
            self.secret.as_slice(),
            &self.request_digest,
            response,
            now,
            self.expires_at,
        )?;
        if response.device != self.device {
            // Unreachable for a response that passed the request digest check (the request
            // names its device), but a response is cheap to check fully.
            return Err(ActivationError::Malformed(format!(
                "response names device {}, the challenge was for {}",
                response.device, self.device
            )));
        }
        Ok(())
    }
}

/// Why a pending record could not be stored, found or removed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PendingError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "no pending challenge for this enrollment request (request digest {digest}) in {dir}: \
         run `vouch-provision challenge` for it first (with the same --pending), or it was \
         already issued"
    )]
    NotFound { digest: Sha256Digest, dir: PathBuf },
    #[error("pending challenge {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("credential response: {0}")]
    Response(#[from] CredentialFormatError),
    #[error(transparent)]
    Activation(#[from] ActivationError),
    #[error("removing pending challenge {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file that holds the record for `digest` in `dir`.
pub fn path(dir: &Path, digest: &Sha256Digest) -> PathBuf {
    dir.join(digest.to_hex())
}

/// Stores `pending` in `dir` (created with mode 0700 if needed), replacing any earlier record
/// for the same request: a new challenge supersedes the old one. Returns the file written.
pub fn store(dir: &Path, pending: &Pending) -> Result<PathBuf, PendingError> {
    fs::ensure_private_dir(dir)?;
    let file = path(dir, &pending.request_digest);
    let mut bytes = to_cbor(pending);
    let written = fs::write_atomic(&file, &bytes, 0o600);
    bytes.zeroize();
    written?;
    Ok(file)
}

/// The record for the request with digest `digest`.
pub fn load(dir: &Path, digest: &Sha256Digest) -> Result<Pending, PendingError> {
    let file = path(dir, digest);
    let Some(mut bytes) = fs::read_optional(&file, MAX_PENDING_FILE)? else {
        return Err(PendingError::NotFound {
            digest: *digest,
            dir: dir.to_owned(),
        });
    };
    let decoded = from_cbor_exact::<Pending>(&bytes);
    bytes.zeroize();
    let pending = decoded.map_err(|reason| PendingError::Corrupt {
        path: file.clone(),
        reason,
    })?;
    if pending.request_digest != *digest {
        return Err(PendingError::Corrupt {
            path: file,
            reason: format!(
                "it holds the record of request {}, not {digest}",
                pending.request_digest
            ),
        });
    }
    Ok(pending)
}

/// Removes the record for `digest` (after a successful issue), so its challenge cannot be
/// used again. Removing a record that is not there is an error: it means the challenge was
/// already consumed.
pub fn remove(dir: &Path, digest: &Sha256Digest) -> Result<(), PendingError> {
    let file = path(dir, digest);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PendingError::NotFound {
            digest: *digest,
            dir: dir.to_owned(),
        }),
        Err(source) => Err(PendingError::Remove { path: file, source }),
    }
}

/// What `issue` runs before it signs anything: the pending record for the enrollment request
/// file `request` (its exact bytes) in `dir`, checked against the response file bytes
/// `response` at `now`. Returns the record; the caller [`remove`]s it once the manifest is
/// written, so the challenge cannot be used twice.
pub fn check_response_file(
    dir: &Path,
    request: &[u8],
    response: &[u8],
    now: u64,
) -> Result<Pending, PendingError> {
    let digest = request_digest(request);
    let response = CredentialResponse::from_cbor(response)?;
    if response.request_digest != digest {
        // Say so before looking for a record: the response is simply for another request.
        return Err(ActivationError::OtherRequest {
            expected: digest,
            found: response.request_digest,
        }
        .into());
    }
    let pending = load(dir, &digest)?;
    pending.check(&response, now)?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use vouch_protocol::credential::request_digest;

    fn pending() -> Pending {
        Pending {
            device: "t1".parse().unwrap(),
            request_digest: request_digest(b"req"),
            secret: Bytes(vec![5; 32]),
            issued_at: 10,
            expires_at: 20,
        }
    }

    fn response(secret: &[u8]) -> CredentialResponse {
        CredentialResponse {
            v: 1,
            device: "t1".parse().unwrap(),
            request_digest: request_digest(b"req"),
            secret: Bytes(secret.to_vec()),
        }
    }

    #[test]
    fn store_load_remove_is_single_use_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pending");
        let p = pending();
        let file = store(&dir, &p).unwrap();
        assert_eq!(file, dir.join(p.request_digest.to_hex()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        let loaded = load(&dir, &p.request_digest).unwrap();
        assert_eq!(loaded, p);
        assert_eq!(loaded.check(&response(&[5; 32]), 20), Ok(()));
        assert_eq!(
            loaded.check(&response(&[6; 32]), 20),
            Err(ActivationError::WrongSecret)
        );
        remove(&dir, &p.request_digest).unwrap();
        let err = load(&dir, &p.request_digest).unwrap_err();
        assert!(matches!(err, PendingError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("already issued"), "{err}");
        assert!(matches!(
            remove(&dir, &p.request_digest),
            Err(PendingError::NotFound { .. })
        ));
    }

    #[test]
    fn a_corrupt_or_misplaced_record_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = pending();
        let file = store(tmp.path(), &p).unwrap();
        std::fs::write(&file, b"junk").unwrap();
        let err = load(tmp.path(), &p.request_digest).unwrap_err();
        assert!(matches!(err, PendingError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&p.request_digest.to_hex()),
            "{err}"
        );
        // A record copied under another request's name.
        let other = request_digest(b"other");
        std::fs::write(path(tmp.path(), &other), to_cbor(&p)).unwrap();
        let err = load(tmp.path(), &other).unwrap_err();
        assert!(err.to_string().contains("not "), "{err}");
    }

    #[test]
    fn check_response_file_names_each_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let p = pending();
        let check = |resp: &[u8], now| check_response_file(tmp.path(), b"req", resp, now);
        let good = response(&[5; 32]).to_cbor();
        assert!(matches!(
            check(&good, 20),
            Err(PendingError::NotFound { .. })
        ));
        store(tmp.path(), &p).unwrap();
        assert_eq!(check(&good, 20).unwrap(), p);
        assert!(matches!(
            check(&good, 21),
            Err(PendingError::Activation(ActivationError::Expired { .. }))
        ));
        assert!(matches!(
            check(&response(&[6; 32]).to_cbor(), 20),
            Err(PendingError::Activation(ActivationError::WrongSecret))
        ));
        let mut other = response(&[5; 32]);
        other.request_digest = request_digest(b"other");
        assert!(matches!(
            check(&other.to_cbor(), 20),
            Err(PendingError::Activation(
                ActivationError::OtherRequest { .. }
            ))
        ));
        assert!(matches!(check(b"junk", 20), Err(PendingError::Response(_))));
    }

    #[test]
    fn the_secret_is_not_printed() {
        assert!(!format!("{:?}", pending()).contains("0505"));
    }
}
