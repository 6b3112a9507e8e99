//! `vouch-bench fleet DIR`: attests a simulated fleet made by `vouch-provision batch` against a
//! running verifier, through its broker, and prints how many terminals got which verdict and
//! how fast. Each terminal in `DIR/terminals/<id>.json` becomes the `vouch-sim` terminal its
//! seed defines (the keys its vendor-signed manifest names), with the inventory and firmware
//! version it was provisioned with: it connects as itself (user = client id = its id, its own
//! MQTT password), subscribes to its challenge and verdict topics, sends a hello, answers the
//! challenge with evidence (the inventory digest measured into the firmware PCR as the newest
//! `vouch:inventory` entry, as the agent does) and waits for the verdict answering that
//! challenge, which it checks with the verifier's key.
//!
//! One single-threaded tokio runtime runs every terminal; at most `--concurrency` are connected
//! at a time (a bench tool, not a model of a fleet's arrival pattern). Exit 0 when every
//! terminal got a verdict within `--timeout`, whatever its status; the statuses are the
//! figures. The MQTT handling follows the punch bench's load generator (`punches/mirror.rs`).

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ed25519_dalek::VerifyingKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Topic};
use vouch_protocol::inventory::Inventory;
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::verdict::{Status, Verdict};
use vouch_protocol::wire;
use vouch_sim::SimTerminal;
use zeroize::Zeroizing;

/// The PCR the agent measures firmware (and the inventory) into; simulated terminals use it too.
pub const FIRMWARE_PCR: u8 = 14;
/// Without a challenge for this long, a terminal says hello again (a lost message, a rate limit).
const HELLO_AGAIN: Duration = Duration::from_secs(30);

/// Options of the fleet bench.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// The output directory of `vouch-provision batch` (batch.json, terminals/, manifests/).
    pub dir: PathBuf,
    /// The verifier's broker, HOST:PORT (plain MQTT).
    #[arg(long)]
    pub mqtt: String,
    /// The verifier's public key (`DATA/verifier.pub`): every challenge and verdict is checked.
    #[arg(long)]
    pub verifier_key: PathBuf,
    /// Terminals connected at a time, at most.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds the whole run may take; a terminal without a verdict by then counts as failed.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// One provisioned terminal as `terminals/<id>.json` describes it.
struct TerminalFile {
    id: DeviceId,
    seed: [u8; 32],
    model: String,
    firmware_version: Option<String>,
    password: Zeroizing<String>,
    inventory: Option<Inventory>,
}

fn field<'a>(v: &'a serde_json::Value, name: &str, file: &Path) -> Result<&'a str> {
    v[name].as_str().ok_or_else(|| {
        anyhow!(
            "{}: field {name:?} is missing or not a string",
            file.display()
        )
    })
}

impl TerminalFile {
    fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let id: DeviceId = field(&v, "id", path)?
            .parse()
            .map_err(|e| anyhow!("{}: field \"id\": {e}", path.display()))?;
        let seed = hex::decode(field(&v, "seed", path)?)
            .ok()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| anyhow!("{}: field \"seed\" is not 64 hex digits", path.display()))?;
        let inventory = match &v["inventory"] {
            serde_json::Value::Null => None,
            inv => Some(
                serde_json::from_value::<Inventory>(inv.clone())
                    .with_context(|| format!("{}: field \"inventory\"", path.display()))?,
            ),
        };
        Ok(Self {
            id,
            seed,
            model: field(&v, "model", path)?.to_owned(),
            firmware_version: v["firmware_version"].as_str().map(str::to_owned),
            password: Zeroizing::new(field(&v, "mqtt_password", path)?.to_owned()),
            inventory,
        })
    }
}

