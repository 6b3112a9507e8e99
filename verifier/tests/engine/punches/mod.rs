//! The punch mirror through the engine: each decision of `punch::decide` (append, duplicate,
//! gap, fork, broken chain) and a forged batch, with what each stores, the ack each publishes
//! (only after the commit, never past a gap), the label each is counted under, and the
//! quarantine and audit entry of tamper. Records of a device that is not trusted are held.

use vouch_protocol::punch::{BootId, ChainHash, PunchAck, PunchBatch, PunchInput, PunchRecord};
use vouch_protocol::reason::Reason;
use vouch_test_kit::tmpfs::{self, Tmpfs};

use super::*;

const CAPACITY: u64 = 1000;

/// A terminal's chain of punch records, built as the agent builds it.
struct Chain {
    device: DeviceId,
    records: Vec<PunchRecord>,
}

impl Chain {
    fn new(t: &Terminal) -> Self {
        Self {
            device: t.id.clone(),
            records: Vec::new(),
        }
    }

    /// Appends `n` records.
    fn punch(&mut self, n: u64) {
        for _ in 0..n {
            let prev = self.records.last().map(|r| (r.seq, r.hash(&self.device)));
            let seq = prev.map_or(1, |(s, _)| s + 1);
            let input =
                PunchInput::parse(&format!("EMP{seq:05}"), "in", Some("card"), T0 + seq).unwrap();
            self.records.push(input.chain_after(prev, BootId([9; 16])));
        }
    }

    /// Records `from..=to` (1-based seqs).
    fn range(&self, from: u64, to: u64) -> Vec<PunchRecord> {
        self.records[(from - 1) as usize..to as usize].to_vec()
    }

    fn hash(&self, seq: u64) -> ChainHash {
        self.records[(seq - 1) as usize].hash(&self.device)
    }
}

/// The batch of `records`, signed with `key`, as an inbound message of `t`'s punches topic.
fn signed(t: &Terminal, records: Vec<PunchRecord>, key: &SigningKey) -> Inbound {
    let last = records.last().map_or(0, |r| r.seq);
    let batch = PunchBatch::new(&t.id, records, last, CAPACITY).unwrap();
    raw_batch(t, &batch, key)
}

fn raw_batch(t: &Terminal, batch: &PunchBatch, key: &SigningKey) -> Inbound {
    Inbound {
        topic: Topic::new(t.id.clone(), Kind::Punches).to_string(),
        payload: wire::seal(&t.id, batch, key).into(),
    }
}

fn batch(t: &Terminal, records: Vec<PunchRecord>) -> Inbound {
    signed(t, records, &t.key)
}

impl Bench {
    /// Runs `msg` through both stages; the acks it queued for `t`, verified, with their
    /// retain flags. Everything else queued is dropped.
    fn punches(&mut self, t: &Terminal, msg: Inbound) -> Vec<(PunchAck, bool)> {
        if let Some(job) = self.engine.prepare(msg) {
            self.engine.apply(vec![job]).unwrap();
        }
        self.acks(t)
    }

    fn acks(&mut self, t: &Terminal) -> Vec<(PunchAck, bool)> {
        let topic = Topic::new(t.id.clone(), Kind::Ack);
        let key = self.engine.verifier_key();
        self.drain()
            .into_iter()
            .filter(|m| m.topic == topic.to_string())
            .map(|m| {
                let a: PunchAck = wire::decode(&topic, &m.payload, wire::DEFAULT_MAX_PAYLOAD)
                    .unwrap()
                    .verify(&key)
                    .unwrap()
                    .open()
                    .unwrap();
                (a, m.retain)
            })
            .collect()
    }

    fn head(&self, id: &str) -> (u64, String) {
        let p = self.engine.device(id).unwrap().punches;
        (p.head_seq, p.head_hash)
    }
}

/// Why t1 is quarantined, as the device view says.
fn quarantine_reason(b: &Bench) -> String {
    b.engine.device("t1").unwrap().quarantine.unwrap().reason
}

fn ack(seq: u64, head: ChainHash, resend: bool) -> (PunchAck, bool) {
    (PunchAck { seq, head, resend }, true)
}

mod operator;

