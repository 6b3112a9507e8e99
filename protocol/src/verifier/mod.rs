//! The verifier's decisions without I/O: what it records about each device and how messages,
//! operator actions and the clock change it. The verifier's engine loads records, calls in here
//! with the time and a nonce source, writes the [`Effects`] that come back in one transaction,
//! and publishes their messages after the commit.

mod compare;
mod core;
mod effects;
mod expiry;
mod inbound;
mod operator;
mod policy;
mod punch;
mod rate;
mod record;
mod rejection;
#[cfg(test)]
mod tests;

pub use self::core::{
    Governing, GoverningValues, Lookup, MAX_EVENTLOG, MAX_OUTSTANDING, NonceSource,
    NonceUnavailable, RevokedFirmware, Rules, VerifierCore, firmware_version, governing,
    governing_with, verdict_expiry,
};
pub use compare::{ComparedItem, Comparison, GoverningSource, ItemKind, ItemStatus, compare};
pub use effects::{Decision, Effects, ExpiryMove, NonceWrite, Outbound, VerdictDraft};
pub use inbound::{ChallengeRequest, EvidenceInput, InFlight};
pub use operator::{EnrollConflict, OperatorAction, OperatorError};
pub use policy::{MAX_MODEL_NAME, PolicyOrigin, PolicyRefusal, PolicySet};
pub use rate::RateLimiter;
pub use record::{AuditRecord, DeviceRecord, StoredLog};
pub use rejection::Rejection;
