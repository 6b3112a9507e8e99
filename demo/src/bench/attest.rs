//! `vouch-bench [attest]`: drives the real engine (redb store, worker stage, batched applier)
//! with simulated terminals and prints throughput and memory, so the scale target (100,000
//! terminals attesting every 300 s, i.e. 333 evidence/s) is a measured figure, not a hope.
//! MQTT is left out (the broker is a separate process at scale); everything after it is in.
//!
//! Terminals are simulated (`vouch_sim::SimTerminal`): their quotes are byte-exact TPM structures the verifier
//! checks exactly as it checks a hardware TPM's.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::device::Actor;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{Kind, Topic};
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::policy::{PolicyScope, ReferenceValues};
use vouch_protocol::wire;

use vouch_sim::SimTerminal;
use vouch_verifier::engine::{Engine, EngineConfig, Job};
use vouch_verifier::mqtt::{Inbound, Outgoing};
use vouch_verifier::store::Store;

/// The attestation bench's options.
#[derive(Debug, Clone, Args)]
pub struct AttestArgs {
    /// Simulated terminals.
    #[arg(long, default_value_t = 2000)]
    pub devices: usize,
    /// Worker threads for the verification stage [default: number of CPUs].
    #[arg(long)]
    pub workers: Option<usize>,
}

const FIRMWARE_PCR: u8 = 14;
const BATCH: usize = 512;

