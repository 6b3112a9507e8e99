//! `vouch-bench punches`: the speed of zero-loss punch mirroring (issue 8, §5), measured end to
//! end with real processes and printed with its targets:
//! 1. mirrored punches/s with durable acks through the real broker: the `vouch-verifier run`
//!    binary (managed Mosquitto, store on disk by default) and simulated terminals, each with
//!    its own MQTT identity, publishing signed batches with a window in flight (`mirror`);
//!    figure = records acked / wall time, for 1 and for 1,000 terminals;
//! 2. a real `vouch-agent run` daemon's confirmed punches/s at its socket, C connections
//!    pipelining JSON requests (each answer comes after the record's durable commit) (`agent`);
//! 3. the time from a punch's confirmation at that socket to the mirror's ack covering it, at a
//!    steady moderate rate with the link up (p50/p99/max).

mod agent;
mod machine;
mod mirror;
mod verifier;

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vouch_protocol::punch::MAX_BATCH_RECORDS;

use agent::{Agent, AgentTuning};
use mirror::{LoadConfig, RunStats, SimDevice};
use verifier::{CpuSample, Verifier};

/// Targets from the issue (2-core machine).
const TARGET_MIRROR: f64 = 50_000.0;
const TARGET_SOCKET: f64 = 5_000.0;
const TARGET_P99: Duration = Duration::from_secs(1);

