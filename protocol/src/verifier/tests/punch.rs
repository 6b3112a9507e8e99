//! Core decisions on punch tamper: a trusted (or pending) device is quarantined with the
//! tamper's reason, its held verdict published at once and its challenges withdrawn, with a
//! `punches_rejected` audit entry before the quarantine's; an already quarantined device only
//! gets the audit entry.

use super::*;
use crate::device::{Actor, AuditAction};
use crate::reason::Reason;
use crate::verdict::Status;
use crate::verifier::OperatorAction;

impl World {
    fn punch_tamper(&mut self, reason: Reason) -> Effects {
        let e = self
            .core
            .on_punch_tamper(self.rec.clone(), reason, self.now, &mut self.nonces)
            .unwrap();
        self.commit(e)
    }
}

#[test]
fn punch_tamper_quarantines_a_trusted_device_with_its_reason_and_audits_it_first() {
    let mut w = World::trusted();
    let open = w.challenge();
    w.now += 10;
    let e = w.punch_tamper(Reason::PunchFork { seq: 7 });
    assert_eq!(kinds(&e), ["verdict", "cmd"]);
    let v = e.verdict().unwrap();
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(
        crate::reason::texts(&v.reasons),
        [format!(
            "quarantined by verifier: {}",
            Reason::PunchFork { seq: 7 }
        )]
    );
    let actions: Vec<AuditAction> = e.audit.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        [AuditAction::PunchesRejected, AuditAction::Quarantined]
    );
    assert_eq!(e.audit[0].reason, Reason::PunchFork { seq: 7 }.to_string());
    assert!(
        e.nonces.contains(&NonceWrite::Remove(open)),
        "challenge withdrawn"
    );
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
}

#[test]
fn punch_tamper_from_an_already_quarantined_device_only_adds_an_audit_entry() {
    let mut w = World::trusted();
    w.act(OperatorAction::Quarantine {
        reason: "inspection",
        actor: Actor::Operator("test".into()),
    })
    .unwrap();
    let e = w.punch_tamper(Reason::PunchForged);
    assert!(e.messages.is_empty(), "no second verdict or command");
    assert_eq!(e.audit.len(), 1);
    assert_eq!(e.audit[0].action, AuditAction::PunchesRejected);
    assert_eq!(e.audit[0].actor, Actor::Verifier);
}

#[test]
fn punch_tamper_while_a_release_is_pending_fails_the_release_so_passing_evidence_cannot_lift_it() {
    let mut w = World::trusted();
    let op = Actor::Operator("test".into());
    w.act(OperatorAction::Quarantine {
        reason: "inspection",
        actor: op.clone(),
    })
    .unwrap();
    w.act(OperatorAction::Release {
        reason: "inspected",
        actor: op,
    })
    .unwrap();
    assert!(w.rec.status.release_pending());
    w.now += 5;
    let e = w.punch_tamper(Reason::PunchFork { seq: 2 });
    let actions: Vec<AuditAction> = e.audit.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        [AuditAction::PunchesRejected, AuditAction::ReleaseFailed]
    );
    assert!(kinds(&e).contains(&"cmd"), "the quarantine command again");
    assert!(!w.rec.status.release_pending(), "the release is cancelled");
    // A passing attestation afterwards leaves the device quarantined.
    w.now += 5;
    let n = w.challenge();
    let gov = device_policy(&w.rec, 1);
    let d = w.evidence(n, &verified(1, 200), &gov);
    assert_eq!(d.rejected, None);
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
}
