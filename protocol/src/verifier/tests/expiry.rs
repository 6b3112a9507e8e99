//! Core decisions on verdict expiry: which due index entries it acts on, what the renewed
//! verdicts say and when they expire, and the lifetime rule of every verdict.

use super::*;
use crate::device::{AuditAction, Basis};
use crate::verdict::{Status, TrustVector};
use crate::verifier::verdict_expiry;

impl World {
    /// The sweep reached the device's index entry `entry_exp` at `self.now`.
    fn expire(&mut self, entry_exp: u64) -> Effects {
        let e = self
            .core
            .on_verdict_expired(self.rec.clone(), entry_exp, self.now, &mut self.nonces)
            .unwrap();
        self.commit(e)
    }

    fn current_exp(&self) -> u64 {
        self.rec.last_verdict().unwrap().exp
    }
}

#[test]
fn an_expired_trusted_verdict_is_renewed_as_a_warning_a_lifetime_from_now() {
    let mut w = World::trusted();
    let exp = w.current_exp();
    w.now = exp + 7;
    let e = w.expire(exp);
    assert_eq!(w.rec.status.state(), DeviceState::Unresponsive);
    assert_eq!(kinds(&e), ["verdict"]);
    let v = e.verdict().unwrap();
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.trust,
        TrustVector::default(),
        "no claims without evidence"
    );
    assert_eq!((v.iat, v.exp), (w.now, w.now + TTL));
    assert_eq!(e.audit.len(), 1);
    assert_eq!(e.audit[0].action, AuditAction::Unresponsive);
    assert_eq!(
        e.verdict_expiry.map(|m| (m.from, m.to)),
        Some((Some(exp), w.now + TTL))
    );
}

#[test]
fn a_stale_expiry_entry_is_dropped() {
    let mut w = World::trusted();
    let exp = w.current_exp();
    w.now = exp + 1;
    // An entry left behind by a verdict since replaced: it names another expiry.
    assert!(w.expire(exp - 1).is_empty());
    assert_eq!(w.rec.status.state(), DeviceState::Trusted);
    // A device with no verdict at all has nothing due either.
    let mut fresh = World::new();
    assert!(fresh.expire(exp).is_empty());
}

#[test]
fn a_pending_device_gets_nothing_at_expiry() {
    let mut w = World::new();
    let n = w.challenge();
    w.evidence(n, &verified(1, 100), &no_policy(&w.rec));
    let exp = w.current_exp();
    w.now = exp + 1;
    assert!(w.expire(exp).is_empty());
    assert_eq!(w.rec.status.state(), DeviceState::Pending);
}

#[test]
fn an_unresponsive_device_is_quarantined_after_the_configured_expiries() {
    let mut w = World::with(2, 1000);
    let n = w.challenge();
    w.evidence(n, &verified(1, 100), &device_policy(&w.rec, 1));
    let first = w.current_exp();
    w.now = first + 1;
    w.expire(first);
    assert_eq!(w.rec.status.state(), DeviceState::Unresponsive);
    let second = w.current_exp();
    assert_eq!(second, w.now + TTL, "the renewal is the next expiry");
    w.now = second + 1;
    let e = w.expire(second);
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
    assert_eq!(kinds(&e), ["verdict", "cmd"]);
    assert_eq!(e.verdict().unwrap().status, Status::Contraindicated);
}

#[test]
fn a_quarantined_device_gets_its_held_verdict_renewed() {
    let mut w = World::with(1, 1000);
    let n = w.challenge();
    w.evidence(n, &verified(1, 100), &device_policy(&w.rec, 1));
    w.rec
        .status
        .quarantine("tamper", crate::device::Actor::Verifier, w.now)
        .unwrap();
    let exp = w.current_exp();
    w.now = exp + 1;
    let e = w.expire(exp);
    assert!(e.audit.is_empty(), "an expiry is no state change");
    let v = e.verdict().unwrap();
    assert_eq!(
        (v.status, v.state),
        (Status::Contraindicated, DeviceState::Quarantined)
    );
    assert_eq!(v.exp, w.now + TTL);
}

#[test]
fn verdict_lifetime_follows_the_quote_behind_it() {
    let now = T0 + 10_000;
    // Fresh evidence: a lifetime from now.
    assert_eq!(
        verdict_expiry(Basis::Fresh, Some(now), DeviceState::Trusted, now, TTL),
        now + TTL
    );
    // Stored measurements: no longer than a lifetime after they were taken ...
    assert_eq!(
        verdict_expiry(
            Basis::Stored { recent: true },
            Some(now - 100),
            DeviceState::Trusted,
            now,
            TTL
        ),
        now - 100 + TTL
    );
    assert_eq!(
        verdict_expiry(
            Basis::Stored { recent: false },
            Some(T0),
            DeviceState::Pending,
            now,
            TTL
        ),
        T0 + TTL
    );
    // ... and never later than a lifetime from now.
    assert_eq!(
        verdict_expiry(
            Basis::Stored { recent: true },
            Some(now + 50),
            DeviceState::Trusted,
            now,
            TTL
        ),
        now + TTL
    );
    // "No fresh evidence" covers a lifetime from now, whatever the measurements' age.
    assert_eq!(
        verdict_expiry(
            Basis::Stored { recent: false },
            Some(T0),
            DeviceState::Unresponsive,
            now,
            TTL
        ),
        now + TTL
    );
}

#[test]
fn a_zero_verdict_lifetime_is_taken_as_one_second_so_renewals_never_arrive_expired() {
    let core = VerifierCore::new(Rules {
        nonce_ttl: NONCE_TTL,
        verdict_ttl: 0,
        verifier_id: "test".into(),
        quarantine_after_expiries: 0,
        max_eventlog: crate::verifier::MAX_EVENTLOG,
        require_ek_cert: false,
    });
    assert_eq!(core.rules().verdict_ttl, 1);
}
