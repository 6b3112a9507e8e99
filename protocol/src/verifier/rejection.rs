//! Why the verifier refused a message from a device: every check that can refuse one, each with
//! the counter label it is counted under. A rejection changes nothing, with the two exceptions
//! the core records in its effects (a superseded quote consumes its nonce; a fresh but
//! rate-limited hello or status records its counter).

use thiserror::Error;

use crate::error::{IdError, RejectionLabel, WireError};
use crate::ids::{DeviceId, Kind};
use crate::messages::ReassembleError;
use crate::nonce::{NonceRejection, StaleCounter};
use crate::punch::PunchError;
use crate::reason::Reason;

use super::inbound::ChallengeRequest;

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error(transparent)]
    Topic(IdError),
    #[error("{0} messages are sent by the verifier, not to it")]
    Direction(Kind),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("device {0} is not enrolled")]
    NotEnrolled(DeviceId),
    #[error(transparent)]
    Nonce(#[from] NonceRejection),
    #[error(transparent)]
    Counter(#[from] StaleCounter),
    #[error("device {0} asked for too many challenges this minute")]
    RateLimited(DeviceId),
    #[error(
        "event log part at offset {offset} does not continue the log held for this boot; asking for the whole log"
    )]
    EventLogGap { offset: u64 },
    #[error("event log of {len} bytes exceeds the {max}-byte limit")]
    EventLogTooLarge { len: usize, max: usize },
    #[error("evidence is genuine but older than the last quote accepted in this TPM boot")]
    Stale,
    #[error(transparent)]
    PunchMalformed(#[from] PunchError),
    /// A signed punch chain that does not hold together or contradicts the mirror.
    #[error("punch batch rejected as tamper: {0}")]
    PunchTamper(Reason),
    #[error(
        "punch batch starts at seq {first}, after the mirror's head {head}: asking for a resend from {}",
        head + 1
    )]
    PunchGap { head: u64, first: u64 },
}

impl Rejection {
    /// The rejection counter this is counted under.
    pub fn label(&self) -> RejectionLabel {
        match self {
            Rejection::Topic(IdError::UnknownKind { .. }) => RejectionLabel::UnknownKind,
            Rejection::Topic(_) | Rejection::Direction(_) => RejectionLabel::WrongTopic,
            Rejection::Wire(w) => w.label(),
            Rejection::NotEnrolled(_) => RejectionLabel::NotEnrolled,
            Rejection::Nonce(n) => n.label(),
            Rejection::Counter(c) => c.label(),
            Rejection::RateLimited(_) => RejectionLabel::RateLimited,
            Rejection::EventLogGap { .. } => RejectionLabel::EventlogGap,
            Rejection::EventLogTooLarge { .. } => RejectionLabel::Oversized,
            Rejection::Stale => RejectionLabel::Stale,
            Rejection::PunchMalformed(_) => RejectionLabel::Malformed,
            // A forged batch is counted as what it is on the wire; it quarantines all the same.
            Rejection::PunchTamper(Reason::PunchForged) => RejectionLabel::BadSignature,
            Rejection::PunchTamper(_) => RejectionLabel::Tamper,
            Rejection::PunchGap { .. } => RejectionLabel::PunchGap,
        }
    }

    /// The challenge the verifier asks for itself after this rejection: an event log delta
    /// that does not fit the log the verifier holds is answered with a new challenge, which says
    /// what is held now (so the agent sends the whole log). It carries no request number and no
    /// counter (nothing the device sent is replayed). Every other rejection issues nothing.
    pub fn rechallenge(&self) -> Option<ChallengeRequest> {
        match self {
            Rejection::EventLogGap { .. } => Some(ChallengeRequest {
                kind: Kind::Evidence,
                request: 0,
                counter: None,
            }),
            _ => None,
        }
    }
}

/// Both ways an event log fails to reassemble are refusals of the message, not defects of the
/// evidence: a delta that does not continue the held log (the verifier asks for the whole log,
/// see [`Rejection::rechallenge`]) and a log over [`super::Rules::max_eventlog`].
impl From<ReassembleError> for Rejection {
    fn from(e: ReassembleError) -> Self {
        match e {
            ReassembleError::Gap { offset } => Rejection::EventLogGap { offset },
            ReassembleError::TooLarge { len, max } => Rejection::EventLogTooLarge { len, max },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_log_gap_and_nothing_else_causes_a_rechallenge() {
        let d: DeviceId = "t1".parse().unwrap();
        assert_eq!(
            Rejection::EventLogGap { offset: 10 }.rechallenge(),
            Some(ChallengeRequest {
                kind: Kind::Evidence,
                request: 0,
                counter: None,
            }),
            "a self-requested challenge: no request number, no counter to check"
        );
        let others = [
            Rejection::Stale,
            Rejection::RateLimited(d.clone()),
            Rejection::NotEnrolled(d),
            Rejection::EventLogTooLarge { len: 2, max: 1 },
            Rejection::Nonce(NonceRejection::Unknown),
            Rejection::Wire(WireError::BadSignature),
        ];
        for r in others {
            assert_eq!(r.rechallenge(), None, "{r}");
        }
    }

    #[test]
    fn event_log_reassembly_errors_are_rejections_counted_as_gap_or_oversized() {
        let gap = Rejection::from(ReassembleError::Gap { offset: 7 });
        assert_eq!(gap, Rejection::EventLogGap { offset: 7 });
        assert_eq!(gap.label().as_str(), "eventlog_gap");
        let big = Rejection::from(ReassembleError::TooLarge { len: 9, max: 8 });
        assert_eq!(big, Rejection::EventLogTooLarge { len: 9, max: 8 });
        assert_eq!(big.label().as_str(), "oversized");
    }

    #[test]
    fn rejections_keep_their_counter_names() {
        let d: DeviceId = "t1".parse().unwrap();
        let cases = [
            (
                Rejection::Topic(IdError::UnknownKind { kind: "x".into() }),
                "unknown_kind",
            ),
            (
                Rejection::Topic(IdError::Topic { topic: "x".into() }),
                "wrong_topic",
            ),
            (Rejection::Direction(Kind::Verdict), "wrong_topic"),
            (Rejection::NotEnrolled(d.clone()), "not_enrolled"),
            (Rejection::Nonce(NonceRejection::Replay), "replay"),
            (
                Rejection::Counter(StaleCounter {
                    kind: Kind::Hello,
                    counter: 1,
                    last: 1,
                }),
                "replay",
            ),
            (Rejection::RateLimited(d), "rate_limited"),
            (Rejection::EventLogGap { offset: 1 }, "eventlog_gap"),
            (Rejection::EventLogTooLarge { len: 2, max: 1 }, "oversized"),
            (Rejection::Stale, "stale"),
        ];
        for (r, label) in cases {
            assert_eq!(r.label().as_str(), label, "{r}");
        }
    }
}