#[test]
fn a_batch_continuing_the_head_is_stored_and_acked_with_the_new_head_retained() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(10);
    let acks = b.punches(&t, batch(&t, c.range(1, 10)));
    assert_eq!(acks, vec![ack(10, c.hash(10), false)]);
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.punches.head_seq, 10);
    assert_eq!(v.punches.head_hash, c.hash(10).to_hex());
    assert_eq!(v.punches.held, 0, "a trusted device's records are not held");
    assert_eq!(v.punches.capacity, CAPACITY);
    assert_eq!(b.engine.stats().accepted.get("punches"), Some(&1));
    // The next batch continues from there.
    c.punch(5);
    let acks = b.punches(&t, batch(&t, c.range(11, 15)));
    assert_eq!(acks, vec![ack(15, c.hash(15), false)]);
}

#[test]
fn a_resent_batch_is_acked_again_and_stores_nothing_and_an_overlap_appends_only_the_new_records() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(15);
    b.punches(&t, batch(&t, c.range(1, 10)));
    let acks = b.punches(&t, batch(&t, c.range(1, 10)));
    assert_eq!(
        acks,
        vec![ack(10, c.hash(10), false)],
        "the copy is acked again"
    );
    assert_eq!(b.head("t1"), (10, c.hash(10).to_hex()));
    assert_eq!(b.engine.stats().accepted.get("punches_duplicate"), Some(&1));
    let acks = b.punches(&t, batch(&t, c.range(6, 15)));
    assert_eq!(acks, vec![ack(15, c.hash(15), false)]);
    let page = b.engine.punches_of("t1", 0, 100, &op()).unwrap();
    let seqs: Vec<u64> = page.punches.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>(), "each record once");
}

#[test]
fn a_batch_after_a_gap_stores_nothing_and_asks_for_a_resend_from_the_head() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(10);
    b.punches(&t, batch(&t, c.range(1, 5)));
    let acks = b.punches(&t, batch(&t, c.range(8, 10)));
    assert_eq!(
        acks,
        vec![ack(5, c.hash(5), true)],
        "never acked past the gap"
    );
    assert_eq!(b.head("t1").0, 5);
    assert_eq!(b.rejected("punch_gap"), 1);
    assert_eq!(b.state(), DeviceState::Trusted, "a gap is no tamper");
    // The resend from head + 1 is taken.
    let acks = b.punches(&t, batch(&t, c.range(6, 10)));
    assert_eq!(acks, vec![ack(10, c.hash(10), false)]);
}

#[test]
fn a_record_that_differs_from_the_held_one_is_a_fork_that_quarantines_the_device() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(6);
    b.punches(&t, batch(&t, c.range(1, 5)));
    // A different chain from record 3 on: re-linked, so only the mirror can tell.
    let mut forked = c.range(1, 2);
    let mut prev = (2, c.hash(2));
    for seq in 3..=6 {
        let r = PunchInput::parse("INTRUDER", "out", None, T0 + seq)
            .unwrap()
            .chain_after(Some(prev), BootId([9; 16]));
        prev = (seq, r.hash(&t.id));
        forked.push(r);
    }
    let acks = b.punches(&t, batch(&t, forked[2..].to_vec()));
    assert_eq!(
        acks,
        vec![ack(5, c.hash(5), false)],
        "answered with the unchanged head so a genuine agent resumes"
    );
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(
        quarantine_reason(&b),
        Reason::PunchFork { seq: 3 }.to_string()
    );
    assert_eq!(v.punches.head_seq, 5, "nothing of the batch stored");
    assert_eq!(b.rejected("tamper"), 1);
    let audit = b.engine.audit(None, 1000).unwrap().entries;
    assert!(
        audit
            .iter()
            .any(|a| a.action == "punches_rejected" && a.reason.contains("3")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|a| a.action == "quarantined"));
}

#[test]
fn a_batch_whose_prev_hash_breaks_the_chain_quarantines_the_device() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(6);
    let mut recs = c.range(1, 6);
    recs[3].prev_hash = ChainHash([0xee; 32]);
    b.punches(&t, batch(&t, recs));
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(
        quarantine_reason(&b),
        Reason::PunchChainBroken { seq: 4 }.to_string()
    );
    assert_eq!(v.punches.head_seq, 0);
    assert_eq!(b.rejected("tamper"), 1);
}

