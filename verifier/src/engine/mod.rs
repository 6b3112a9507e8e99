//! The verifier engine: the I/O glue between the MQTT and HTTP shells, the store and the pure
//! verifier core (`vouch_protocol::verifier`). The core decides; the engine loads what a decision
//! needs, calls the core with the time and a nonce source, writes the effects it returns in one
//! write transaction, and queues the signed messages for publication only after the commit.
//!
//! Pipeline for MQTT messages (see ARCHITECTURE.md):
//! - `prepare` (worker threads, many at once): topic, size, envelope, enrollment lookup,
//!   signature, nonce pre-check, and the expensive stateless evidence checks.
//! - `apply` (one applier thread, batches): the core's decisions on each job, one durable commit
//!   per batch, then publication.
//!
//! The clock and the nonce source are injected ([`EngineDeps`]): production uses the system
//! clock and the OS RNG; tests drive nonce expiry, verdict expiry and rate limits with their own.

mod compare;
mod ear;
mod expiry;
mod governing;
mod inbound;
mod observe;
mod operator;
mod punch_export;
mod punches;
mod stats;
pub mod timeline;
mod tokens;
mod vendors;
mod views;

use ed25519_dalek::SigningKey;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::ids::{DeviceId, Nonce, Topic};
use vouch_protocol::messages::Cmd;
use vouch_protocol::verifier::{
    Effects, InFlight, MAX_EVENTLOG, NonceSource, NonceUnavailable, NonceWrite, Outbound,
    RateLimiter, Rules, VerifierCore,
};
use vouch_protocol::wire::{self, Message};

pub use expiry::{EXPIRY_BATCH, EXPIRY_PER_SWEEP, ExpirySweep};
pub use inbound::{Job, Refusal};
pub use operator::{DEVICE_SCAN_BUDGET, DeviceFilter};
pub use punch_export::{MAX_PUNCH_PAGE, MAX_REVIEW};
pub use punches::{Buffer, PunchJob, PunchWork};
pub use stats::Stats;
pub use vendors::ImportedManifest;

use crate::mqtt::Outgoing;
use crate::store::{DeviceRecord, Store, Writer};

/// Tunables, validated by the config layer.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest accepted MQTT payload.
    pub max_payload: usize,
    /// Lifetime of a challenge nonce.
    pub nonce_ttl: u64,
    /// How long a verdict may be relied on.
    pub verdict_ttl: u64,
    /// Challenges one device may obtain per minute (hello/status floods are refused past it).
    pub challenges_per_minute: u32,
    /// `ear.verifier-id` of the verdicts.
    pub verifier_id: String,
    /// Consecutive verdict periods without fresh evidence after which an unresponsive device is
    /// quarantined (0 = never).
    pub quarantine_after_expiries: u32,
    /// A device without an EK certificate chaining to a trusted root is at best `warning`
    /// (`Rules::require_ek_cert`).
    pub require_ek_cert: bool,
}

impl EngineConfig {
    /// The rules the verifier core decides with.
    pub fn rules(&self) -> Rules {
        Rules {
            nonce_ttl: self.nonce_ttl,
            verdict_ttl: self.verdict_ttl,
            verifier_id: self.verifier_id.clone(),
            quarantine_after_expiries: self.quarantine_after_expiries,
            max_eventlog: MAX_EVENTLOG,
            require_ek_cert: self.require_ek_cert,
        }
    }
}

/// Default threshold of a terminal's punch buffer pressure, in percent of its capacity.
pub const DEFAULT_PUNCH_PRESSURE_PERCENT: u8 = 80;

/// How long an expired nonce's record is kept, so a late replay is reported as such.
pub const NONCE_GRACE: u64 = 3600;

/// Failures of an operator request, mapped to HTTP statuses by the HTTP shell.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The time, in Unix seconds, as the engine sees it.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        vouch_common::time::now_unix()
    }
}

/// Challenge nonces from the operating system's RNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsNonces;

impl NonceSource for OsNonces {
    fn draw(&mut self) -> Result<Nonce, NonceUnavailable> {
        let bytes = vouch_common::keys::random_bytes::<32>()
            .map_err(|e| NonceUnavailable(e.to_string()))?;
        Ok(Nonce::from_bytes(*bytes))
    }
}

