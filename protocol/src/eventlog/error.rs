//! The error [`parse`](super::parse) returns: one variant per check that can fail, each saying at
//! which event (0-based, the Spec ID header included) and byte offset of the log it failed.
//!
//! Only the framing of the log can fail: malformed *event data* never does (it is kept as raw
//! bytes, see [`EventData`](super::EventData)).

/// Why an event log could not be parsed.
///
/// `event` is the 0-based position of the record being read (the Spec ID header of a
/// crypto-agile log is event 0); `offset` is the byte offset in the log of the field that failed
/// the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The log holds no bytes, or only zero bytes.
    #[error("the event log is empty")]
    Empty,

    /// The log ends inside a fixed-size field.
    #[error("event {event}: the log ends inside the {field} at offset {offset}")]
    Truncated {
        event: usize,
        offset: usize,
        field: &'static str,
    },

    /// A length read from the log is larger than what is left of the log (or of the structure
    /// that holds it).
    #[error(
        "event {event}: the {field} at offset {offset} is {declared} bytes long but only \
         {available} bytes remain"
    )]
    LengthOutOfBounds {
        event: usize,
        offset: usize,
        field: &'static str,
        declared: u64,
        available: usize,
    },

    /// The Spec ID event of a crypto-agile log is not in PCR 0.
    #[error("event {event}: the Spec ID event at offset {offset} is in PCR {pcr}, not PCR 0")]
    SpecIdPcr {
        event: usize,
        offset: usize,
        pcr: u32,
    },

    /// The Spec ID event declares no digest algorithm.
    #[error("event {event}: the Spec ID event at offset {offset} declares no digest algorithm")]
    SpecIdNoAlgorithms { event: usize, offset: usize },

    /// The Spec ID event declares the same algorithm twice.
    #[error(
        "event {event}: the Spec ID event declares algorithm {alg_id:#06x} twice (offset {offset})"
    )]
    SpecIdDuplicateAlgorithm {
        event: usize,
        offset: usize,
        alg_id: u16,
    },

    /// The Spec ID event gives a known algorithm a digest size other than its own.
    #[error(
        "event {event}: the Spec ID event gives algorithm {alg_id:#06x} a {declared}-byte digest, \
         but it has {expected} bytes (offset {offset})"
    )]
    SpecIdDigestSize {
        event: usize,
        offset: usize,
        alg_id: u16,
        declared: u16,
        expected: usize,
    },

    /// Bytes follow the vendor info inside the Spec ID event's data.
    #[error(
        "event {event}: {extra} unexpected bytes at offset {offset} after the Spec ID event's vendor info"
    )]
    SpecIdTrailingBytes {
        event: usize,
        offset: usize,
        extra: usize,
    },

    /// An event has more digests than the Spec ID event declares algorithms.
    #[error(
        "event {event}: {count} digests at offset {offset}, but the Spec ID event declares only \
         {declared} algorithms"
    )]
    TooManyDigests {
        event: usize,
        offset: usize,
        count: u32,
        declared: usize,
    },

    /// An event has a digest for an algorithm the Spec ID event does not declare, so its size
    /// is unknown and the rest of the log cannot be framed.
    #[error(
        "event {event}: digest algorithm {alg_id:#06x} at offset {offset} is not declared in the Spec ID event"
    )]
    UndeclaredAlgorithm {
        event: usize,
        offset: usize,
        alg_id: u16,
    },

    /// An event has two digests for the same algorithm.
    #[error("event {event}: a second digest for algorithm {alg_id:#06x} at offset {offset}")]
    DuplicateDigest {
        event: usize,
        offset: usize,
        alg_id: u16,
    },
}

impl EventLogError {
    /// The 0-based index of the event that failed, if the error is about one.
    pub fn event(&self) -> Option<usize> {
        match *self {
            Self::Empty => None,
            Self::Truncated { event, .. }
            | Self::LengthOutOfBounds { event, .. }
            | Self::SpecIdPcr { event, .. }
            | Self::SpecIdNoAlgorithms { event, .. }
            | Self::SpecIdDuplicateAlgorithm { event, .. }
            | Self::SpecIdDigestSize { event, .. }
            | Self::SpecIdTrailingBytes { event, .. }
            | Self::TooManyDigests { event, .. }
            | Self::UndeclaredAlgorithm { event, .. }
            | Self::DuplicateDigest { event, .. } => Some(event),
        }
    }

    /// The byte offset in the log of the field that failed, if the error is about one.
    pub fn offset(&self) -> Option<usize> {
        match *self {
            Self::Empty => None,
            Self::Truncated { offset, .. }
            | Self::LengthOutOfBounds { offset, .. }
            | Self::SpecIdPcr { offset, .. }
            | Self::SpecIdNoAlgorithms { offset, .. }
            | Self::SpecIdDuplicateAlgorithm { offset, .. }
            | Self::SpecIdDigestSize { offset, .. }
            | Self::SpecIdTrailingBytes { offset, .. }
            | Self::TooManyDigests { offset, .. }
            | Self::UndeclaredAlgorithm { offset, .. }
            | Self::DuplicateDigest { offset, .. } => Some(offset),
        }
    }
}
