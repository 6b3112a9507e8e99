//! Credential activation files: the challenge a provisioning station makes for one enrollment
//! request (TPM2_MakeCredential output bound to the request's digest and the AK's Name), the
//! response the terminal's TPM gives after TPM2_ActivateCredential, and the check that decides
//! whether that response proves the AK lives in the TPM holding the EK.
//!
//! Both files are plain CBOR maps (`deny_unknown_fields`); decoding checks the size before it
//! parses anything, rejects trailing bytes and bounds every byte string by what the TPM
//! structures it carries can hold. The station computes the credential (`vouch-provision
//! challenge`), the terminal's TPM recovers the secret (`vouch-agent activate`), and
//! [`check_response`] compares it in constant time (`vouch-provision issue`). Nothing here
//! touches a TPM, the clock or randomness: `now` and the expected secret are passed in.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::bytes::{Bytes, Sha256Digest};
use crate::ids::DeviceId;
use crate::tpm::limits::{MAX_DIGEST, MAX_HA, MAX_RSA_KEY_BYTES};
use crate::wire::{from_cbor_exact, to_cbor};

/// The only version of either file.
pub const VERSION: u8 = 1;
/// Largest challenge file accepted.
pub const MAX_CHALLENGE: usize = 4 * 1024;
/// Largest response file accepted.
pub const MAX_RESPONSE: usize = 1024;
/// Largest TPM2B_ID_OBJECT contents: the integrity HMAC as a TPM2B, then encIdentity (the
/// secret as a TPM2B, the same size as a digest at most), for hashes up to SHA-512.
pub const MAX_ID_OBJECT: usize = 2 + MAX_DIGEST + 2 + MAX_DIGEST;
/// Largest TPM2B_ENCRYPTED_SECRET contents: an RSA-4096 OAEP block, or a TPMS_ECC_POINT.
pub const MAX_ENCRYPTED_SECRET: usize = MAX_RSA_KEY_BYTES;
/// Largest secret a credential can carry (a TPM2B_DIGEST: the EK's hash length at most).
pub const MAX_SECRET: usize = MAX_DIGEST;

/// SHA-256 of an enrollment request file's bytes: what binds a challenge and its response to
/// exactly that request.
pub fn request_digest(request: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(request).into())
}

/// What a provisioning station hands a terminal: a credential only the TPM holding the EK in
/// the enrollment request can open, and only for the AK whose Name it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialChallenge {
    /// [`VERSION`].
    pub v: u8,
    /// The device the enrollment request names.
    pub device: DeviceId,
    /// [`request_digest`] of the enrollment request file.
    pub request_digest: Sha256Digest,
    /// The AK's TPM Name the credential is bound to (`nameAlg || H(TPMT_PUBLIC)`).
    pub ak_name: Bytes,
    /// TPM2B_ID_OBJECT contents: `integrityHMAC` (a TPM2B) then `encIdentity`.
    pub id_object: Bytes,
    /// TPM2B_ENCRYPTED_SECRET contents: the seed, encrypted to the EK.
    pub encrypted_secret: Bytes,
    /// Unix seconds the station made it.
    pub issued_at: u64,
    /// Unix seconds after which the station no longer accepts a response.
    pub expires_at: u64,
}

/// What the terminal sends back: the secret its TPM recovered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialResponse {
    /// [`VERSION`].
    pub v: u8,
    /// The device the challenge named.
    pub device: DeviceId,
    /// The challenge's `request_digest`, echoed.
    pub request_digest: Sha256Digest,
    /// The secret TPM2_ActivateCredential returned.
    pub secret: Bytes,
}

impl std::fmt::Debug for CredentialResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialResponse")
            .field("v", &self.v)
            .field("device", &self.device)
            .field("request_digest", &self.request_digest)
            .field("secret", &format_args!("<{} bytes>", self.secret.0.len()))
            .finish()
    }
}

/// Why a challenge or response file does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CredentialFormatError {
    #[error("{file} of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        file: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{file} is not a well-formed CBOR {file}: {reason}")]
    Malformed { file: &'static str, reason: String },
    #[error("{file} has version {version}; this vouch reads version 1")]
    UnsupportedVersion { file: &'static str, version: u8 },
    #[error("{file} field {field} is {len} bytes, outside {min}..={max}")]
    FieldLength {
        file: &'static str,
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    #[error("challenge expires at {expires_at}, before it was issued at {issued_at}")]
    ExpiresBeforeIssued { issued_at: u64, expires_at: u64 },
}

/// Why a credential response is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ActivationError {
    #[error(
        "the response is for a different enrollment request (request digest {found}, \
         expected {expected})"
    )]
    OtherRequest {
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error(
        "the response carries the wrong secret: the TPM that answered does not hold the \
         endorsement key of the request, or the attestation key is not in it"
    )]
    WrongSecret,
    #[error("the challenge expired at {expires_at} (now {now}); make a new one")]
    Expired { now: u64, expires_at: u64 },
    #[error("the response is malformed: {0}")]
    Malformed(String),
}

