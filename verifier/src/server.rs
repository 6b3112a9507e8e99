//! `vouch-verifier run`: builds the real objects from the validated config and wires them
//! together: data directory and keys, store, engine, broker (managed Mosquitto or external) and
//! its password file, MQTT shell, worker pool and applier, nonce pruning, HTTP API. Takes a
//! shutdown signal so tests and the demo can start it in-process.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use vouch_common::{fs, keys};

use crate::broker::BrokerHealth;
use crate::config::{BrokerChoice, ServerConfig};
use crate::engine::{Engine, Job};
use crate::http;
use crate::mqtt::{self, Inbound};
use crate::store::Store;

/// Jobs the applier takes into one write transaction at most.
const MAX_BATCH: usize = 512;

/// Messages waiting per worker.
const SHARD_QUEUE: usize = 64;

/// Reads the admin token, creating a random one (mode 0600) on first start.
pub fn load_or_create_token(path: &Path) -> Result<String> {
    if let Some(bytes) = fs::read_optional(path, 4096)? {
        let t = String::from_utf8_lossy(&bytes).trim().to_owned();
        if t.len() >= 32 {
            return Ok(t);
        }
        anyhow::bail!(
            "{} holds a token shorter than 32 characters",
            path.display()
        );
    }
    let token = hex::encode(*keys::random_bytes::<32>()?);
    fs::write_atomic(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// Runs until `shutdown` flips to true.
pub async fn run(cfg: ServerConfig, shutdown: watch::Receiver<bool>) -> Result<()> {
    fs::ensure_private_dir(&cfg.data)?;
    let (key, created) = keys::load_or_create(
        &cfg.data.join("verifier.key"),
        Some(&cfg.data.join("verifier.pub")),
    )?;
    if created {
        tracing::info!(path = %cfg.data.join("verifier.pub").display(), "created verifier key");
    }
    let fingerprint = keys::fingerprint(&key.verifying_key());
    let token = load_or_create_token(&cfg.data.join("admin.token"))?;
    let store = Store::open(&cfg.data.join("vouch.redb"))?;
    let broker_dir = cfg.data.join("broker");
    fs::ensure_private_dir(&broker_dir)?;
    let enrolled = enrolled_credentials(&store)?;

    let (out_tx, out_rx) = mpsc::channel(65_536);
    let engine = Arc::new(Engine::new(store, key, cfg.engine.clone(), out_tx));

    let http_listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", cfg.http_listen))?;
    let managed = matches!(cfg.broker, BrokerChoice::Managed(_));
    let health = Arc::new(BrokerHealth::new(managed));
    let plan = crate::broker::setup::prepare(&cfg, &broker_dir, enrolled, health.clone())?;
    let passwd = plan.passwd.clone();
    let supervisor_task = match plan.supervisor {
        Some(sup) => Some(sup.start(shutdown.clone()).await?),
        None => {
            // Tell the external broker about enrollments made while the verifier was down.
            if let Err(e) = passwd.reload() {
                tracing::warn!(error = %format!("{e:#}"), "reloading the external broker failed");
            }
            None
        }
    };

    // One bounded queue per worker: at most SHARD_QUEUE payloads (each at most the broker's
    // packet limit, the protocol limit plus header room) wait per worker.
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..cfg.workers)
        .map(|_| mpsc::channel::<Inbound>(SHARD_QUEUE))
        .unzip();
    let opts = mqtt::options(
        &plan.addr,
        &plan.user,
        &plan.password,
        plan.tls,
        cfg.engine.max_payload,
    );
    drop(plan.password);
    let broker_addr = plan.addr;
    let mqtt_task = tokio::spawn(mqtt::run(
        opts,
        senders,
        out_rx,
        health.clone(),
        shutdown.clone(),
    ));
    spawn_pipeline(engine.clone(), receivers)?;
    spawn_pruner(engine.clone(), shutdown.clone());
    let grace = Duration::from_secs(cfg.engine.verdict_ttl);
    spawn_expiry_sweep(engine.clone(), grace, EXPIRY_SWEEP_EVERY, shutdown.clone());

    tracing::info!(
        data = %cfg.data.display(),
        broker = %format!("{}:{}", broker_addr.host, broker_addr.port),
        http = %cfg.http_listen,
        %fingerprint,
        "verifier running"
    );
    let app = http::router(engine, token, health, Some(passwd));
    http::serve(http_listener, app, shutdown).await?;
    let _ = mqtt_task.await;
    if let Some(t) = supervisor_task {
        let _ = t.await;
    }
    Ok(())
}

/// `(device id, password hash)` of every enrolled device that has an MQTT identity.
fn enrolled_credentials(store: &Store) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let reader = store.read()?;
    let mut after: Option<String> = None;
    loop {
        let (page, next) = reader.devices(after.as_deref(), 1000)?;
        for rec in page {
            let Some(hash) = &rec.enrollment.mqtt_password_hash else {
                continue;
            };
            // Enrolled under an older, looser hash check: leaving it out keeps that terminal off
            // the broker (it must re-enroll) instead of refusing to start for everyone.
            if let Err(e) = vouch_protocol::enrollment::check_mqtt_password_hash(hash) {
                tracing::warn!(device_id = %rec.id(), error = %e,
                    "not giving this device a broker identity: its MQTT password hash is refused");
                continue;
            }
            out.push((rec.id().to_string(), hash.clone()));
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Worker threads run `prepare` (signatures, quote crypto) off the MQTT event loop, each on its
/// own shard of devices so a device's messages keep their order; one applier thread commits their
/// results in batches. No thread or task per device.
fn spawn_pipeline(engine: Arc<Engine>, shards: Vec<mpsc::Receiver<Inbound>>) -> Result<()> {
    let (job_tx, job_rx) = std_mpsc::sync_channel::<Job>(4096);
    for (i, mut inbound) in shards.into_iter().enumerate() {
        let engine = engine.clone();
        let job_tx = job_tx.clone();
        std::thread::Builder::new()
            .name(format!("verify-{i}"))
            .spawn(move || {
                while let Some(msg) = inbound.blocking_recv() {
                    if let Some(job) = engine.prepare(msg)
                        && job_tx.send(job).is_err()
                    {
                        break;
                    }
                }
            })
            .context("starting a worker thread")?;
    }
    drop(job_tx);
    std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            while let Ok(first) = job_rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match job_rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                if let Err(e) = engine.apply(batch) {
                    tracing::error!(error = %format!("{e:#}"), "applying a batch failed; its messages are dropped");
                }
            }
        })
        .context("starting the applier thread")?;
    Ok(())
}

