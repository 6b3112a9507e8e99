//! The punch mirror's operator side through the engine: every export page audited, the
//! all-devices export in (device, seq) order rebuilding each chain, an export refusing a record
//! that does not hash to its row, reviews (bounded per call, audited, held marks kept) and the
//! buffer-pressure flag (also for a terminal whose chain is stuck).

use super::*;

#[test]
fn every_export_page_is_audited_with_the_operator_the_device_and_the_seq_range() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(5);
    b.punches(&t, batch(&t, c.range(1, 5)));
    let page = b.engine.punches_of("t1", 1, 2, &op()).unwrap();
    assert_eq!(
        page.punches.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    let next = page.next.unwrap();
    assert_eq!((next.device.as_str(), next.seq), ("t1", 3));
    let a = b.last_audit();
    assert_eq!(a.action, "punches_exported");
    assert_eq!(a.actor, "operator:test");
    assert_eq!(a.device.as_deref(), Some("t1"));
    assert!(
        a.reason.contains("2 punch records") && a.reason.contains("2..=3"),
        "{}",
        a.reason
    );
    let before = b.audit_len();
    let last = b.engine.punches_of("t1", 3, 10, &op()).unwrap();
    assert_eq!(last.punches.len(), 2);
    assert_eq!(last.next, None);
    assert_eq!(b.audit_len(), before + 1, "each page request is audited");
}

#[test]
fn an_export_of_all_devices_pages_in_device_and_seq_order_and_rebuilds_each_chain() {
    let (mut b, t1) = setup();
    let t2 = b.trusted_terminal("t2", 21);
    let (mut c1, mut c2) = (Chain::new(&t1), Chain::new(&t2));
    c1.punch(3);
    c2.punch(4);
    b.punches(&t1, batch(&t1, c1.range(1, 3)));
    b.punches(&t2, batch(&t2, c2.range(1, 4)));
    let mut got = Vec::new();
    let mut after: Option<(String, u64)> = None;
    loop {
        let page = b
            .engine
            .punches_all(after.as_ref().map(|(d, s)| (d.as_str(), *s)), 2, &op())
            .unwrap();
        got.extend(page.punches);
        match page.next {
            Some(n) => after = Some((n.device, n.seq)),
            None => break,
        }
    }
    let keys: Vec<(&str, u64)> = got.iter().map(|p| (p.device.as_str(), p.seq)).collect();
    assert_eq!(
        keys,
        [
            ("t1", 1),
            ("t1", 2),
            ("t1", 3),
            ("t2", 1),
            ("t2", 2),
            ("t2", 3),
            ("t2", 4)
        ]
    );
    assert_eq!(b.last_audit().action, "punches_exported");
    // Each exported record is the terminal's, field for field: its chain hash recomputes.
    for p in &got {
        let chain = if p.device == "t1" { &c1 } else { &c2 };
        let want = &chain.records[(p.seq - 1) as usize];
        assert_eq!(p.employee, want.employee.as_str());
        assert_eq!(p.unix_time, want.time);
        assert_eq!(p.hash, chain.hash(p.seq).to_hex());
        assert_eq!(p.prev_hash, want.prev_hash.to_hex());
        assert_eq!(p.method.as_deref(), Some("card"));
    }
}

#[test]
fn a_review_marks_held_records_reviewed_audited_and_they_stay_held() {
    let (mut b, t) = setup();
    b.engine.quarantine("t1", "inspection", op()).unwrap();
    let mut c = Chain::new(&t);
    c.punch(6);
    b.punches(&t, batch(&t, c.range(1, 6)));
    let e = b.engine.review_punches("t1", 4, "  ", &op()).unwrap_err();
    assert!(
        matches!(e, vouch_verifier::engine::ApiError::BadRequest(_)),
        "{e}"
    );
    let v = b
        .engine
        .review_punches("t1", 4, "checked against the paper log", &op())
        .unwrap();
    assert_eq!((v.reviewed, v.held_unreviewed), (4, 2));
    let a = b.last_audit();
    assert_eq!(a.action, "punches_reviewed");
    assert!(
        a.reason.contains("1..=4") && a.reason.contains("paper log"),
        "{}",
        a.reason
    );
    let marks: Vec<(u64, bool, bool)> = b
        .engine
        .punches_of("t1", 0, 10, &op())
        .unwrap()
        .punches
        .iter()
        .map(|p| (p.seq, p.held, p.reviewed))
        .collect();
    assert_eq!(
        marks,
        [
            (1, true, true),
            (2, true, true),
            (3, true, true),
            (4, true, true),
            (5, true, false),
            (6, true, false)
        ]
    );
    let p = b.engine.device("t1").unwrap().punches;
    assert_eq!((p.held, p.held_unreviewed), (6, 2));
    // Reviewing again marks nothing new and audits nothing.
    let before = b.audit_len();
    assert_eq!(
        b.engine
            .review_punches("t1", 4, "again", &op())
            .unwrap()
            .reviewed,
        0
    );
    assert_eq!(b.audit_len(), before);
}

