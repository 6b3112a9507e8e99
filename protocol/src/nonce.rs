//! Freshness, both ways. Verifier side: a challenge nonce is issued to one device, expires, and
//! may be used once; the verifier's store keeps these records durably so the rules hold across
//! restarts. Agent side: every hello and status carries a counter that only ever increases, so
//! the verifier can ignore copies before they cost it anything ([`next_counter`],
//! [`check_counter`]); and the agent remembers the challenges it answered until they expire
//! ([`AnsweredNonces`]), so a replayed challenge is never answered twice.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::RejectionLabel;
use crate::ids::{DeviceId, Kind, Nonce};

/// Default lifetime of a challenge.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// A challenge as the verifier recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedNonce {
    pub device: DeviceId,
    pub issued_at: u64,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

/// Why evidence's nonce is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NonceRejection {
    #[error("nonce was never issued (or expired long ago)")]
    Unknown,
    #[error("nonce was issued to another device")]
    WrongDevice,
    #[error("nonce was already used (replay)")]
    Replay,
    #[error("nonce expired")]
    Expired,
}

impl NonceRejection {
    /// The rejection counter this is counted under.
    pub fn label(&self) -> RejectionLabel {
        match self {
            NonceRejection::Unknown => RejectionLabel::NonceUnknown,
            NonceRejection::WrongDevice => RejectionLabel::NonceWrongDevice,
            NonceRejection::Replay => RejectionLabel::Replay,
            NonceRejection::Expired => RejectionLabel::NonceExpired,
        }
    }
}

/// Checks `record` (the store's entry for the evidence's nonce) for `device` at `now`.
pub fn check(
    record: Option<&IssuedNonce>,
    device: &DeviceId,
    now: u64,
) -> Result<(), NonceRejection> {
    let rec = record.ok_or(NonceRejection::Unknown)?;
    if &rec.device != device {
        return Err(NonceRejection::WrongDevice);
    }
    if rec.used_at.is_some() {
        return Err(NonceRejection::Replay);
    }
    if now > rec.expires_at {
        return Err(NonceRejection::Expired);
    }
    Ok(())
}

/// The counter for the next hello or status, given the last one the device used (0 for
/// none) and the wall clock in microseconds: the clock when it is ahead, so a device whose
/// counter file was lost still starts above anything it sent; otherwise one more than the last,
/// so a clock set back never repeats or lowers it. Saturates at `u64::MAX` (half a million years
/// of microseconds away), where the device can send no more fresh messages.
pub fn next_counter(last: u64, now_micros: u64) -> u64 {
    now_micros.max(last.saturating_add(1))
}

/// A hello or status whose counter is not above the device's highest accepted one: a copy of an
/// earlier message (or, harmlessly, one of two agent processes racing each other).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} counter {counter} is not greater than {last}, the highest accepted (replay)")]
pub struct StaleCounter {
    pub kind: Kind,
    pub counter: u64,
    pub last: u64,
}

impl StaleCounter {
    /// Counted with the evidence replays: the same attack on another message kind.
    pub fn label(&self) -> RejectionLabel {
        RejectionLabel::Replay
    }
}

/// Accepts a `kind` message carrying `counter` from a device whose highest accepted counter is
/// `last` (0 before any) only when the counter is greater.
pub fn check_counter(kind: Kind, last: u64, counter: u64) -> Result<(), StaleCounter> {
    if counter > last {
        Ok(())
    } else {
        Err(StaleCounter {
            kind,
            counter,
            last,
        })
    }
}

/// How far past a challenge's `expires_at` (by the agent's clock) the agent still answers it:
/// room for a terminal clock a little ahead of the verifier's. The verifier enforces the expiry
/// by its own clock regardless.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Whether a challenge expiring at `expires_at` is past answering at `now` (agent clock).
pub fn challenge_expired(expires_at: u64, now: u64) -> bool {
    now > expires_at.saturating_add(CLOCK_SKEW_SECS)
}

/// Most answered nonces an agent keeps. A verifier hands a device at most a few dozen challenges
/// per nonce lifetime (its rate limit), so the bound is never reached by genuine traffic.
pub const MAX_ANSWERED: usize = 1024;

/// The challenge nonces an agent has answered, each with its expiry. Persisted in the agent's
/// state directory, so a restarted agent does not answer a replayed challenge again. An entry is
/// kept until its challenge is past answering anyway ([`challenge_expired`]), never evicted by
/// newer ones; only past [`MAX_ANSWERED`] live entries (which needs the verifier's own key) the
/// one closest to its expiry makes room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsweredNonces {
    /// (nonce, `expires_at` of its challenge), in insertion order.
    entries: Vec<(Nonce, u64)>,
}

impl AnsweredNonces {
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.entries.iter().any(|(n, _)| n == nonce)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops the entries whose challenges are past answering at `now`.
    pub fn prune(&mut self, now: u64) {
        self.entries
            .retain(|(_, exp)| !challenge_expired(*exp, now));
    }

