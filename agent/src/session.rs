//! The agent's MQTT session, shared by the daemon (`run`) and the one-shot (`attest --once`):
//! connect, subscribe to this device's verifier topics, say hello, answer challenges with
//! evidence produced on a blocking thread, persist what the verifier says, and reconnect with
//! backoff. The decisions come from the protocol core (`AgentCore`); this loop moves bytes.

use anyhow::{Context, Result, anyhow};
use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vouch_common::time::now_unix;
use vouch_protocol::agent::{AgentAction, AgentCore};
use vouch_protocol::ids::{Nonce, Topic};
use vouch_protocol::messages::{Challenge, Evidence, Hello};
use vouch_protocol::verdict::Verdict;
use vouch_protocol::wire::{self, Message};

use crate::attester::Attester;
use crate::config::RunConfig;
use crate::freshness;
use crate::punch::upload::PunchService;
use crate::state::StateDir;
use crate::tpm::TpmConnector;

/// How soon a subscription that found the request channel full is queued again.
const SUBSCRIBE_RETRY: Duration = Duration::from_millis(200);

/// Daemon or one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Once,
}

pub struct Session {
    pub mode: Mode,
    /// The terminal's MQTT password (its user name is the device id).
    pub mqtt_password: zeroize::Zeroizing<String>,
    pub cfg: RunConfig,
    pub attester: Arc<Attester>,
    pub key: SigningKey,
    pub state: StateDir,
    pub core: AgentCore,
    /// Punch intake and mirroring: the daemon only.
    pub punch: Option<PunchService>,
    /// Between a ConnAck and the next connection error. rumqttc drains its request channel only
    /// while connected, so nothing periodic is queued outside this: hours of statuses queued
    /// during an outage would fill the channel and leave no room for the subscription.
    online: bool,
    /// Connected, but the subscription could not be queued yet (retried until it is).
    subscribe_pending: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mode", &self.mode)
            .field("device", self.core.device())
            .finish_non_exhaustive()
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum Ended {
    /// SIGTERM or SIGINT (or the shutdown given to [`Session::run_until`]).
    Signal,
    /// `attest --once` got the verdict for its evidence.
    Verdict(Box<Verdict>),
}

fn random_request_id() -> u64 {
    let bytes = vouch_common::keys::random_bytes::<8>()
        .map(|b| *b)
        .unwrap_or([1; 8]);
    u64::from_le_bytes(bytes).max(1)
}

impl Session {
    /// The session of the enrolled terminal whose state directory is `state`, on the TPM `tpm`
    /// reaches: its identity, device key, the verifier's last view and the answered challenges
    /// come from the state directory. The caller holds the session lock
    /// ([`crate::commands::lock_session`]) where another process could share the directory.
    pub fn open(
        state: StateDir,
        tpm: Arc<dyn TpmConnector>,
        mqtt_password: zeroize::Zeroizing<String>,
        cfg: RunConfig,
        mode: Mode,
    ) -> Result<Self> {
        let identity = state.require_identity()?;
        let key = state.require_device_key()?;
        let view = state.view(&cfg.verifier_key)?;
        let core = AgentCore::new(
            identity.device_id.clone(),
            cfg.verifier_key,
            view,
            mode == Mode::Daemon,
        )
        .with_answered(freshness::load_answered(&state, now_unix())?);
        // The daemon holds the punch buffer and serves the intake socket, broker up or not.
        let punch = match mode {
            Mode::Daemon => Some(PunchService::open(
                &crate::punch::buffer_path(state.root()),
                identity.device_id.clone(),
                &cfg.punch,
            )?),
            Mode::Once => None,
        };
        let attester = Arc::new(Attester {
            tpm,
            state: state.clone(),
            identity,
            firmware: cfg.firmware.clone(),
            firmware_dir: None,
            firmware_pcr: cfg.firmware_pcr,
            eventlog: cfg.eventlog.clone(),
            report: cfg.report.clone(),
        });
        Ok(Session {
            mode,
            mqtt_password,
            cfg,
            attester,
            key,
            state,
            core,
            punch,
            online: false,
            subscribe_pending: false,
        })
    }

