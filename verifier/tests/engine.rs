//! The verifier engine end to end without MQTT: real redb store, real `prepare`/`apply`, and
//! terminals on the software TPM. Each test is named after the invariant it guards; several are
//! regressions for review findings (quarantines lifted without fresh evidence, pre-release
//! quotes, reordered genuine quotes, duplicates in flight). The verdict expiry tests pass an
//! explicit `now` to the sweep, so an expiry takes milliseconds, not a verdict lifetime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use vouch_common::time::now_unix;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::device::Actor;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Topic};
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::policy::PolicyScope;
use vouch_protocol::verdict::{DeviceState, Status, TrustVector, Verdict};
use vouch_protocol::wire;
use vouch_sim::SimTpm;
use vouch_verifier::api::AuditView;
use vouch_verifier::engine::{Engine, EngineConfig};
use vouch_verifier::mqtt::{Inbound, Outgoing};
use vouch_verifier::store::{DeviceRecord, Store};

const FW_PCR: u8 = 14;

struct Bench {
    _dir: tempfile::TempDir,
    engine: Engine,
    out: mpsc::Receiver<Outgoing>,
    /// The terminals' last hello/status freshness counter (one sequence serves every terminal).
    counter: u64,
}

struct Terminal {
    id: DeviceId,
    tpm: SimTpm,
    key: SigningKey,
    firmware: Vec<FirmwareEntry>,
}

fn op() -> Actor {
    Actor::Operator("test".into())
}

/// Lifetime of a verdict in these tests.
const TTL: u64 = 900;

/// An engine on a fresh store; `seed` writes to the store before the engine opens it.
fn bench_with(quarantine_after_expiries: u32, seed: impl FnOnce(&Store)) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    seed(&store);
    engine_on(dir, store, quarantine_after_expiries)
}

fn engine_on(dir: tempfile::TempDir, store: Store, quarantine_after_expiries: u32) -> Bench {
    engine_with(dir, store, quarantine_after_expiries, 1000)
}

fn engine_with(
    dir: tempfile::TempDir,
    store: Store,
    quarantine_after_expiries: u32,
    challenges_per_minute: u32,
) -> Bench {
    let (tx, out) = mpsc::channel(1 << 16);
    let cfg = EngineConfig {
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        nonce_ttl: 60,
        verdict_ttl: TTL,
        challenges_per_minute,
        verifier_id: "test".into(),
        quarantine_after_expiries,
    };
    let engine = Engine::new(store, SigningKey::from_bytes(&[1; 32]), cfg, tx);
    Bench {
        _dir: dir,
        engine,
        out,
        counter: 0,
    }
}

/// A terminal of model `T` whose TPM and device key derive from `seed`, not yet enrolled.
fn terminal(id: &str, seed: u8) -> Terminal {
    let mut t = Terminal {
        id: id.parse().unwrap(),
        tpm: SimTpm::from_seed([seed; 32]),
        key: SigningKey::from_bytes(&[seed.wrapping_add(1); 32]),
        firmware: vec![FirmwareEntry {
            path: "/fw".into(),
            sha256: Some(Sha256Digest([1; 32])),
        }],
    };
    t.tpm.measure_firmware(FW_PCR, &t.firmware).unwrap();
    t
}

fn enrollment_request(t: &Terminal) -> Vec<u8> {
    wire::seal(
        &t.id,
        &t.tpm.enrollment_request("T", &t.key.verifying_key()),
        &t.key,
    )
}

fn setup() -> (Bench, Terminal) {
    setup_with_rate(1000)
}

/// As [`setup`], with the verifier allowing `challenges_per_minute` challenges per device.
fn setup_with_rate(challenges_per_minute: u32) -> (Bench, Terminal) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut b = engine_with(dir, store, 0, challenges_per_minute);
    let t = b.trusted_terminal("t1", 7);
    (b, t)
}

impl Bench {
    /// Stops the engine, lets `edit` change its store, and starts a new engine on it (a restart).
    fn restart(self, edit: impl FnOnce(&Store)) -> Bench {
        let Bench {
            _dir: dir,
            engine,
            counter,
            ..
        } = self;
        drop(engine);
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        edit(&store);
        // The terminals' counters survive the verifier's restart, as they do on real terminals.
        Bench {
            counter,
            ..engine_on(dir, store, 0)
        }
    }

