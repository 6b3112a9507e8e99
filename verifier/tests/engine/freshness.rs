//! Freshness of hello and status (issue 6 case 8): a copy of a signed message costs the
//! verifier nothing — no challenge, no rate-limit budget, no retired nonce.

use super::*;
use vouch_protocol::messages::StatusReport;

/// Messages on `kind` topics among `out`.
fn count(out: &[Outgoing], kind: &str) -> usize {
    out.iter()
        .filter(|m| m.topic.ends_with(&format!("/{kind}")))
        .count()
}

fn copy(m: &Inbound) -> Inbound {
    Inbound {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
    }
}

fn accepted(b: &Bench, kind: &str) -> u64 {
    b.engine.stats().accepted.get(kind).copied().unwrap_or(0)
}

fn status(b: &mut Bench, t: &Terminal, counter: u64) -> Inbound {
    let s = StatusReport {
        quarantined: false,
        last_verdict_seq: None,
        request: 6,
        counter,
    };
    b.counter = b.counter.max(counter);
    Inbound {
        topic: Topic::new(t.id.clone(), Kind::Status).to_string(),
        payload: wire::seal(&t.id, &s, &t.key).into(),
    }
}

#[test]
fn replayed_hello_does_not_spend_the_rate_limit_or_retire_nonces() {
    // The production default: 30 challenges per device and minute.
    let (mut b, mut t) = setup_with_rate(30);
    let open = b.challenge(&t);
    let captured = b.hello(&t);
    b.submit(copy(&captured));
    // 40 copies of the genuine hello: half refused on the workers (the snapshot already
    // holds its counter), half prepared together and applied in one batch, where only the
    // write transaction's record can refuse them.
    for _ in 0..20 {
        assert!(b.engine.prepare(copy(&captured)).is_none());
    }
    let later = b.hello(&t);
    let jobs: Vec<_> = (0..21)
        .map(|_| b.engine.prepare(copy(&later)).unwrap())
        .collect();
    b.engine.apply(jobs).unwrap();
    let out = b.drain();
    assert_eq!(count(&out, "challenge"), 1, "only the first copy is fresh");
    assert_eq!(b.rejected("replay"), 40);
    assert_eq!(b.rejected("rate_limited"), 0);

    // The genuine agent still gets a challenge, and its oldest open nonce (with the three
    // issued since, the most a device may hold) still counts.
    let before = accepted(&b, "evidence");
    b.challenge(&t);
    b.submit(b.evidence(&mut t, open));
    assert_eq!(accepted(&b, "evidence"), before + 1);
    assert_eq!(b.rejected("nonce_unknown"), 0);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn replayed_status_is_ignored() {
    let (mut b, t) = setup();
    let s = status(&mut b, &t, 1_000);
    let job = b.engine.prepare(copy(&s)).unwrap();
    b.engine.apply(vec![job]).unwrap();
    assert_eq!(count(&b.drain(), "challenge"), 1);
    assert!(b.engine.prepare(copy(&s)).is_none());
    // Hello and status share one counter: a status below the last hello is a replay too.
    b.challenge(&t);
    let older = status(&mut b, &t, 999);
    assert!(b.engine.prepare(older).is_none());
    assert_eq!(b.rejected("replay"), 2);
    assert_eq!(count(&b.drain(), "challenge"), 0);
    let stats = b.engine.stats();
    let reason = &stats.recent_rejections.last().unwrap().reason;
    assert!(reason.contains("status counter 999"), "{reason}");
}

#[test]
fn replayed_evidence_cannot_spend_the_rate_limit() {
    // Budget for the setup's challenge and two more.
    let (mut b, mut t) = setup_with_rate(3);
    let used = b.challenge(&t);
    let captured = b.evidence(&mut t, used);
    // `setup` answered its own challenge already; answer this one, then replay it.
    b.submit(copy(&captured));
    for _ in 0..40 {
        assert!(
            b.engine.prepare(copy(&captured)).is_none(),
            "a used nonce is refused before the applier"
        );
    }
    let unknown = b.evidence(&mut t, Nonce::from_bytes([0xab; 32]));
    for _ in 0..40 {
        assert!(b.engine.prepare(copy(&unknown)).is_none());
    }
    assert_eq!(b.rejected("replay"), 40);
    assert_eq!(b.rejected("nonce_unknown"), 40);
    // The last of the budget is still the terminal's own.
    b.challenge(&t);
    assert_eq!(b.rejected("rate_limited"), 0);
}

#[test]
fn a_rate_limited_hello_cannot_be_replayed_later() {
    let (mut b, t) = setup_with_rate(2);
    // Setup's challenge was the first of this minute; one more is allowed, the next refused.
    let h = b.hello(&t);
    b.submit(h);
    assert_eq!(b.rejected("rate_limited"), 0);
    let refused = b.hello(&t);
    b.submit(copy(&refused));
    assert_eq!(b.rejected("rate_limited"), 1);
    // Its counter was recorded although it got no challenge: a copy next minute is a replay,
    // not a claim on the new budget.
    b.advance(60);
    assert!(b.engine.prepare(copy(&refused)).is_none());
    assert_eq!(b.rejected("replay"), 1);
    assert_eq!(b.rejected("rate_limited"), 1);
}

#[test]
fn the_rate_limit_renews_each_minute_of_the_engines_clock() {
    let (mut b, t) = setup_with_rate(2);
    // Start at a minute boundary, with this minute's budget untouched.
    let next_minute = (b.now() / 60 + 1) * 60;
    b.set_now(next_minute);
    for _ in 0..2 {
        b.challenge(&t);
    }
    let h = b.hello(&t);
    b.submit(h);
    assert_eq!(b.rejected("rate_limited"), 1, "the third in one minute");
    b.advance(59);
    let h = b.hello(&t);
    b.submit(h);
    assert_eq!(b.rejected("rate_limited"), 2, "still the same minute");
    b.advance(1);
    b.challenge(&t);
    assert_eq!(b.rejected("rate_limited"), 2, "a new minute, a new budget");
}
