//! Unit tests of the device state machine: appraisals, operator actions and verdict expiry.

use super::*;

fn op() -> Actor {
    Actor::Operator("admin".into())
}

fn no_reference() -> Vec<Reason> {
    vec![Reason::NoReferenceValues {
        subject: "model T-100".into(),
    }]
}

/// A finding naming a boot PCR.
fn pcr(index: u8) -> Vec<Reason> {
    vec![Reason::PcrNotQuoted { index }]
}

fn codes(reasons: &[Reason]) -> Vec<&'static str> {
    reason::codes(reasons)
}

fn silent_since_100() -> Vec<Reason> {
    vec![Reason::NoFreshEvidence { since: 100 }]
}

#[test]
fn pending_becomes_trusted_on_a_pass_and_stays_pending_without_reference() {
    let mut d = DeviceStatus::new();
    let (t, s, _) = d.transition(Status::Warning, &no_reference(), Basis::Fresh, 1);
    assert!(t.changes.is_empty());
    assert_eq!((d.state(), s), (DeviceState::Pending, Status::Warning));
    let (t, s, _) = d.transition(Status::Affirming, &[], Basis::Fresh, 2);
    assert_eq!(t.changes[0].action, AuditAction::Trusted);
    assert_eq!((d.state(), s), (DeviceState::Trusted, Status::Affirming));
}

#[test]
fn failure_quarantines_and_sends_a_command() {
    let mut d = DeviceStatus::new();
    d.transition(Status::Affirming, &[], Basis::Fresh, 1);
    let (t, s, reasons) = d.transition(Status::Contraindicated, &pcr(4), Basis::Fresh, 2);
    assert_eq!(d.state(), DeviceState::Quarantined);
    assert_eq!(s, Status::Contraindicated);
    assert_eq!(reasons, pcr(4), "the findings, not repeated under a prefix");
    assert_eq!(t.changes[0].action, AuditAction::Quarantined);
    assert!(matches!(
        t.effects[0],
        Effect::SendCmd(CmdAction::Quarantine { .. })
    ));
}

#[test]
fn passing_attestation_alone_never_lifts_a_quarantine() {
    let mut d = DeviceStatus::new();
    d.quarantine("tamper report", op(), 1).unwrap();
    let (t, s, reasons) = d.transition(Status::Affirming, &[], Basis::Fresh, 2);
    assert!(t.changes.is_empty());
    assert_eq!(
        (d.state(), s),
        (DeviceState::Quarantined, Status::Contraindicated)
    );
    assert_eq!(codes(&reasons), ["quarantined"]);
    assert_eq!(
        reasons[0].to_string(),
        "quarantined by operator:admin: tamper report"
    );
}

#[test]
fn release_then_pass_makes_trusted_and_release_then_fail_stays_quarantined() {
    let mut d = DeviceStatus::new();
    d.quarantine("tamper report", op(), 1).unwrap();
    let t = d.release("inspected", op(), 2).unwrap();
    assert_eq!(t.changes[0].action, AuditAction::Released);
    assert!(t.effects.contains(&Effect::SendChallenge));
    assert_eq!(d.state(), DeviceState::Quarantined);
    let (t, _, _) = d.transition(Status::Affirming, &[], Basis::Fresh, 3);
    assert_eq!(t.changes[0].action, AuditAction::Trusted);
    assert_eq!(d.state(), DeviceState::Trusted);
    assert!(d.quarantine_in_force().is_none());

    d.quarantine("again", op(), 4).unwrap();
    d.release("try", op(), 5).unwrap();
    let (t, s, _) = d.transition(Status::Contraindicated, &pcr(0), Basis::Fresh, 6);
    assert_eq!(t.changes[0].action, AuditAction::ReleaseFailed);
    assert_eq!(
        (d.state(), s),
        (DeviceState::Quarantined, Status::Contraindicated)
    );
    assert!(!d.release_pending());
}

#[test]
fn reappraising_stored_measurements_never_lifts_a_quarantine() {
    let mut d = DeviceStatus::new();
    d.quarantine("tamper report", op(), 1).unwrap();
    d.release("inspected", op(), 2).unwrap();
    for recent in [true, false] {
        let (t, s, _) = d.transition(Status::Affirming, &[], Basis::Stored { recent }, 3);
        assert!(t.changes.is_empty());
        assert_eq!(
            (d.state(), s),
            (DeviceState::Quarantined, Status::Contraindicated)
        );
        assert!(
            d.release_pending(),
            "the release still waits for fresh evidence"
        );
    }
    d.transition(Status::Affirming, &[], Basis::Fresh, 4);
    assert_eq!(d.state(), DeviceState::Trusted);
}

