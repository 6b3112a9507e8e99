//! The verifier engine: the single place where messages and operator actions meet the store and
//! the protocol core. It is I/O-light by design: MQTT and HTTP shells hand it bytes and typed
//! requests; it returns rejections, commits state changes, and queues signed messages for
//! publication only after the commit.
//!
//! Pipeline for MQTT messages (see ARCHITECTURE.md):
//! - `prepare` (worker threads, many at once): topic, size, envelope, enrollment lookup,
//!   signature, nonce pre-check, and the expensive stateless evidence checks.
//! - `apply` (one applier thread, batches): the authoritative nonce check, clock and policy
//!   appraisal, state transitions, audit; one durable commit per batch, then publication.

mod expiry;
mod inbound;
mod operator;
mod stats;
mod views;

use ed25519_dalek::SigningKey;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::mpsc;
use vouch_protocol::ids::{DeviceId, Nonce, Topic};
use vouch_protocol::wire::{self, Message};

pub use expiry::{EXPIRY_BATCH, EXPIRY_PER_SWEEP, ExpirySweep};
pub use inbound::Job;
pub use stats::Stats;

use crate::mqtt::Outgoing;
use crate::store::Store;

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
}

/// Challenges a device may have open at once; issuing more retires the oldest.
pub const MAX_OUTSTANDING: usize = 4;

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

pub struct Engine {
    store: Store,
    key: SigningKey,
    cfg: EngineConfig,
    stats: Stats,
    out: mpsc::Sender<Outgoing>,
    /// Per-device challenge counts in the current minute (bounded by enrolled devices).
    rate: Mutex<HashMap<DeviceId, (u64, u32)>>,
    /// Nonces of evidence between the worker and the applier (bounded by the job queue).
    in_flight: Mutex<HashSet<Nonce>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        store: Store,
        key: SigningKey,
        cfg: EngineConfig,
        out: mpsc::Sender<Outgoing>,
    ) -> Self {
        Self {
            store,
            key,
            cfg,
            stats: Stats::default(),
            out,
            rate: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    pub fn verifier_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    pub fn verifier_key_pem(&self) -> String {
        vouch_common::keys::public_pem(&self.key.verifying_key())
    }

    /// Whether the store's last write committed (see `Store::health`), for `/v1/health`.
    pub fn store_health(&self) -> crate::store::StoreHealth {
        self.store.health()
    }

    pub fn stats(&self) -> crate::api::StatsView {
        self.stats.view()
    }

    /// Signs `msg` for `device` and builds its outgoing MQTT message.
    fn outgoing<T: Message>(&self, device: &DeviceId, msg: &T, retain: bool) -> Outgoing {
        Outgoing {
            topic: Topic::new(device.clone(), T::KIND).to_string(),
            payload: wire::seal(device, msg, &self.key),
            retain,
        }
    }

    /// Queues messages for publication. Called only after the commit they depend on. A full
    /// queue (broker unreachable for long) drops the message with a warning: state is already
    /// durable, and the retained verdict or the next challenge carries it to the agent.
    fn publish(&self, msgs: Vec<Outgoing>) {
        for m in msgs {
            if let Err(e) = self.out.try_send(m) {
                tracing::warn!(error = %e, "outgoing MQTT queue full; message dropped");
            }
        }
    }

    /// Whether `device` may get another challenge now; counts it if so.
    fn allow_challenge(&self, device: &DeviceId, now: u64) -> bool {
        let minute = now / 60;
        // A poisoned lock means a worker panicked mid-update: refuse rather than let floods in.
        let Ok(mut rate) = self.rate.lock() else {
            return false;
        };
        let entry = rate.entry(device.clone()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= self.cfg.challenges_per_minute
    }

    /// Marks evidence for `nonce` as on its way to the applier; a second copy is a replay.
    fn claim_in_flight(&self, nonce: Nonce) -> Result<(), inbound::Rejection> {
        let mut set = self
            .in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("in-flight nonce set poisoned"))?;
        if set.insert(nonce) {
            Ok(())
        } else {
            Err(vouch_protocol::nonce::NonceRejection::Replay.into())
        }
    }

    fn release_in_flight(&self, nonces: &[Nonce]) {
        if let Ok(mut set) = self.in_flight.lock() {
            for n in nonces {
                set.remove(n);
            }
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
