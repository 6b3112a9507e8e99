//! Unit tests of the shared punch rules: the chain, the batch check, the mirror's decisions and
//! the uploader's state machine.

use super::*;
use crate::ids::DeviceId;

fn dev(s: &str) -> DeviceId {
    s.parse().unwrap()
}

const BOOT: BootId = BootId([7; 16]);

/// A chain of `n` records on `device`, with their hashes.
fn chain(device: &DeviceId, n: u64) -> Vec<(PunchRecord, ChainHash)> {
    let mut out: Vec<(PunchRecord, ChainHash)> = Vec::new();
    for i in 1..=n {
        let input =
            PunchInput::parse(&format!("E{i}"), "in", Some("card"), 1_700_000_000 + i).unwrap();
        let prev = out.last().map(|(r, h)| (r.seq, *h));
        let r = input.chain_after(prev, BOOT);
        let h = r.hash(device);
        out.push((r, h));
    }
    out
}

fn batch(device: &DeviceId, c: &[(PunchRecord, ChainHash)], from: u64, to: u64) -> PunchBatch {
    let recs = c[(from - 1) as usize..to as usize]
        .iter()
        .map(|(r, _)| r.clone())
        .collect();
    PunchBatch::new(device, recs, c.len() as u64, 1000).unwrap()
}

fn checked(device: &DeviceId, b: PunchBatch) -> CheckedBatch {
    check_batch(device, b).unwrap().unwrap()
}

#[test]
fn records_link_by_hash_and_bind_the_device() {
    let d = dev("t1");
    let c = chain(&d, 3);
    assert_eq!(c[0].0.seq, 1);
    assert_eq!(c[0].0.prev_hash, ChainHash::GENESIS);
    assert_eq!(c[1].0.prev_hash, c[0].1);
    assert_eq!(c[2].0.prev_hash, c[1].1);
    assert_ne!(
        c[0].0.hash(&dev("t2")),
        c[0].1,
        "the device is part of the hash"
    );
    let mut other = c[0].0.clone();
    other.time += 1;
    assert_ne!(other.hash(&d), c[0].1, "every field is part of the hash");
}

#[test]
fn a_record_round_trips_and_refuses_unknown_fields() {
    let d = dev("t1");
    let r = chain(&d, 1).remove(0).0;
    assert_eq!(PunchRecord::from_cbor(&r.to_cbor()).unwrap(), r);
    #[derive(serde::Serialize)]
    struct WithTemplate<'a> {
        #[serde(flatten)]
        r: &'a PunchRecord,
        template: serde_bytes::ByteBuf,
    }
    let bytes = crate::wire::to_cbor(&WithTemplate {
        r: &r,
        template: serde_bytes::ByteBuf::from(vec![1, 2, 3]),
    });
    let err = PunchRecord::from_cbor(&bytes).unwrap_err().to_string();
    assert!(err.contains("template"), "{err}");
}

#[test]
fn employee_ids_are_validated_with_named_errors() {
    assert!("E-100".parse::<EmployeeId>().is_ok());
    assert!("x".repeat(64).parse::<EmployeeId>().is_ok());
    let cases = [
        ("", "1 to 64"),
        (&*"x".repeat(65), "1 to 64"),
        ("a b", "printable"),
        ("é", "printable"),
        ("a\n", "printable"),
        ("=SUM(A1)", "formula"),
        ("@x", "formula"),
    ];
    for (bad, want) in cases {
        let err = bad.parse::<EmployeeId>().unwrap_err().to_string();
        assert!(err.contains(want), "{bad:?}: {err}");
    }
    let err = PunchInput::parse("E1", "sideways", None, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"in\" or \"out\""), "{err}");
    let err = PunchInput::parse("E1", "in", Some("retina"), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("face, fingerprint, card or pin"), "{err}");
}

