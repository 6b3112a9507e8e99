//! The verifier under bench: the real `vouch-verifier run` binary (its managed Mosquitto, its
//! store in the data directory the bench chose), reached like an operator reaches it — the
//! HTTP API with the admin token — and watched from outside: its `/v1/stats` counters and the
//! CPU time its process and its broker used.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vouch_test_kit::process::{Proc, free_port, wait_for_port};
use vouch_verifier::api::EnrolledView;
use vouch_verifier::ctl::client::Client;

/// A running verifier and how to reach it.
pub struct Verifier {
    pub data: PathBuf,
    pub mqtt_port: u16,
    pub mqtt_url: String,
    pub key: ed25519_dalek::VerifyingKey,
    pub key_path: PathBuf,
    client: Client,
    proc: Proc,
}

/// The sibling binary `name` (the bench runs from the workspace's target directory).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{name} not found next to {} (build the workspace's binaries: cargo build --release --bins)",
            exe.display()
        );
    }
    Ok(p)
}

impl Verifier {
    /// Starts `vouch-verifier run` on free loopback ports with its store in `data` (created
    /// if missing) and waits until it takes messages.
    pub fn start(data: &Path, log_dir: &Path) -> Result<Self> {
        let (mqtt, http) = (free_port()?, free_port()?);
        let log = log_dir.join("verifier.log");
        let mut cmd = Command::new(sibling("vouch-verifier")?);
        cmd.args(["run", "--data"])
            .arg(data)
            .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--require-ek-cert", "false"])
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("vouch-verifier", &mut cmd, &log)?;
        if !wait_for_port(http, Duration::from_secs(30)) {
            bail!("the verifier did not start; see {}", log.display());
        }
        let base = format!("http://127.0.0.1:{http}");
        let anonymous = Client::new(&base, String::new());
        let start = Instant::now();
        // The port answers before the key and token are written: `ready` comes after both.
        while anonymous
            .get::<Value>("/v1/health")
            .map_or(true, |h| h["ready"] != true)
        {
            if !proc.alive() || start.elapsed() > Duration::from_secs(60) {
                bail!("the verifier never became ready; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let token = std::fs::read_to_string(data.join("admin.token"))
            .context("reading the verifier's admin token")?;
        let key_path = data.join("verifier.pub");
        Ok(Self {
            data: data.to_owned(),
            mqtt_port: mqtt,
            mqtt_url: format!("mqtt://127.0.0.1:{mqtt}"),
            key: vouch_common::keys::read_public(&key_path)?,
            key_path,
            client: Client::new(&base, token.trim().to_owned()),
            proc,
        })
    }

    /// Enrolls one device from its sealed enrollment request (`vouchctl enroll`'s call).
    pub fn enroll(&self, request: &[u8]) -> Result<()> {
        let _: EnrolledView = self
            .client
            .post_bytes("/v1/devices", "application/cbor", request)?;
        Ok(())
    }

    /// `GET path` on the operator API as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.client.get(path)
    }

    /// Rejected-message counters by label (`vouchctl stats`).
    pub fn rejections(&self) -> Result<Vec<(String, u64)>> {
        let stats = self.get("/v1/stats")?;
        Ok(stats["rejected"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The pids whose CPU time the bench reports: the verifier and its managed Mosquitto.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        let broker = std::fs::read_to_string(self.data.join("broker").join("mosquitto.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        (self.proc.pid(), broker)
    }

    pub fn stop(&mut self) {
        self.proc.stop_within(Duration::from_secs(15));
    }
}

/// User + system CPU seconds process `pid` has used (`/proc/PID/stat`; `None` once it is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the man page (utime, stime) are 11 and 12 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI the project builds for.
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of the bench itself, the verifier and the broker at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub bench: f64,
    pub verifier: f64,
    pub broker: f64,
    pub at: Instant,
}

impl CpuSample {
    pub fn take(v: &Verifier, extra: Option<u32>) -> Self {
        let (vp, bp) = v.pids();
        let get = |p: Option<u32>| p.and_then(cpu_seconds).unwrap_or(0.0);
        Self {
            bench: get(Some(std::process::id())) + get(extra),
            verifier: get(vp),
            broker: get(bp),
            at: Instant::now(),
        }
    }

    /// The verifier's CPU time per record between `before` and now, in microseconds.
    pub fn verifier_us_per(&self, before: &CpuSample, records: u64) -> f64 {
        (self.verifier - before.verifier) * 1e6 / records.max(1) as f64
    }

    /// "CPU over the run" line: each process's share of one core.
    pub fn since(&self, before: &CpuSample, bench_label: &str) -> String {
        let wall = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        format!(
            "CPU: verifier {:.0} %, mosquitto {:.0} %, {bench_label} {:.0} % of one core",
            (self.verifier - before.verifier) * 100.0 / wall,
            (self.broker - before.broker) * 100.0 / wall,
            (self.bench - before.bench) * 100.0 / wall,
        )
    }
}
