//! Tests of the verifier core's decisions, fed plain records and driven by an explicit clock
//! and a deterministic nonce source. [`World`] is a minimal shell: it keeps one device record and
//! a nonce table, and writes effects the way the engine does (signed verdict into
//! `last_verdict`), so a test can run a device through several decisions.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::SigningKey;

use crate::appraisal::{Failure, Verified};
use crate::bytes::{Bytes, Sha256Digest};
use crate::enrollment::Enrollment;
use crate::ids::{Kind, Nonce};
use crate::nonce::IssuedNonce;
use crate::policy::{Measurements, PolicyScope, ReferenceValues};
use crate::tpm::ClockInfo;
use crate::verdict::DeviceState;
use crate::wire;

use super::{
    ChallengeRequest, Decision, DeviceRecord, Effects, EvidenceInput, Governing, NonceSource,
    NonceUnavailable, NonceWrite, Outbound, RateLimiter, Rules, VerifierCore, governing,
};

mod expiry;
mod inbound;
mod operator;
mod policy;
mod provenance;
mod punch;

/// Verdict lifetime in these tests.
const TTL: u64 = 900;
/// Nonce lifetime in these tests.
const NONCE_TTL: u64 = 60;
/// The tests' starting time.
const T0: u64 = 1_700_000_000;

/// Nonces 1, 2, 3, … (each byte of the nonce is the number).
#[derive(Debug, Default)]
struct Numbered(u8);

impl NonceSource for Numbered {
    fn draw(&mut self) -> Result<Nonce, NonceUnavailable> {
        self.0 = self.0.wrapping_add(1);
        Ok(Nonce::from_bytes([self.0; 32]))
    }
}

/// A source that has no randomness to give.
struct Broken;

impl NonceSource for Broken {
    fn draw(&mut self) -> Result<Nonce, NonceUnavailable> {
        Err(NonceUnavailable("test".into()))
    }
}

fn record(id: &str) -> DeviceRecord {
    DeviceRecord::new(Enrollment {
        id: id.parse().unwrap(),
        model: "T".into(),
        ek_public: Bytes(vec![1]),
        ek_certificate: None,
        ak_public: Bytes(vec![2]),
        ak_name: Bytes(vec![3]),
        device_key: Bytes(vec![4; 32]),
        enrolled_at: 0,
        mqtt_password_hash: None,
        provenance: None,
        ek_cert_anchor: None,
    })
}

fn measurements(pcr0: u8) -> Measurements {
    Measurements {
        pcrs: BTreeMap::from([(0, Sha256Digest([pcr0; 32]))]),
        firmware_pcr: 14,
        firmware: Vec::new(),
        eventlog: None,
        firmware_version: None,
        inventory: None,
    }
}