    /// Enrolls a terminal and makes it trusted under a policy captured from its first evidence.
    fn trusted_terminal(&mut self, id: &str, seed: u8) -> Terminal {
        let mut t = terminal(id, seed);
        self.engine.enroll(&enrollment_request(&t), &op()).unwrap();
        let n = self.challenge(&t);
        self.submit(self.evidence(&mut t, n));
        self.engine.capture_policy(id, op()).unwrap();
        assert_eq!(self.state_of(id), DeviceState::Trusted);
        t
    }

    fn drain(&mut self) -> Vec<Outgoing> {
        let mut v = Vec::new();
        while let Ok(m) = self.out.try_recv() {
            v.push(m);
        }
        v
    }

    /// Sends a hello and returns the nonce of the challenge it gets.
    fn challenge(&mut self, t: &Terminal) -> Nonce {
        let msg = self.hello(t);
        let job = self.engine.prepare(msg).unwrap();
        self.engine.apply(vec![job]).unwrap();
        let c = self
            .drain()
            .into_iter()
            .rev()
            .find(|m| m.topic.ends_with("/challenge"))
            .unwrap();
        let topic: Topic = c.topic.parse().unwrap();
        let c: Challenge = wire::decode(&topic, &c.payload, wire::DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .verify(&self.engine.verifier_key())
            .unwrap()
            .open()
            .unwrap();
        c.nonce
    }

    /// A signed hello with the terminal's next counter.
    fn hello(&mut self, t: &Terminal) -> Inbound {
        self.counter += 1;
        let hello = Hello {
            agent_version: "t".into(),
            model: "T".into(),
            reset_count: 0,
            request: 5,
            counter: self.counter,
        };
        Inbound {
            topic: Topic::new(t.id.clone(), Kind::Hello).to_string(),
            payload: wire::seal(&t.id, &hello, &t.key).into(),
        }
    }

    fn evidence(&self, t: &mut Terminal, nonce: Nonce) -> Inbound {
        let pcrs: Vec<u8> = (0..=7).chain([FW_PCR]).collect();
        let ev = t
            .tpm
            .evidence(&nonce, &pcrs, FW_PCR, t.firmware.clone())
            .unwrap();
        Inbound {
            topic: Topic::new(t.id.clone(), Kind::Evidence).to_string(),
            payload: wire::seal(&t.id, &ev, &t.key).into(),
        }
    }

    fn submit(&mut self, msg: Inbound) {
        if let Some(job) = self.engine.prepare(msg) {
            self.engine.apply(vec![job]).unwrap();
        }
        self.drain();
    }

    fn state(&self) -> DeviceState {
        self.state_of("t1")
    }

    fn state_of(&self, id: &str) -> DeviceState {
        self.engine.device(id).unwrap().state
    }

    /// Submits fresh evidence answering a new challenge.
    fn attest(&mut self, t: &mut Terminal) {
        let n = self.challenge(t);
        self.submit(self.evidence(t, n));
    }

    /// The verdicts queued for `id` since the last drain, verified with the verifier's key, and
    /// whether each is retained; other messages are returned apart.
    fn verdicts(&mut self, id: &str) -> (Vec<(Verdict, bool)>, Vec<Outgoing>) {
        let topic = Topic::new(id.parse().unwrap(), Kind::Verdict);
        let (verdicts, others): (Vec<_>, Vec<_>) = self
            .drain()
            .into_iter()
            .partition(|m| m.topic == topic.to_string());
        let key = self.engine.verifier_key();
        let verdicts = verdicts
            .into_iter()
            .map(|m| {
                let v: Verdict = wire::decode(&topic, &m.payload, wire::DEFAULT_MAX_PAYLOAD)
                    .unwrap()
                    .verify(&key)
                    .unwrap()
                    .open()
                    .unwrap();
                (v, m.retain)
            })
            .collect();
        (verdicts, others)
    }

    /// The newest audit entry.
    fn last_audit(&self) -> AuditView {
        let mut page = self.engine.audit(None, 1000).unwrap();
        page.entries.pop().unwrap()
    }

    fn audit_len(&self) -> usize {
        self.engine.audit(None, 1000).unwrap().entries.len()
    }

    fn rejected(&self, label: &str) -> u64 {
        self.engine
            .stats()
            .rejected
            .get(label)
            .copied()
            .unwrap_or(0)
    }
}

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
fn an_empty_quarantine_reason_is_a_bad_request() {
    let (b, _) = setup();
    let e = b.engine.quarantine("t1", "  ", op()).unwrap_err();
    assert!(
        matches!(e, vouch_verifier::engine::ApiError::BadRequest(_)),
        "{e}"
    );
}

// ---- verdict expiry (issue 6, case 7) ----

/// A moment after every verdict issued so far (at most now + TTL) has expired.
fn after_expiry() -> u64 {
    now_unix() + TTL + 2
}

#[test]
fn trusted_device_without_fresh_evidence_becomes_unresponsive() {
    let (mut b, _t) = setup();
    b.drain();
    let measured_at = b.engine.device("t1").unwrap().measured_at.unwrap();
    // Within its lifetime the verdict stands.
    let s = b.engine.sweep_expired_verdicts(now_unix()).unwrap();
    assert_eq!(s.examined, 0);
    assert_eq!(b.state(), DeviceState::Trusted);

    let now = after_expiry();
    let s = b.engine.sweep_expired_verdicts(now).unwrap();
    assert_eq!((s.examined, s.renewed), (1, 1));
    let reason = format!("no fresh evidence since {measured_at}");
    let d = b.engine.device("t1").unwrap();
    assert_eq!(d.state, DeviceState::Unresponsive);
    assert_eq!(serde_json::to_value(&d).unwrap()["state"], "unresponsive");
    assert_eq!(d.reasons, vec![reason.clone()]);
    assert_eq!(d.verdict_status, Some(Status::Warning));

    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str(), a.device.as_deref()),
        ("unresponsive", "verifier", Some("t1"))
    );
    assert_eq!(a.reason, reason);

    let (verdicts, others) = b.verdicts("t1");
    assert!(others.is_empty(), "no command or challenge: {others:?}");
    let [(v, retained)] = verdicts.as_slice() else {
        panic!("expected one new verdict, got {verdicts:?}")
    };
    assert!(retained, "the new verdict replaces the retained one");
    assert_eq!(v.status, Status::Warning);
    assert_eq!(v.state, DeviceState::Unresponsive);
    assert_eq!(v.reasons, vec![reason]);
    assert_eq!(
        v.trust,
        TrustVector::default(),
        "no claims without evidence"
    );
    assert_eq!(v.nonce, None);
    assert_eq!((v.iat, v.exp), (now, now + TTL));
    assert!(v.policy_id.as_deref().unwrap().starts_with("device:t1@"));
    // The renewed verdict took the expired one's place in the index.
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    assert_eq!(b.engine.sweep_expired_verdicts(now).unwrap().examined, 0);
}

