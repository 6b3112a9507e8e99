//! `vouch-verifier run`: builds the real objects from the validated config and wires them
//! together: data directory and keys, store, engine, broker (managed Mosquitto or external) and
//! its password file, MQTT shell, worker pool and applier, nonce pruning, expiry sweep, HTTP API.
//! In the mini-redis style it takes what it serves on (bound listeners) and a shutdown future as
//! arguments, so a test starts it in-process on port 0, waits for `/v1/health` to say `ready`,
//! and ends it; on shutdown it joins every task and thread it started before returning.

use anyhow::{Context, Result};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
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

/// What `run` serves on, bound by the caller: `vouch-verifier run` binds what the config names
/// ([`Listeners::bind`]); a test binds port 0 and reads the address back before `run` starts.
///
/// The managed broker's MQTT port is not among them: Mosquitto is a separate process that binds
/// its own listeners (handing it a bound socket needs descriptor passing, which the workspace's
/// `unsafe_code = "forbid"` rules out, and Mosquitto has no socket activation), so its address
/// stays in [`ServerConfig`] and a test picks a free one there.
#[derive(Debug)]
pub struct Listeners {
    /// The operator HTTP API.
    pub http: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds the addresses `cfg` names.
    pub async fn bind(cfg: &ServerConfig) -> Result<Self> {
        let http = tokio::net::TcpListener::bind(cfg.http_listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", cfg.http_listen))?;
        Ok(Self { http })
    }
}

/// Runs the verifier until `shutdown` completes, then stops and joins everything it started:
/// HTTP API, MQTT shell, broker supervisor (which stops the managed Mosquitto), nonce pruner,
/// expiry sweep, worker and applier threads. When it returns, no task or thread of it is left,
/// the listeners are closed and the store is closed (another `run` can open the same data).
///
/// A task that ends before `shutdown` (the HTTP server failing, the MQTT shell losing its
/// workers) is an error: everything else is stopped and the error returned, rather than running
/// on half-dead.
pub async fn run(
    cfg: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Tasks::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let result = async {
        tokio::select! {
            started = start(&cfg, listeners, stopped, &mut tasks) => started?,
            // Startup waits for the managed broker; dropping it there kills that child
            // (`kill_on_drop`), and what it already spawned is joined below.
            _ = &mut shutdown => {
                tracing::info!("shutting down during startup");
                return Ok(());
            }
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                Ok(())
            }
            ended = tasks.first_to_end() => Err(ended),
        }
    }
    .await;
    let _ = stop.send(true);
    tasks.join().await;
    tracing::info!("verifier stopped");
    result
}

/// How long tasks get to end by themselves after shutdown (the broker supervisor's SIGTERM to
/// SIGKILL takes up to 5 s of it).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Everything `run` started, joined on the way out.
#[derive(Default)]
struct Tasks {
    /// Async tasks, each named for the error when it ends early.
    tasks: JoinSet<(&'static str, Result<()>)>,
    /// Worker and applier threads: they end once the MQTT shell (and with it their input) is gone.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Tasks {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<()>> + Send + 'static,
    ) {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Waits for the first task to end and says which one and why (none ends before shutdown
    /// unless something failed).
    async fn first_to_end(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => anyhow::anyhow!("the {name} stopped unexpectedly"),
            Some(Ok((name, Err(e)))) => e.context(format!("the {name} failed")),
            Some(Err(e)) => anyhow::anyhow!("a verifier task panicked: {e}"),
            // `start` always spawns the HTTP server, so the set is never empty here.
            None => std::future::pending().await,
        }
    }

    /// Waits for every task, then every thread (after `stop` was sent). Tasks still running
    /// after [`STOP_GRACE`] (an HTTP client that never finishes its request, say) are aborted
    /// and then joined, so shutdown cannot hang on them.
    async fn join(mut self) {
        let mut grace = std::pin::pin!(tokio::time::sleep(STOP_GRACE));
        let mut aborted = false;
        loop {
            tokio::select! {
                r = self.tasks.join_next() => match r {
                    None => break,
                    Some(Ok((_, Ok(())))) => {}
                    Some(Ok((name, Err(e)))) => {
                        tracing::warn!(error = %format!("{e:#}"), "the {name} ended with an error")
                    }
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Err(e)) => tracing::error!(error = %e, "a verifier task panicked"),
                },
                _ = &mut grace, if !aborted => {
                    tracing::warn!(
                        left = self.tasks.len(),
                        "tasks still running {} s after shutdown; aborting them",
                        STOP_GRACE.as_secs()
                    );
                    self.tasks.abort_all();
                    aborted = true;
                }
            }
        }
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a worker or applier thread panicked");
                }
            }
        });
        if let Err(e) = joined.await {
            tracing::error!(error = %e, "joining the worker threads failed");
        }
    }
}