/// The terminal ids `DIR/batch.json` lists, each read from `DIR/terminals/<id>.json`.
fn read_batch(dir: &Path) -> Result<(serde_json::Value, Vec<TerminalFile>)> {
    let path = dir.join("batch.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let batch: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let ids = batch["ids"]
        .as_array()
        .ok_or_else(|| anyhow!("{}: field \"ids\" is missing", path.display()))?;
    let terminals = ids
        .iter()
        .map(|id| {
            let id = id
                .as_str()
                .ok_or_else(|| anyhow!("{}: an id is not a string", path.display()))?;
            // An id is a DeviceId (no '/' or '..'), checked before it names a file.
            let id: DeviceId = id
                .parse()
                .map_err(|e| anyhow!("{}: id {id:?}: {e}", path.display()))?;
            TerminalFile::read(&dir.join("terminals").join(format!("{id}.json")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((batch, terminals))
}

/// What one terminal ended with.
enum Outcome {
    Verdict(Status),
    Failed(String),
}

struct Ctx {
    host: String,
    port: u16,
    verifier_key: VerifyingKey,
    deadline: tokio::time::Instant,
}

pub fn run(args: FleetArgs) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let (host, port) = args
        .mqtt
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow!("--mqtt {:?} is not HOST:PORT", args.mqtt))?;
    let verifier_key = vouch_common::keys::read_public(&args.verifier_key)
        .with_context(|| format!("reading {}", args.verifier_key.display()))?;
    let (batch, terminals) = read_batch(&args.dir)?;
    let n = terminals.len();
    println!(
        "vouch fleet bench: {n} terminals from {} (vendor {}, model {}, firmware {}{}), {} connected at a time, broker {host}:{port}",
        args.dir.display(),
        batch["vendor"].as_str().unwrap_or("?"),
        batch["model"].as_str().unwrap_or("?"),
        batch["firmware_version"].as_str().unwrap_or("none"),
        if batch["simulated"] == true {
            ", SIMULATED"
        } else {
            ""
        },
        args.concurrency
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let outcomes = rt.block_on(async {
        let ctx = Arc::new(Ctx {
            host,
            port,
            verifier_key,
            deadline: tokio::time::Instant::now() + Duration::from_secs(args.timeout),
        });
        let permits = Arc::new(Semaphore::new(args.concurrency));
        let mut tasks = JoinSet::new();
        for t in terminals {
            let (ctx, permits) = (ctx.clone(), permits.clone());
            tasks.spawn(async move {
                let id = t.id.clone();
                let Ok(_permit) = permits.acquire_owned().await else {
                    return (id, Outcome::Failed("the run was abandoned".into()));
                };
                let outcome = match tokio::time::timeout_at(ctx.deadline, attest(t, &ctx)).await {
                    Ok(Ok(status)) => Outcome::Verdict(status),
                    Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                    Err(_) => Outcome::Failed("no verdict before the timeout".into()),
                };
                (id, outcome)
            });
        }
        let mut outcomes = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined.context("a terminal task panicked")?);
        }
        Ok::<_, anyhow::Error>(outcomes)
    })?;
    report(&outcomes, started.elapsed(), args.timeout)
}

/// Prints per-status counts, the rate and the first failures; an error if any terminal failed.
fn report(outcomes: &[(DeviceId, Outcome)], elapsed: Duration, timeout: u64) -> Result<()> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for (id, o) in outcomes {
        match o {
            Outcome::Verdict(s) => *counts.entry(s.as_str()).or_default() += 1,
            Outcome::Failed(why) => failed.push((id, why)),
        }
    }
    let verdicts: usize = counts.values().sum();
    let by_status: Vec<String> = counts.iter().map(|(s, c)| format!("{s} {c}")).collect();
    println!(
        "  verdicts: {verdicts} of {} ({}); no verdict: {}",
        outcomes.len(),
        if by_status.is_empty() {
            "none".to_owned()
        } else {
            by_status.join(", ")
        },
        failed.len()
    );
    println!(
        "  {:.1} s from the first connection to the last verdict: {:.0} terminals/s (connect, hello, challenge, evidence, verdict)",
        elapsed.as_secs_f64(),
        verdicts as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for (id, why) in failed.iter().take(10) {
        println!("  {id}: {why}");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} terminals got no verdict within {timeout} s",
            failed.len(),
            outcomes.len()
        );
    }
    Ok(())
}

/// A counter above any earlier one from this terminal: the clock in µs, as the agent's.
fn counter() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn options(ctx: &Ctx, t: &TerminalFile) -> MqttOptions {
    let id = t.id.as_str().to_owned();
    let mut o = MqttOptions::new(id.clone(), ctx.host.clone(), ctx.port);
    o.set_credentials(id, t.password.as_str());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    let limit = 2 * wire::DEFAULT_MAX_PAYLOAD + 64 * 1024;
    o.set_max_packet_size(limit, limit);
    o
}

/// Opens a verifier-signed message on `topic`.
fn open<T: wire::Message>(topic: &Topic, payload: &[u8], key: &VerifyingKey) -> Result<T> {
    Ok(wire::decode(topic, payload, wire::DEFAULT_MAX_PAYLOAD)?
        .verify(key)?
        .open()?)
}