/// What the stateless checks of a genuine quote with `pcr0` at TPM clock `clock` established.
fn verified(pcr0: u8, clock: u64) -> Result<Verified, Failure> {
    Ok(Verified {
        measurements: measurements(pcr0),
        clock: ClockInfo {
            clock,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
    })
}

/// The device's own policy: exactly what a quote with `pcr0` measures.
fn device_policy(rec: &DeviceRecord, pcr0: u8) -> Governing {
    let values = measurements(pcr0).capture();
    governing(rec, |s| {
        Ok::<_, ()>(matches!(s, PolicyScope::Device(_)).then(|| values.clone()))
    })
    .unwrap()
}

/// No reference values anywhere.
fn no_policy(rec: &DeviceRecord) -> Governing {
    governing(rec, |_| Ok::<Option<ReferenceValues>, ()>(None)).unwrap()
}

/// One device, its nonce table, and the core; `commit` writes effects as the engine does.
struct World {
    core: VerifierCore,
    rate: RateLimiter,
    nonces: Numbered,
    table: HashMap<Nonce, IssuedNonce>,
    rec: DeviceRecord,
    key: SigningKey,
    now: u64,
    counter: u64,
    seq: u64,
}

impl World {
    fn new() -> Self {
        Self::with(0, 1000)
    }

    fn with(quarantine_after_expiries: u32, per_minute: u32) -> Self {
        World {
            core: VerifierCore::new(Rules {
                nonce_ttl: NONCE_TTL,
                verdict_ttl: TTL,
                verifier_id: "test".into(),
                quarantine_after_expiries,
                max_eventlog: super::MAX_EVENTLOG,
                require_ek_cert: false,
            }),
            rate: RateLimiter::new(per_minute),
            nonces: Numbered::default(),
            table: HashMap::new(),
            rec: record("t1"),
            key: SigningKey::from_bytes(&[9; 32]),
            now: T0,
            counter: 0,
            seq: 0,
        }
    }

    /// A device trusted under its own policy on a quote with PCR 0 = 1.
    fn trusted() -> Self {
        let mut w = World::new();
        let n = w.challenge();
        let gov = device_policy(&w.rec, 1);
        let d = w.evidence(n, &verified(1, 100), &gov);
        assert_eq!(d.rejected, None);
        assert_eq!(w.rec.status.state(), DeviceState::Trusted);
        w
    }

    /// An operator action, committed.
    fn act(
        &mut self,
        action: crate::verifier::OperatorAction<'_>,
    ) -> Result<Effects, crate::verifier::OperatorError> {
        let e =
            self.core
                .on_operator_action(self.rec.clone(), action, self.now, &mut self.nonces)?;
        Ok(self.commit(e))
    }

    /// Writes `e` as the engine would, and returns it for inspection.
    fn commit(&mut self, e: Effects) -> Effects {
        for n in &e.nonces {
            match n {
                NonceWrite::Put(nonce, issued) => {
                    self.table.insert(*nonce, issued.clone());
                }
                NonceWrite::Remove(nonce) => {
                    self.table.remove(nonce);
                }
            }
        }
        if let Some(rec) = &e.device {
            self.rec = rec.clone();
        }
        if let Some(v) = e.verdict() {
            self.seq += 1;
            let v = v.clone().sequenced(self.seq);
            self.rec.last_verdict = Some(Bytes(wire::seal(self.rec.id(), &v, &self.key)));
        }
        e
    }

    /// A hello with the next counter, committed.
    fn hello(&mut self) -> Decision {
        self.counter += 1;
        let req = ChallengeRequest {
            kind: Kind::Hello,
            request: 5,
            counter: Some(self.counter),
        };
        self.request(req)
    }

    fn request(&mut self, req: ChallengeRequest) -> Decision {
        let mut d = self
            .core
            .on_challenge_request(
                self.rec.clone(),
                req,
                self.now,
                &mut self.rate,
                &mut self.nonces,
            )
            .unwrap();
        d.effects = self.commit(d.effects);
        d
    }

    /// A hello answered with a challenge; its nonce.
    fn challenge(&mut self) -> Nonce {
        let d = self.hello();
        assert_eq!(d.rejected, None);
        let nonces: Vec<Nonce> = d.effects.challenges().map(|c| c.nonce).collect();
        let [n] = nonces.as_slice() else {
            panic!("one challenge expected: {nonces:?}")
        };
        *n
    }

    /// Evidence for `nonce` whose stateless checks came out as `outcome`, committed.
    fn evidence(
        &mut self,
        nonce: Nonce,
        outcome: &Result<Verified, Failure>,
        gov: &Governing,
    ) -> Decision {
        let input = EvidenceInput {
            nonce,
            issued: self.table.get(&nonce).cloned(),
            outcome,
            eventlog: None,
        };
        let mut d = self
            .core
            .on_evidence(
                self.rec.clone(),
                input,
                |_, _| Ok::<_, NonceUnavailable>(gov.clone()),
                self.now,
                &mut self.nonces,
            )
            .unwrap();
        d.effects = self.commit(d.effects);
        d
    }

    fn outstanding(&self) -> Vec<Nonce> {
        self.rec.outstanding.iter().map(|(n, _)| *n).collect()
    }
}

/// The messages of `e` by kind, for assertions.
fn kinds(e: &Effects) -> Vec<&'static str> {
    e.messages
        .iter()
        .map(|m| match m {
            Outbound::Challenge(_) => "challenge",
            Outbound::Verdict(_) => "verdict",
            Outbound::Cmd { .. } => "cmd",
        })
        .collect()
}

#[test]
fn a_broken_nonce_source_is_an_error_not_a_challenge() {
    let w = World::new();
    let mut rate = RateLimiter::new(10);
    let req = ChallengeRequest {
        kind: Kind::Hello,
        request: 1,
        counter: Some(1),
    };
    let e = w
        .core
        .on_challenge_request(w.rec.clone(), req, T0, &mut rate, &mut Broken)
        .unwrap_err();
    assert!(e.to_string().contains("no randomness"), "{e}");
}
