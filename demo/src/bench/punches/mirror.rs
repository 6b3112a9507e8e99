//! The mirror load: simulated terminals that speak punch mirroring over MQTT exactly as an
//! agent does, minus the buffer on disk. Each has its own broker identity (user = client id =
//! device id, its own password, enrolled with its `$7$` hash), a hash chain of deterministic
//! records, and the protocol's own upload state machine ([`Uploader`]): it publishes signed
//! [`PunchBatch`]es with a window in flight, checks every verifier-signed ack and resends when
//! the mirror asks (or goes silent). A run ends when every terminal's last record is acked.
//!
//! All terminals share one single-threaded runtime, so the load generator never takes more
//! than one core from the verifier and its broker; the bench prints how much it did take.

use anyhow::{Context, Result, anyhow, bail};
use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vouch_protocol::ids::{DeviceId, Kind, Topic};
use vouch_protocol::punch::{
    AckOutcome, BootId, ChainHash, EmployeeId, Method, PunchAck, PunchBatch, PunchInput, PunchKind,
    PunchRecord, UploadRules, Uploader,
};
use vouch_protocol::wire;
use vouch_sim::SimTpm;
use zeroize::Zeroizing;

/// The model the simulated terminals enroll as.
pub const MODEL: &str = "T-100";

/// One simulated terminal: identity, keys and its chain so far (hashes only; a record is
/// rebuilt from its seq and the hash before it).
pub struct SimDevice {
    id: DeviceId,
    key: SigningKey,
    password: Zeroizing<String>,
    boot: BootId,
    base_time: u64,
    /// `hashes[i]` is the chain hash of record `i + 1`.
    hashes: Vec<ChainHash>,
    /// The mirror's acked head as this terminal last saw it.
    acked: u64,
    /// Batches sealed before the clock starts, by seq range: sending then costs the load
    /// generator no CBOR or signature. A range not here (after an unaligned resend) is sealed
    /// when it is sent.
    sealed: HashMap<(u64, u64), Vec<u8>>,
}

fn derive(index: usize, label: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vouch-bench punch terminal\0")
        .chain_update(label)
        .chain_update((index as u64).to_le_bytes())
        .finalize()
        .into()
}

impl SimDevice {
    /// Terminal `index` and its sealed enrollment request, which carries the hash of a fresh
    /// MQTT password so the verifier's broker lets it in.
    pub fn new(index: usize, base_time: u64) -> Result<(Self, Vec<u8>)> {
        let id: DeviceId = format!("pbench-{index:05}").parse()?;
        let key = SigningKey::from_bytes(&derive(index, b"device key"));
        let tpm = SimTpm::from_seed(derive(index, b"tpm"));
        let password = vouch_common::mqtt_passwd::generate_password()?;
        let hash = vouch_common::mqtt_passwd::hash_generated(&password);
        let request = tpm.enrollment_request_with_mqtt(MODEL, &key.verifying_key(), &hash);
        let sealed = wire::seal(&id, &request, &key);
        let mut boot = [0u8; 16];
        boot.copy_from_slice(&derive(index, b"boot")[..16]);
        Ok((
            Self {
                id,
                key,
                password,
                boot: BootId(boot),
                base_time,
                hashes: Vec::new(),
                acked: 0,
                sealed: HashMap::new(),
            },
            sealed,
        ))
    }

    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    /// The mirror's acked head as this terminal last saw it.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn last(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Chain hash of record `seq` (GENESIS for 0), if this terminal wrote it.
    fn hash_at(&self, seq: u64) -> Option<ChainHash> {
        match seq {
            0 => Some(ChainHash::GENESIS),
            s => self.hashes.get(usize::try_from(s - 1).ok()?).copied(),
        }
    }

    /// Record `seq`, rebuilt: deterministic content, linked to the hash before it.
    fn record(&self, seq: u64) -> Result<PunchRecord> {
        let prev = match seq.checked_sub(1) {
            Some(0) => None,
            Some(p) => Some((
                p,
                self.hash_at(p)
                    .ok_or_else(|| anyhow!("record {p} was never written"))?,
            )),
            None => bail!("punch seqs start at 1"),
        };
        let input = PunchInput {
            employee: format!("E{:05}", seq.wrapping_mul(7919) % 5000).parse::<EmployeeId>()?,
            kind: if seq % 2 == 1 {
                PunchKind::In
            } else {
                PunchKind::Out
            },
            method: Some(match seq % 4 {
                0 => Method::Card,
                1 => Method::Face,
                2 => Method::Fingerprint,
                _ => Method::Pin,
            }),
            time: self.base_time + seq / 16,
        };
        Ok(input.chain_after(prev, self.boot))
    }

