//! Core decisions on operator actions and policy changes: the held verdict at a quarantine,
//! challenges withdrawn by quarantine and release, and re-evaluation of stored measurements
//! (a challenge when they are older than a verdict lifetime, a verdict no longer-lived than they).

use super::*;
use crate::device::{Actor, AuditAction, TransitionError};
use crate::verdict::Status;
use crate::verifier::{OperatorAction, OperatorError};

fn op() -> Actor {
    Actor::Operator("test".into())
}

impl World {
    /// A change of the values governing the device (`gov`'s), committed.
    fn policy_change(&mut self, gov: &Governing) -> Effects {
        let changed = gov.found.as_ref().unwrap().scope.clone();
        let e = self
            .core
            .on_policy_change(self.rec.clone(), &changed, gov, self.now, &mut self.nonces)
            .unwrap()
            .expect("the changed values govern the device");
        self.commit(e)
    }
}

#[test]
fn an_operator_quarantine_publishes_the_held_verdict_at_once() {
    let mut w = World::trusted();
    let policy = w.rec.last_verdict().unwrap().policy_id;
    let open = w.challenge();
    w.now += 30;
    let e = w
        .act(OperatorAction::Quarantine {
            reason: "tamper report",
            actor: op(),
        })
        .unwrap();
    assert_eq!(kinds(&e), ["verdict", "cmd"]);
    let v = e.verdict().unwrap();
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(crate::reason::codes(&v.reasons), ["quarantined"]);
    assert_eq!(
        crate::reason::texts(&v.reasons),
        ["quarantined by operator:test: tamper report"]
    );
    assert_eq!(v.policy_id, policy, "under the last verdict's policy");
    assert_eq!((v.nonce, v.iat, v.exp), (None, w.now, w.now + TTL));
    assert_eq!(e.audit[0].action, AuditAction::Quarantined);
    // The old verdict's index entry moves to the held one's.
    assert_eq!(e.verdict_expiry.unwrap().to, w.now + TTL);
    assert_eq!(e.verdict_expiry.unwrap().from, Some(T0 + TTL));
    // Evidence quoted before the quarantine can never count.
    assert!(e.nonces.contains(&NonceWrite::Remove(open)));
    assert!(w.outstanding().is_empty());
}

#[test]
fn a_release_withdraws_old_challenges_and_issues_its_own() {
    let mut w = World::trusted();
    w.act(OperatorAction::Quarantine {
        reason: "tamper report",
        actor: op(),
    })
    .unwrap();
    let before_release = w.challenge();
    let e = w
        .act(OperatorAction::Release {
            reason: "inspected",
            actor: op(),
        })
        .unwrap();
    assert_eq!(
        kinds(&e),
        ["cmd", "challenge"],
        "no verdict: still quarantined"
    );
    assert!(e.nonces.contains(&NonceWrite::Remove(before_release)));
    let own = e.challenges().next().unwrap().nonce;
    assert_eq!(w.outstanding(), [own]);
    assert!(w.rec.status.release_pending());
    // Fresh passing evidence answering the release's challenge lifts it.
    let gov = device_policy(&w.rec, 1);
    w.evidence(own, &verified(1, 500), &gov);
    assert_eq!(w.rec.status.state(), DeviceState::Trusted);
}

#[test]
fn an_operator_action_that_does_not_fit_the_state_changes_nothing() {
    let mut w = World::trusted();
    let before = w.rec.clone();
    let e = w
        .act(OperatorAction::Release {
            reason: "inspected",
            actor: op(),
        })
        .unwrap_err();
    assert!(matches!(
        e,
        OperatorError::Transition(TransitionError::NotQuarantined { .. })
    ));
    let e = w
        .act(OperatorAction::Quarantine {
            reason: " ",
            actor: op(),
        })
        .unwrap_err();
    assert_eq!(e, OperatorError::Transition(TransitionError::EmptyReason));
    assert_eq!(w.rec, before);
}

