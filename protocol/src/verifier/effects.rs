//! What one decision of the verifier core asks its shell to do: the records to write in the
//! current write transaction and the messages to sign and publish once it has committed. The
//! messages are unsigned values without their `seq`: the shell numbers verdicts and commands from
//! the store's counter as it writes them (in the order given), signs them, and stores the signed
//! verdict as the device's `last_verdict` before it writes the device record.

use crate::appraisal::Appraisal;
use crate::ids::{DeviceId, Nonce};
use crate::messages::{Challenge, CmdAction};
use crate::nonce::IssuedNonce;
use crate::reason::Reason;
use crate::verdict::{DeviceState, PROFILE, Status, TrustVector, Verdict};

use super::record::{AuditRecord, DeviceRecord, StoredLog};
use super::rejection::Rejection;

/// Records to write and messages to publish, in one write transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// The device record to store, when the decision changed it. Written after everything else,
    /// with the signed bytes of the last verdict in `messages` as its `last_verdict`.
    pub device: Option<DeviceRecord>,
    /// Nonce records to write or remove, in order.
    pub nonces: Vec<NonceWrite>,
    /// The device's accepted event log, when it changed.
    pub eventlog: Option<StoredLog>,
    /// The device's entry in the verdict-expiry index moves, when a verdict is issued.
    pub verdict_expiry: Option<ExpiryMove>,
    /// Audit entries to append, in order.
    pub audit: Vec<AuditRecord>,
    /// Messages to the device, to publish after the commit, in order.
    pub messages: Vec<Outbound>,
}

impl Effects {
    /// Whether there is nothing to write or publish.
    pub fn is_empty(&self) -> bool {
        self == &Effects::default()
    }

    /// The verdict among the messages, if one is issued.
    pub fn verdict(&self) -> Option<&VerdictDraft> {
        self.messages.iter().rev().find_map(|m| match m {
            Outbound::Verdict(v) => Some(v.as_ref()),
            _ => None,
        })
    }

    /// The challenges among the messages.
    pub fn challenges(&self) -> impl Iterator<Item = &Challenge> {
        self.messages.iter().filter_map(|m| match m {
            Outbound::Challenge(c) => Some(c),
            _ => None,
        })
    }
}

/// A change to the nonce table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceWrite {
    /// Store (or overwrite) the record of a nonce.
    Put(Nonce, IssuedNonce),
    /// Remove a withdrawn nonce, so evidence answering it is `nonce_unknown`.
    Remove(Nonce),
}

/// A device's verdict-expiry index entry moves from the previous verdict's expiry (if it had
/// one) to the new verdict's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryMove {
    pub from: Option<u64>,
    pub to: u64,
}

/// A message for the device, not yet numbered or signed.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Published as is (challenges carry no `seq`), not retained.
    Challenge(Challenge),
    /// Numbered, signed and published retained.
    Verdict(Box<VerdictDraft>),
    /// Numbered, signed and published, not retained.
    Cmd { issued_at: u64, action: CmdAction },
}

/// A verdict before the shell numbers it: every field of [`Verdict`] but `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictDraft {
    pub iat: u64,
    pub exp: u64,
    pub verifier_id: String,
    pub status: Status,
    pub trust: TrustVector,
    pub policy_id: Option<String>,
    pub device: DeviceId,
    pub state: DeviceState,
    /// Typed here; rendered to the operator text only in the signed verdict.
    pub reasons: Vec<Reason>,
    pub nonce: Option<Nonce>,
}

impl VerdictDraft {
    pub(super) fn new(
        a: Appraisal,
        device: DeviceId,
        state: DeviceState,
        verifier_id: &str,
        nonce: Option<Nonce>,
        (iat, exp): (u64, u64),
    ) -> Self {
        Self {
            iat,
            exp,
            verifier_id: verifier_id.to_owned(),
            status: a.status,
            trust: a.trust,
            policy_id: a.policy_id,
            device,
            state,
            reasons: a.reasons,
            nonce,
        }
    }

    /// The verdict, numbered `seq`.
    pub fn sequenced(self, seq: u64) -> Verdict {
        Verdict {
            profile: PROFILE.into(),
            iat: self.iat,
            exp: self.exp,
            verifier_id: self.verifier_id,
            status: self.status,
            trust: self.trust,
            policy_id: self.policy_id,
            device: self.device,
            state: self.state,
            reasons: crate::reason::texts(&self.reasons),
            nonce: self.nonce,
            seq,
        }
    }
}

/// The outcome of a message: what to write and publish, and whether the message was refused.
/// A refused message writes nothing, except what its effects hold (a superseded quote consumes
/// its nonce; a fresh but rate-limited hello or status records its counter).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub effects: Effects,
    pub rejected: Option<Rejection>,
}

impl Decision {
    pub(super) fn accepted(effects: Effects) -> Self {
        Self {
            effects,
            rejected: None,
        }
    }

    pub(super) fn rejected(r: impl Into<Rejection>, effects: Effects) -> Self {
        Self {
            effects,
            rejected: Some(r.into()),
        }
    }
}