    /// Appends `n` records to the chain (before a run starts, so hashing them is not timed).
    pub fn extend(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            let r = self.record(self.last() + 1)?;
            self.hashes.push(r.hash(&self.id));
        }
        Ok(())
    }

    /// Batch `from..=to` as sent: signed, bound to this terminal, naming its newest seq.
    fn seal(&self, from: u64, to: u64, capacity: u64) -> Result<Vec<u8>> {
        let records = (from..=to)
            .map(|s| self.record(s))
            .collect::<Result<Vec<_>>>()?;
        let batch = PunchBatch::new(&self.id, records, self.last(), capacity)
            .ok_or_else(|| anyhow!("{}: empty batch {from}..={to}", self.id))?;
        Ok(wire::seal(&self.id, &batch, &self.key))
    }

    /// Seals every unacked record in `batch`-sized ranges from the acked head: the ranges
    /// the upload state machine asks for while acks arrive at batch boundaries.
    fn seal_ahead(&mut self, batch: u64, capacity: u64) -> Result<()> {
        self.sealed.clear();
        let mut from = self.acked + 1;
        while from <= self.last() {
            let to = (from + batch - 1).min(self.last());
            let bytes = self.seal(from, to, capacity)?;
            self.sealed.insert((from, to), bytes);
            from = to + 1;
        }
        Ok(())
    }
}

/// How the terminals upload in a run.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    pub batch: u64,
    /// Batches in flight per terminal.
    pub window: u64,
    /// Buffer capacity each terminal reports.
    pub capacity: u64,
    /// Without an ack for this long, a terminal sends again from its acked head.
    pub resend_after: Duration,
    /// A run that has not finished by then is an error (a stuck mirror is a finding).
    pub timeout: Duration,
}

/// What happened in one run.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub devices: usize,
    pub records: u64,
    pub elapsed: Duration,
    pub batches: u64,
    /// Resend requests from the mirror (it saw a gap).
    pub resends: u64,
    /// Restarts from the acked head after `resend_after` without an ack.
    pub silences: u64,
    /// Connections that failed or dropped (and were retried).
    pub reconnects: u64,
    /// Time from the start until all terminals were connected and subscribed.
    pub connect: Duration,
}