#[test]
fn only_recent_stored_measurements_make_a_pending_device_trusted() {
    let mut d = DeviceStatus::new();
    d.transition(Status::Affirming, &[], Basis::Stored { recent: false }, 1);
    assert_eq!(d.state(), DeviceState::Pending);
    d.transition(Status::Affirming, &[], Basis::Stored { recent: true }, 2);
    assert_eq!(d.state(), DeviceState::Trusted);
    // Stale measurements can still make things worse.
    d.transition(
        Status::Contraindicated,
        &pcr(7),
        Basis::Stored { recent: false },
        3,
    );
    assert_eq!(d.state(), DeviceState::Quarantined);
}

#[test]
fn a_held_device_s_verdict_is_contraindicated_and_untrustworthy() {
    let mut d = DeviceStatus::new();
    d.quarantine("tamper report", op(), 1).unwrap();
    let passed = Appraisal {
        status: Status::Affirming,
        trust: TrustVector {
            instance_identity: claim::TRUSTWORTHY_INSTANCE,
            hardware: claim::GENUINE_HARDWARE,
            ..TrustVector::default()
        },
        reasons: vec![],
        policy_id: Some("p".into()),
        quote_accepted: true,
    };
    let (_, v) = d.apply_appraisal(passed, Basis::Fresh, 2);
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.trust.instance_identity, claim::UNTRUSTWORTHY_INSTANCE);
    assert_eq!(v.trust.hardware, claim::GENUINE_HARDWARE);
    assert_eq!(v.policy_id.as_deref(), Some("p"));
    let held = d.held_appraisal(None);
    assert_eq!(held.status, Status::Contraindicated);
    assert_eq!(
        held.reasons,
        [Reason::Quarantined {
            actor: op(),
            reasons: vec![Reason::Operator {
                text: "tamper report".into()
            }],
        }]
    );
}

#[test]
fn operator_actions_check_the_state() {
    let mut d = DeviceStatus::new();
    assert!(matches!(
        d.release("x", op(), 1),
        Err(TransitionError::NotQuarantined { .. })
    ));
    assert_eq!(
        d.quarantine("  ", op(), 1),
        Err(TransitionError::EmptyReason)
    );
    d.quarantine("x", op(), 1).unwrap();
    assert!(matches!(
        d.quarantine("y", op(), 2),
        Err(TransitionError::AlreadyQuarantined { .. })
    ));
}

fn trusted() -> DeviceStatus {
    let mut d = DeviceStatus::new();
    d.transition(Status::Affirming, &[], Basis::Fresh, 100);
    assert_eq!(d.state(), DeviceState::Trusted);
    d
}

#[test]
fn rfc3339_formats_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
}

#[test]
fn an_expired_trusted_verdict_makes_the_device_unresponsive_with_a_claimless_warning() {
    let mut d = trusted();
    let (t, v) = d.expire(Some(100), 1000, 0, Some("p".into())).unwrap();
    assert_eq!(d.state(), DeviceState::Unresponsive);
    assert_eq!(t.changes.len(), 1);
    assert_eq!(t.changes[0].action, AuditAction::Unresponsive);
    assert_eq!(t.changes[0].actor, Actor::Verifier);
    assert_eq!(
        t.changes[0].reason,
        "no fresh evidence since 1970-01-01T00:01:40Z"
    );
    assert!(t.effects.is_empty());
    assert_eq!(v.status, Status::Warning);
    assert_eq!(
        v.trust,
        TrustVector::default(),
        "no claim about stale evidence"
    );
    assert_eq!(v.reasons, silent_since_100());
    assert_eq!(v.policy_id.as_deref(), Some("p"));
    assert_eq!(d.reasons(), v.reasons);
}

