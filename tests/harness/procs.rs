//! Process guards: swtpm, Mosquitto and the verifier, each started as a child on free loopback
//! ports and ended (SIGTERM, then SIGKILL) by its own pid on drop. Their output goes to log files
//! in the test's directory and is printed when a test fails, to make failures diagnosable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
pub use vouch_common::swtpm::Swtpm;

use crate::{bin, free_port, wait_for_port};

/// A child process whose log is printed when the test using it fails.
#[derive(Debug)]
pub struct Proc(vouch_common::process::Proc);

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Self {
        Self(
            vouch_common::process::Proc::spawn(name, cmd, &log)
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}")),
        )
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// SIGTERM (then SIGKILL after 10 s); whether it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        self.0.stop()
    }

    pub fn alive(&mut self) -> bool {
        self.0.alive()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.0.name(),
                self.0.log_path().display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// swtpm from the shared guard, started or the test fails.
pub fn swtpm(dir: &Path) -> Swtpm {
    Swtpm::start(dir).unwrap_or_else(|e| panic!("cannot start swtpm: {e}"))
}

/// Mosquitto on a free port, anonymous, no persistence.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    /// Held so the broker lives as long as this guard.
    _proc: Proc,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_packet_size 4194304\nlog_dest stderr\n"
            ),
        )
        .unwrap();
        let proc = Proc::spawn(
            "mosquitto",
            Command::new("mosquitto").arg("-c").arg(&conf),
            dir.join("mosquitto.log"),
        );
        wait_for_port(port, "mosquitto");
        Self { port, _proc: proc }
    }
}

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    Mosquitto,
}

/// A verifier process (plus Mosquitto when asked), its data directory and ports.
#[derive(Debug)]
pub struct Verifier {
    pub data: PathBuf,
    pub mqtt_port: u16,
    pub http_port: u16,
    dir: PathBuf,
    kind: BrokerKind,
    proc: Option<Proc>,
    _mosquitto: Option<Mosquitto>,
    /// `--config` file, when started with one.
    config: Option<PathBuf>,
}

impl Verifier {
    pub fn start(dir: &Path, kind: BrokerKind) -> Self {
        Self::start_with(dir, kind, None)
    }

    /// [`Verifier::start`] with `toml` as the verifier's config file (`--config`).
    pub fn start_with_config(dir: &Path, kind: BrokerKind, toml: &str) -> Self {
        let path = dir.join("verifier.toml");
        fs::write(&path, toml).unwrap();
        Self::start_with(dir, kind, Some(path))
    }

    fn start_with(dir: &Path, kind: BrokerKind, config: Option<PathBuf>) -> Self {
        let mosquitto = (kind == BrokerKind::Mosquitto).then(|| Mosquitto::start(dir));
        let mqtt_port = mosquitto.as_ref().map_or_else(free_port, |m| m.port);
        let mut v = Self {
            data: dir.join("vouch-data"),
            mqtt_port,
            http_port: free_port(),
            dir: dir.to_owned(),
            kind,
            proc: None,
            _mosquitto: mosquitto,
            config,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin("vouch-verifier"));
        cmd.arg("run")
            .arg("--data")
            .arg(&self.data)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port));
        match self.kind {
            BrokerKind::Embedded => cmd
                .arg("--mqtt-listen")
                .arg(format!("127.0.0.1:{}", self.mqtt_port)),
            BrokerKind::Mosquitto => cmd.arg("--mqtt-url").arg(self.mqtt_url()),
        };
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.env("RUST_LOG", "info,rumqttd=warn");
        let n = fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.proc = Some(Proc::spawn(
            "vouch-verifier",
            &mut cmd,
            self.dir.join(format!("verifier-{n}.log")),
        ));
        wait_for_port(self.http_port, "the verifier's HTTP API");
        // The MQTT side is up once the verifier has subscribed; give the broker a moment.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Stops the verifier (SIGTERM) and starts it again on the same data and ports.
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            assert!(p.stop(), "verifier did not exit on SIGTERM");
        }
        self.spawn();
    }

    /// Whether the verifier process is still running.
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::alive)
    }

    pub fn mqtt_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn verifier_pub(&self) -> PathBuf {
        self.data.join("verifier.pub")
    }

    /// Runs vouchctl against this verifier.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("vouchctl"))
            .args(args)
            .env("VOUCH_API", self.api())
            .env(
                "VOUCH_TOKEN",
                fs::read_to_string(self.data.join("admin.token"))
                    .unwrap()
                    .trim(),
            )
            .output()
            .unwrap()
    }

    /// Runs vouchctl and returns its stdout as JSON; panics with its stderr on failure.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vouchctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn device(&self, id: &str) -> serde_json::Value {
        self.ctl_json(&["device", id, "--json"])
    }

    /// The reasons `vouchctl device ID --json` gives for a device's state.
    pub fn reasons(&self, id: &str) -> Vec<String> {
        self.device(id)["reasons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn stats(&self) -> serde_json::Value {
        self.ctl_json(&["stats", "--json"])
    }

    /// Count of rejections with `label` so far.
    pub fn rejected(&self, label: &str) -> u64 {
        self.stats()["rejected"][label].as_u64().unwrap_or(0)
    }
}