#[test]
fn boot_ids_parse_from_the_kernels_uuid_text() {
    let b = BootId::parse_uuid("0f3a6a6e-1b2c-4d5e-8f90-a1b2c3d4e5f6\n").unwrap();
    assert_eq!(b.to_string(), "0f3a6a6e-1b2c-4d5e-8f90-a1b2c3d4e5f6");
    assert!(BootId::parse_uuid("not-a-uuid").is_err());
}

#[test]
fn a_well_formed_batch_checks_out() {
    let d = dev("t1");
    let c = chain(&d, 5);
    let b = checked(&d, batch(&d, &c, 2, 4));
    assert_eq!((b.first, b.last, b.head), (2, 4, c[3].1));
    assert_eq!(b.first_prev, c[0].1);
    assert_eq!(b.entries.len(), 3);
}

#[test]
fn batch_shape_errors_are_malformed_not_tamper() {
    let d = dev("t1");
    let c = chain(&d, 4);
    let mut empty = batch(&d, &c, 1, 1);
    empty.records.clear();
    assert_eq!(check_batch(&d, empty).unwrap_err(), PunchError::EmptyBatch);
    let mut claim = batch(&d, &c, 1, 3);
    claim.last = 4;
    assert!(matches!(
        check_batch(&d, claim).unwrap_err(),
        PunchError::ClaimMismatch { .. }
    ));
    let mut gap = batch(&d, &c, 1, 3);
    gap.records[1] = c[3].0.clone();
    gap.records.truncate(3);
    assert!(matches!(
        check_batch(&d, gap).unwrap_err(),
        PunchError::NotConsecutive { .. }
    ));
    let mut zero = batch(&d, &c, 1, 1);
    zero.first = 0;
    zero.last = 0;
    zero.records[0].seq = 0;
    assert_eq!(check_batch(&d, zero).unwrap_err(), PunchError::SeqZero);
    let mut behind = batch(&d, &c, 1, 2);
    behind.device_last = 1;
    assert!(matches!(
        check_batch(&d, behind).unwrap_err(),
        PunchError::DeviceLastBehind { .. }
    ));
}

#[test]
fn an_altered_record_inside_a_batch_breaks_the_chain() {
    let d = dev("t1");
    let c = chain(&d, 4);
    let mut b = batch(&d, &c, 1, 4);
    b.records[1].employee = "E999".parse().unwrap();
    // Record 3 still names the original record 2's hash.
    assert_eq!(
        check_batch(&d, b).unwrap(),
        Err(ChainError::Broken { seq: 3 })
    );
    let mut last = batch(&d, &c, 1, 4);
    last.records[3].kind = PunchKind::Out;
    assert_eq!(
        check_batch(&d, last).unwrap(),
        Err(ChainError::HeadMismatch { seq: 4 })
    );
}

fn held_of(
    c: &[(PunchRecord, ChainHash)],
) -> impl FnMut(u64) -> Result<Option<ChainHash>, ()> + '_ {
    move |seq| Ok(c.get((seq - 1) as usize).map(|(_, h)| *h))
}

#[test]
fn the_mirror_appends_what_continues_its_head() {
    let d = dev("t1");
    let c = chain(&d, 6);
    let head = MirrorHead::EMPTY;
    let got = decide(head, &checked(&d, batch(&d, &c, 1, 3)), held_of(&c)).unwrap();
    assert_eq!(
        got,
        MirrorDecision::Append {
            skip: 0,
            head: MirrorHead {
                seq: 3,
                hash: c[2].1
            }
        }
    );
    // Overlapping the head: the held part is compared, the rest appended.
    let head = MirrorHead {
        seq: 3,
        hash: c[2].1,
    };
    let got = decide(head, &checked(&d, batch(&d, &c, 2, 6)), held_of(&c)).unwrap();
    assert_eq!(
        got,
        MirrorDecision::Append {
            skip: 2,
            head: MirrorHead {
                seq: 6,
                hash: c[5].1
            }
        }
    );
}

