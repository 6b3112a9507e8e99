//! Evidence through the engine: nonce lifetime by the engine's clock, genuine quotes arriving
//! out of order, and copies of evidence in flight between the workers and the applier.

use super::*;

#[test]
fn genuine_quotes_arriving_out_of_order_are_stale_not_contraindicated() {
    let (mut b, mut t) = setup();
    let first = b.challenge(&t);
    let second = b.challenge(&t);
    let older = b.evidence(&mut t, first);
    let newer = b.evidence(&mut t, second);
    b.submit(newer);
    b.submit(older);
    assert_eq!(b.state(), DeviceState::Trusted);
    assert_eq!(b.rejected("stale"), 1);
}

#[test]
fn a_duplicate_still_in_flight_is_a_replay() {
    let (mut b, mut t) = setup();
    let n = b.challenge(&t);
    let msg = b.evidence(&mut t, n);
    let copy = Inbound {
        topic: msg.topic.clone(),
        payload: msg.payload.clone(),
    };
    let job = b.engine.prepare(msg).unwrap();
    assert!(
        b.engine.prepare(copy).is_none(),
        "the copy must not reach the applier"
    );
    b.engine.apply(vec![job]).unwrap();
    assert_eq!(b.rejected("replay"), 1);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn evidence_after_its_nonce_expired_is_refused_by_the_engines_clock() {
    let (mut b, mut t) = setup();
    let n = b.challenge(&t);
    let late = b.evidence(&mut t, n);
    // The bench's nonce lifetime is 60 s: at its last second the nonce still counts ...
    b.advance(60);
    let second = b.challenge(&t);
    let on_time = b.evidence(&mut t, second);
    b.submit(on_time);
    assert_eq!(b.rejected("nonce_expired"), 0);
    // ... one second later it does not, on the worker and in the applier alike.
    b.advance(1);
    b.submit(late);
    assert_eq!(b.rejected("nonce_expired"), 1);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn evidence_prepared_in_time_but_applied_after_expiry_is_refused() {
    let (mut b, mut t) = setup();
    let n = b.challenge(&t);
    let msg = b.evidence(&mut t, n);
    let job = b.engine.prepare(msg).expect("fresh on the worker");
    b.advance(61);
    b.engine.apply(vec![job]).unwrap();
    assert_eq!(
        b.rejected("nonce_expired"),
        1,
        "the applier decides by its own time"
    );
    assert_eq!(
        b.engine.stats().accepted.get("evidence"),
        Some(&1),
        "only setup's"
    );
}