/// What the engine takes from its surroundings besides the store and the key.
pub struct EngineDeps {
    pub clock: Box<dyn Clock>,
    pub nonces: Box<dyn NonceSource + Send>,
}

impl EngineDeps {
    /// The system clock and the OS RNG.
    pub fn system() -> Self {
        Self {
            clock: Box::new(SystemClock),
            nonces: Box::new(OsNonces),
        }
    }
}

impl std::fmt::Debug for EngineDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineDeps").finish_non_exhaustive()
    }
}

pub struct Engine {
    store: Store,
    key: SigningKey,
    cfg: EngineConfig,
    core: VerifierCore,
    clock: Box<dyn Clock>,
    nonces: Mutex<Box<dyn NonceSource + Send>>,
    stats: Stats,
    out: mpsc::Sender<Outgoing>,
    /// Per-device challenge counts in the current minute (bounded by enrolled devices).
    rate: Mutex<RateLimiter>,
    /// Nonces of evidence between the worker and the applier (bounded by the job queue).
    in_flight: Mutex<InFlight>,
    /// Pending punches on a terminal, in percent of its buffer, above which it is flagged.
    punch_pressure_percent: u8,
    /// The TPM manufacturer CAs EK certificates are checked against at enrollment
    /// (`with_tpm_roots`, engine/vendors.rs).
    tpm_roots: vouch_protocol::ekcert::TrustAnchors,
    /// Alert webhooks: events are staged in the outbox in the transaction that raises them.
    webhooks: crate::webhook::Webhooks,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on the system clock and the OS RNG.
    pub fn new(
        store: Store,
        key: SigningKey,
        cfg: EngineConfig,
        out: mpsc::Sender<Outgoing>,
    ) -> Self {
        Self::with_deps(store, key, cfg, out, EngineDeps::system())
    }

    /// An engine on the given clock and nonce source.
    pub fn with_deps(
        store: Store,
        key: SigningKey,
        cfg: EngineConfig,
        out: mpsc::Sender<Outgoing>,
        deps: EngineDeps,
    ) -> Self {
        Self {
            store,
            key,
            core: VerifierCore::new(cfg.rules()),
            rate: Mutex::new(RateLimiter::new(cfg.challenges_per_minute)),
            cfg,
            clock: deps.clock,
            nonces: Mutex::new(deps.nonces),
            stats: Stats::default(),
            out,
            in_flight: Mutex::new(InFlight::default()),
            punch_pressure_percent: DEFAULT_PUNCH_PRESSURE_PERCENT,
            tpm_roots: Default::default(),
            webhooks: std::sync::Arc::from([]),
        }
    }

    /// Flags a terminal whose unacknowledged punches exceed `percent` of its buffer (default
    /// [`DEFAULT_PUNCH_PRESSURE_PERCENT`]; `vouch-verifier run --punch-pressure-percent`).
    pub fn with_punch_pressure_percent(mut self, percent: u8) -> Self {
        self.punch_pressure_percent = percent;
        self
    }

    /// Sends alerts to `hooks` (through the durable outbox; `webhook::worker` delivers).
    pub fn with_webhooks(mut self, hooks: crate::webhook::Webhooks) -> Self {
        self.webhooks = hooks;
        self
    }

    pub fn verifier_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    pub fn verifier_key_pem(&self) -> String {
        vouch_common::keys::public_pem(&self.key.verifying_key())
    }

    /// The engine's store, for reads and for tools and tests that seed records directly (a
    /// write through it bypasses the core: no audit, no re-evaluation, nothing published).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the store's last write committed (see `Store::health`), for `/v1/health`.
    pub fn store_health(&self) -> crate::store::StoreHealth {
        self.store.health()
    }

    pub fn stats(&self) -> crate::api::StatsView {
        self.stats.view()
    }

    /// The metrics and timeline of this process (`/metrics`, `/api/timeline`).
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::Metrics> {
        &self.stats.metrics
    }