#[test]
fn a_replayed_batch_is_a_duplicate_and_a_later_one_a_gap() {
    let d = dev("t1");
    let c = chain(&d, 6);
    let head = MirrorHead {
        seq: 4,
        hash: c[3].1,
    };
    assert_eq!(
        decide(head, &checked(&d, batch(&d, &c, 1, 4)), held_of(&c)).unwrap(),
        MirrorDecision::Duplicate
    );
    assert_eq!(
        decide(head, &checked(&d, batch(&d, &c, 6, 6)), held_of(&c)).unwrap(),
        MirrorDecision::Gap
    );
}

#[test]
fn a_different_chain_is_tamper_fork_or_broken_link() {
    let d = dev("t1");
    let c = chain(&d, 4);
    // Another chain with the same seqs: different employee in record 2.
    let mut alt = c.clone();
    alt[1].0.employee = "E999".parse().unwrap();
    alt[1].1 = alt[1].0.hash(&d);
    for i in 2..alt.len() {
        alt[i].0.prev_hash = alt[i - 1].1;
        alt[i].1 = alt[i].0.hash(&d);
    }
    let head = MirrorHead {
        seq: 3,
        hash: c[2].1,
    };
    assert_eq!(
        decide(head, &checked(&d, batch(&d, &alt, 1, 4)), held_of(&c)).unwrap(),
        MirrorDecision::Tamper(ChainError::Fork { seq: 2 })
    );
    // A batch continuing the head whose first record does not link to it.
    let head = MirrorHead {
        seq: 3,
        hash: c[2].1,
    };
    assert_eq!(
        decide(head, &checked(&d, batch(&d, &alt, 4, 4)), held_of(&c)).unwrap(),
        MirrorDecision::Tamper(ChainError::Broken { seq: 4 })
    );
    assert_eq!(ChainError::Fork { seq: 2 }.reason().code(), "punch_fork");
    assert_eq!(
        ChainError::HeadMismatch { seq: 2 }.reason().code(),
        "punch_chain_broken"
    );
}

#[test]
fn held_and_buffer_pressure_rules() {
    use crate::verdict::DeviceState;
    assert!(!held_in(DeviceState::Trusted));
    for s in [
        DeviceState::Pending,
        DeviceState::Quarantined,
        DeviceState::Unresponsive,
    ] {
        assert!(held_in(s));
    }
    assert!(buffer_pressure(800, 1000, 80));
    assert!(!buffer_pressure(799, 1000, 80));
    assert!(!buffer_pressure(0, 0, 80));
    assert!(buffer_pressure(u64::MAX, u64::MAX, 100));
}

const RULES: UploadRules = UploadRules {
    batch: 10,
    window: 30,
    linger_ms: 50,
    resend_after_ms: 1000,
};

fn ack(seq: u64, head: ChainHash, resend: bool) -> PunchAck {
    PunchAck { seq, head, resend }
}

#[test]
fn the_uploader_sends_full_batches_at_once_and_partial_ones_after_the_linger() {
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 0, 0);
    assert_eq!(u.next_batch(0), None);
    for s in 1..=25 {
        u.appended(s, 0);
    }
    assert_eq!(u.next_batch(0), Some((1, 10)));
    assert_eq!(u.next_batch(0), Some((11, 20)));
    assert_eq!(u.next_batch(10), None, "5 records linger");
    assert_eq!(u.wake_at(), Some(50));
    assert_eq!(u.next_batch(50), Some((21, 25)));
    assert_eq!(u.next_batch(50), None);
}

#[test]
fn the_window_bounds_what_is_in_flight() {
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 100, 0);
    let mut sent = Vec::new();
    while let Some(r) = u.next_batch(1000) {
        sent.push(r);
    }
    assert_eq!(sent, vec![(1, 10), (11, 20), (21, 30)]);
}