#[test]
fn further_expiries_renew_the_warning_without_new_audit_entries() {
    let mut d = trusted();
    d.expire(Some(100), 1000, 0, None).unwrap();
    for n in 2..=5 {
        let (t, v) = d.expire(Some(999), 1000 * u64::from(n), 0, None).unwrap();
        assert!(t.changes.is_empty());
        assert_eq!(v.status, Status::Warning);
        assert_eq!(
            d.silence(),
            Some(&Silence {
                since: 100,
                expiries: n
            }),
            "the silence keeps its start"
        );
    }
    assert_eq!(d.state(), DeviceState::Unresponsive);
}

#[test]
fn n_consecutive_expiries_quarantine_when_the_setting_asks() {
    let mut d = trusted();
    d.expire(Some(100), 1000, 3, None).unwrap();
    d.expire(Some(100), 2000, 3, None).unwrap();
    assert_eq!(d.state(), DeviceState::Unresponsive);
    let (t, v) = d.expire(Some(100), 3000, 3, None).unwrap();
    assert_eq!(d.state(), DeviceState::Quarantined);
    assert!(d.silence().is_none());
    let reason = "unresponsive: 3 verdict periods without fresh evidence";
    assert_eq!(t.changes[0].action, AuditAction::Quarantined);
    assert_eq!(t.changes[0].reason, reason);
    assert_eq!(
        t.effects,
        vec![Effect::SendCmd(CmdAction::Quarantine {
            reason: reason.into()
        })]
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(codes(&v.reasons), ["quarantined", "no_fresh_evidence"]);
    assert_eq!(
        v.reasons[0].to_string(),
        format!("quarantined by verifier: {reason}")
    );
    assert_eq!(
        d.quarantine_in_force().map(|q| q.reasons.clone()),
        Some(vec![Reason::Unresponsive { expiries: 3 }])
    );
    // Passing evidence alone does not lift it.
    d.transition(Status::Affirming, &[], Basis::Fresh, 3001);
    assert_eq!(d.state(), DeviceState::Quarantined);
}

#[test]
fn a_setting_of_one_quarantines_at_the_first_expiry() {
    let mut d = trusted();
    let (t, v) = d.expire(Some(100), 1000, 1, None).unwrap();
    let actions: Vec<_> = t.changes.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        vec![AuditAction::Unresponsive, AuditAction::Quarantined]
    );
    assert_eq!(v.status, Status::Contraindicated);
}

#[test]
fn fresh_evidence_ends_the_silence() {
    let mut d = trusted();
    d.expire(Some(100), 1000, 3, None).unwrap();
    d.expire(Some(100), 2000, 3, None).unwrap();
    let (t, s, reasons) = d.transition(Status::Affirming, &[], Basis::Fresh, 2500);
    assert_eq!((d.state(), s), (DeviceState::Trusted, Status::Affirming));
    assert!(reasons.is_empty());
    assert_eq!(t.changes[0].action, AuditAction::Trusted);
    assert!(d.silence().is_none());
    // The count starts again: two more expiries do not reach three.
    d.expire(Some(2500), 3000, 3, None).unwrap();
    d.expire(Some(2500), 4000, 3, None).unwrap();
    assert_eq!(d.state(), DeviceState::Unresponsive);
}

#[test]
fn reappraised_stored_measurements_do_not_answer_for_an_unresponsive_device() {
    let mut d = trusted();
    d.expire(Some(100), 1000, 0, None).unwrap();
    for recent in [true, false] {
        let (t, s, reasons) = d.transition(Status::Affirming, &[], Basis::Stored { recent }, 1100);
        assert!(t.changes.is_empty());
        assert_eq!((d.state(), s), (DeviceState::Unresponsive, Status::Warning));
        assert_eq!(reasons, silent_since_100());
    }
    // A policy it no longer meets still makes it worse off.
    d.transition(
        Status::Warning,
        &no_reference(),
        Basis::Stored { recent: false },
        1200,
    );
    assert_eq!(d.state(), DeviceState::Pending);
    assert!(d.silence().is_none());
}

#[test]
fn expiry_never_changes_a_quarantined_or_pending_device() {
    let mut d = DeviceStatus::new();
    assert!(d.expire(None, 1000, 1, None).is_none());
    assert_eq!(d, DeviceStatus::new());

    let mut d = trusted();
    d.quarantine("tamper report", op(), 200).unwrap();
    d.release("inspected", op(), 300).unwrap();
    let before = d.clone();
    let (t, v) = d.expire(Some(100), 1000, 1, Some("p".into())).unwrap();
    assert_eq!(d, before, "state, quarantine and pending release untouched");
    assert_eq!(t, Transition::default());
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.trust.instance_identity, claim::UNTRUSTWORTHY_INSTANCE);
    assert_eq!(codes(&v.reasons), ["quarantined"]);
}