#[test]
fn the_device_view_flags_buffer_pressure_from_the_terminals_last_batch() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(900);
    // The terminal says it holds 900 records of 1000 but sends 10: 890 pending, 89 %.
    let recs = c.range(1, 10);
    let batch = PunchBatch::new(&t.id, recs, 900, CAPACITY).unwrap();
    b.punches(&t, raw_batch(&t, &batch, &t.key));
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.punches.pending_on_device, 890);
    assert!(v.buffer_pressure);
    let listed = b.engine.devices(None, 10).unwrap().devices;
    assert!(listed[0].buffer_pressure);
    // An older window arriving late does not lower what the terminal is known to hold.
    let late = PunchBatch::new(&t.id, c.range(1, 10), 10, CAPACITY).unwrap();
    b.punches(&t, raw_batch(&t, &late, &t.key));
    assert_eq!(
        b.engine.device("t1").unwrap().punches.pending_on_device,
        890
    );
    // Once the mirror has caught up with the terminal, the flag clears.
    let n = vouch_protocol::punch::MAX_BATCH_RECORDS as u64;
    let mut from = 11;
    while from <= 900 {
        let to = (from + n - 1).min(900);
        let batch = PunchBatch::new(&t.id, c.range(from, to), 900, CAPACITY).unwrap();
        b.punches(&t, raw_batch(&t, &batch, &t.key));
        from = to + 1;
    }
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.punches.pending_on_device, 0);
    assert!(!v.buffer_pressure);
}

#[test]
fn a_terminal_stuck_behind_a_gap_is_still_flagged_under_buffer_pressure() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(900);
    b.punches(&t, batch(&t, c.range(1, 5)));
    assert!(!b.engine.device("t1").unwrap().buffer_pressure);
    // Every batch after the gap is refused, but the terminal's word on its buffer counts.
    for _ in 0..2 {
        let gap = PunchBatch::new(&t.id, c.range(100, 110), 900, CAPACITY).unwrap();
        let acks = b.punches(&t, raw_batch(&t, &gap, &t.key));
        assert_eq!(acks, vec![ack(5, c.hash(5), true)]);
    }
    let v = b.engine.device("t1").unwrap();
    assert_eq!((v.punches.head_seq, v.punches.pending_on_device), (5, 895));
    assert!(v.buffer_pressure, "a stuck chain shows its pressure");
    // A duplicate's word counts too (here: the terminal's buffer shrank after a restart).
    let dup = PunchBatch::new(&t.id, c.range(1, 5), 900, 950).unwrap();
    b.punches(&t, raw_batch(&t, &dup, &t.key));
    assert_eq!(b.engine.device("t1").unwrap().punches.capacity, 950);
}

#[test]
fn a_terminal_resending_a_forked_chain_is_flagged_under_buffer_pressure() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(5);
    b.punches(&t, batch(&t, c.range(1, 5)));
    // A signed chain that breaks at its first record, resent, while the terminal fills up.
    let mut next = Chain::new(&t);
    next.punch(10);
    let mut recs = next.range(6, 10);
    recs[0].prev_hash = ChainHash([0xee; 32]);
    for i in 1..recs.len() {
        recs[i].prev_hash = recs[i - 1].hash(&t.id);
    }
    let forked = PunchBatch::new(&t.id, recs, 950, CAPACITY).unwrap();
    b.punches(&t, raw_batch(&t, &forked, &t.key));
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!((v.punches.head_seq, v.punches.pending_on_device), (5, 945));
    assert!(v.buffer_pressure);
}

#[test]
fn an_export_refuses_a_stored_record_that_does_not_hash_to_its_rows_chain_hash() {
    let device: DeviceId = "t9".parse().unwrap();
    let b = bench_with(0, |store| {
        let rec = PunchInput::parse("E1", "in", None, T0)
            .unwrap()
            .chain_after(None, BootId([1; 16]));
        let sealed = store.punch_key().seal(&device, 1, &rec.to_cbor()).unwrap();
        let mut w = store.write().unwrap();
        let p = vouch_verifier::store::StoredPunch {
            hash: ChainHash([1; 32]),
            held: false,
            reviewed: false,
            sealed,
        };
        w.put_punch(&device, 1, &p).unwrap();
        w.commit().unwrap();
    });
    let e = b
        .engine
        .punches_all(None, 10, &op())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("punch 1 of t9") && e.contains("does not hash"),
        "{e}"
    );
}

#[test]
fn one_review_call_marks_at_most_max_review_records_and_says_more_remain() {
    let max = vouch_verifier::engine::MAX_REVIEW as u64;
    let total = max + 3;
    let device: DeviceId = "t1".parse().unwrap();
    let mut b = bench_with(0, |store| {
        let mut w = store.write().unwrap();
        for seq in 1..=total {
            let p = vouch_verifier::store::StoredPunch {
                hash: ChainHash([7; 32]),
                held: true,
                reviewed: false,
                sealed: store.punch_key().seal(&device, seq, b"r").unwrap(),
            };
            w.put_punch(&device, seq, &p).unwrap();
        }
        let head = vouch_verifier::store::PunchHead {
            seq: total,
            held: total,
            unreviewed: total,
            ..vouch_verifier::store::PunchHead::EMPTY
        };
        w.put_punch_head(&device, &head).unwrap();
        w.commit().unwrap();
    });
    b.trusted_terminal("t1", 7);
    let v = b
        .engine
        .review_punches("t1", total, "paper log", &op())
        .unwrap();
    assert_eq!((v.reviewed, v.held_unreviewed, v.more), (max, 3, true));
    assert!(b.last_audit().reason.contains(&format!("1..={max}")));
    let v = b
        .engine
        .review_punches("t1", total, "paper log", &op())
        .unwrap();
    assert_eq!((v.reviewed, v.held_unreviewed, v.more), (3, 0, false));
}