    /// Reads relative firmware paths from `dir` instead of the working directory (see
    /// [`Attester::firmware_dir`]).
    pub fn with_firmware_dir(mut self, dir: PathBuf) -> Self {
        Arc::make_mut(&mut self.attester).firmware_dir = Some(dir);
        self
    }

    fn options(&self) -> MqttOptions {
        // Client id = user name = device id: the broker (`use_username_as_clientid`) gives each
        // terminal exactly one identity, so nobody else can take its id. The daemon and
        // `attest --once` therefore share one persistent session (the state-directory lock keeps
        // them from running at once): commands sent while the terminal was offline are delivered
        // when either reconnects, and a one-shot round does not wipe the daemon's session.
        let id = self.core.device().as_str().to_owned();
        let mut o = MqttOptions::new(
            id.clone(),
            self.cfg.broker.host.clone(),
            self.cfg.broker.port,
        );
        o.set_credentials(id, self.mqtt_password.as_str());
        if let Some(tls) = &self.cfg.mqtt_tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(false);
        let limit = 2 * wire::DEFAULT_MAX_PAYLOAD + 64 * 1024;
        o.set_max_packet_size(limit, limit);
        o
    }

    /// Seals and queues `msg`; false (after logging) when the request channel is full.
    fn publish<T: Message>(&self, client: &AsyncClient, msg: &T) -> bool {
        let topic = Topic::new(self.core.device().clone(), T::KIND).to_string();
        let bytes = wire::seal(self.core.device(), msg, &self.key);
        // try_publish: awaiting here would stop the event loop that drains the request queue.
        match client.try_publish(topic, QoS::AtLeastOnce, false, bytes) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(kind = %T::KIND, error = %e, "could not queue message");
                false
            }
        }
    }

    /// Queues the subscriptions of a fresh connection; on a full request channel they stay
    /// pending and the session loop tries again shortly.
    fn subscribe(&mut self, client: &AsyncClient) {
        let subs = self
            .core
            .subscriptions()
            .into_iter()
            .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
        match client.try_subscribe_many(subs) {
            Ok(()) => self.subscribe_pending = false,
            Err(e) => {
                self.subscribe_pending = true;
                tracing::warn!(error = %e, "could not queue subscriptions; retrying");
            }
        }
    }

    /// The counter for the next hello or status, durable before it is returned; `None` (after
    /// logging) when it cannot be persisted, and then nothing is sent.
    fn counter(&self) -> Option<u64> {
        match freshness::next_counter(&self.state, freshness::now_micros()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "not asking for a challenge");
                None
            }
        }
    }

    fn hello(&mut self, client: &AsyncClient) {
        if !self.online {
            return;
        }
        let Some(counter) = self.counter() else {
            return;
        };
        let request = random_request_id();
        self.core.open_request(request);
        let reset_count = self
            .state
            .firmware_log()
            .map(|l| l.reset_count)
            .unwrap_or(0);
        let hello = Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            model: self.attester.identity.model.clone(),
            reset_count,
            request,
            counter,
        };
        if self.publish(client, &hello) {
            tracing::info!(device = %self.core.device(), "sent hello");
        }
    }

    fn status(&mut self, client: &AsyncClient) {
        // The next ConnAck's hello asks for a challenge anyway.
        if !self.online {
            return;
        }
        let Some(counter) = self.counter() else {
            return;
        };
        let request = random_request_id();
        self.core.open_request(request);
        let status = self.core.status(request, counter);
        let _ = self.publish(client, &status);
    }

    /// Runs until SIGTERM or SIGINT, or (once) until the verdict for this round arrives or the
    /// timeout.
    pub async fn run(self) -> Result<Ended> {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let signalled = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        self.run_until(signalled).await
    }

    /// [`Session::run`], ended by `shutdown` completing instead of a signal (it then says
    /// goodbye to the broker and returns [`Ended::Signal`]). The demo's in-process terminals
    /// stop this way.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<Ended> {
        tokio::pin!(shutdown);
        let (client, mut eventloop) =
            AsyncClient::new(self.options(), 64 + PunchService::channel_room());
        // Aborted when this function returns, so the socket is served exactly while it runs.
        let _intake = match self.punch.as_mut() {
            Some(p) => Some(AbortOnDrop(p.start_intake()?)),
            None => None,
        };
        let mut punch_last = self.punch.as_mut().and_then(PunchService::take_last);
        let (work_tx, mut work_rx) = mpsc::channel::<(Nonce, Result<Evidence>)>(4);
        let mut answered: Option<Nonce> = None;
        let mut tick =
            tokio::time::interval_at(Instant::now() + self.cfg.interval, self.cfg.interval);
        let deadline = Instant::now() + self.cfg.timeout;
        let mut backoff = Duration::from_millis(250);
        loop {
            let punch_wake = self.punch.as_ref().and_then(PunchService::wake_at);
            tokio::select! {
                () = &mut shutdown => return self.stop(&client, &mut eventloop).await,
                seq = last_committed(&mut punch_last) => {
                    if let Some(p) = self.punch.as_mut() {
                        p.appended(seq);
                    }
                    self.send_punches(&client);
                }
                _ = sleep_until_some(punch_wake) => {
                    if let Some(p) = self.punch.as_mut() {
                        p.poll();
                    }
                    self.send_punches(&client);
                }
                _ = tokio::time::sleep_until(deadline), if self.mode == Mode::Once => {
                    return Err(anyhow!(
                        "no verdict within {} s (is the device enrolled and the verifier running? \
                         `vouchctl stats` shows rejected messages)",
                        self.cfg.timeout.as_secs()
                    ));
                }
                _ = tick.tick(), if self.mode == Mode::Daemon => self.status(&client),
                _ = tokio::time::sleep(SUBSCRIBE_RETRY), if self.subscribe_pending => {
                    self.subscribe(&client);
                }
                Some((nonce, result)) = work_rx.recv() => {
                    match result {
                        Ok(evidence) => {
                            let _ = self.publish(&client, &evidence);
                            answered = Some(nonce);
                            tracing::info!(nonce = %nonce.to_hex(), "sent evidence");
                        }
                        Err(e) if self.mode == Mode::Once => return Err(e),
                        Err(e) => tracing::error!(error = %format!("{e:#}"), "attestation failed"),
                    }
                    // The core holds at most one challenge that came in meanwhile.
                    let next = self.core.attestation_finished(now_unix());
                    if let Some(ended) = self.act(next, &client, &work_tx, answered) {
                        return Ok(ended);
                    }
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(250);
                        self.online = true;
                        self.subscribe(&client);
                    }
                    // Say hello once the subscriptions are in place, so the challenge it
                    // triggers cannot arrive before we listen for it. Punches flow from here
                    // on too (the retained ack may move the acked head first), whatever the
                    // attestation does.
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        self.hello(&client);
                        if let Some(p) = self.punch.as_mut() {
                            p.connected();
                        }
                        self.send_punches(&client);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let actions = match self.core.on_message(&p.topic, &p.payload, now_unix()) {
                            Ok(a) => a,
                            Err(e) => {
                                tracing::warn!(topic = %p.topic, error = %e, "refused message");
                                continue;
                            }
                        };
                        if let Some(ended) = self.act(actions, &client, &work_tx, answered) {
                            return Ok(ended);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.online = false;
                        self.subscribe_pending = false;
                        if let Some(p) = self.punch.as_mut() {
                            p.disconnected();
                        }
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection error");
                        tokio::select! {
                            () = &mut shutdown => return Ok(Ended::Signal),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                },
            }
        }
    }

    /// Carries out the core's actions; `Some` when the session is over (`attest --once` got
    /// the verdict for `answered`, the nonce of the evidence it sent).
    fn act(
        &mut self,
        actions: Vec<AgentAction>,
        client: &AsyncClient,
        work_tx: &mpsc::Sender<(Nonce, Result<Evidence>)>,
        answered: Option<Nonce>,
    ) -> Option<Ended> {
        for action in actions {
            match action {
                AgentAction::AnsweredChanged => {
                    // Not fatal: losing this write only means a replay of this challenge after a
                    // restart costs one more quote, which the verifier then rejects.
                    if let Err(e) =
                        freshness::save_answered(&self.state, self.core.answered(), now_unix())
                    {
                        tracing::error!(error = %format!("{e:#}"), "could not save answered challenges");
                    }
                }
                AgentAction::Attest(c) => self.start_attest(c, work_tx),
                AgentAction::RequestChallenge => self.status(client),
                AgentAction::ViewChanged => {
                    if let Err(e) = self
                        .state
                        .save_view(&self.cfg.verifier_key, self.core.view())
                    {
                        tracing::error!(error = %format!("{e:#}"), "could not save the verifier's view");
                    }
                }
                AgentAction::VerdictReceived(v) => {
                    tracing::info!(state = %v.state, status = %v.status, seq = v.seq, "verdict");
                    if self.mode == Mode::Once && v.nonce.is_some() && v.nonce == answered {
                        let _ = client.try_disconnect();
                        return Some(Ended::Verdict(Box::new(v)));
                    }
                }
                // Only the verifier may publish on a terminal's challenge topic (broker ACL), so
                // an expired challenge is a genuine one that came too late: most often this
                // terminal's clock is off. Say so where an operator will see it.
                AgentAction::Ignored(why @ "challenge expired") => tracing::warn!(
                    why,
                    "ignored a challenge that is already expired by this terminal's clock; \
                     check the clock (NTP) if this repeats"
                ),
                // `attest --once` holds no buffer: the retained ack is for the daemon.
                AgentAction::PunchAck(ack) => {
                    if let Some(p) = self.punch.as_mut() {
                        p.on_ack(&ack);
                    }
                    self.send_punches(client);
                }
                AgentAction::Ignored(why) => tracing::debug!(why, "ignored message"),
            }
        }
        None
    }

    /// Publishes the punch batches the uploader says are due.
    fn send_punches(&mut self, client: &AsyncClient) {
        let Some(p) = self.punch.as_mut() else {
            return;
        };
        for batch in p.due_batches() {
            tracing::debug!(first = batch.first, last = batch.last, "sending punches");
            if !self.publish(client, &batch) {
                // It and what follows go out when the uploader next asks (linger or resend).
                if let Some(p) = self.punch.as_mut() {
                    p.not_sent(batch.first);
                }
                break;
            }
        }
    }

    /// Produces evidence for `c` on a blocking thread; the result comes back on `tx`, and the
    /// caller then tells the core the attestation finished.
    fn start_attest(&self, c: Challenge, tx: &mpsc::Sender<(Nonce, Result<Evidence>)>) {
        let attester = self.attester.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = attester.evidence(&c);
            let _ = tx.blocking_send((c.nonce, result));
        });
    }

    async fn stop(&self, client: &AsyncClient, eventloop: &mut EventLoop) -> Result<Ended> {
        tracing::info!("shutting down");
        if client.try_disconnect().is_ok() {
            // Let the DISCONNECT go out; bounded so a dead broker cannot hold up shutdown.
            let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
        }
        Ok(Ended::Signal)
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next newest committed seq; pending forever without a punch service (or once the
/// committer has stopped).
async fn last_committed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> u64 {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => *r.borrow_and_update(),
            Err(_) => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; pending forever when there is nothing to wake for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
