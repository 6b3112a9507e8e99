//! Zero-loss punch mirroring, the rules both sides share: the record and its hash chain
//! ([`record`]), the batch and ack messages and the stateless batch check ([`batch`]), the
//! mirror's accept/duplicate/gap/tamper decision ([`mirror`]) and the terminal's upload state
//! machine ([`upload`]). No I/O: the agent's buffer and the verifier's mirror are shells around
//! these functions.

pub mod batch;
pub mod mirror;
pub mod record;
pub mod upload;

#[cfg(test)]
mod tests;

pub use batch::{CheckedBatch, MAX_BATCH_RECORDS, PunchAck, PunchBatch, check_batch};
pub use mirror::{MirrorDecision, MirrorHead, buffer_pressure, decide, held_in};
pub use record::{
    BootId, ChainHash, EmployeeId, MAX_TIME, Method, PunchInput, PunchKind, PunchRecord,
};
pub use upload::{AckOutcome, MAX_RESEND_WAIT_MS, UploadRules, Uploader};

use thiserror::Error;

/// A punch or batch that is malformed: refused with this message, nothing stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PunchError {
    #[error("employee id must be 1 to 64 characters, got {len}")]
    EmployeeLength { len: usize },
    #[error("employee id may only contain printable ASCII without spaces, found {found:?}")]
    EmployeeChar { found: char },
    #[error(
        "employee id may not start with {found:?} (a spreadsheet would read the export as a formula)"
    )]
    EmployeeFormula { found: char },
    #[error("punch kind must be \"in\" or \"out\", got \"{kind}\"")]
    UnknownKind { kind: String },
    #[error("punch method must be face, fingerprint, card or pin, got \"{method}\"")]
    UnknownMethod { method: String },
    #[error("punch time {time} is after 9999-12-31T23:59:59Z")]
    TimeOutOfRange { time: u64 },
    #[error("boot id is not a 16-byte UUID: \"{value}\"")]
    BootId { value: String },
    #[error("punch record malformed: {reason}")]
    RecordMalformed { reason: String },
    #[error("punch batch has no records")]
    EmptyBatch,
    #[error("punch batch has {records} records, more than the {max} allowed")]
    BatchTooLarge { records: usize, max: usize },
    #[error("punch seqs start at 1, the batch starts at 0")]
    SeqZero,
    #[error("punch batch claims seqs {first}..={last} but carries {records} records")]
    ClaimMismatch {
        first: u64,
        last: u64,
        records: usize,
    },
    #[error("punch batch records are not consecutive: expected seq {expected}, found {found}")]
    NotConsecutive { expected: u64, found: u64 },
    #[error("punch batch says the terminal's newest seq is {device_last}, below its last {last}")]
    DeviceLastBehind { device_last: u64, last: u64 },
}

/// A signed chain that does not hold together, or contradicts what the mirror holds: tamper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChainError {
    /// Record `seq`'s `prev_hash` is not the hash of record `seq - 1`.
    #[error("punch {seq}'s prev_hash does not link to the record before it")]
    Broken { seq: u64 },
    /// The batch's head hash is not the hash of its last record `seq`.
    #[error("the batch's head hash is not the hash of its last record {seq}")]
    HeadMismatch { seq: u64 },
    /// Record `seq` differs from the record the mirror holds for that seq.
    #[error("punch {seq} differs from the record the mirror holds for that seq")]
    Fork { seq: u64 },
}

impl ChainError {
    /// The reason a quarantine for this tamper gives.
    pub fn reason(self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            ChainError::Broken { seq } | ChainError::HeadMismatch { seq } => {
                Reason::PunchChainBroken { seq }
            }
            ChainError::Fork { seq } => Reason::PunchFork { seq },
        }
    }

    pub fn seq(self) -> u64 {
        match self {
            ChainError::Broken { seq }
            | ChainError::HeadMismatch { seq }
            | ChainError::Fork { seq } => seq,
        }
    }
}