#[test]
fn a_full_window_sets_no_past_linger_wake_so_the_shell_does_not_spin() {
    let d = dev("t1");
    let c = chain(&d, 100);
    let own = |seq: u64| c.get((seq - 1) as usize).map(|(_, h)| *h);
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 100, 0);
    while u.next_batch(0).is_some() {}
    // 30 in flight (the whole window), 70 waiting: only the resend timer can change anything.
    assert_eq!(u.wake_at(), Some(RULES.resend_after_ms));
    assert_eq!(u.next_batch(500), None);
    assert_eq!(
        u.wake_at(),
        Some(RULES.resend_after_ms),
        "no wake in the past"
    );
    // An ack opens the window: the waiting records go at once, and the wakes come back.
    u.on_ack(&ack(10, c[9].1, false), 600, own);
    assert_eq!(u.next_batch(600), Some((31, 40)));
    assert_eq!(u.wake_at(), Some(600 + RULES.resend_after_ms));
}

#[test]
fn an_ack_advances_only_when_its_hash_is_the_terminals_own() {
    let d = dev("t1");
    let c = chain(&d, 20);
    let own = |seq: u64| c.get((seq - 1) as usize).map(|(_, h)| *h);
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 20, 0);
    u.next_batch(0);
    u.next_batch(0);
    assert_eq!(
        u.on_ack(&ack(10, c[9].1, false), 5, own),
        AckOutcome::Advanced {
            seq: 10,
            head: c[9].1
        }
    );
    assert_eq!(u.acked(), 10);
    assert_eq!(u.unacked(), 10);
    assert_eq!(
        u.on_ack(&ack(5, c[4].1, false), 6, own),
        AckOutcome::Unchanged
    );
    assert!(matches!(
        u.on_ack(&ack(15, c[3].1, false), 7, own),
        AckOutcome::Disagrees { seq: 15, .. }
    ));
    assert!(matches!(
        u.on_ack(&ack(99, c[3].1, false), 7, own),
        AckOutcome::Disagrees { seq: 99, .. }
    ));
    assert_eq!(u.acked(), 10, "a disagreeing ack deletes nothing");
}

#[test]
fn a_resend_request_restarts_once_from_the_head() {
    let d = dev("t1");
    let c = chain(&d, 30);
    let own = |seq: u64| c.get((seq - 1) as usize).map(|(_, h)| *h);
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 30, 0);
    while u.next_batch(0).is_some() {}
    // Batch 1 was lost; batches 2 and 3 each draw a resend request for head 0.
    assert_eq!(
        u.on_ack(&ack(0, ChainHash::GENESIS, true), 10, own),
        AckOutcome::Resend { from: 1 }
    );
    assert_eq!(u.next_batch(10), Some((1, 10)));
    assert_eq!(
        u.on_ack(&ack(0, ChainHash::GENESIS, true), 11, own),
        AckOutcome::Unchanged,
        "the second request for the same head does not restart again"
    );
    assert_eq!(u.next_batch(11), Some((11, 20)));
}

#[test]
fn silence_and_reconnects_restart_from_the_acked_head() {
    let mut u = Uploader::new(RULES, 5, ChainHash([1; 32]), 40, 0);
    assert_eq!(u.next_batch(0), Some((6, 15)));
    assert!(!u.poll(999));
    assert!(u.poll(1000));
    assert_eq!(u.next_batch(1000), Some((6, 15)));
    u.connected(2000);
    assert_eq!(u.next_batch(2000), Some((6, 15)));
}

#[test]
fn each_silence_in_a_row_doubles_the_resend_wait_and_an_advancing_ack_resets_it() {
    let d = dev("t1");
    let c = chain(&d, 40);
    let own = |seq: u64| c.get((seq - 1) as usize).map(|(_, h)| *h);
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 40, 0);
    assert_eq!(u.next_batch(0), Some((1, 10)));
    // A verifier that is behind: every silence restarts the window, each time later.
    let mut at = 0;
    for wait in [1000, 2000, 4000, 8000] {
        assert_eq!(u.resend_wait_ms(), wait);
        assert!(!u.poll(at + wait - 1), "not before the wait is over");
        at += wait;
        assert!(u.poll(at));
        assert_eq!(u.next_batch(at), Some((1, 10)));
    }
    for _ in 0..20 {
        at += u.resend_wait_ms();
        assert!(u.poll(at));
        u.next_batch(at);
    }
    assert_eq!(u.resend_wait_ms(), MAX_RESEND_WAIT_MS, "capped");
    assert!(matches!(
        u.on_ack(&ack(10, c[9].1, false), at + 1, own),
        AckOutcome::Advanced { seq: 10, .. }
    ));
    assert_eq!(
        u.resend_wait_ms(),
        RULES.resend_after_ms,
        "progress resets it"
    );
}