fn spawn_pruner(engine: Arc<Engine>, shutdown: watch::Receiver<bool>) {
    tokio::spawn(every(
        Duration::from_secs(60),
        shutdown,
        move |now| match engine.prune(now) {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "pruned expired nonces"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning nonces failed"),
        },
    ));
}

/// Runs the blocking `job` with the current Unix time every `period` (a missed tick is delayed,
/// not bunched) on tokio's blocking pool, until `shutdown` flips.
async fn every(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    job: impl Fn(u64) + Send + Sync + 'static,
) {
    let job = Arc::new(job);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                let job = job.clone();
                let now = vouch_common::time::now_unix();
                if let Err(e) = tokio::task::spawn_blocking(move || job(now)).await {
                    tracing::error!(error = %e, "a periodic task panicked");
                }
            }
        }
    }
}

/// How often the verdict expiry sweep runs. An idle sweep is one read of the expiry index.
const EXPIRY_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Every `period`, turns verdicts that expired without fresh evidence into the state the core
/// decides (unresponsive, renewed verdicts, quarantine after N expiries); see `engine::expiry`.
/// First waits `grace` (one verdict lifetime; opening the store indexed the verdicts of a store
/// older than the expiry index): verdicts that expired while the verifier was down say nothing
/// about the terminals, which get one period to attest to the running verifier.
fn spawn_expiry_sweep(
    engine: Arc<Engine>,
    grace: Duration,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(grace) => {}
        }
        every(period, shutdown, move |now| {
            match engine.sweep_expired_verdicts(now) {
                Ok(s) if s.examined > 0 => tracing::debug!(
                    examined = s.examined,
                    renewed = s.renewed,
                    "swept expired verdicts"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "sweeping expired verdicts failed")
                }
            }
        })
        .await;
    });
}

/// A shutdown channel flipped by SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    Ok(rx)
}
