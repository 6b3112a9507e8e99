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

/// A delta that does not continue the log the verifier holds for this boot is refused as
/// `eventlog_gap` and answered with a fresh challenge that says what is held, so the agent sends
/// the whole log next; the gap writes nothing and spends no hello counter.
#[test]
fn an_event_log_gap_is_refused_and_rechallenged_with_what_is_held() {
    use vouch_protocol::bytes::Bytes;
    use vouch_protocol::messages::{EventLogHeld, EventLogPart, Evidence};
    use vouch_verifier::store::StoredLog;

    let mut t = terminal("t1", 7);
    let held = EventLogHeld { boot: 0, len: 10 };
    let mut b = bench_with(0, |store| {
        let e = Enrollment::from_request(&enrollment_request(&t), 0).unwrap();
        let mut rec = DeviceRecord::new(e);
        rec.eventlog_held = Some(held);
        let mut w = store.write().unwrap();
        w.put_eventlog(
            rec.id(),
            &StoredLog {
                boot: 0,
                bytes: Bytes(vec![0; 10]),
            },
        )
        .unwrap();
        w.put_device(&rec).unwrap();
        w.commit().unwrap();
    });
    let nonce = b.challenge(&t);
    let counter = b.counter;

    let pcrs: Vec<u8> = (0..=7).chain([14]).collect();
    let mut ev: Evidence = t
        .tpm
        .evidence(&nonce, &pcrs, 14, t.firmware.clone())
        .unwrap();
    ev.eventlog = Some(EventLogPart {
        offset: 4,
        bytes: Bytes(vec![0; 6]),
    });
    let msg = Inbound {
        topic: Topic::new(t.id.clone(), Kind::Evidence).to_string(),
        payload: wire::seal(&t.id, &ev, &t.key).into(),
    };
    let job = b
        .engine
        .prepare(msg)
        .expect("a gap becomes a challenge job");
    b.engine.apply(vec![job]).unwrap();
    assert_eq!(b.rejected("eventlog_gap"), 1);

    let out = b.drain();
    let challenges: Vec<Challenge> = out
        .iter()
        .filter(|m| m.topic.ends_with("/challenge"))
        .map(|m| {
            let topic: Topic = m.topic.parse().unwrap();
            wire::decode(&topic, &m.payload, wire::DEFAULT_MAX_PAYLOAD)
                .unwrap()
                .verify(&b.engine.verifier_key())
                .unwrap()
                .open()
                .unwrap()
        })
        .collect();
    let [c] = challenges.as_slice() else {
        panic!("expected one new challenge, got {out:?}")
    };
    assert_eq!(
        c.eventlog_held,
        Some(held),
        "it says what the verifier holds"
    );
    assert_eq!(c.request, 0, "the verifier's own challenge");
    assert_ne!(c.nonce, nonce);
    assert!(
        out.iter().all(|m| !m.topic.ends_with("/verdict")),
        "no verdict: the gap is a refusal, not an appraisal"
    );
    assert_eq!(b.state(), DeviceState::Pending, "nothing else changed");
    assert_eq!(b.counter, counter);
    // The evidence's own nonce is still open: the whole log may answer it.
    b.submit(b.evidence(&mut t, nonce));
    assert_eq!(b.rejected("replay"), 0);
}
