//! Process guards: swtpm, Mosquitto and the verifier, each started as a child on free loopback
//! ports and ended (SIGTERM, then SIGKILL) by its own pid on drop. Their output goes to log files
//! in the test's directory and is printed when a test fails, to make failures diagnosable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, free_port, free_port_pair, wait_for_port};

/// A running child process with its log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Self {
        let out = fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns whether it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.name,
                self.log.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        self.stop();
    }
}

/// A software TPM (swtpm) on a free port pair, with its state in `dir`.
#[derive(Debug)]
pub struct Swtpm {
    pub port: u16,
    dir: PathBuf,
    proc: Proc,
}

impl Swtpm {
    pub fn start(dir: &Path) -> Self {
        let state = dir.join("tpm");
        fs::create_dir_all(&state).unwrap();
        let port = free_port_pair();
        let proc = Proc::spawn(
            "swtpm",
            Command::new("swtpm").args([
                "socket",
                "--tpm2",
                "--tpmstate",
                &format!("dir={}", state.display()),
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                "--flags",
                "not-need-init,startup-clear",
            ]),
            dir.join("swtpm.log"),
        );
        wait_for_port(port, "swtpm");
        Self {
            port,
            dir: dir.to_owned(),
            proc,
        }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+NONE");
        c
    }

    /// tpm2_pcrextend behind the agent's back.
    pub fn pcr_extend(&self, pcr: u8, digest_hex: &str) {
        let out = self
            .tool("tpm2_pcrextend")
            .arg(format!("{pcr}:sha256={digest_hex}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tpm2_pcrextend: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A simulated reboot: TPM reset plus TPM2_Startup(CLEAR); PCRs come back zeroed.
    pub fn reboot(&self) {
        let out = Command::new("swtpm_ioctl")
            .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-i"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swtpm_ioctl -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.tool("tpm2_startup").arg("-c").output().unwrap();
        assert!(
            out.status.success(),
            "tpm2_startup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
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
}

impl Verifier {
    pub fn start(dir: &Path, kind: BrokerKind) -> Self {
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

    pub fn stats(&self) -> serde_json::Value {
        self.ctl_json(&["stats", "--json"])
    }

    /// Count of rejections with `label` so far.
    pub fn rejected(&self, label: &str) -> u64 {
        self.stats()["rejected"][label].as_u64().unwrap_or(0)
    }
}