/// Opens the store, prepares and starts the broker, and starts every task into `tasks`.
async fn start(
    cfg: &ServerConfig,
    listeners: Listeners,
    stopped: watch::Receiver<bool>,
    tasks: &mut Tasks,
) -> Result<()> {
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
    let store = Store::open_keyed(&cfg.data.join("vouch.redb"), key.clone())?;
    let broker_dir = cfg.data.join("broker");
    fs::ensure_private_dir(&broker_dir)?;
    let enrolled = enrolled_credentials(&store)?;

    let (out_tx, out_rx) = mpsc::channel(65_536);
    if cfg.engine.require_ek_cert && cfg.tpm_roots.is_empty() {
        tracing::warn!(
            "require_ek_cert is on but no tpm_roots are configured: no EK certificate can \
             chain, so every device is at best `warning`"
        );
    }
    let webhooks: crate::webhook::Webhooks = cfg.webhooks.clone().into();
    let engine = Arc::new(
        Engine::new(store, key, cfg.engine.clone(), out_tx)
            .with_punch_pressure_percent(cfg.punch_pressure_percent)
            .with_tpm_roots(cfg.tpm_roots.clone())
            .with_webhooks(webhooks.clone()),
    );
    // One counting pass for the terminal and punch gauges; from here on they move with each
    // committed change (engine/observe.rs), never by a scan per scrape.
    engine.seed_metrics()?;

    let managed = matches!(cfg.broker, BrokerChoice::Managed(_));
    let health = Arc::new(BrokerHealth::new(managed));
    let plan = crate::broker::setup::prepare(cfg, &broker_dir, enrolled, health.clone())?;
    let passwd = plan.passwd.clone();

    match plan.supervisor {
        Some(sup) => {
            let supervise = sup.start(stopped.clone()).await?;
            tasks.spawn("broker supervisor", async move {
                supervise.await;
                Ok(())
            });
        }
        None => {
            // Tell the external broker about enrollments made while the verifier was down.
            if let Err(e) = passwd.reload() {
                tracing::warn!(error = %format!("{e:#}"), "reloading the external broker failed");
            }
        }
    }

    // Served once the managed broker listens, as before readiness existed: whoever takes the
    // API's port answering for "the broker is up" stays right, and `ready` (in `/v1/health`)
    // then says when the verifier's subscriptions are in place.
    let http_addr = listeners.http.local_addr()?;
    let app = http::router(engine.clone(), token, health.clone(), Some(passwd));
    let http_stopped = stopped.clone();
    tasks.spawn("HTTP server", async move {
        http::serve(listeners.http, app, http_stopped)
            .await
            .context("serving HTTP")
    });

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
    spawn_pipeline(engine.clone(), receivers, &mut tasks.threads)?;
    tasks.spawn(
        "MQTT shell",
        mqtt::run(opts, senders, out_rx, health, stopped.clone()),
    );
    tasks.spawn(
        "nonce pruner",
        prune_nonces(engine.clone(), stopped.clone()),
    );
    // One delivery job for every webhook, every second (it sends what the outbox has due).
    let worker = crate::webhook::worker::Worker::new(webhooks, cfg.webhook_max_age_secs);
    let deliverer = engine.clone();
    tasks.spawn(
        "webhook delivery",
        every(Duration::from_secs(1), stopped.clone(), move || {
            let now = deliverer.now();
            if let Err(e) = worker.pass(deliverer.store(), deliverer.metrics(), now) {
                tracing::warn!(error = %format!("{e:#}"), "webhook delivery pass failed");
            }
        }),
    );
    let grace = Duration::from_secs(cfg.engine.verdict_ttl);
    tasks.spawn(
        "verdict expiry sweep",
        sweep_expired_verdicts(engine, grace, EXPIRY_SWEEP_EVERY, stopped),
    );

    tracing::info!(
        data = %cfg.data.display(),
        broker = %format!("{}:{}", broker_addr.host, broker_addr.port),
        http = %http_addr,
        %fingerprint,
        tpm_roots = cfg.tpm_roots.len(),
        require_ek_cert = cfg.engine.require_ek_cert,
        "verifier running"
    );
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
/// results in batches. No thread or task per device. The workers end when their shard's sender
/// (held by the MQTT shell) is gone and they have drained it; the applier ends after the last
/// worker, once it has applied what they handed it.
/// The handles go into `threads` as each thread starts, so even a failed start joins them.
fn spawn_pipeline(
    engine: Arc<Engine>,
    shards: Vec<mpsc::Receiver<Inbound>>,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<()> {
    let (job_tx, job_rx) = std_mpsc::sync_channel::<Job>(4096);
    for (i, mut inbound) in shards.into_iter().enumerate() {
        let engine = engine.clone();
        let job_tx = job_tx.clone();
        let worker = std::thread::Builder::new()
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
        threads.push(worker);
    }
    drop(job_tx);
    let applier = std::thread::Builder::new()
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
    threads.push(applier);
    Ok(())
}

/// Deletes expired nonces every minute until `shutdown` flips.
async fn prune_nonces(engine: Arc<Engine>, shutdown: watch::Receiver<bool>) -> Result<()> {
    every(Duration::from_secs(60), shutdown, move || {
        match engine.prune(engine.now()) {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "pruned expired nonces"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning nonces failed"),
        }
    })
    .await
}

/// Runs the blocking `job` (which reads the engine's clock) every `period` (a missed tick is delayed,
/// not bunched) on tokio's blocking pool, until `shutdown` flips. A run in progress is waited
/// for, so nothing of it is left when this returns.
async fn every(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    job: impl Fn() + Send + Sync + 'static,
) -> Result<()> {
    let job = Arc::new(job);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = tick.tick() => {
                let job = job.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || job()).await {
                    anyhow::bail!("a periodic job panicked: {e}");
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
async fn sweep_expired_verdicts(
    engine: Arc<Engine>,
    grace: Duration,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    tokio::select! {
        _ = shutdown.changed() => return Ok(()),
        _ = tokio::time::sleep(grace) => {}
    }
    every(period, shutdown, move || {
        match engine.sweep_expired_verdicts(engine.now()) {
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
    .await
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed by this call (before
/// `run` starts), so a signal during startup is not lost or fatal.
pub fn shutdown_on_signals() -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