#[test]
fn reevaluating_recent_measurements_issues_no_challenge() {
    let mut w = World::trusted();
    w.now += TTL;
    let gov = device_policy(&w.rec, 1);
    let e = w.policy_change(&gov);
    assert_eq!(
        kinds(&e),
        ["verdict"],
        "measurements a lifetime old are still recent"
    );
    let v = e.verdict().unwrap();
    assert_eq!(v.status, Status::Affirming);
    assert_eq!(v.nonce, None);
    // No longer-lived than the measurements behind it.
    assert_eq!(v.exp, T0 + TTL);
}

#[test]
fn reevaluating_old_measurements_challenges_for_fresh_evidence() {
    let mut w = World::trusted();
    w.now += TTL + 1;
    let gov = device_policy(&w.rec, 1);
    let e = w.policy_change(&gov);
    assert_eq!(kinds(&e), ["verdict", "challenge"]);
    let c = e.challenges().next().unwrap();
    assert_eq!(c.request, 0, "the verifier asks on its own");
    // The verdict on stale measurements expires with them (already past: the challenge fixes it).
    assert_eq!(e.verdict().unwrap().exp, T0 + TTL);
}

#[test]
fn old_measurements_cannot_make_a_pending_device_trusted() {
    let mut w = World::new();
    let n = w.challenge();
    w.evidence(n, &verified(1, 100), &no_policy(&w.rec));
    assert_eq!(w.rec.status.state(), DeviceState::Pending);
    w.now += TTL + 1;
    let gov = device_policy(&w.rec, 1);
    w.policy_change(&gov);
    assert_eq!(w.rec.status.state(), DeviceState::Pending);
    // Recent ones can.
    let mut w = World::new();
    let n = w.challenge();
    w.evidence(n, &verified(1, 100), &no_policy(&w.rec));
    w.now += TTL;
    let gov = device_policy(&w.rec, 1);
    w.policy_change(&gov);
    assert_eq!(w.rec.status.state(), DeviceState::Trusted);
}

#[test]
fn a_device_that_never_attested_is_not_reevaluated() {
    let mut w = World::new();
    let gov = device_policy(&w.rec, 1);
    assert!(w.policy_change(&gov).is_empty());
}

#[test]
fn a_policy_the_stored_measurements_fail_makes_the_device_worse_off() {
    let mut w = World::trusted();
    w.now += TTL + 1;
    let gov = device_policy(&w.rec, 2);
    let e = w.policy_change(&gov);
    assert_eq!(e.verdict().unwrap().status, Status::Contraindicated);
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
    assert_eq!(kinds(&e), ["verdict", "cmd", "challenge"]);
}

#[test]
fn enrolling_the_same_keys_again_is_idempotent_and_other_keys_conflict() {
    let w = World::new();
    let e = w.rec.enrollment.clone();
    let created = w
        .core
        .on_enroll(None, e.clone(), &op(), T0)
        .unwrap()
        .unwrap();
    let rec = created.device.clone().unwrap();
    assert_eq!(rec.status.state(), DeviceState::Pending);
    assert_eq!(created.audit.len(), 1);
    assert_eq!(created.audit[0].action, AuditAction::Enrolled);
    assert_eq!(created.audit[0].reason, "model T, AK 03");
    assert!(
        created.messages.is_empty(),
        "nothing is published at enrollment"
    );
    assert_eq!(
        w.core.on_enroll(Some(&rec), e.clone(), &op(), T0 + 1),
        Ok(None)
    );
    let other = crate::enrollment::Enrollment {
        ak_public: crate::bytes::Bytes(vec![0xff]),
        ..e
    };
    let conflict = w.core.on_enroll(Some(&rec), other, &op(), T0).unwrap_err();
    assert_eq!(
        conflict.to_string(),
        "device t1 is already enrolled with different keys or model"
    );
}