#[test]
fn a_resend_request_soon_after_a_reconnect_restarts_the_window_at_once() {
    // Regression: suppressing resend requests for a while after a reconnect (meant for the
    // retained one) also swallowed the fresh request for a batch lost on the new connection,
    // which then waited a whole resend period.
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 30, 0);
    u.connected(0);
    while u.next_batch(0).is_some() {}
    // Batch 1..=10 was lost; 11..=20 draws a resend request for head 0.
    let own = |_| None;
    assert_eq!(
        u.on_ack(&ack(0, ChainHash::GENESIS, true), 5, own),
        AckOutcome::Resend { from: 1 }
    );
    assert_eq!(u.next_batch(5), Some((1, 10)));
}

#[test]
fn a_batch_the_connection_could_not_take_is_sent_again() {
    let mut u = Uploader::new(RULES, 0, ChainHash::GENESIS, 30, 0);
    assert_eq!(u.next_batch(0), Some((1, 10)));
    assert_eq!(u.next_batch(0), Some((11, 20)));
    u.not_sent(11, 1);
    assert_eq!(u.next_batch(1), Some((11, 20)));
    u.not_sent(5, 2); // not the start of an unsent batch: ignored below the acked head + 1
    u.not_sent(1, 2);
    assert_eq!(u.next_batch(2), Some((1, 10)));
}

#[test]
fn a_mirror_that_went_back_gets_the_records_the_terminal_still_holds() {
    let d = dev("t1");
    let c = chain(&d, 20);
    let own = |seq: u64| c.get((seq - 1) as usize).map(|(_, h)| *h);
    let mut u = Uploader::new(RULES, 15, c[14].1, 20, 0);
    // The mirror was restored from a backup holding 1..=5; this terminal still holds 5..
    assert_eq!(
        u.on_ack(&ack(5, c[4].1, true), 10, own),
        AckOutcome::Regressed {
            seq: 5,
            head: c[4].1
        }
    );
    assert_eq!(u.acked(), 5);
    assert_eq!(u.next_batch(10), Some((6, 15)));
    // Without the record any more, it is a loud disagreement and nothing moves.
    let held_from_12 = |seq: u64| (seq >= 12).then(|| c[(seq - 1) as usize].1);
    let mut u = Uploader::new(RULES, 15, c[14].1, 20, 0);
    assert!(matches!(
        u.on_ack(&ack(5, c[4].1, true), 10, held_from_12),
        AckOutcome::Disagrees { seq: 5, .. }
    ));
    assert_eq!(u.acked(), 15);
    // An older ack without a resend request is only old news.
    let mut u = Uploader::new(RULES, 15, c[14].1, 20, 0);
    assert_eq!(
        u.on_ack(&ack(5, c[4].1, false), 10, own),
        AckOutcome::Unchanged
    );
}

#[test]
fn punch_times_past_the_year_9999_are_refused() {
    let err = PunchInput::parse("E1", "in", None, MAX_TIME + 1).unwrap_err();
    assert!(err.to_string().contains("9999-12-31"), "{err}");
    let d = dev("t1");
    let c = chain(&d, 1);
    let mut b = batch(&d, &c, 1, 1);
    b.records[0].time = u64::MAX;
    b.head = b.records[0].hash(&d);
    assert!(matches!(
        check_batch(&d, b).unwrap_err(),
        PunchError::TimeOutOfRange { .. }
    ));
}
