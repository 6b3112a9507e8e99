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
    /// The rejection counter this error is counted under.
    pub fn label(&self) -> RejectionLabel {
        match self {
            WireError::Oversized { .. } => RejectionLabel::Oversized,
            WireError::NotCoseSign1 { .. }
            | WireError::BodyMalformed { .. }
            | WireError::MissingPayload
            | WireError::MessageMalformed { .. } => RejectionLabel::Malformed,
            WireError::TrailingBytes => RejectionLabel::TrailingBytes,
            WireError::UnsupportedAlgorithm | WireError::UnexpectedHeader => {
                RejectionLabel::BadHeader
            }
            WireError::UnsupportedVersion { .. } => RejectionLabel::UnsupportedVersion,
            WireError::Id(IdError::UnknownKind { .. }) => RejectionLabel::UnknownKind,
            WireError::Id(_) => RejectionLabel::Malformed,
            WireError::KindMismatch { .. } | WireError::DeviceMismatch { .. } => {
                RejectionLabel::WrongTopic
            }
            WireError::BadSignature => RejectionLabel::BadSignature,
        }
    }
}

/// The stable name a rejected message is counted under (`vouchctl stats`, `/v1/stats`, the
/// `label` log field). Every rejection of every kind maps to exactly one of these; several
/// rejections share one where an operator would act the same way on them (every kind of replay
/// is `replay`). The strings are an interface: docs/protocol.md lists them, and a test keeps that
/// list and this enum equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectionLabel {
    /// The payload exceeds the size limit (or a reassembled event log exceeds its limit).
    Oversized,
    /// Not a COSE_Sign1, or its body or message does not decode.
    Malformed,
    /// Bytes after the COSE_Sign1.
    TrailingBytes,
    /// A COSE header other than the protected EdDSA `alg`.
    BadHeader,
    /// A protocol version this verifier does not speak.
    UnsupportedVersion,
    /// A message kind that does not exist.
    UnknownKind,
    /// The topic is malformed, is a verifier → agent topic, or disagrees with the signed body.
    WrongTopic,
    /// The signature does not verify with the device's enrolled key.
    BadSignature,
    /// The topic names a device that is not enrolled.
    NotEnrolled,
    /// Evidence for a nonce never issued, withdrawn, or pruned long after its expiry.
    NonceUnknown,
    /// Evidence for a nonce issued to another device.
    NonceWrongDevice,
    /// Evidence for a nonce past its expiry.
    NonceExpired,
    /// A copy: evidence whose nonce was used (or is in flight), a hello/status whose counter is
    /// not above the highest accepted.
    Replay,
    /// A fresh hello/status past the device's challenges per minute.
    RateLimited,
    /// An event log delta that does not continue the log held for the boot (re-challenged).
    EventlogGap,
    /// Genuine evidence older than the last quote accepted in the same TPM boot (its nonce is
    /// consumed).
    Stale,
    /// A signed punch batch whose chain does not hold together or contradicts the mirror (a
    /// fork or a broken link): the device is quarantined.
    Tamper,
    /// A punch batch that starts after the mirror's head + 1: nothing stored, a resend asked.
    PunchGap,
    /// The verifier could not do the work (store failure); not the sender's fault.
    Internal,
}

impl RejectionLabel {
    /// Every label, in the order docs/protocol.md lists them.
    pub const ALL: [RejectionLabel; 19] = [
        RejectionLabel::Oversized,
        RejectionLabel::Malformed,
        RejectionLabel::TrailingBytes,
        RejectionLabel::BadHeader,
        RejectionLabel::UnsupportedVersion,
        RejectionLabel::UnknownKind,
        RejectionLabel::WrongTopic,
        RejectionLabel::BadSignature,
        RejectionLabel::NotEnrolled,
        RejectionLabel::NonceUnknown,
        RejectionLabel::NonceWrongDevice,
        RejectionLabel::NonceExpired,
        RejectionLabel::Replay,
        RejectionLabel::RateLimited,
        RejectionLabel::EventlogGap,
        RejectionLabel::Stale,
        RejectionLabel::Tamper,
        RejectionLabel::PunchGap,
        RejectionLabel::Internal,
    ];

    /// The label as counters, logs and the stats JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionLabel::Oversized => "oversized",
            RejectionLabel::Malformed => "malformed",
            RejectionLabel::TrailingBytes => "trailing_bytes",
            RejectionLabel::BadHeader => "bad_header",
            RejectionLabel::UnsupportedVersion => "unsupported_version",
            RejectionLabel::UnknownKind => "unknown_kind",
            RejectionLabel::WrongTopic => "wrong_topic",
            RejectionLabel::BadSignature => "bad_signature",
            RejectionLabel::NotEnrolled => "not_enrolled",
            RejectionLabel::NonceUnknown => "nonce_unknown",
            RejectionLabel::NonceWrongDevice => "nonce_wrong_device",
            RejectionLabel::NonceExpired => "nonce_expired",
            RejectionLabel::Replay => "replay",
            RejectionLabel::RateLimited => "rate_limited",
            RejectionLabel::EventlogGap => "eventlog_gap",
            RejectionLabel::Stale => "stale",
            RejectionLabel::Tamper => "tamper",
            RejectionLabel::PunchGap => "punch_gap",
            RejectionLabel::Internal => "internal",
        }
    }
}

impl std::fmt::Display for RejectionLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the rejection-label table in docs/protocol.md: the first backquoted word of
    /// each `| `label` | … |` line between the section's heading and the next heading.
    fn documented_labels() -> Vec<String> {
        let doc = include_str!("../../docs/protocol.md");
        let start = doc
            .find("## Rejection labels")
            .expect("docs/protocol.md has a \"## Rejection labels\" section");
        let section = &doc[start + 1..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        section
            .lines()
            .filter_map(|l| l.trim().strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn documented_rejection_labels_equal_the_enum() {
        let enum_labels: Vec<&str> = RejectionLabel::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(documented_labels(), enum_labels);
    }

    #[test]
    fn rejection_labels_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for l in RejectionLabel::ALL {
            assert!(seen.insert(l.as_str()), "{l} twice");
        }
    }

    #[test]
    fn wire_errors_keep_their_counter_names() {
        let cases = [
            (WireError::Oversized { len: 2, max: 1 }, "oversized"),
            (WireError::TrailingBytes, "trailing_bytes"),
            (WireError::UnexpectedHeader, "bad_header"),
            (WireError::BadSignature, "bad_signature"),
            (
                WireError::Id(IdError::UnknownKind { kind: "x".into() }),
                "unknown_kind",
            ),
            (WireError::Id(IdError::DeviceIdDots), "malformed"),
            (WireError::MissingPayload, "malformed"),
        ];
        for (e, label) in cases {
            assert_eq!(e.label().as_str(), label, "{e}");
        }
    }
}
