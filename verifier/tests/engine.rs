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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let (tx, out) = mpsc::channel(1 << 16);
    let cfg = EngineConfig {
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        nonce_ttl: 60,
        verdict_ttl: 900,
        challenges_per_minute: 1000,
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
        let hello = Hello {
            agent_version: "t".into(),
            model: "T".into(),
            reset_count: 0,
            request: 5,
        };
        let msg = Inbound {
            topic: Topic::new(t.id.clone(), Kind::Hello).to_string(),
            payload: wire::seal(&t.id, &hello, &t.key).into(),
        };
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