fn terminal(i: usize) -> Result<SimTerminal> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let mut t = SimTerminal::from_seed(format!("bench-{i:06}").parse()?, seed, FIRMWARE_PCR);
    t.measure(&[FirmwareEntry {
        path: "/opt/terminal/firmware.bin".into(),
        sha256: Some(Sha256Digest([0x42; 32])),
    }])?;
    Ok(t)
}

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs `prepare` over `msgs` on `workers` threads; returns the jobs.
fn prepare_all(engine: &Arc<Engine>, msgs: Vec<Inbound>, workers: usize) -> Vec<Job> {
    let chunk = msgs.len().div_ceil(workers.max(1)).max(1);
    let mut chunks: Vec<Vec<Inbound>> = Vec::new();
    let mut it = msgs.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let engine = engine.clone();
                s.spawn(move || {
                    c.into_iter()
                        .filter_map(|m| engine.prepare(m))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn apply_all(
    engine: &Engine,
    jobs: Vec<Job>,
    out: &mut mpsc::Receiver<Outgoing>,
    sink: &mut Vec<Outgoing>,
) -> Result<()> {
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        engine.apply(jobs.by_ref().take(BATCH).collect())?;
        while let Ok(m) = out.try_recv() {
            sink.push(m);
        }
    }
    Ok(())
}

pub fn run(args: AttestArgs) -> Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let store = Store::open(&dir.path().join("bench.redb"))?;
    let (tx, mut rx) = mpsc::channel(1 << 20);
    let cfg = EngineConfig {
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        nonce_ttl: 3600,
        verdict_ttl: 900,
        challenges_per_minute: 1000,
        verifier_id: "bench".into(),
        quarantine_after_expiries: 0,
        // Simulated terminals have no EK certificate.
        require_ek_cert: false,
    };
    let engine = Arc::new(Engine::new(store, vouch_common::keys::generate()?, cfg, tx));
    let n = args.devices;
    println!(
        "vouch verifier bench: {n} simulated terminals, {workers} worker threads, store in {}",
        dir.path().display()
    );
    let rss0 = rss_mib();

    let t = Instant::now();
    let mut terminals = (0..n).map(terminal).collect::<Result<Vec<_>>>()?;
    println!(
        "  simulated TPMs created          {:>8.2} s (not part of the verifier's cost)",
        t.elapsed().as_secs_f64()
    );

    let requests: Vec<Vec<u8>> = terminals
        .iter()
        .map(|t| t.enrollment_request("T-100"))
        .collect();
    let t = Instant::now();
    engine
        .enroll_batch(&requests, &Actor::Operator("bench".into()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let d = t.elapsed();
    println!(
        "  enrollment (one transaction)    {:>8.0} devices/s",
        per_sec(n, d)
    );

    // A model policy every terminal satisfies, so each round takes the full appraisal path.
    let reference = ReferenceValues {
        pcrs: (0..=7).map(|i| (i, Sha256Digest::ZERO)).collect(),
        firmware: [(
            "/opt/terminal/firmware.bin".to_owned(),
            [Sha256Digest([0x42; 32])].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
        events: None,
        firmware_pcr: Some(FIRMWARE_PCR),
    };
    engine
        .set_policy(
            PolicyScope::Model("T-100".into()),
            reference,
            Actor::Operator("bench".into()),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    while rx.try_recv().is_ok() {}

    for round in 1..=2 {
        // hello → challenge
        let hellos: Vec<Inbound> = terminals
            .iter()
            .map(|t| {
                let h = Hello {
                    agent_version: "bench".into(),
                    model: "T-100".into(),
                    reset_count: 0,
                    request: 7,
                    counter: round,
                };
                Inbound {
                    topic: Topic::new(t.id().clone(), Kind::Hello).to_string(),
                    payload: t.seal(&h).into(),
                }
            })
            .collect();
        let t = Instant::now();
        let jobs = prepare_all(&engine, hellos, workers);
        let mut out = Vec::new();
        apply_all(&engine, jobs, &mut rx, &mut out)?;
        let challenge_rate = per_sec(n, t.elapsed());

        // challenge → evidence (the terminals' side is not timed)
        let mut nonces = std::collections::HashMap::new();
        for m in &out {
            let topic: Topic = m.topic.parse()?;
            if topic.kind == Kind::Challenge {
                let c: Challenge = wire::decode(&topic, &m.payload, wire::DEFAULT_MAX_PAYLOAD)?
                    .verify(&engine.verifier_key())?
                    .open()?;
                nonces.insert(topic.device, c.nonce);
            }
        }
        let mut evidence = Vec::with_capacity(n);
        for t in &mut terminals {
            let nonce = nonces
                .get(t.id())
                .with_context(|| format!("no challenge for {}", t.id()))?;
            let ev = t.evidence(nonce)?;
            evidence.push(Inbound {
                topic: Topic::new(t.id().clone(), Kind::Evidence).to_string(),
                payload: t.seal(&ev).into(),
            });
        }
        let t = Instant::now();
        let jobs = prepare_all(&engine, evidence, workers);
        let verify = t.elapsed();
        let accepted = jobs.len();
        let t = Instant::now();
        let mut verdicts = Vec::new();
        apply_all(&engine, jobs, &mut rx, &mut verdicts)?;
        let apply = t.elapsed();
        let rate = per_sec(accepted, verify + apply);
        let trusted = verdicts
            .iter()
            .filter(|m| m.topic.ends_with("/verdict"))
            .count();
        println!("  round {round}:");
        println!(
            "    hello → challenge (verify + store nonce)   {:>8.0} /s",
            challenge_rate
        );
        println!(
            "    evidence verify stage ({workers} threads)         {:>8.0} /s  ({:.0} µs per evidence per thread)",
            per_sec(accepted, verify),
            verify.as_secs_f64() * 1e6 * workers as f64 / accepted.max(1) as f64
        );
        println!(
            "    evidence apply stage (1 thread, batched)    {:>8.0} /s",
            per_sec(accepted, apply)
        );
        println!(
            "    end to end                                  {rate:>8.0} evidence/s; {trusted} verdicts"
        );
        println!(
            "    capacity at this rate: {:.0} terminals attesting every 300 s",
            rate * 300.0
        );
        if accepted != n || trusted != n {
            bail!(
                "only {accepted} of {n} evidence messages were accepted and {trusted} verdicts issued"
            );
        }
    }
    let store_mib = std::fs::metadata(dir.path().join("bench.redb"))
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    if let (Some(a), Some(b)) = (rss0, rss_mib()) {
        println!(
            "  memory: {b:.0} MiB resident ({:.1} KiB per terminal incl. the simulators)",
            (b - a) * 1024.0 / n as f64
        );
    }
    println!(
        "  store: {store_mib:.1} MiB ({:.1} KiB per terminal)",
        store_mib * 1024.0 / n as f64
    );
    println!("  target: 100,000 terminals attesting every 300 s = 333 evidence/s");
    Ok(())
}