    /// The engine's clock, Unix seconds.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The nonce source, for one core call. A panic while drawing leaves no half-updated state
    /// behind (a draw is one call), so a poisoned lock is taken over.
    fn nonces(&self) -> MutexGuard<'_, Box<dyn NonceSource + Send>> {
        self.nonces.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signs `msg` for `device` and builds its outgoing MQTT message.
    fn outgoing<T: Message>(&self, device: &DeviceId, msg: &T, retain: bool) -> Outgoing {
        Outgoing {
            topic: Topic::new(device.clone(), T::KIND).to_string(),
            payload: wire::seal(device, msg, &self.key),
            retain,
        }
    }

    /// Writes the core's `effects` for `device` into `w`: numbers and signs its messages (the
    /// signed verdict becomes the record's `last_verdict`), and returns them for publication
    /// after the commit, with the device record as stored (`None` when it did not change).
    fn write_effects(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        effects: Effects,
    ) -> anyhow::Result<(Vec<Outgoing>, Option<DeviceRecord>)> {
        let Effects {
            device: mut rec,
            nonces,
            eventlog,
            verdict_expiry,
            audit,
            messages,
        } = effects;
        for n in nonces {
            match n {
                NonceWrite::Put(nonce, issued) => w.put_nonce(&nonce, &issued)?,
                NonceWrite::Remove(nonce) => w.remove_nonce(&nonce)?,
            }
        }
        if let Some(log) = eventlog {
            w.put_eventlog(device, &log)?;
        }
        for a in &audit {
            tracing::info!(device = %device, action = a.action.as_str(), actor = %a.actor, reason = %a.reason, "state change");
            w.append_audit(a)?;
        }
        let mut out = Vec::with_capacity(messages.len());
        let mut signed_verdict = None;
        for m in messages {
            match m {
                Outbound::Challenge(c) => out.push(self.outgoing(device, &c, false)),
                Outbound::Verdict(draft) => {
                    let v = draft.sequenced(w.next_seq()?);
                    let msg = self.outgoing(device, &v, true);
                    signed_verdict = Some(Bytes(msg.payload.clone()));
                    out.push(msg);
                }
                Outbound::Cmd { issued_at, action } => {
                    let cmd = Cmd {
                        seq: w.next_seq()?,
                        issued_at,
                        action,
                    };
                    out.push(self.outgoing(device, &cmd, false));
                }
            }
        }
        if let Some(m) = verdict_expiry {
            w.index_verdict_expiry(device, m.from, m.to)?;
        }
        self.stage_alerts(w, device, rec.as_ref(), &audit)?;
        if let Some(rec) = rec.as_mut() {
            if signed_verdict.is_some() {
                rec.last_verdict = signed_verdict;
            }
            self.observe_change(w, rec, &audit)?;
            w.put_device(rec)?;
        }
        Ok((out, rec))
    }

    /// Queues messages for publication. Called only after the commit they depend on. A full
    /// queue (broker unreachable for long) drops the message with a warning: state is already
    /// durable, and the retained verdict or the next challenge carries it to the agent.
    fn publish(&self, msgs: Vec<Outgoing>) {
        use tokio::sync::mpsc::error::TrySendError;
        for m in msgs {
            match self.out.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) => {
                    tracing::warn!(topic = %m.topic, "outgoing MQTT queue full; message dropped");
                }
                // The MQTT shell is gone: the verifier is shutting down. What was committed is
                // durable, and the next start's challenges, verdicts and acks carry it.
                Err(TrySendError::Closed(m)) => {
                    tracing::debug!(topic = %m.topic, "MQTT shell stopped; message not published");
                }
            }
        }
    }

    /// Marks evidence for `nonce` as on its way to the applier; a second copy is a replay.
    fn claim_in_flight(&self, nonce: Nonce) -> Result<(), Refusal> {
        let mut set = self
            .in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("in-flight nonce set poisoned"))?;
        Ok(set.claim(nonce)?)
    }

    fn release_in_flight(&self, nonces: &[Nonce]) {
        if let Ok(mut set) = self.in_flight.lock() {
            set.release(nonces);
        }
    }

    /// Removes nonce records past their expiry plus grace; run periodically.
    pub fn prune(&self, now: u64) -> anyhow::Result<usize> {
        let mut w = self.store.write()?;
        let n = w.prune_nonces(now.saturating_sub(NONCE_GRACE))?;
        w.commit()?;
        Ok(n)
    }
}