#[test]
fn a_batch_that_does_not_link_to_the_head_quarantines_the_device() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(10);
    b.punches(&t, batch(&t, c.range(1, 5)));
    let mut next = c.range(6, 10);
    next[0].prev_hash = ChainHash([0xee; 32]);
    // Re-link the rest so the batch holds together on its own.
    for i in 1..next.len() {
        next[i].prev_hash = next[i - 1].hash(&t.id);
    }
    let acks = b.punches(&t, batch(&t, next));
    assert_eq!(acks, vec![ack(5, c.hash(5), false)]);
    assert_eq!(b.state(), DeviceState::Quarantined);
    assert_eq!(
        quarantine_reason(&b),
        Reason::PunchChainBroken { seq: 6 }.to_string()
    );
    assert_eq!(b.rejected("tamper"), 1);
}

#[test]
fn a_batch_not_signed_by_the_enrolled_key_is_forged_and_quarantines_the_device() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(3);
    let acks = b.punches(
        &t,
        signed(&t, c.range(1, 3), &SigningKey::from_bytes(&[99; 32])),
    );
    assert_eq!(acks, vec![ack(0, ChainHash::GENESIS, false)]);
    let v = b.engine.device("t1").unwrap();
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(quarantine_reason(&b), Reason::PunchForged.to_string());
    assert_eq!(v.punches.head_seq, 0, "nothing stored");
    assert_eq!(b.rejected("bad_signature"), 1);
    assert_eq!(b.last_audit().action, "quarantined");
    let audit = b.engine.audit(None, 1000).unwrap().entries;
    assert!(
        audit.iter().any(|a| a.action == "punches_rejected"
            && a.device.as_deref() == Some("t1")
            && a.reason.contains(&Reason::PunchForged.to_string())),
        "the forged batch itself is in the audit trail: {audit:?}"
    );
}

#[test]
fn a_malformed_batch_is_rejected_without_a_quarantine_or_an_ack() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(3);
    let mut bad = PunchBatch::new(&t.id, c.range(1, 3), 3, CAPACITY).unwrap();
    bad.last = 7;
    let acks = b.punches(&t, raw_batch(&t, &bad, &t.key));
    assert!(acks.is_empty());
    assert_eq!(b.rejected("malformed"), 1);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn a_tamper_batch_from_a_quarantined_device_only_adds_an_audit_entry() {
    let (mut b, t) = setup();
    b.engine.quarantine("t1", "inspection", op()).unwrap();
    let before = b.audit_len();
    let mut c = Chain::new(&t);
    c.punch(2);
    b.punches(
        &t,
        signed(&t, c.range(1, 2), &SigningKey::from_bytes(&[99; 32])),
    );
    assert_eq!(b.audit_len(), before + 1);
    assert_eq!(b.last_audit().action, "punches_rejected");
}

#[test]
fn a_quarantined_device_keeps_mirroring_its_records_held_and_a_release_does_not_unmark_them() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(8);
    b.punches(&t, batch(&t, c.range(1, 3)));
    b.engine.quarantine("t1", "inspection", op()).unwrap();
    let acks = b.punches(&t, batch(&t, c.range(4, 8)));
    assert_eq!(acks, vec![ack(8, c.hash(8), false)]);
    let v = b.engine.release("t1", "inspected", op()).unwrap();
    assert_eq!((v.punches.held, v.punches.held_unreviewed), (5, 5));
    let held: Vec<(u64, bool)> = b
        .engine
        .punches_of("t1", 0, 100, &op())
        .unwrap()
        .punches
        .iter()
        .map(|p| (p.seq, p.held))
        .collect();
    assert_eq!(
        held,
        vec![
            (1, false),
            (2, false),
            (3, false),
            (4, true),
            (5, true),
            (6, true),
            (7, true),
            (8, true)
        ]
    );
}

#[test]
fn a_pending_devices_records_are_mirrored_held() {
    let mut b = bench_with(0, |_| {});
    let t = terminal("t2", 11);
    b.engine.enroll(&enrollment_request(&t), &op()).unwrap();
    assert_eq!(b.state_of("t2"), DeviceState::Pending);
    let mut c = Chain::new(&t);
    c.punch(4);
    let acks = b.punches(&t, batch(&t, c.range(1, 4)));
    assert_eq!(acks, vec![ack(4, c.hash(4), false)]);
    assert_eq!(b.engine.device("t2").unwrap().punches.held, 4);
}

