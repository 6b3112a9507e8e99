//! Errors of the protocol core. Each enum covers one boundary (identifiers, the signed envelope,
//! reference values) and each variant names the check that failed, so an operator reading a log
//! line or a rejection counter knows what was wrong without a debugger.
//!
//! A failed *attestation* is not an error: it is a verdict with reasons (see `appraisal`).

use crate::ids::{DeviceId, Kind};
use thiserror::Error;

/// A value that should identify something (device, kind, topic, nonce, digest) did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("device id must be 1 to 64 characters, got {len}")]
    DeviceIdLength { len: usize },
    #[error("device id may only contain A-Z a-z 0-9 . _ -, found {found:?}")]
    DeviceIdChar { found: char },
    #[error("device id may not be \".\" or \"..\"")]
    DeviceIdDots,
    #[error("unknown message kind \"{kind}\"")]
    UnknownKind { kind: String },
    #[error("topic \"{topic}\" is not vouch/v1/{{device_id}}/{{kind}}")]
    Topic { topic: String },
    #[error("nonce must be 32 bytes, got {len}")]
    NonceLength { len: usize },
    #[error("digest must be {expected} bytes, got {len}")]
    DigestLength { expected: usize, len: usize },
    #[error("not lower-case hex: \"{value}\"")]
    Hex { value: String },
}

/// A payload was not a well-formed, correctly addressed, correctly signed v1 message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("not a tagged COSE_Sign1: {reason}")]
    NotCoseSign1 { reason: String },
    #[error("trailing bytes after the COSE_Sign1")]
    TrailingBytes,
    #[error("signature algorithm is not EdDSA")]
    UnsupportedAlgorithm,
    #[error("unexpected COSE header parameters (only the protected alg is allowed)")]
    UnexpectedHeader,
    #[error("COSE_Sign1 has no payload")]
    MissingPayload,
    #[error("signed body is malformed: {reason}")]
    BodyMalformed { reason: String },
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion { version: u64 },
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("message kind \"{found}\" where \"{expected}\" was expected")]
    KindMismatch { expected: Kind, found: Kind },
    #[error("payload names device \"{payload}\" but arrived on the topic of \"{topic}\"")]
    DeviceMismatch { topic: DeviceId, payload: DeviceId },
    #[error("signature does not verify with the expected key")]
    BadSignature,
    #[error("{kind} message is malformed: {reason}")]
    MessageMalformed { kind: Kind, reason: String },
}

impl WireError {
    /// A short, stable label for rejection counters and log fields.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Oversized { .. } => "oversized",
            WireError::NotCoseSign1 { .. }
            | WireError::BodyMalformed { .. }
            | WireError::MissingPayload
            | WireError::MessageMalformed { .. } => "malformed",
            WireError::TrailingBytes => "trailing_bytes",
            WireError::UnsupportedAlgorithm | WireError::UnexpectedHeader => "bad_header",
            WireError::UnsupportedVersion { .. } => "unsupported_version",
            WireError::Id(IdError::UnknownKind { .. }) => "unknown_kind",
            WireError::Id(_) => "malformed",
            WireError::KindMismatch { .. } | WireError::DeviceMismatch { .. } => "wrong_topic",
            WireError::BadSignature => "bad_signature",
        }
    }
}

/// Reference values that cannot be used (bad JSON shape, wrong digest length, PCR out of range).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("unknown PCR bank \"{bank}\" (expected sha1, sha256, sha384 or sha512)")]
    UnknownBank { bank: String },
    #[error("PCR index \"{index}\" is not a number from 0 to 23")]
    PcrIndex { index: String },
    #[error("PCR {index} ({bank}): {reason}")]
    PcrValue {
        bank: String,
        index: u32,
        reason: String,
    },
    #[error("firmware \"{path}\": {reason}")]
    Firmware { path: String, reason: String },
    #[error("policy has no reference values")]
    Empty,
    #[error("events: {reason}")]
    Events { reason: String },
}