    /// Records `nonce` (its challenge expiring at `expires_at`) as answered.
    pub fn insert(&mut self, nonce: Nonce, expires_at: u64, now: u64) {
        if let Some(entry) = self.entries.iter_mut().find(|(n, _)| *n == nonce) {
            entry.1 = entry.1.max(expires_at);
            return;
        }
        self.prune(now);
        if self.entries.len() >= MAX_ANSWERED
            && let Some(pos) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(i, _)| i)
        {
            self.entries.remove(pos);
        }
        self.entries.push((nonce, expires_at));
    }

    /// Adds everything `other` holds (another process's answers read back from disk).
    pub fn merge(&mut self, other: &AnsweredNonces, now: u64) {
        for (n, exp) in &other.entries {
            if !challenge_expired(*exp, now) {
                self.insert(*n, *exp, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dev: &str, used: Option<u64>) -> IssuedNonce {
        IssuedNonce {
            device: dev.parse().unwrap(),
            issued_at: 100,
            expires_at: 160,
            used_at: used,
        }
    }

    #[test]
    fn every_rule_is_enforced() {
        let d: DeviceId = "t1".parse().unwrap();
        assert_eq!(check(None, &d, 100), Err(NonceRejection::Unknown));
        assert_eq!(
            check(Some(&rec("t2", None)), &d, 100),
            Err(NonceRejection::WrongDevice)
        );
        assert_eq!(
            check(Some(&rec("t1", Some(120))), &d, 130),
            Err(NonceRejection::Replay)
        );
        assert_eq!(
            check(Some(&rec("t1", None)), &d, 161),
            Err(NonceRejection::Expired)
        );
        assert_eq!(check(Some(&rec("t1", None)), &d, 160), Ok(()));
    }

    #[test]
    fn counters_only_increase_whatever_the_clock_does() {
        assert_eq!(
            next_counter(0, 1_700_000_000_000_000),
            1_700_000_000_000_000
        );
        // Clock set back: one more than the last, never the clock.
        assert_eq!(
            next_counter(1_700_000_000_000_000, 5),
            1_700_000_000_000_001
        );
        // Same microsecond twice: still strictly increasing.
        assert_eq!(next_counter(42, 42), 43);
        assert_eq!(next_counter(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn a_counter_not_above_the_last_is_a_replay() {
        assert_eq!(check_counter(Kind::Hello, 0, 1), Ok(()));
        assert_eq!(check_counter(Kind::Status, 10, 11), Ok(()));
        let e = check_counter(Kind::Hello, 10, 10).unwrap_err();
        assert_eq!(e.label().as_str(), "replay");
        assert!(e.to_string().contains("hello counter 10"), "{e}");
        assert!(check_counter(Kind::Status, 10, 9).is_err());
        assert!(
            check_counter(Kind::Hello, 0, 0).is_err(),
            "0 is never fresh"
        );
    }

    #[test]
    fn answered_nonces_are_kept_until_their_challenge_expires() {
        let n = |b: u8| Nonce::from_bytes([b; 32]);
        let mut m = AnsweredNonces::default();
        m.insert(n(1), 100, 50);
        m.insert(n(2), 200, 50);
        assert!(m.contains(&n(1)) && m.contains(&n(2)));
        m.prune(100 + CLOCK_SKEW_SECS);
        assert!(m.contains(&n(1)), "still answerable, so still remembered");
        m.prune(101 + CLOCK_SKEW_SECS);
        assert!(!m.contains(&n(1)) && m.contains(&n(2)));
    }

    #[test]
    fn a_flood_of_answers_cannot_roll_a_live_nonce_out() {
        let mut m = AnsweredNonces::default();
        let keep = Nonce::from_bytes([0xee; 32]);
        m.insert(keep, 10_000, 0);
        // Answers to short-lived challenges: each expires before the next is recorded.
        for i in 0..(4 * MAX_ANSWERED as u64) {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&i.to_le_bytes());
            m.insert(Nonce::from_bytes(b), i, i + CLOCK_SKEW_SECS + 1);
        }
        assert!(m.contains(&keep));
        assert!(m.len() <= MAX_ANSWERED);
        // Past the bound with live entries, the one closest to expiry makes room, not `keep`.
        for i in 0..(2 * MAX_ANSWERED as u64) {
            let mut b = [1u8; 32];
            b[..8].copy_from_slice(&i.to_le_bytes());
            m.insert(Nonce::from_bytes(b), 5_000 + i, 0);
        }
        assert!(m.contains(&keep));
        assert_eq!(m.len(), MAX_ANSWERED);
    }

    #[test]
    fn merged_answers_keep_both_processes_nonces() {
        let n = |b: u8| Nonce::from_bytes([b; 32]);
        let mut a = AnsweredNonces::default();
        a.insert(n(1), 100, 0);
        let mut b = AnsweredNonces::default();
        b.insert(n(2), 100, 0);
        b.insert(n(3), 1, 0);
        a.merge(&b, 50);
        assert!(a.contains(&n(1)) && a.contains(&n(2)));
        assert!(!a.contains(&n(3)), "expired entries are not merged");
    }
}