impl RunStats {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Ctx {
    host: String,
    port: u16,
    verifier_key: ed25519_dalek::VerifyingKey,
    rules: UploadRules,
    capacity: u64,
    epoch: Instant,
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

#[derive(Default)]
struct DeviceStats {
    batches: u64,
    resends: u64,
    silences: u64,
    reconnects: u64,
    done_at: Option<Instant>,
}

/// Appends `per_device` records to every terminal's chain, connects them all, then lets them
/// upload at once and times until the last one's last record is acked.
pub fn run(
    devices: &mut Vec<SimDevice>,
    per_device: u64,
    cfg: LoadConfig,
    mqtt_port: u16,
    verifier_key: ed25519_dalek::VerifyingKey,
) -> Result<RunStats> {
    for d in devices.iter_mut() {
        d.extend(per_device)?;
        d.seal_ahead(cfg.batch, cfg.capacity)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ctx = Arc::new(Ctx {
        host: "127.0.0.1".into(),
        port: mqtt_port,
        verifier_key,
        rules: UploadRules {
            batch: cfg.batch,
            window: cfg.batch * cfg.window.max(1),
            linger_ms: 0,
            resend_after_ms: cfg.resend_after.as_millis() as u64,
        },
        capacity: cfg.capacity,
        epoch: Instant::now(),
    });
    let n = devices.len();
    rt.block_on(async {
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n.max(1));
        let (go_tx, go_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for d in devices.drain(..) {
            tasks.spawn(drive(d, ctx.clone(), ready_tx.clone(), go_rx.clone()));
        }
        drop(ready_tx);
        let connect_start = Instant::now();
        for i in 0..n {
            let got = tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await;
            if !matches!(got, Ok(Some(()))) {
                bail!("only {i} of {n} terminals connected and subscribed within 120 s");
            }
        }
        let connect = connect_start.elapsed();
        let t0 = Instant::now();
        go_tx
            .send(true)
            .map_err(|_| anyhow!("every terminal task ended early"))?;
        let mut stats = RunStats {
            devices: n,
            records: per_device * n as u64,
            connect,
            ..RunStats::default()
        };
        let mut last_done = t0;
        let deadline = t0 + cfg.timeout;
        loop {
            let joined = tokio::select! {
                j = tasks.join_next() => j,
                () = tokio::time::sleep_until(deadline.into()) => {
                    bail!("the mirror did not ack every record within {} s", cfg.timeout.as_secs())
                }
            };
            let Some(joined) = joined else { break };
            let (d, s) = joined.context("a terminal task panicked")??;
            stats.batches += s.batches;
            stats.resends += s.resends;
            stats.silences += s.silences;
            stats.reconnects += s.reconnects;
            last_done = last_done.max(s.done_at.unwrap_or(t0));
            devices.push(d);
        }
        stats.elapsed = last_done.duration_since(t0);
        Ok(stats)
    })
}

fn options(ctx: &Ctx, d: &SimDevice) -> MqttOptions {
    let id = d.id.as_str().to_owned();
    let mut o = MqttOptions::new(id.clone(), ctx.host.clone(), ctx.port);
    o.set_credentials(id, d.password.as_str());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    let limit = 2 * wire::DEFAULT_MAX_PAYLOAD + 64 * 1024;
    o.set_max_packet_size(limit, limit);
    o
}

/// One terminal's upload loop: connect, subscribe to its ack topic, report ready, wait for
/// the start, then send batches and follow acks until its last record is acked.
async fn drive(
    mut d: SimDevice,
    ctx: Arc<Ctx>,
    ready: mpsc::Sender<()>,
    mut go: watch::Receiver<bool>,
) -> Result<(SimDevice, DeviceStats)> {
    let (client, mut events) = AsyncClient::new(options(&ctx, &d), 256);
    let ack_topic = Topic::new(d.id.clone(), Kind::Ack);
    let punch_topic = Topic::new(d.id.clone(), Kind::Punches).to_string();
    let acked_hash = d
        .hash_at(d.acked)
        .ok_or_else(|| anyhow!("{}: acked head {} not in its chain", d.id, d.acked))?;
    let mut up = Uploader::new(ctx.rules, d.acked, acked_hash, d.last(), ctx.now_ms());
    let mut stats = DeviceStats::default();
    let (mut subscribed, mut started, mut announced) = (false, false, false);
    loop {
        if started && up.acked() == up.last() {
            stats.done_at = Some(Instant::now());
            break;
        }
        let wake = up.wake_at().map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(ctx.now_ms()))
        });
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe(ack_topic.to_string(), QoS::AtLeastOnce)
                        .map_err(|e| anyhow!("{}: subscribing: {e}", d.id))?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subscribed = true;
                    if !announced {
                        announced = true;
                        // The coordinator only counts; it is gone if the run was abandoned.
                        let _ = ready.send(()).await;
                    }
                    if started {
                        up.connected(ctx.now_ms());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let ack = open_ack(&ack_topic, &p.topic, &p.payload, &ctx.verifier_key)
                        .with_context(|| format!("{}: an ack that does not check", d.id))?;
                    match up.on_ack(&ack, ctx.now_ms(), |s| d.hash_at(s)) {
                        AckOutcome::Resend { .. } => stats.resends += 1,
                        AckOutcome::Disagrees { seq, reason } => {
                            bail!("{}: the mirror's ack for seq {seq} disagrees: {reason}", d.id)
                        }
                        // The bench starts each run on a fresh verifier: a mirror that went
                        // back means the bench itself is wrong.
                        AckOutcome::Regressed { seq, .. } => {
                            bail!("{}: the mirror went back to seq {seq}", d.id)
                        }
                        AckOutcome::Advanced { .. } | AckOutcome::Unchanged => {}
                    }
                    d.acked = up.acked();
                }
                Ok(_) => {}
                Err(e) => {
                    stats.reconnects += 1;
                    subscribed = false;
                    if stats.reconnects > 50 {
                        bail!("{}: MQTT connection keeps failing: {e}", d.id);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            changed = go.changed(), if !started => {
                changed.map_err(|_| anyhow!("the run was abandoned"))?;
                started = true;
                up.connected(ctx.now_ms());
            }
            () = tokio::time::sleep(wake), if started => {
                if up.poll(ctx.now_ms()) {
                    stats.silences += 1;
                }
            }
        }
        if started && subscribed {
            while let Some((from, to)) = up.next_batch(ctx.now_ms()) {
                let bytes = match d.sealed.remove(&(from, to)) {
                    Some(b) => b,
                    None => d.seal(from, to, ctx.capacity)?,
                };
                // A full request queue only delays: the silence timer sends the range again.
                if client
                    .try_publish(punch_topic.as_str(), QoS::AtLeastOnce, false, bytes)
                    .is_err()
                {
                    break;
                }
                stats.batches += 1;
            }
        }
    }
    d.sealed.clear();
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out; the connection closes either way when `events` drops.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok((d, stats))
}

/// A verifier-signed ack on `expected`, opened.
fn open_ack(
    expected: &Topic,
    topic: &str,
    payload: &[u8],
    key: &ed25519_dalek::VerifyingKey,
) -> Result<PunchAck> {
    let t: Topic = topic.parse()?;
    if t != *expected {
        bail!("a message on {topic}, not on {expected}");
    }
    Ok(wire::decode(&t, payload, wire::DEFAULT_MAX_PAYLOAD)?
        .verify(key)?
        .open()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use vouch_protocol::enrollment::Enrollment;
    use vouch_protocol::punch::{MirrorDecision, MirrorHead, check_batch, decide};

    use super::*;

    #[test]
    fn a_simulated_terminals_batches_check_and_continue_the_mirror_across_runs() {
        let (mut d, request) = SimDevice::new(3, 1_800_000_000).unwrap();
        let enrollment = Enrollment::from_request(&request, 1).unwrap();
        assert_eq!(enrollment.id, d.id);
        d.extend(5).unwrap();
        // A later run continues the same chain.
        d.extend(5).unwrap();
        let mut head = MirrorHead::EMPTY;
        for (from, to) in [(1, 4), (5, 10)] {
            let sealed = d.seal(from, to, 1000).unwrap();
            let topic = Topic::new(d.id.clone(), Kind::Punches);
            let key =
                ed25519_dalek::VerifyingKey::try_from(enrollment.device_key.0.as_slice()).unwrap();
            let opened: PunchBatch = wire::decode(&topic, &sealed, wire::DEFAULT_MAX_PAYLOAD)
                .unwrap()
                .verify(&key)
                .unwrap()
                .open()
                .unwrap();
            let checked = check_batch(&d.id, opened).unwrap().unwrap();
            match decide(head, &checked, |_| Ok::<_, ()>(None)).unwrap() {
                MirrorDecision::Append { skip: 0, head: h } => head = h,
                other => panic!("batch {from}..={to}: {other:?}"),
            }
        }
        assert_eq!(head.seq, 10);
        assert_eq!(Some(head.hash), d.hash_at(10));
    }

    #[test]
    fn terminals_have_distinct_identities_and_mqtt_credentials() {
        let (a, ra) = SimDevice::new(1, 0).unwrap();
        let (b, rb) = SimDevice::new(2, 0).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.key.verifying_key(), b.key.verifying_key());
        let ea = Enrollment::from_request(&ra, 1).unwrap();
        let eb = Enrollment::from_request(&rb, 1).unwrap();
        let (ha, hb) = (
            ea.mqtt_password_hash.unwrap(),
            eb.mqtt_password_hash.unwrap(),
        );
        assert!(vouch_common::mqtt_passwd::verify(&a.password, &ha));
        assert!(!vouch_common::mqtt_passwd::verify(&a.password, &hb));
        // A record is rebuilt from the hash before it: never one the chain has not reached.
        assert!(a.record(0).is_err());
        assert!(a.record(2).is_err());
        assert!(a.record(1).is_ok());
    }

    /// A mirror reduced to the protocol's rules (check, decide, signed retained ack) on a
    /// real Mosquitto: enough to show the load generator follows acks and recovers from a
    /// lost batch, independent of the verifier it measures. Drops each terminal's first batch.
    async fn lossy_mirror(
        port: u16,
        key: SigningKey,
        devices: Vec<(DeviceId, ed25519_dalek::VerifyingKey)>,
    ) {
        use std::collections::{HashMap, HashSet};
        let mut o = MqttOptions::new("test-mirror", "127.0.0.1", port);
        o.set_max_packet_size(1 << 22, 1 << 22);
        let (client, mut events) = AsyncClient::new(o, 1024);
        let keys: HashMap<DeviceId, ed25519_dalek::VerifyingKey> = devices.into_iter().collect();
        let mut heads: HashMap<DeviceId, MirrorHead> = HashMap::new();
        let mut held: HashMap<(DeviceId, u64), ChainHash> = HashMap::new();
        let mut dropped: HashSet<DeviceId> = HashSet::new();
        loop {
            let p = match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe("vouch/v1/+/punches", QoS::AtLeastOnce)
                        .await
                        .unwrap();
                    continue;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => p,
                Ok(_) => continue,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let topic: Topic = p.topic.parse().unwrap();
            let dev = topic.device.clone();
            let batch: PunchBatch = wire::decode(&topic, &p.payload, wire::DEFAULT_MAX_PAYLOAD)
                .unwrap()
                .verify(&keys[&dev])
                .unwrap()
                .open()
                .unwrap();
            if dropped.insert(dev.clone()) {
                continue;
            }
            let checked = check_batch(&dev, batch).unwrap().unwrap();
            let head = *heads.entry(dev.clone()).or_insert(MirrorHead::EMPTY);
            let decision = decide(head, &checked, |s| {
                Ok::<_, ()>(held.get(&(dev.clone(), s)).copied())
            })
            .unwrap();
            let ack = match decision {
                MirrorDecision::Append { skip, head: new } => {
                    for (r, h) in &checked.entries[skip..] {
                        held.insert((dev.clone(), r.seq), *h);
                    }
                    heads.insert(dev.clone(), new);
                    PunchAck {
                        seq: new.seq,
                        head: new.hash,
                        resend: false,
                    }
                }
                MirrorDecision::Duplicate => PunchAck {
                    seq: head.seq,
                    head: head.hash,
                    resend: false,
                },
                MirrorDecision::Gap => PunchAck {
                    seq: head.seq,
                    head: head.hash,
                    resend: true,
                },
                MirrorDecision::Tamper(e) => panic!("{dev}: {e}"),
            };
            let bytes = wire::seal(&dev, &ack, &key);
            client
                .publish(
                    Topic::new(dev, Kind::Ack).to_string(),
                    QoS::AtLeastOnce,
                    true,
                    bytes,
                )
                .await
                .unwrap();
        }
    }

    #[test]
    fn the_load_generator_recovers_a_lost_batch_and_continues_its_chains_in_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let port = vouch_test_kit::process::free_port().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let _broker = vouch_test_kit::process::Proc::spawn(
            "mosquitto",
            std::process::Command::new("mosquitto").arg("-c").arg(&conf),
            &dir.path().join("mosquitto.log"),
        )
        .unwrap();
        assert!(vouch_test_kit::process::wait_for_port(
            port,
            Duration::from_secs(10)
        ));
        let mut devices: Vec<SimDevice> = (0..3)
            .map(|i| SimDevice::new(i, 1_800_000_000).unwrap().0)
            .collect();
        let keys = devices
            .iter()
            .map(|d| (d.id.clone(), d.key.verifying_key()))
            .collect();
        let verifier = SigningKey::from_bytes(&[7; 32]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mirror_key = verifier.clone();
        std::thread::spawn(move || rt.block_on(lossy_mirror(port, mirror_key, keys)));
        // Give the mirror time to subscribe before the first batches go out.
        std::thread::sleep(Duration::from_millis(500));
        let cfg = LoadConfig {
            batch: 10,
            window: 3,
            capacity: 1000,
            resend_after: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
        };
        let first = run(&mut devices, 50, cfg, port, verifier.verifying_key()).unwrap();
        assert_eq!(first.records, 150);
        assert!(
            first.resends >= 3,
            "each terminal's lost batch draws a resend: {first:?}"
        );
        assert!(devices.iter().all(|d| d.acked() == 50));
        let second = run(&mut devices, 20, cfg, port, verifier.verifying_key()).unwrap();
        assert_eq!(second.resends, 0, "{second:?}");
        assert!(devices.iter().all(|d| d.acked() == 70));
    }
}
