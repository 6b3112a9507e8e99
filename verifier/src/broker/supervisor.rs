//! The managed Mosquitto child: started with the generated configuration, its pid recorded in
//! `DATA/broker/mosquitto.pid`, restarted with backoff whenever it dies (logged with its exit
//! status), stopped by pid on shutdown (SIGTERM, then SIGKILL). A leftover child of a verifier
//! that was killed without shutting down is ended on start, but only when `/proc/PID/cmdline`
//! shows it is Mosquitto running OUR configuration file: a recycled pid is never signalled.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::BrokerHealth;
use super::conf::BrokerSettings;

/// Where Debian's package installs the broker.
pub const DEFAULT_MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The broker's log is moved aside past this size when the broker (re)starts.
const MAX_LOG: u64 = 64 << 20;

/// How long a stopping child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Sends `kill -SIG pid` (the `kill` utility: the workspace forbids `unsafe`, so no libc).
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed ({status})");
    }
    Ok(())
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether `/proc/PID/cmdline` is `<...>/mosquitto -c <conf>`.
fn runs_our_config(pid: u32, conf: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
    let conf = conf.as_os_str().as_encoded_bytes();
    matches!(args.as_slice(), [bin, flag, c] if bin.ends_with(b"mosquitto") && *flag == b"-c" && *c == conf)
}

/// Ends the Mosquitto a previous verifier left running on this data directory, if any. Waits
/// on the async timer, so the runtime's other tasks (the shutdown signal among them) run.
async fn end_leftover(settings: &BrokerSettings) -> Result<()> {
    let pid_path = settings.pid_path();
    let Ok(text) = std::fs::read_to_string(&pid_path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        tracing::warn!(path = %pid_path.display(), "ignoring an unreadable broker pid file");
        return Ok(());
    };
    if !alive(pid) || !runs_our_config(pid, &settings.conf_path()) {
        return Ok(());
    }
    tracing::warn!(
        pid,
        "ending the managed Mosquitto a previous verifier left running"
    );
    let _ = signal(pid, "TERM");
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > STOP_GRACE {
            let _ = signal(pid, "KILL");
        }
        if start.elapsed() > STOP_GRACE * 2 {
            bail!("the leftover Mosquitto (pid {pid}) does not exit");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts and supervises the broker.
#[derive(Debug)]
pub struct Supervisor {
    pub bin: PathBuf,
    pub settings: BrokerSettings,
    pub health: Arc<BrokerHealth>,
}

impl Supervisor {
    /// Ends a leftover child, starts the broker and waits until it accepts connections; a
    /// broker that exits first (port taken, bad TLS files) is a startup error quoting its log.
    /// Returns the future that keeps it running until `shutdown` and then stops it (the caller
    /// spawns and joins it).
    pub async fn start(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
        if !self.bin.is_file() {
            bail!(
                "{} not found: the verifier runs Mosquitto as its MQTT broker; install it \
                 (Debian/Ubuntu: apt-get install mosquitto, which scripts/setup does) or point \
                 --mqtt-url at an external broker",
                self.bin.display()
            );
        }
        end_leftover(&self.settings).await?;
        let mut child = self.spawn()?;
        let start = Instant::now();
        let listen = self.settings.listen;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Mosquitto exited at startup ({status}); its log {} ends with:\n{}",
                    self.settings.log_path().display(),
                    log_tail(&self.settings.log_path())
                );
            }
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill().await;
                bail!("Mosquitto did not start listening on {listen} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(%listen, pid = ?child.id(), "managed Mosquitto listening");
        Ok(self.supervise(child, shutdown))
    }

    fn spawn(&self) -> Result<Child> {
        let log_path = self.settings.log_path();
        if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > MAX_LOG) {
            let _ = std::fs::rename(&log_path, log_path.with_extension("log.old"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.settings.conf_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A backstop if the runtime is dropped without the orderly stop below.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id().context("the broker exited immediately")?;
        vouch_common::fs::write_atomic(
            &self.settings.pid_path(),
            format!("{pid}\n").as_bytes(),
            0o644,
        )?;
        self.health.set_broker_pid(Some(pid));
        Ok(child)
    }

    async fn supervise(self, mut child: Child, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let started = Instant::now();
            tokio::select! {
                status = child.wait() => {
                    self.health.set_broker_pid(None);
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(200);
                    }
                    tracing::warn!(
                        %status,
                        restart_in_ms = backoff.as_millis() as u64,
                        log = %self.settings.log_path().display(),
                        "managed Mosquitto exited; restarting it"
                    );
                }
                _ = shutdown.changed() => {
                    self.stop(&mut child).await;
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {
                        let _ = std::fs::remove_file(self.settings.pid_path());
                        return;
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match self.spawn() {
                    Ok(c) => {
                        self.health.note_restart();
                        tracing::info!(pid = ?c.id(), "managed Mosquitto restarted");
                        child = c;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot restart Mosquitto")
                    }
                }
            }
        }
    }

    async fn stop(&self, child: &mut Child) {
        if let Some(pid) = child.id() {
            let _ = signal(pid, "TERM");
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(pid, "Mosquitto ignored SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
        self.health.set_broker_pid(None);
        let _ = std::fs::remove_file(self.settings.pid_path());
        tracing::info!("managed Mosquitto stopped");
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(10).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mosquitto_with_our_config_counts_as_ours() {
        // This test process is not mosquitto: its pid must never be taken for our broker.
        let me = std::process::id();
        assert!(alive(me));
        assert!(!runs_our_config(me, Path::new("/x/mosquitto.conf")));
        assert!(!alive(u32::MAX));
    }
}