#[test]
fn fresh_evidence_after_unresponsive_is_trusted_again() {
    let (mut b, mut t) = setup();
    b.engine.sweep_expired_verdicts(after_expiry()).unwrap();
    assert_eq!(b.state(), DeviceState::Unresponsive);
    b.drain();

    b.attest(&mut t);
    let d = b.engine.device("t1").unwrap();
    assert_eq!(d.state, DeviceState::Trusted);
    assert_eq!(d.verdict_status, Some(Status::Affirming));
    assert!(d.reasons.is_empty(), "{:?}", d.reasons);
    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str()),
        ("trusted", "verifier")
    );
    assert!(
        a.reason
            .starts_with("attestation passed after no fresh evidence since "),
        "{}",
        a.reason
    );
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    assert_eq!(
        b.engine
            .sweep_expired_verdicts(now_unix())
            .unwrap()
            .examined,
        0
    );
}

#[test]
fn quarantined_device_stays_quarantined_when_its_verdict_expires() {
    // Even with the most eager setting, an expiry leaves a quarantine as it is.
    let mut b = bench_with(1, |_| {});
    let mut t = b.trusted_terminal("t1", 7);
    b.engine.quarantine("t1", "tamper report", op()).unwrap();
    b.engine.release("t1", "inspected", op()).unwrap();
    let before = b.engine.device("t1").unwrap();
    let audited = b.audit_len();
    b.drain();

    let mut now = after_expiry();
    for _ in 0..3 {
        let s = b.engine.sweep_expired_verdicts(now).unwrap();
        assert_eq!(s.renewed, 1);
        let d = b.engine.device("t1").unwrap();
        assert_eq!(d.state, DeviceState::Quarantined);
        assert_eq!(
            d.quarantine, before.quarantine,
            "the quarantine is untouched"
        );
        assert!(
            d.release_pending,
            "the release still waits for fresh evidence"
        );
        assert_eq!(b.audit_len(), audited, "an expiry is no state change");
        let (verdicts, others) = b.verdicts("t1");
        assert!(others.is_empty(), "{others:?}");
        let [(v, true)] = verdicts.as_slice() else {
            panic!("expected one retained verdict, got {verdicts:?}")
        };
        // The retained verdict stays a current contraindicated one naming the quarantine.
        assert_eq!(v.status, Status::Contraindicated);
        assert_eq!(v.state, DeviceState::Quarantined);
        assert_eq!(v.reasons[0], "quarantined by operator:test: tamper report");
        assert_eq!(v.exp, now + TTL);
        now += TTL + 1;
    }
    // The release is still satisfied by fresh passing evidence.
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn quarantine_after_n_expiries_quarantines_an_unresponsive_device() {
    let mut b = bench_with(3, |_| {});
    let mut t = b.trusted_terminal("t1", 7);
    b.drain();
    let mut now = after_expiry();
    for expiry in 1..=2 {
        b.engine.sweep_expired_verdicts(now).unwrap();
        assert_eq!(
            b.state(),
            DeviceState::Unresponsive,
            "after expiry {expiry}"
        );
        // Each renewed warning verdict expires a verdict period later: the next expiry.
        let (verdicts, _) = b.verdicts("t1");
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].0.status, Status::Warning);
        now = verdicts[0].0.exp + 1;
    }
    b.engine.sweep_expired_verdicts(now).unwrap();
    let d = b.engine.device("t1").unwrap();
    let reason = "unresponsive: 3 verdict periods without fresh evidence";
    assert_eq!(d.state, DeviceState::Quarantined);
    let q = d.quarantine.unwrap();
    assert_eq!((q.actor.as_str(), q.reason.as_str()), ("verifier", reason));
    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str(), a.reason.as_str()),
        ("quarantined", "verifier", reason)
    );
    let (verdicts, others) = b.verdicts("t1");
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].0.status, Status::Contraindicated);
    assert!(
        others.iter().any(|m| m.topic == "vouch/v1/t1/cmd"),
        "the agent is told: {others:?}"
    );
    // Fresh passing evidence alone does not lift it.
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Quarantined);
}