#[test]
fn several_batches_of_one_device_in_one_apply_see_each_others_writes() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(15);
    let jobs: Vec<_> = [(1, 5), (6, 10), (11, 15), (6, 10)]
        .into_iter()
        .map(|(f, l)| b.engine.prepare(batch(&t, c.range(f, l))).unwrap())
        .collect();
    b.engine.apply(jobs).unwrap();
    let acks: Vec<u64> = b.acks(&t).into_iter().map(|(a, _)| a.seq).collect();
    assert_eq!(
        acks,
        vec![5, 10, 15, 15],
        "the last copy is a duplicate of the same transaction"
    );
    assert_eq!(b.head("t1"), (15, c.hash(15).to_hex()));
    assert_eq!(b.rejected("punch_gap"), 0);
}

#[test]
fn a_batch_whose_commit_fails_is_not_acked() {
    // As in store_disk_full.rs: a missing privilege fails the test, never skips it.
    let fs = Tmpfs::mount_temp("8m").expect("this test needs root to mount a tmpfs");
    let store = Store::open(&fs.path().join("vouch.redb")).unwrap();
    let mut b = bench_on(store);
    let t = b.trusted_terminal("t1", 7);
    b.drain();
    let mut c = Chain::new(&t);
    // A full batch needs new pages (the file's free pages hold far less).
    let n = vouch_protocol::punch::MAX_BATCH_RECORDS as u64;
    c.punch(n);
    let job = b.engine.prepare(batch(&t, c.range(1, n))).unwrap();
    let filler = tmpfs::fill(fs.path()).unwrap();
    assert!(
        b.engine.apply(vec![job]).is_err(),
        "the commit cannot succeed on a full disk"
    );
    assert!(b.acks(&t).is_empty(), "no ack without a durable commit");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(b.head("t1").0, 0, "nothing was stored");
    // Once there is space the resent batch is taken and acked.
    let acks = b.punches(&t, batch(&t, c.range(1, n)));
    assert_eq!(acks, vec![ack(n, c.hash(n), false)]);
}

#[test]
fn a_quarantined_device_resending_one_tamper_batch_is_audited_once_per_verdict_period() {
    let (mut b, t) = setup();
    let mut c = Chain::new(&t);
    c.punch(3);
    let forged = || signed(&t, c.range(1, 3), &SigningKey::from_bytes(&[99; 32]));
    b.punches(&t, forged());
    assert_eq!(b.state(), DeviceState::Quarantined);
    let rejected = |b: &Bench| {
        b.engine
            .audit(None, 1000)
            .unwrap()
            .entries
            .iter()
            .filter(|a| a.action == "punches_rejected")
            .count()
    };
    let first = rejected(&b);
    assert_eq!(first, 1, "the tamper that quarantined is audited");
    let before = b.audit_len();
    for _ in 0..5 {
        let acks = b.punches(&t, forged());
        assert_eq!(
            acks,
            vec![ack(0, ChainHash::GENESIS, false)],
            "still answered"
        );
    }
    assert_eq!(b.audit_len(), before, "copies add no audit rows");
    assert_eq!(
        b.rejected("bad_signature"),
        6,
        "every copy is still counted"
    );
    // Tamper of another kind in the same period is audited, once.
    let mut broken = c.range(1, 3);
    broken[1].prev_hash = ChainHash([0xee; 32]);
    for _ in 0..3 {
        b.punches(&t, batch(&t, broken.clone()));
    }
    assert_eq!(rejected(&b), 2);
    // A new verdict period (released, then the same forgery again) audits it again.
    b.engine.release("t1", "inspected", op()).unwrap();
    b.punches(&t, forged());
    assert_eq!(b.state(), DeviceState::Quarantined);
    assert_eq!(rejected(&b), 3);
}

const PUNCH_HEADS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("punch_heads");