/// One terminal's attestation: hello → challenge → evidence → the verdict for that nonce.
async fn attest(file: TerminalFile, ctx: &Ctx) -> Result<Status> {
    let mut sim = SimTerminal::from_seed(file.id.clone(), file.seed, FIRMWARE_PCR);
    // A terminal rebuilt from its seed starts with the clock its TPM had when it was made; a
    // real TPM's clock kept running since. Powered time up to now keeps this run's quotes later
    // than the last run's (the verifier refuses an older quote of the same boot as stale).
    sim.tpm_mut().advance_clock(wall_clock_ms());
    sim.set_firmware_version(file.firmware_version.clone());
    if let Some(inv) = file.inventory.clone() {
        sim.set_inventory(inv)
            .map_err(|e| anyhow!("measuring the inventory: {e}"))?;
    }
    let challenge_topic = Topic::new(file.id.clone(), Kind::Challenge);
    let verdict_topic = Topic::new(file.id.clone(), Kind::Verdict);
    let hello_topic = Topic::new(file.id.clone(), Kind::Hello).to_string();
    let evidence_topic = Topic::new(file.id.clone(), Kind::Evidence).to_string();
    let (client, mut events) = AsyncClient::new(options(ctx, &file), 16);
    let request = 1;
    let mut answered: Option<Nonce> = None;
    let mut errors = 0u32;
    let mut hello_due: Option<tokio::time::Instant> = None;
    let status = loop {
        let wait = hello_due.unwrap_or_else(|| tokio::time::Instant::now() + HELLO_AGAIN * 8);
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe_many([
                            rumqttc::SubscribeFilter::new(challenge_topic.to_string(), QoS::AtLeastOnce),
                            rumqttc::SubscribeFilter::new(verdict_topic.to_string(), QoS::AtLeastOnce),
                        ])
                        .map_err(|e| anyhow!("subscribing: {e}"))?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    hello_due = Some(tokio::time::Instant::now());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic: Topic = p.topic.parse().map_err(|e| anyhow!("topic {:?}: {e}", p.topic))?;
                    if topic == challenge_topic {
                        let c: Challenge = open(&topic, &p.payload, &ctx.verifier_key)
                            .context("a challenge that does not check")?;
                        // One answer per run: a second challenge (drawn by a repeated hello)
                        // is left to expire; the verdict for the first one is on its way.
                        if c.request != request || answered.is_some() {
                            continue;
                        }
                        let evidence = sim
                            .evidence(&c.nonce)
                            .map_err(|e| anyhow!("quoting: {e}"))?;
                        client
                            .try_publish(evidence_topic.as_str(), QoS::AtLeastOnce, false, sim.seal(&evidence))
                            .map_err(|e| anyhow!("publishing evidence: {e}"))?;
                        answered = Some(c.nonce);
                        hello_due = None;
                    } else if topic == verdict_topic {
                        let v: Verdict = open(&topic, &p.payload, &ctx.verifier_key)
                            .context("a verdict that does not check")?;
                        // The retained verdict of an earlier run, or a re-evaluation, answers
                        // no challenge of this run: wait for the one that does.
                        if answered.is_some() && v.nonce == answered {
                            break v.status;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    if errors > 50 {
                        bail!("the MQTT connection keeps failing: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            () = tokio::time::sleep_until(wait), if hello_due.is_some() => {
                let hello = Hello {
                    agent_version: concat!("vouch-bench fleet ", env!("CARGO_PKG_VERSION")).into(),
                    model: file.model.clone(),
                    reset_count: 0,
                    request,
                    counter: counter(),
                };
                client
                    .try_publish(hello_topic.as_str(), QoS::AtLeastOnce, false, sim.seal(&hello))
                    .map_err(|e| anyhow!("publishing hello: {e}"))?;
                // Said again if no challenge comes (a lost message, a rate limit).
                hello_due = Some(tokio::time::Instant::now() + HELLO_AGAIN);
            }
        }
    };
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out; the connection closes either way when `events` drops.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_terminal_file_is_read_and_a_bad_seed_or_id_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("sim-00001.json");
        std::fs::write(
            &good,
            format!(
                r#"{{"id":"sim-00001","seed":"{}","model":"T-100","firmware_version":"1.0","mqtt_password":"pw","inventory":null}}"#,
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let t = TerminalFile::read(&good).unwrap();
        assert_eq!(t.id.as_str(), "sim-00001");
        assert_eq!(t.seed, [0xab; 32]);
        assert_eq!(t.firmware_version.as_deref(), Some("1.0"));
        assert!(t.inventory.is_none());

        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"id":"sim-00002","seed":"abcd","model":"T","mqtt_password":"pw"}"#,
        )
        .unwrap();
        let e = format!("{:#}", TerminalFile::read(&bad).err().unwrap());
        assert!(e.contains("bad.json") && e.contains("seed"), "{e}");

        std::fs::write(
            dir.path().join("batch.json"),
            r#"{"ids":["../escape"],"model":"T"}"#,
        )
        .unwrap();
        let e = format!("{:#}", read_batch(dir.path()).err().unwrap());
        assert!(e.contains("../escape"), "{e}");
    }
}