#[test]
fn a_pending_device_stays_pending_when_its_verdict_expires() {
    let mut b = bench_with(1, |_| {});
    let mut t = terminal("t1", 7);
    b.engine.enroll(&enrollment_request(&t), &op()).unwrap();
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Pending, "no reference values yet");
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    let audited = b.audit_len();
    b.drain();
    let s = b.engine.sweep_expired_verdicts(after_expiry()).unwrap();
    assert_eq!((s.examined, s.renewed), (1, 0));
    assert_eq!(b.state(), DeviceState::Pending);
    assert_eq!(b.audit_len(), audited);
    assert!(b.drain().is_empty(), "nothing to publish");
    assert_eq!(
        b.engine.verdict_expiry_index_len().unwrap(),
        0,
        "its next verdict comes with its next evidence"
    );
}

#[test]
fn expiry_sweep_reads_only_due_devices() {
    const ENROLLED: usize = 10_000;
    const DUE: usize = 3;
    let hours_away = now_unix() + 10 * TTL;
    let template = Enrollment::from_request(&enrollment_request(&terminal("x", 9)), 0).unwrap();
    // Devices whose verdicts are valid for hours yet, written straight to the store.
    let mut b = bench_with(0, |store| {
        let mut w = store.write().unwrap();
        for i in 0..ENROLLED - DUE {
            let id: DeviceId = format!("f{i:05}").parse().unwrap();
            w.put_device(&DeviceRecord::new(Enrollment {
                id: id.clone(),
                ..template.clone()
            }))
            .unwrap();
            w.index_verdict_expiry(&id, None, hours_away + i as u64)
                .unwrap();
        }
        w.commit().unwrap();
    });
    let ids = ["t1", "t2", "t3"];
    for (seed, id) in (20u8..).zip(ids) {
        b.trusted_terminal(id, seed);
    }
    assert_eq!(b.engine.devices(None, 1000).unwrap().devices.len(), 1000);
    let index = b.engine.verdict_expiry_index_len().unwrap();
    assert_eq!(index, ENROLLED as u64);
    b.drain();

    let later = after_expiry();
    assert!(later < hours_away);
    let s = b.engine.sweep_expired_verdicts_in(later, 2, 1000).unwrap();
    assert_eq!(s.examined, DUE, "only the due entries are read");
    assert_eq!(s.renewed, DUE);
    assert_eq!(s.batches, 2, "bounded batches of 2 entries");
    assert!(!s.more);
    for id in ids {
        assert_eq!(b.state_of(id), DeviceState::Unresponsive);
    }
    assert_eq!(b.state_of("f00000"), DeviceState::Pending);
    assert_eq!(
        b.drain().len(),
        DUE,
        "one verdict per due device, nothing for the others"
    );
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), index);
    assert_eq!(b.engine.sweep_expired_verdicts(later).unwrap().examined, 0);
}