/// A quarantine stored as text (a schema-1 store's, read back as a legacy reason) still counts
/// as what a failed appraisal repeating it says, so the verdict does not name it twice
/// ("quarantined by verifier: X", then X).
#[test]
fn a_quarantine_stored_as_text_is_recognised_in_the_appraisal_that_repeats_it() {
    let mut d = DeviceStatus::from_parts(StatusParts {
        state: DeviceState::Quarantined,
        quarantine: Some(Quarantine {
            reasons: vec![Reason::Legacy("firmware /fw/a.bin was not measured".into())],
            actor: Actor::Verifier,
            at: 7,
        }),
        release: None,
        reasons: vec![],
        last_verdict_at: Some(7),
        silence: None,
    })
    .unwrap();
    let same = vec![Reason::FirmwareNotMeasured {
        path: "/fw/a.bin".into(),
    }];
    let (_, s, reasons) = d.transition(Status::Contraindicated, &same, Basis::Fresh, 8);
    assert_eq!((s, reasons), (Status::Contraindicated, same));
    let other = pcr(4);
    let (_, _, reasons) = d.transition(Status::Contraindicated, &other, Basis::Fresh, 9);
    assert_eq!(codes(&reasons), ["quarantined", "pcr_not_quoted"]);
}

/// One status in every state, with every part it can have.
fn one_of_each() -> Vec<DeviceStatus> {
    let mut pending = DeviceStatus::new();
    pending.transition(Status::Warning, &no_reference(), Basis::Fresh, 1);
    let mut unresponsive = trusted();
    unresponsive.expire(Some(100), 1000, 0, None).unwrap();
    let mut failed = trusted();
    failed.transition(Status::Contraindicated, &pcr(4), Basis::Fresh, 200);
    let mut held = trusted();
    held.quarantine("tamper report", op(), 200).unwrap();
    held.release("inspected", op(), 300).unwrap();
    vec![
        DeviceStatus::new(),
        pending,
        trusted(),
        unresponsive,
        failed,
        held,
    ]
}

#[test]
fn every_status_is_rebuilt_from_its_parts() {
    let all = one_of_each();
    let states: Vec<_> = all.iter().map(DeviceStatus::state).collect();
    assert!(
        states.contains(&DeviceState::Unresponsive) && states.contains(&DeviceState::Quarantined)
    );
    for d in all {
        assert_eq!(
            DeviceStatus::from_parts(d.clone().into_parts()),
            Ok(d.clone())
        );
    }
}

#[test]
fn parts_no_transition_produces_are_refused() {
    let parts = |state| StatusParts {
        state,
        quarantine: None,
        release: None,
        reasons: vec![],
        last_verdict_at: None,
        silence: None,
    };
    let quarantine = Quarantine {
        reasons: pcr(4),
        actor: Actor::Verifier,
        at: 1,
    };
    let release = ReleaseRequest {
        reason: "inspected".into(),
        actor: op(),
        at: 2,
    };
    let silence = Silence {
        since: 1,
        expiries: 1,
    };
    let cases = [
        (
            parts(DeviceState::Quarantined),
            StatusError::QuarantineMissing,
        ),
        (
            parts(DeviceState::Unresponsive),
            StatusError::SilenceMissing,
        ),
        (
            StatusParts {
                quarantine: Some(quarantine),
                ..parts(DeviceState::Trusted)
            },
            StatusError::QuarantineOutsideQuarantine {
                state: DeviceState::Trusted,
            },
        ),
        (
            StatusParts {
                release: Some(release),
                ..parts(DeviceState::Pending)
            },
            StatusError::ReleaseOutsideQuarantine {
                state: DeviceState::Pending,
            },
        ),
        (
            StatusParts {
                silence: Some(silence),
                ..parts(DeviceState::Trusted)
            },
            StatusError::SilenceOutsideUnresponsive {
                state: DeviceState::Trusted,
            },
        ),
    ];
    for (p, want) in cases {
        assert_eq!(DeviceStatus::from_parts(p), Err(want));
    }
}