/// Options of the punch-mirroring bench.
#[derive(Debug, Clone, Args)]
pub struct PunchArgs {
    /// Fleet sizes to measure the mirror with, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    pub devices: Vec<usize>,
    /// Punch records per mirror run, spread evenly over the run's terminals.
    #[arg(long, default_value_t = 300_000)]
    pub records: u64,
    /// Records per batch in the one-terminal run (a terminal with a backlog).
    #[arg(long, default_value_t = 500)]
    pub batch: u64,
    /// Records per batch in runs with more terminals (the agent's default batch size).
    #[arg(long, default_value_t = 500)]
    pub fleet_batch: u64,
    /// Batches in flight per terminal (unacked, at most). The agent keeps 4; the default is
    /// deeper so one terminal can show the mirror's capacity instead of its own round trip.
    #[arg(long, default_value_t = 16)]
    pub window: u64,
    /// Milliseconds without an ack before a terminal sends again from its acked head; the
    /// agent's is 10,000.
    #[arg(long, default_value_t = 10_000)]
    pub resend_after_ms: u64,
    /// Batches in flight over the whole fleet, at most: the per-terminal window shrinks to
    /// fit, down to 1, so the verifier's queue at the broker stays a few seconds of work.
    #[arg(long, default_value_t = 512)]
    pub fleet_window: u64,
    /// The verifier's data directory (store, keys, broker files). Default: a fresh directory
    /// under /var/tmp (a real disk on most systems; the bench prints what it is), removed at
    /// the end unless --keep. A directory given here is never removed.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Keep the bench directory (store, logs) at the end.
    #[arg(long)]
    pub keep: bool,
    /// Skip the agent measurements (socket and latency); only the mirror runs.
    #[arg(long)]
    pub skip_agent: bool,
    /// Skip the mirror runs; only the agent measurements.
    #[arg(long)]
    pub skip_mirror: bool,
    /// Concurrent connections to the agent's punch socket.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Requests each connection keeps in flight (pipelined).
    #[arg(long, default_value_t = 32)]
    pub depth: usize,
    /// Punches submitted at the agent's socket for the throughput figure.
    #[arg(long, default_value_t = 50_000)]
    pub socket_punches: u64,
    /// The agent's --punch-batch (default: the agent's own).
    #[arg(long)]
    pub agent_batch: Option<u64>,
    /// The agent's --punch-linger-ms (default: the agent's own).
    #[arg(long)]
    pub agent_linger_ms: Option<u64>,
    /// Punches per second for the latency figure.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: u64,
    /// Seconds the latency run lasts.
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// How often the latency run polls the agent's acked seq, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub poll_ms: u64,
    /// A mirror run that has not been fully acked after this many seconds is an error.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

fn check(args: &PunchArgs) -> Result<()> {
    if args.devices.is_empty() || args.devices.contains(&0) {
        bail!("--devices needs fleet sizes of at least 1");
    }
    for b in [args.batch, args.fleet_batch] {
        if b == 0 || b > MAX_BATCH_RECORDS as u64 {
            bail!(
                "--batch and --fleet-batch must be 1 to {MAX_BATCH_RECORDS} (the protocol's limit per batch)"
            );
        }
    }
    if args.window == 0 || args.fleet_window == 0 {
        bail!("--window and --fleet-window must be at least 1");
    }
    if args.records == 0 || args.socket_punches == 0 || args.latency_rate == 0 {
        bail!("--records, --socket-punches and --latency-rate must be at least 1");
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", thousands(n as f64))
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The bench's directory (logs, the agent's state, and the verifier's data unless `--data`
/// names another place): fresh, under /var/tmp, which is disk-backed where /tmp may be tmpfs.
struct Dirs {
    root: PathBuf,
    data: PathBuf,
    remove: bool,
}

impl Dirs {
    fn new(args: &PunchArgs) -> Result<Self> {
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() {
            base.to_owned()
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("vouch-bench-{}", std::process::id()));
        vouch_common::fs::ensure_private_dir(&root)?;
        let data = args
            .data
            .clone()
            .unwrap_or_else(|| root.join("verifier-data"));
        // Created now so its file system can be reported before the verifier starts.
        vouch_common::fs::ensure_private_dir(&data)
            .with_context(|| format!("creating {}", data.display()))?;
        Ok(Self {
            root,
            data,
            remove: !args.keep,
        })
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            println!("\nkept: {} (logs, agent state, store)", self.root.display());
        }
    }
}

pub fn run(args: PunchArgs) -> Result<()> {
    check(&args)?;
    let dirs = Dirs::new(&args)?;
    println!("vouch punch bench");
    println!(
        "  machine: {} cores ({}), load {:.2} at start",
        machine::cores(),
        machine::cpu_model(),
        machine::load().unwrap_or(f64::NAN)
    );
    println!(
        "  verifier data: {} — {}",
        dirs.data.display(),
        machine::describe_storage(&dirs.data)
    );
    let mut v = Verifier::start(&dirs.data, &dirs.root)?;
    println!(
        "  vouch-verifier run: managed Mosquitto on {}; logs in {}",
        v.mqtt_url,
        dirs.root.display()
    );
    let mut summary = Vec::new();
    let result = (|| {
        if !args.skip_mirror {
            mirror_runs(&args, &v, &mut summary)?;
        }
        if !args.skip_agent {
            agent_runs(&args, &dirs.root, &v, &mut summary)?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    v.stop();
    println!("\nsummary (targets for a 2-core machine):");
    for line in &summary {
        println!("  {line}");
    }
    result.with_context(|| format!("see the logs in {}", dirs.root.display()))
}

/// Enrolls the largest fleet once, then one run per fleet size over its first terminals (their
/// chains continue from run to run).
fn mirror_runs(args: &PunchArgs, v: &Verifier, summary: &mut Vec<String>) -> Result<()> {
    let most = args.devices.iter().copied().max().unwrap_or(1);
    let base_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let t = Instant::now();
    let mut fleet = enroll_fleet(v, most, base_time)?;
    println!(
        "  enrolled {most} simulated terminals (each its own MQTT identity) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for &n in &args.devices {
        let window = args.window.min(args.fleet_window / n as u64).max(1);
        let per_device = args.records.div_ceil(n as u64);
        let batch = if n == 1 { args.batch } else { args.fleet_batch };
        let cfg = LoadConfig {
            batch,
            window,
            capacity: 1_000_000,
            resend_after: Duration::from_millis(args.resend_after_ms),
            timeout: Duration::from_secs(args.timeout),
        };
        println!(
            "\nmirror, {}: {} records each, batch {batch}, {window} batch{} in flight per terminal (the agent keeps {})",
            plural(n, "terminal"),
            thousands(per_device as f64),
            if window == 1 { "" } else { "es" },
            vouch_agent::punch::upload::WINDOW_BATCHES
        );
        let mut devices: Vec<SimDevice> = fleet.drain(..n).collect();
        let rejected_before = v.rejections()?;
        let cpu0 = CpuSample::take(v, None);
        let stats = mirror::run(&mut devices, per_device, cfg, v.mqtt_port, v.key);
        let cpu1 = CpuSample::take(v, None);
        // Put them back in order for the next run, also after a failure.
        devices.sort_by(|a, b| a.id().as_str().cmp(b.id().as_str()));
        fleet.splice(0..0, devices);
        let stats = stats?;
        print_mirror(
            &stats,
            &cpu1.since(&cpu0, "load generator"),
            cfg.resend_after,
        );
        let us = cpu1.verifier_us_per(&cpu0, stats.records);
        println!(
            "  verifier CPU {us:.1} µs per record mirrored (an estimate, not a measurement: {} records/s if it had {} free cores and only CPU limited it)",
            thousands(machine::cores() as f64 * 1e6 / us.max(1e-3)),
            machine::cores()
        );
        print_rejections(&rejected_before, &v.rejections()?);
        check_heads(v, &fleet[..n])?;
        let rate = stats.rate();
        summary.push(format!(
            "mirror, {n:>5} terminal{}: {:>9} punches/s acked durably   target ≥ {} — {}",
            if n == 1 { " " } else { "s" },
            thousands(rate),
            thousands(TARGET_MIRROR),
            verdict(rate >= TARGET_MIRROR)
        ));
    }
    Ok(())
}

fn enroll_fleet(v: &Verifier, n: usize, base_time: u64) -> Result<Vec<SimDevice>> {
    let made = (0..n)
        .map(|i| SimDevice::new(i, base_time))
        .collect::<Result<Vec<_>>>()?;
    let (devices, requests): (Vec<_>, Vec<_>) = made.into_iter().unzip();
    // A few enrollments in flight: each is one store commit and a broker reload.
    let chunk = requests.len().div_ceil(4).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().try_for_each(|r| v.enroll(r))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("an enrollment thread panicked"))?
        })
    })?;
    Ok(devices)
}