#[test]
fn verdicts_stored_before_the_expiry_index_existed_are_indexed_once() {
    let (b, _t) = setup();
    // A store from before the index: the device's verdict has no entry.
    let b = b.restart(|store| {
        let mut w = store.write().unwrap();
        let entries = w.verdicts_expired(u64::MAX, 10).unwrap();
        assert_eq!(entries.len(), 1);
        for (exp, id) in entries {
            w.unindex_verdict_expiry(exp, &id).unwrap();
        }
        w.commit().unwrap();
    });
    let later = after_expiry();
    assert_eq!(b.engine.sweep_expired_verdicts(later).unwrap().examined, 0);
    assert_eq!(b.engine.index_unindexed_verdicts().unwrap(), 1);
    assert_eq!(b.engine.index_unindexed_verdicts().unwrap(), 0, "only once");
    assert_eq!(b.engine.sweep_expired_verdicts(later).unwrap().renewed, 1);
    assert_eq!(b.state(), DeviceState::Unresponsive);
}

#[test]
fn a_policy_change_does_not_make_an_unresponsive_device_trusted() {
    let (mut b, _t) = setup();
    b.engine.sweep_expired_verdicts(after_expiry()).unwrap();
    b.drain();
    let reevaluated = b.engine.capture_policy("t1", op()).unwrap();
    assert_eq!(reevaluated.reevaluated[0].state, DeviceState::Unresponsive);
    let (verdicts, _) = b.verdicts("t1");
    let [(v, true)] = verdicts.as_slice() else {
        panic!("expected one retained verdict, got {verdicts:?}")
    };
    assert_eq!(
        v.status,
        Status::Warning,
        "stored measurements are not fresh"
    );
    assert!(
        v.reasons[0].starts_with("no fresh evidence since "),
        "{:?}",
        v.reasons
    );
    assert!(
        v.exp > now_unix(),
        "a current verdict, not one born expired"
    );
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
}

#[test]
fn a_mass_expiry_is_spread_over_sweeps() {
    let mut b = bench_with(0, |_| {});
    for (seed, id) in (20u8..).zip(["t1", "t2", "t3"]) {
        b.trusted_terminal(id, seed);
    }
    let later = after_expiry();
    let first = b.engine.sweep_expired_verdicts_in(later, 1, 2).unwrap();
    assert_eq!((first.examined, first.batches, first.more), (2, 2, true));
    let second = b.engine.sweep_expired_verdicts_in(later, 1, 2).unwrap();
    assert_eq!((second.examined, second.more), (1, false));
    for id in ["t1", "t2", "t3"] {
        assert_eq!(b.state_of(id), DeviceState::Unresponsive);
    }
}

// Freshness of hello and status (issue 6 case 8) lives in its own file.
#[path = "engine/freshness.rs"]
mod freshness;
