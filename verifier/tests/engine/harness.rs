//! The test bench: an engine on a real redb store in a temporary directory, driven by a clock
//! the test sets and a deterministic nonce source, and terminals on the software TPM that sign
//! hellos and evidence as real agents do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use vouch_protocol::verifier::{NonceSource, NonceUnavailable};
use vouch_verifier::engine::{Clock, EngineConfig, EngineDeps};

use super::*;

pub const FW_PCR: u8 = 14;

/// Where the bench's clock starts (Unix seconds).
pub const T0: u64 = 1_700_000_000;

/// The time the test sets, shared by every engine of one bench (restarts included).
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Nonces numbered 1, 2, 3, … (little-endian in the first eight bytes), continued across
/// restarts so a restarted engine never issues a nonce its store already holds.
#[derive(Debug, Clone)]
pub struct NumberedNonces(Arc<AtomicU64>);

impl NonceSource for NumberedNonces {
    fn draw(&mut self) -> Result<Nonce, NonceUnavailable> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        Ok(Nonce::from_bytes(b))
    }
}

pub struct Bench {
    _dir: tempfile::TempDir,
    pub engine: Engine,
    out: mpsc::Receiver<Outgoing>,
    /// The terminals' last hello/status freshness counter (one sequence serves every terminal).
    pub counter: u64,
    clock: TestClock,
    nonces: NumberedNonces,
}

pub struct Terminal {
    pub id: DeviceId,
    pub tpm: SimTpm,
    pub key: SigningKey,
    pub firmware: Vec<FirmwareEntry>,
}

pub fn op() -> Actor {
    Actor::Operator("test".into())
}

/// Lifetime of a verdict in these tests.
pub const TTL: u64 = 900;

/// An engine on a fresh store; `seed` writes to the store before the engine opens it.
pub fn bench_with(quarantine_after_expiries: u32, seed: impl FnOnce(&Store)) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    seed(&store);
    engine_on(dir, store, quarantine_after_expiries, 1000)
}

/// A bench whose engine runs on `store` (opened by the test, e.g. on a tmpfs it keeps).
pub fn bench_on(store: Store) -> Bench {
    engine_on(tempfile::tempdir().unwrap(), store, 0, 1000)
}

/// An engine on `store`, with its own test clock and nonce sequence.
fn engine_on(
    dir: tempfile::TempDir,
    store: Store,
    quarantine_after_expiries: u32,
    challenges_per_minute: u32,
) -> Bench {
    let clock = TestClock(Arc::new(AtomicU64::new(T0)));
    let nonces = NumberedNonces(Arc::new(AtomicU64::new(0)));
    engine_with(
        dir,
        store,
        quarantine_after_expiries,
        challenges_per_minute,
        clock,
        nonces,
    )
}

/// A bench whose verifier requires an EK certificate chaining to a trusted root
/// (`require_ek_cert`; the other benches do not, as their terminals have none).
pub fn bench_requiring_ek_cert() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let clock = TestClock(Arc::new(AtomicU64::new(T0)));
    let nonces = NumberedNonces(Arc::new(AtomicU64::new(0)));
    let mut cfg = engine_config(0, 1000);
    cfg.require_ek_cert = true;
    bench_of(dir, store, cfg, clock, nonces)
}

fn engine_config(quarantine_after_expiries: u32, challenges_per_minute: u32) -> EngineConfig {
    EngineConfig {
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        nonce_ttl: 60,
        verdict_ttl: TTL,
        challenges_per_minute,
        verifier_id: "test".into(),
        quarantine_after_expiries,
        require_ek_cert: false,
    }
}

fn engine_with(
    dir: tempfile::TempDir,
    store: Store,
    quarantine_after_expiries: u32,
    challenges_per_minute: u32,
    clock: TestClock,
    nonces: NumberedNonces,
) -> Bench {
    let cfg = engine_config(quarantine_after_expiries, challenges_per_minute);
    bench_of(dir, store, cfg, clock, nonces)
}

fn bench_of(
    dir: tempfile::TempDir,
    store: Store,
    cfg: EngineConfig,
    clock: TestClock,
    nonces: NumberedNonces,
) -> Bench {
    let (tx, out) = mpsc::channel(1 << 16);
    let deps = EngineDeps {
        clock: Box::new(clock.clone()),
        nonces: Box::new(nonces.clone()),
    };
    let engine = Engine::with_deps(store, SigningKey::from_bytes(&[1; 32]), cfg, tx, deps);
    Bench {
        _dir: dir,
        engine,
        out,
        counter: 0,
        clock,
        nonces,
    }
}

