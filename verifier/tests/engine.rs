//! The verifier engine end to end without MQTT: real redb store, real `prepare`/`apply`, and
//! terminals on the software TPM. Each test is named after the invariant it guards; several are
//! regressions for review findings (quarantines lifted without fresh evidence, pre-release
//! quotes, reordered genuine quotes, duplicates in flight).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::device::Actor;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Topic};
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::policy::PolicyScope;
use vouch_protocol::verdict::DeviceState;
use vouch_protocol::wire;
use vouch_verifier::engine::{Engine, EngineConfig};
use vouch_verifier::mqtt::{Inbound, Outgoing};
use vouch_verifier::sim::SimTpm;
use vouch_verifier::store::Store;

const FW_PCR: u8 = 14;

struct Bench {
    _dir: tempfile::TempDir,
    engine: Engine,
    out: mpsc::Receiver<Outgoing>,
    /// The terminal's last hello/status freshness counter.
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

fn setup() -> (Bench, Terminal) {
    setup_with_rate(1000)
}

/// As [`setup`], with the verifier allowing `challenges_per_minute` challenges per device.
fn setup_with_rate(challenges_per_minute: u32) -> (Bench, Terminal) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let (tx, out) = mpsc::channel(1 << 16);
    let cfg = EngineConfig {
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        nonce_ttl: 60,
        verdict_ttl: 900,
        challenges_per_minute,
        verifier_id: "test".into(),
    };
    let engine = Engine::new(store, SigningKey::from_bytes(&[1; 32]), cfg, tx);
    let mut t = Terminal {
        id: "t1".parse().unwrap(),
        tpm: SimTpm::from_seed([7; 32]),
        key: SigningKey::from_bytes(&[8; 32]),
        firmware: vec![FirmwareEntry {
            path: "/fw".into(),
            sha256: Some(Sha256Digest([1; 32])),
        }],
    };
    t.tpm.measure_firmware(FW_PCR, &t.firmware).unwrap();
    let req = wire::seal(
        &t.id,
        &t.tpm.enrollment_request("T", &t.key.verifying_key()),
        &t.key,
    );
    engine.enroll(&req, &op()).unwrap();
    let mut b = Bench {
        _dir: dir,
        engine,
        out,
        counter: 0,
    };
    // Trusted under a captured policy.
    let n = b.challenge(&t);
    b.submit(b.evidence(&mut t, n));
    b.engine.capture_policy("t1", op()).unwrap();
    assert_eq!(b.state(), DeviceState::Trusted);
    (b, t)
}

impl Bench {
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
        self.engine.device("t1").unwrap().state
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

/// Freshness of hello and status (issue 6 case 8): a copy of a signed message costs the
/// verifier nothing — no challenge, no rate-limit budget, no retired nonce.
mod freshness {
    use super::*;
    use vouch_protocol::enrollment::Enrollment;
    use vouch_protocol::messages::Status;
    use vouch_verifier::store::DeviceRecord;

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
        let s = Status {
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
        // Fresh hellos until the limit refuses one (a minute boundary may reset it once).
        let mut refused = None;
        for _ in 0..10 {
            let h = b.hello(&t);
            let before = b.rejected("rate_limited");
            b.submit(copy(&h));
            if b.rejected("rate_limited") > before {
                refused = Some(h);
                break;
            }
        }
        let refused = refused.expect("the rate limit never refused a hello");
        // Its counter was recorded although it got no challenge: a copy is a replay, not a
        // claim on the next minute's budget.
        let job = b.engine.prepare(copy(&refused));
        assert!(job.is_none());
        assert_eq!(b.rejected("replay"), 1);
    }

    #[test]
    fn device_records_without_a_counter_still_decode() {
        let tpm = SimTpm::from_seed([3; 32]);
        let key = SigningKey::from_bytes(&[4; 32]);
        let id: DeviceId = "t9".parse().unwrap();
        let req = wire::seal(
            &id,
            &tpm.enrollment_request("T", &key.verifying_key()),
            &key,
        );
        let rec = DeviceRecord::new(Enrollment::from_request(&req, 1).unwrap());
        // The record as a verifier before this field wrote it.
        let mut v: ciborium::Value = wire::from_cbor_exact(&wire::to_cbor(&rec)).unwrap();
        let map = v.as_map_mut().unwrap();
        let before = map.len();
        map.retain(|(k, _)| k.as_text() != Some("last_counter"));
        assert_eq!(map.len(), before - 1);
        let old = wire::to_cbor(&v);
        let back: DeviceRecord = wire::from_cbor_exact(&old).unwrap();
        assert_eq!(back.last_counter, 0);
        assert_eq!(back.id(), &id);
    }
}
