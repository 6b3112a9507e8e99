//! The terminal under bench: a real `vouch-agent run` daemon on its own software TPM (swtpm,
//! driven through tss-esapi as a hardware TPM would be), enrolled with the bench's verifier,
//! and a client for its punch socket (newline-delimited JSON, pipelined) that measures
//! confirmed punches per second and the time from a punch's confirmation to the mirror's ack.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_test_kit::process::Proc;
use vouch_test_kit::swtpm::Swtpm;

use super::verifier::{Verifier, sibling};
use crate::demo::real::boot;
use crate::demo::{EVENTLOG, FIRMWARE};

/// Upload settings passed to the agent (`None`: the agent's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentTuning {
    pub batch: Option<u64>,
    pub linger_ms: Option<u64>,
}

/// A running agent daemon and its TPM.
pub struct Agent {
    pub socket: PathBuf,
    proc: Proc,
    _tpm: Swtpm,
}

impl Agent {
    /// Boots a swtpm, enrolls a terminal `id` in `dir` with `vouch-agent enroll`, registers it
    /// with the verifier and starts `vouch-agent run` with its punch socket in the state dir.
    pub fn start(dir: &Path, id: &str, v: &Verifier, tuning: AgentTuning) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(FIRMWARE), b"attendance terminal firmware 1.4.2\n")?;
        let tpm = Swtpm::start(dir).context("starting swtpm")?;
        boot(dir, &tpm, &TerminalBoot::default())?;
        let bin = sibling("vouch-agent")?;
        let state = dir.join("state");
        let base = |c: &mut Command| {
            c.current_dir(dir)
                .arg("--state")
                .arg(&state)
                .args(["--tcti", &tpm.tcti()])
                .env("TSS2_LOG", "all+NONE");
        };
        let mut enroll = Command::new(&bin);
        base(&mut enroll);
        let out = enroll
            .args(["enroll", "--device-id", id, "--model", super::mirror::MODEL])
            .args(["--out", "enroll.cbor"])
            .output()?;
        if !out.status.success() {
            bail!(
                "vouch-agent enroll failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        v.enroll(&std::fs::read(dir.join("enroll.cbor"))?)?;
        let mut run = Command::new(&bin);
        base(&mut run);
        run.args(["run", "--mqtt-url", &v.mqtt_url, "--verifier-key"])
            .arg(&v.key_path)
            .args(["--firmware", FIRMWARE, "--eventlog", EVENTLOG])
            // One attestation at start; none to compete with the punches afterwards.
            .args(["--interval", "3600"])
            .env("RUST_LOG", "warn");
        if let Some(b) = tuning.batch {
            run.args(["--punch-batch", &b.to_string()]);
        }
        if let Some(l) = tuning.linger_ms {
            run.args(["--punch-linger-ms", &l.to_string()]);
        }
        let proc = Proc::spawn(
            &format!("vouch-agent {id}"),
            &mut run,
            &dir.join("agent.log"),
        )?;
        Ok(Self {
            socket: state.join("punch.sock"),
            proc,
            _tpm: tpm,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }

    /// Waits until the socket answers `status`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Status> {
        let start = Instant::now();
        loop {
            if let Ok(mut c) = Conn::open(&self.socket).await
                && let Ok(s) = c.status().await
            {
                return Ok(s);
            }
            if !self.proc.alive() {
                bail!("the agent exited; see {}", self.proc.log_path().display());
            }
            if start.elapsed() > timeout {
                bail!(
                    "the agent's punch socket {} did not answer within {} s; see {}",
                    self.socket.display(),
                    timeout.as_secs(),
                    self.proc.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stop(&mut self) {
        self.proc.stop_within(Duration::from_secs(10));
    }
}

/// The socket's `status` answer.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub last_seq: u64,
    pub acked_seq: u64,
}

/// One line of the socket protocol, parsed; `{"ok":false,...}` becomes an error naming it.
fn answer(line: &str) -> Result<Value> {
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("the agent answered {line:?}"))?;
    if v["ok"] != true {
        bail!("the agent refused: {}", v["error"].as_str().unwrap_or(line));
    }
    Ok(v)
}

fn field(v: &Value, name: &str) -> Result<u64> {
    v[name]
        .as_u64()
        .ok_or_else(|| anyhow!("the agent's answer has no number {name:?}: {v}"))
}

/// A request line for punch `n` (deterministic employee ids, alternating in and out).
fn punch_line(n: u64) -> String {
    format!(
        "{{\"op\":\"punch\",\"employee\":\"E{:05}\",\"kind\":\"{}\",\"method\":\"card\"}}\n",
        n % 5000,
        if n.is_multiple_of(2) { "in" } else { "out" }
    )
}

/// One connection to the socket.
struct Conn {
    read: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Conn {
    async fn open(path: &Path) -> Result<Self> {
        let (r, w) = UnixStream::connect(path)
            .await
            .with_context(|| format!("connecting to {}", path.display()))?
            .into_split();
        Ok(Self {
            read: BufReader::new(r).lines(),
            write: w,
        })
    }

    async fn line(read: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>) -> Result<Value> {
        let line = read
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the agent closed the connection"))?;
        answer(&line)
    }

    async fn status(&mut self) -> Result<Status> {
        self.write.write_all(b"{\"op\":\"status\"}\n").await?;
        let v = Self::line(&mut self.read).await?;
        Ok(Status {
            last_seq: field(&v, "last_seq")?,
            acked_seq: field(&v, "acked_seq")?,
        })
    }
}

/// `status` on a fresh connection.
pub async fn status(socket: &Path) -> Result<Status> {
    Conn::open(socket).await?.status().await
}

/// What the confirmation run measured.
#[derive(Debug, Clone, Copy)]
pub struct Confirmed {
    pub punches: u64,
    pub elapsed: Duration,
    pub last_seq: u64,
}

/// `connections` connections each pipelining up to `depth` punch requests, `total` punches in
/// all; every answer must be a confirmation with a seq.
pub async fn confirm_throughput(
    socket: &Path,
    connections: usize,
    depth: usize,
    total: u64,
) -> Result<Confirmed> {
    let connections = connections.max(1);
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(socket).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        let share = total / connections as u64 + u64::from((i as u64) < total % connections as u64);
        tasks.spawn(pipeline(c, share, depth.max(1), i as u64));
    }
    let mut last_seq = 0;
    while let Some(r) = tasks.join_next().await {
        last_seq = last_seq.max(r.context("a connection task panicked")??);
    }
    Ok(Confirmed {
        punches: total,
        elapsed: start.elapsed(),
        last_seq,
    })
}

/// Sends `n` punches on `c` with at most `depth` unanswered; returns the highest seq confirmed.
async fn pipeline(c: Conn, n: u64, depth: usize, salt: u64) -> Result<u64> {
    let Conn {
        mut read,
        mut write,
    } = c;
    let window = Arc::new(Semaphore::new(depth));
    let w = window.clone();
    let writer = tokio::spawn(async move {
        let mut buf = String::new();
        let mut sent = 0;
        while sent < n {
            w.acquire().await?.forget();
            buf.clear();
            buf.push_str(&punch_line(salt * 1_000_003 + sent));
            sent += 1;
            // Everything the window allows now goes out in one write.
            while sent < n
                && let Ok(p) = w.try_acquire()
            {
                p.forget();
                buf.push_str(&punch_line(salt * 1_000_003 + sent));
                sent += 1;
            }
            write.write_all(buf.as_bytes()).await?;
        }
        Ok::<_, anyhow::Error>(write)
    });
    let mut last = 0;
    for _ in 0..n {
        let v = Conn::line(&mut read).await?;
        last = last.max(field(&v, "seq")?);
        window.add_permits(1);
    }
    // Keep the write half until every answer is read (dropping it would half-close the socket).
    drop(writer.await.context("the writer task panicked")??);
    Ok(last)
}

/// Confirmation-to-ack latencies.
#[derive(Debug, Clone)]
pub struct Latency {
    pub punches: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The rate the punches were really sent at.
    pub rate: f64,
}

/// Sends punches at `rate` per second for `seconds` on one connection while another polls
/// `status` every `poll`; a punch's latency is from its confirmation to the first poll whose
/// `acked_seq` covers its seq (so it includes up to one poll interval).
pub async fn ack_latency(
    socket: &Path,
    rate: u64,
    seconds: u64,
    poll: Duration,
) -> Result<Latency> {
    let total = rate.max(1) * seconds.max(1);
    let Conn {
        mut read,
        mut write,
    } = Conn::open(socket).await?;
    let mut poller = Conn::open(socket).await?;
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        // Punch n is due at start + n × period; a late tick sends what is due at once.
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
            write.write_all(punch_line(n).as_bytes()).await?;
        }
        Ok::<_, anyhow::Error>(write)
    });
    let reader = tokio::spawn(async move {
        let mut confirmed = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let v = Conn::line(&mut read).await?;
            confirmed.push((field(&v, "seq")?, Instant::now()));
        }
        Ok::<_, anyhow::Error>(confirmed)
    });
    // (acked_seq, when first seen), increasing.
    let mut acks: Vec<(u64, Instant)> = Vec::new();
    let mut last_confirmed: Option<u64> = None;
    let mut reader = Some(reader);
    let deadline = Duration::from_secs(seconds + 60);
    loop {
        let s = poller.status().await?;
        let now = Instant::now();
        if acks.last().is_none_or(|(a, _)| s.acked_seq > *a) {
            acks.push((s.acked_seq, now));
        }
        if last_confirmed.is_none() && reader.as_ref().is_some_and(|r| r.is_finished()) {
            last_confirmed = Some(s.last_seq);
        }
        if last_confirmed.is_some_and(|l| s.acked_seq >= l) {
            break;
        }
        if start.elapsed() > deadline {
            bail!(
                "the mirror had acked seq {} of {} after {} s",
                s.acked_seq,
                s.last_seq,
                deadline.as_secs()
            );
        }
        tokio::time::sleep(poll).await;
    }
    let confirmed = match reader.take() {
        Some(r) => r.await.context("the reader task panicked")??,
        None => Vec::new(),
    };
    let sent_for = confirmed
        .last()
        .map_or(Duration::ZERO, |(_, t)| t.duration_since(start));
    drop(writer.await.context("the writer task panicked")??);
    let lat = latencies(&confirmed, &acks);
    let pick = |q: f64| percentile(&lat, q);
    Ok(Latency {
        punches: lat.len(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: percentile(&lat, 1.0),
        rate: lat.len() as f64 / sent_for.as_secs_f64().max(1e-9),
    })
}