/// A terminal of model `T` whose TPM and device key derive from `seed`, not yet enrolled.
pub fn terminal(id: &str, seed: u8) -> Terminal {
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

pub fn enrollment_request(t: &Terminal) -> Vec<u8> {
    wire::seal(
        &t.id,
        &t.tpm.enrollment_request("T", &t.key.verifying_key()),
        &t.key,
    )
}

pub fn setup() -> (Bench, Terminal) {
    setup_with_rate(1000)
}

/// As [`setup`], with the verifier allowing `challenges_per_minute` challenges per device.
pub fn setup_with_rate(challenges_per_minute: u32) -> (Bench, Terminal) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut b = engine_on(dir, store, 0, challenges_per_minute);
    let t = b.trusted_terminal("t1", 7);
    (b, t)
}

impl Bench {
    /// The bench with alert webhooks (outbox rows staged; nothing delivers them here).
    pub fn with_webhooks(mut self, hooks: vouch_verifier::webhook::Webhooks) -> Self {
        self.engine = self.engine.with_webhooks(hooks);
        self
    }

    /// Stops the engine of a [`setup`] bench, lets `edit` change its store file's tables
    /// directly (a corrupt row, say), and starts a new engine on it with the same clock,
    /// nonce sequence and freshness counter.
    pub fn restart_after_raw_edit(self, edit: impl FnOnce(&redb::WriteTransaction)) -> Bench {
        let Bench {
            _dir: dir,
            engine,
            out,
            counter,
            clock,
            nonces,
        } = self;
        drop(engine);
        drop(out);
        let path = dir.path().join("s.redb");
        {
            let db = redb::Database::open(&path).unwrap();
            let w = db.begin_write().unwrap();
            edit(&w);
            w.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let mut b = engine_with(dir, store, 0, 1000, clock, nonces);
        b.counter = counter;
        b
    }

    /// The store file of a [`setup`] bench.
    pub fn store_file(&self) -> std::path::PathBuf {
        self._dir.path().join("s.redb")
    }

    /// The engine's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Moves the engine's clock forward by `secs`.
    pub fn advance(&mut self, secs: u64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the engine's clock.
    pub fn set_now(&mut self, now: u64) {
        self.clock.0.store(now, Ordering::SeqCst);
    }

    /// Enrolls a terminal and makes it trusted under a policy captured from its first evidence.
    pub fn trusted_terminal(&mut self, id: &str, seed: u8) -> Terminal {
        let mut t = terminal(id, seed);
        self.engine.enroll(&enrollment_request(&t), &op()).unwrap();
        let n = self.challenge(&t);
        self.submit(self.evidence(&mut t, n));
        self.engine.capture_policy(id, op()).unwrap();
        assert_eq!(self.state_of(id), DeviceState::Trusted);
        t
    }

    pub fn drain(&mut self) -> Vec<Outgoing> {
        let mut v = Vec::new();
        while let Ok(m) = self.out.try_recv() {
            v.push(m);
        }
        v
    }

    /// Sends a hello and returns the nonce of the challenge it gets.
    pub fn challenge(&mut self, t: &Terminal) -> Nonce {
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
    pub fn hello(&mut self, t: &Terminal) -> Inbound {
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

    pub fn evidence(&self, t: &mut Terminal, nonce: Nonce) -> Inbound {
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

    pub fn submit(&mut self, msg: Inbound) {
        if let Some(job) = self.engine.prepare(msg) {
            self.engine.apply(vec![job]).unwrap();
        }
        self.drain();
    }

    pub fn state(&self) -> DeviceState {
        self.state_of("t1")
    }

    pub fn state_of(&self, id: &str) -> DeviceState {
        self.engine.device(id).unwrap().state
    }

    /// Submits fresh evidence answering a new challenge.
    pub fn attest(&mut self, t: &mut Terminal) {
        let n = self.challenge(t);
        self.submit(self.evidence(t, n));
    }

    /// The verdicts queued for `id` since the last drain, verified with the verifier's key, and
    /// whether each is retained; other messages are returned apart.
    pub fn verdicts(&mut self, id: &str) -> (Vec<(Verdict, bool)>, Vec<Outgoing>) {
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
    pub fn last_audit(&self) -> AuditView {
        let mut page = self.engine.audit(None, 1000).unwrap();
        page.entries.pop().unwrap()
    }

    pub fn audit_len(&self) -> usize {
        self.engine.audit(None, 1000).unwrap().entries.len()
    }

    pub fn rejected(&self, label: &str) -> u64 {
        self.engine
            .stats()
            .rejected
            .get(label)
            .copied()
            .unwrap_or(0)
    }
}