fn print_mirror(s: &RunStats, cpu: &str, resend_after: Duration) {
    println!(
        "  {} punches/s mirrored with durable acks ({} records in {:.2} s, {} batches sent; {} connected and subscribed in {:.1} s before the clock started)",
        thousands(s.rate()),
        thousands(s.records as f64),
        s.elapsed.as_secs_f64(),
        thousands(s.batches as f64),
        plural(s.devices, "terminal"),
        s.connect.as_secs_f64()
    );
    println!("  {cpu}");
    println!(
        "  resend requests {}, silences (sent again after {:.0} s without an ack) {}, reconnects {}",
        s.resends,
        resend_after.as_secs_f64(),
        s.silences,
        s.reconnects
    );
}

/// The verifier's rejection counters that grew during a run.
fn print_rejections(before: &[(String, u64)], after: &[(String, u64)]) {
    let grown: Vec<String> = after
        .iter()
        .filter_map(|(label, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == label)
                .map_or(0, |(_, b)| *b);
            (*n > was).then(|| format!("{label} +{}", n - was))
        })
        .collect();
    if grown.is_empty() {
        println!("  verifier rejections during the run: none");
    } else {
        println!("  verifier rejections during the run: {}", grown.join(", "));
    }
}

/// Cross-checks what the terminals saw acked against what the verifier reports
/// (`vouchctl device ID --json` → `punches.head_seq`).
fn check_heads(v: &Verifier, devices: &[SimDevice]) -> Result<()> {
    let mut missing = 0;
    for d in devices {
        let view = v.get(&format!("/v1/devices/{}", d.id()))?;
        match view["punches"]["head_seq"].as_u64() {
            Some(seq) if seq == d.acked() => {}
            Some(seq) => bail!(
                "{}: the verifier reports head {seq}, but it acked {}",
                d.id(),
                d.acked()
            ),
            None => missing += 1,
        }
    }
    if missing == 0 {
        println!(
            "  check: the verifier's head equals the acked head for all {} terminals",
            devices.len()
        );
    } else {
        println!(
            "  check: the verifier's device view has no punches.head_seq for {missing} terminals"
        );
    }
    Ok(())
}