#[test]
fn a_corrupt_punch_head_refuses_only_that_devices_batch_not_another_devices_hello() {
    let (mut b, t1) = setup();
    let t2 = b.trusted_terminal("t2", 21);
    let mut c = Chain::new(&t1);
    c.punch(4);
    b.punches(&t1, batch(&t1, c.range(1, 2)));
    let mut b = b.restart_after_raw_edit(|w| {
        w.open_table(PUNCH_HEADS)
            .unwrap()
            .insert("t1", [0xff_u8, 0x00, 0x13].as_slice())
            .unwrap();
    });
    b.drain();
    // t1's batch and t2's hello in one applier batch.
    let hello = b.hello(&t2);
    let jobs = vec![
        b.engine.prepare(batch(&t1, c.range(3, 4))).unwrap(),
        b.engine.prepare(hello).unwrap(),
    ];
    b.engine
        .apply(jobs)
        .expect("one device's unreadable row does not drop the applier batch");
    let challenge = Topic::new(t2.id.clone(), Kind::Challenge).to_string();
    let out = b.drain();
    assert!(
        out.iter().any(|m| m.topic == challenge),
        "t2 still gets its challenge: {:?}",
        out.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    assert!(
        !out.iter()
            .any(|m| m.topic == Topic::new(t1.id.clone(), Kind::Ack).to_string()),
        "nothing acked for the unreadable mirror"
    );
    assert_eq!(b.rejected("internal"), 1);
    // The operator still sees both devices; t1's punches carry the error.
    let page = b.engine.devices(None, 10).unwrap().devices;
    assert_eq!(page.len(), 2);
    let v1 = b.engine.device("t1").unwrap();
    let err = v1.punches.error.expect("an unreadable head is reported");
    assert!(err.contains("punch_heads") && err.contains("t1"), "{err}");
    assert_eq!(v1.punches.head_seq, 0);
    assert_eq!(b.engine.device("t2").unwrap().punches.error, None);
}

#[test]
fn the_plaintext_employee_id_of_a_mirrored_batch_never_reaches_the_database_file() {
    const EMPLOYEE: &str = "PLAINTEXT-EMPLOYEE-4711";
    let (mut b, t) = setup();
    let mut records = Vec::new();
    for seq in 1..=3 {
        let prev = records.last().map(|r: &PunchRecord| (r.seq, r.hash(&t.id)));
        let input = PunchInput::parse(EMPLOYEE, "in", Some("card"), T0 + seq).unwrap();
        records.push(input.chain_after(prev, BootId([9; 16])));
    }
    let acks = b.punches(&t, batch(&t, records.clone()));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0.seq, 3, "the batch was mirrored");
    let page = b.engine.punches_of("t1", 0, 10, &op()).unwrap();
    assert_eq!(page.punches.len(), 3);
    assert!(page.punches.iter().all(|p| p.employee == EMPLOYEE));
    let file = std::fs::read(b.store_file()).unwrap();
    assert!(
        !file
            .windows(EMPLOYEE.len())
            .any(|w| w == EMPLOYEE.as_bytes()),
        "plaintext employee id at rest"
    );
}

/// A fork raises a `tamper` and a `quarantine` alert, staged in the outbox by the same commit as
/// the quarantine (webhook::stage), each body naming the device and the reason code.
#[test]
fn a_fork_stages_tamper_and_quarantine_alerts_in_the_outbox() {
    let (b, t) = setup();
    let mut b = b.with_webhooks(
        vec![vouch_verifier::webhook::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: std::sync::Arc::new(zeroize::Zeroizing::new(b"k".to_vec())),
            events: vouch_verifier::webhook::EventKind::ALL.to_vec(),
        }]
        .into(),
    );
    let mut c = Chain::new(&t);
    c.punch(4);
    b.punches(&t, batch(&t, c.range(1, 3)));
    assert!(
        b.engine.store().read().unwrap().outbox_len().unwrap() == 0,
        "no alert for a plain append"
    );
    let mut forked = c.range(1, 1);
    let mut prev = (1, c.hash(1));
    for seq in 2..=4 {
        let r = PunchInput::parse("INTRUDER", "out", None, T0 + seq)
            .unwrap()
            .chain_after(Some(prev), BootId([9; 16]));
        prev = (seq, r.hash(&t.id));
        forked.push(r);
    }
    b.punches(&t, batch(&t, forked[1..].to_vec()));
    let due = b
        .engine
        .store()
        .read()
        .unwrap()
        .deliveries_due(u64::MAX, 10)
        .unwrap();
    let events: Vec<(String, serde_json::Value)> = due
        .into_iter()
        .map(|(_, e)| {
            let e = e.unwrap();
            (e.event, serde_json::from_str(&e.body).unwrap())
        })
        .collect();
    let tamper = events
        .iter()
        .find(|(k, _)| k == "tamper")
        .expect("tamper alert");
    assert_eq!(tamper.1["device"], "t1");
    assert_eq!(
        tamper.1["reason_codes"][0],
        Reason::PunchFork { seq: 2 }.code()
    );
    assert_eq!(tamper.1["actor"], "system");
    let q = events
        .iter()
        .find(|(k, _)| k == "quarantine")
        .expect("quarantine alert");
    assert_eq!(
        q.1["reason_codes"][0],
        Reason::PunchFork { seq: 2 }.code(),
        "{q:?}"
    );
}
