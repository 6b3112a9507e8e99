//! Quarantine and release through the engine: a quarantine is lifted only by a release followed
//! by fresh passing evidence answering a challenge issued after the release.

use super::*;

#[test]
fn a_policy_change_after_a_release_does_not_lift_the_quarantine() {
    let (mut b, mut t) = setup();
    b.engine.quarantine("t1", "tamper report", op()).unwrap();
    let released = b.engine.release("t1", "inspected", op()).unwrap();
    assert_eq!(
        released.state,
        DeviceState::Quarantined,
        "a release alone trusts nothing"
    );
    assert!(released.release_pending);
    b.engine.capture_policy("t1", op()).unwrap();
    let reference = b.engine.policy(&PolicyScope::Device("t1".into())).unwrap();
    b.engine
        .set_policy(PolicyScope::Model("T".into()), reference, op())
        .unwrap();
    assert_eq!(
        b.state(),
        DeviceState::Quarantined,
        "re-evaluation lifted a quarantine"
    );
    // Fresh evidence does.
    let n = b.challenge(&t);
    b.submit(b.evidence(&mut t, n));
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn evidence_quoted_before_a_release_cannot_satisfy_it() {
    let (mut b, mut t) = setup();
    let withheld_nonce = b.challenge(&t);
    let withheld = b.evidence(&mut t, withheld_nonce);
    b.engine.quarantine("t1", "tamper report", op()).unwrap();
    b.engine.release("t1", "inspected", op()).unwrap();
    b.submit(withheld);
    assert_eq!(b.state(), DeviceState::Quarantined);
    assert_eq!(b.rejected("nonce_unknown"), 1);
}

#[test]
fn an_empty_quarantine_reason_is_a_bad_request() {
    let (b, _) = setup();
    let e = b.engine.quarantine("t1", "  ", op()).unwrap_err();
    assert!(
        matches!(e, vouch_verifier::engine::ApiError::BadRequest(_)),
        "{e}"
    );
}