fn agent_runs(
    args: &PunchArgs,
    root: &Path,
    v: &Verifier,
    summary: &mut Vec<String>,
) -> Result<()> {
    let tuning = AgentTuning {
        batch: args.agent_batch,
        linger_ms: args.agent_linger_ms,
    };
    let mut agent = Agent::start(&root.join("agent"), "bench-agent", v, tuning)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(agent_measure(args, &mut agent, v, summary));
    agent.stop();
    result.with_context(|| format!("the agent's log: {}", agent.log_path().display()))
}

async fn agent_measure(
    args: &PunchArgs,
    agent: &mut Agent,
    v: &Verifier,
    summary: &mut Vec<String>,
) -> Result<()> {
    agent.wait_ready(Duration::from_secs(60)).await?;
    println!(
        "\nagent: a vouch-agent daemon on swtpm, punch socket {}",
        agent.socket.display()
    );
    println!(
        "  {} punches over {} connections, {} pipelined requests each",
        thousands(args.socket_punches as f64),
        args.connections,
        args.depth
    );
    let cpu0 = CpuSample::take(v, None);
    let agent_cpu0 = agent.pid().and_then(verifier::cpu_seconds).unwrap_or(0.0);
    let c = agent::confirm_throughput(
        &agent.socket,
        args.connections,
        args.depth,
        args.socket_punches,
    )
    .await?;
    let cpu1 = CpuSample::take(v, None);
    let agent_cpu1 = agent.pid().and_then(verifier::cpu_seconds).unwrap_or(0.0);
    let rate = c.punches as f64 / c.elapsed.as_secs_f64().max(1e-9);
    println!(
        "  {} punches/s confirmed (each after its durable commit): {} in {:.2} s, last seq {}",
        thousands(rate),
        thousands(c.punches as f64),
        c.elapsed.as_secs_f64(),
        c.last_seq
    );
    println!(
        "  {}; agent {:.0} %",
        cpu1.since(&cpu0, "socket clients"),
        (agent_cpu1 - agent_cpu0) * 100.0 / c.elapsed.as_secs_f64().max(1e-9)
    );
    summary.push(format!(
        "agent socket:            {:>9} punches/s confirmed        target ≥ {} — {}",
        thousands(rate),
        thousands(TARGET_SOCKET),
        verdict(rate >= TARGET_SOCKET)
    ));

    // The backlog drains while the link is up: how long until the mirror holds all of it.
    let drain_start = Instant::now();
    loop {
        let s = agent::status(&agent.socket).await?;
        if s.acked_seq >= s.last_seq {
            let drain = drain_start.elapsed();
            println!(
                "  mirror caught up {:.2} s after the last confirmation (acked seq {}): {} punches/s from the first submission to the ack of the last",
                drain.as_secs_f64(),
                s.acked_seq,
                thousands(c.punches as f64 / (c.elapsed + drain).as_secs_f64().max(1e-9))
            );
            break;
        }
        if drain_start.elapsed() > Duration::from_secs(args.timeout) {
            bail!(
                "the mirror had acked {} of {} after {} s",
                s.acked_seq,
                s.last_seq,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "\nlatency: {} punches/s for {} s on one connection, acked seq polled every {} ms",
        thousands(args.latency_rate as f64),
        args.latency_seconds,
        args.poll_ms
    );
    let l = agent::ack_latency(
        &agent.socket,
        args.latency_rate,
        args.latency_seconds,
        Duration::from_millis(args.poll_ms.max(1)),
    )
    .await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  confirmation → mirror ack: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} punches (sent at {:.0}/s)",
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        l.punches,
        l.rate
    );
    summary.push(format!(
        "confirmation → ack p99:  {:>9} ms                        target ≤ {} ms — {}",
        thousands(ms(l.p99)),
        TARGET_P99.as_millis(),
        verdict(l.p99 <= TARGET_P99)
    ));
    Ok(())
}