/// Each confirmed punch's latency, sorted: from its confirmation to the first poll whose acked
/// seq covers it (zero when that poll was read before the confirmation; `Duration::MAX` when
/// no poll covered it). `acks` holds (acked seq, when first seen), increasing.
fn latencies(confirmed: &[(u64, Instant)], acks: &[(u64, Instant)]) -> Vec<Duration> {
    let mut lat: Vec<Duration> = confirmed
        .iter()
        .map(|&(seq, at)| {
            let i = acks.partition_point(|(a, _)| *a < seq);
            acks.get(i)
                .map_or(Duration::MAX, |(_, t)| t.saturating_duration_since(at))
        })
        .collect();
    lat.sort_unstable();
    lat
}

/// The `q` quantile (0..=1, nearest rank) of sorted `lat`; zero when empty.
fn percentile(lat: &[Duration], q: f64) -> Duration {
    let rank = (lat.len() as f64 * q).ceil() as usize;
    lat.get(rank.clamp(1, lat.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn latency_runs_from_confirmation_to_the_first_poll_that_covers_the_seq() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let confirmed = [
            (1, t0),
            (2, t0 + ms(10)),
            (3, t0 + ms(20)),
            (4, t0 + ms(30)),
        ];
        // Seq 1 and 2 seen acked at 50 ms, 3 at 25 ms (before 4 was confirmed), 4 never.
        let acks = [(0, t0), (3, t0 + ms(25)), (4, t0 + ms(90))];
        let lat = latencies(&confirmed, &acks);
        assert_eq!(lat, vec![ms(5), ms(15), ms(25), ms(60)]);
        assert_eq!(percentile(&lat, 0.5), ms(15));
        assert_eq!(percentile(&lat, 0.99), ms(60));
        let lost = latencies(&[(5, t0)], &acks);
        assert_eq!(
            lost,
            vec![Duration::MAX],
            "an unacked punch must not look fast"
        );
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn a_refusal_on_the_socket_is_an_error_carrying_the_agents_message() {
        let err = answer(r#"{"ok":false,"error":"punch kind must be \"in\" or \"out\""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("punch kind must be"), "{err}");
        assert!(answer("not json").is_err());
        let v = answer(r#"{"ok":true,"seq":7,"hash":"00"}"#).unwrap();
        assert_eq!(field(&v, "seq").unwrap(), 7);
        assert!(field(&v, "acked_seq").is_err());
    }

    #[test]
    fn punch_requests_are_lines_the_socket_contract_accepts() {
        for n in [0, 1, 4999, 5000, u64::MAX] {
            let line = punch_line(n);
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["op"], "punch");
            let employee = v["employee"].as_str().unwrap();
            vouch_protocol::punch::PunchInput::parse(
                employee,
                v["kind"].as_str().unwrap(),
                v["method"].as_str(),
                0,
            )
            .unwrap();
        }
    }
}