fn check_len(
    file: &'static str,
    field: &'static str,
    bytes: &Bytes,
    min: usize,
    max: usize,
) -> Result<(), CredentialFormatError> {
    let len = bytes.0.len();
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(CredentialFormatError::FieldLength {
            file,
            field,
            len,
            min,
            max,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    file: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CredentialFormatError> {
    if bytes.len() > max {
        return Err(CredentialFormatError::Oversized {
            file,
            len: bytes.len(),
            max,
        });
    }
    from_cbor_exact(bytes).map_err(|reason| CredentialFormatError::Malformed { file, reason })
}

impl CredentialChallenge {
    const FILE: &'static str = "credential challenge";

    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes and bounds-checks a challenge file.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, CredentialFormatError> {
        let c: Self = decode(Self::FILE, bytes, MAX_CHALLENGE)?;
        if c.v != VERSION {
            return Err(CredentialFormatError::UnsupportedVersion {
                file: Self::FILE,
                version: c.v,
            });
        }
        check_len(Self::FILE, "ak_name", &c.ak_name, 2 + 20, MAX_HA)?;
        check_len(
            Self::FILE,
            "id_object",
            &c.id_object,
            2 + 20 + 2 + 1,
            MAX_ID_OBJECT,
        )?;
        check_len(
            Self::FILE,
            "encrypted_secret",
            &c.encrypted_secret,
            1,
            MAX_ENCRYPTED_SECRET,
        )?;
        if c.expires_at < c.issued_at {
            return Err(CredentialFormatError::ExpiresBeforeIssued {
                issued_at: c.issued_at,
                expires_at: c.expires_at,
            });
        }
        Ok(c)
    }

    /// Whether the challenge has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        now > self.expires_at
    }
}

impl CredentialResponse {
    const FILE: &'static str = "credential response";

    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes and bounds-checks a response file.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, CredentialFormatError> {
        let r: Self = decode(Self::FILE, bytes, MAX_RESPONSE)?;
        if r.v != VERSION {
            return Err(CredentialFormatError::UnsupportedVersion {
                file: Self::FILE,
                version: r.v,
            });
        }
        check_len(Self::FILE, "secret", &r.secret, 1, MAX_SECRET)?;
        Ok(r)
    }
}

/// Checks a decoded response against what the station kept for the challenge: the request it
/// was made for, its expiry, and the secret (compared in constant time). `now` and
/// `expires_at` are Unix seconds.
///
/// Order matters for the operator: a response to another request says so rather than
/// "wrong secret", and an expired challenge is refused before its secret is looked at.
pub fn check_response(
    expected_secret: &[u8],
    request_digest: &Sha256Digest,
    resp: &CredentialResponse,
    now: u64,
    expires_at: u64,
) -> Result<(), ActivationError> {
    if resp.v != VERSION {
        return Err(ActivationError::Malformed(format!(
            "version {} (expected 1)",
            resp.v
        )));
    }
    if resp.secret.0.is_empty() || resp.secret.0.len() > MAX_SECRET {
        return Err(ActivationError::Malformed(format!(
            "secret of {} bytes (expected 1 to {MAX_SECRET})",
            resp.secret.0.len()
        )));
    }
    if resp.request_digest != *request_digest {
        return Err(ActivationError::OtherRequest {
            expected: *request_digest,
            found: resp.request_digest,
        });
    }
    if now > expires_at {
        return Err(ActivationError::Expired { now, expires_at });
    }
    // `ct_eq` on slices of different lengths is false without looking at the bytes; the
    // length of the secret is not itself secret (it is the EK's digest size).
    if bool::from(resp.secret.0.as_slice().ct_eq(expected_secret)) {
        Ok(())
    } else {
        Err(ActivationError::WrongSecret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> CredentialChallenge {
        CredentialChallenge {
            v: 1,
            device: "t1".parse().unwrap(),
            request_digest: request_digest(b"request"),
            ak_name: Bytes([vec![0, 0x0b], vec![7; 32]].concat()),
            id_object: Bytes([vec![0, 0x20], vec![1; 32], vec![2; 34]].concat()),
            encrypted_secret: Bytes(vec![3; 68]),
            issued_at: 100,
            expires_at: 700,
        }
    }

    fn response(secret: &[u8]) -> CredentialResponse {
        CredentialResponse {
            v: 1,
            device: "t1".parse().unwrap(),
            request_digest: request_digest(b"request"),
            secret: Bytes(secret.to_vec()),
        }
    }

    #[test]
    fn challenge_and_response_round_trip() {
        let c = challenge();
        assert_eq!(CredentialChallenge::from_cbor(&c.to_cbor()).unwrap(), c);
        let r = response(&[9; 32]);
        assert_eq!(CredentialResponse::from_cbor(&r.to_cbor()).unwrap(), r);
        assert!(!c.expired(700));
        assert!(c.expired(701));
    }

    #[test]
    fn oversized_truncated_trailing_and_unknown_fields_are_refused() {
        let bytes = challenge().to_cbor();
        let big = vec![0u8; MAX_CHALLENGE + 1];
        assert!(matches!(
            CredentialChallenge::from_cbor(&big),
            Err(CredentialFormatError::Oversized { .. })
        ));
        for n in 0..bytes.len() {
            assert!(CredentialChallenge::from_cbor(&bytes[..n]).is_err(), "{n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            CredentialChallenge::from_cbor(&trailing),
            Err(CredentialFormatError::Malformed { .. })
        ));
        // An extra field: re-encode as a map with one more key.
        let mut v: ciborium::Value = from_cbor_exact(&bytes).unwrap();
        if let ciborium::Value::Map(m) = &mut v {
            m.push(("extra".into(), 1.into()));
        }
        let extra = to_cbor(&v);
        let err = CredentialChallenge::from_cbor(&extra).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn bad_versions_lengths_and_times_name_what_is_wrong() {
        let mut c = challenge();
        c.v = 2;
        assert!(matches!(
            CredentialChallenge::from_cbor(&c.to_cbor()),
            Err(CredentialFormatError::UnsupportedVersion { version: 2, .. })
        ));
        let mut c = challenge();
        c.ak_name = Bytes(vec![0; 3]);
        assert!(matches!(
            CredentialChallenge::from_cbor(&c.to_cbor()),
            Err(CredentialFormatError::FieldLength {
                field: "ak_name",
                ..
            })
        ));
        let mut c = challenge();
        c.id_object = Bytes(vec![0; MAX_ID_OBJECT + 1]);
        assert!(matches!(
            CredentialChallenge::from_cbor(&c.to_cbor()),
            Err(CredentialFormatError::FieldLength {
                field: "id_object",
                ..
            })
        ));
        let mut c = challenge();
        c.expires_at = 99;
        assert!(matches!(
            CredentialChallenge::from_cbor(&c.to_cbor()),
            Err(CredentialFormatError::ExpiresBeforeIssued { .. })
        ));
        let r = response(&[]);
        assert!(matches!(
            CredentialResponse::from_cbor(&r.to_cbor()),
            Err(CredentialFormatError::FieldLength {
                field: "secret",
                ..
            })
        ));
    }

    #[test]
    fn check_response_accepts_only_the_right_secret_for_the_right_request_in_time() {
        let digest = request_digest(b"request");
        let secret = [9u8; 32];
        assert_eq!(
            check_response(&secret, &digest, &response(&secret), 700, 700),
            Ok(())
        );
        let mut wrong = secret;
        wrong[31] ^= 1;
        assert_eq!(
            check_response(&secret, &digest, &response(&wrong), 100, 700),
            Err(ActivationError::WrongSecret)
        );
        assert_eq!(
            check_response(&secret, &digest, &response(&secret[..31]), 100, 700),
            Err(ActivationError::WrongSecret)
        );
        let other = request_digest(b"another request");
        assert!(matches!(
            check_response(&secret, &other, &response(&secret), 100, 700),
            Err(ActivationError::OtherRequest { .. })
        ));
        assert_eq!(
            check_response(&secret, &digest, &response(&secret), 701, 700),
            Err(ActivationError::Expired {
                now: 701,
                expires_at: 700
            })
        );
        let mut r = response(&secret);
        r.v = 0;
        assert!(matches!(
            check_response(&secret, &digest, &r, 100, 700),
            Err(ActivationError::Malformed(_))
        ));
    }

    #[test]
    fn the_response_secret_is_not_printed() {
        let r = response(&[0xab; 32]);
        assert!(!format!("{r:?}").contains("abab"));
    }
}
