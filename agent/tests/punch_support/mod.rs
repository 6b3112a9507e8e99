//! Helpers of the punch tests: an enrolled terminal state directory on its own swtpm, the real
//! `vouch-agent run` daemon on it (killed by its own child handle, never by name), and the
//! `vouch-agent punch` client.

// Each punch test file uses a different subset of these helpers.
#![allow(dead_code)]
// clippy's allow-expect-in-tests covers #[test] functions only, not these helpers, which
// should panic loudly too.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vouch_agent::punch::buffer::{Buffer, Meta};
use vouch_protocol::ids::DeviceId;

pub const BIN: &str = env!("CARGO_BIN_EXE_vouch-agent");
pub const DEVICE: &str = "term-punch";

/// An enrolled terminal: state directory, swtpm, a verifier key pair (the test plays the
/// verifier where it needs one).
pub struct Terminal {
    pub dir: tempfile::TempDir,
    pub swtpm: vouch_test_kit::swtpm::Swtpm,
    pub verifier: ed25519_dalek::SigningKey,
}

impl Terminal {
    pub fn enrolled() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let swtpm = vouch_test_kit::swtpm::Swtpm::start(&dir.path().join("tpm").tap_mkdir())
            .expect("start swtpm");
        let verifier = vouch_common::keys::generate().expect("verifier key");
        vouch_common::keys::write_public(
            &dir.path().join("verifier.pub"),
            &verifier.verifying_key(),
        )
        .expect("write verifier.pub");
        let t = Self {
            dir,
            swtpm,
            verifier,
        };
        let out = t
            .agent()
            .args(["enroll", "--device-id", DEVICE, "--model", "T-100", "--out"])
            .arg(t.dir.path().join("request.cbor"))
            .output()
            .expect("run enroll");
        assert_success("enroll", &out);
        t
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state().join("punch.sock")
    }

    pub fn device(&self) -> DeviceId {
        DEVICE.parse().expect("device id")
    }

    /// `vouch-agent --state S --tcti T` (add the subcommand).
    pub fn agent(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--state")
            .arg(self.state())
            .arg("--tcti")
            .arg(self.swtpm.tcti());
        c
    }

    /// Starts `vouch-agent run` against `mqtt_url` (a closed port: no broker) with `extra`
    /// flags, and waits until its punch socket answers.
    pub fn run(&self, mqtt_url: &str, extra: &[&str]) -> Daemon {
        self.run_on(&self.socket(), mqtt_url, extra)
    }

    /// [`Terminal::run`] with the punch socket at `socket` (pass `--punch-socket` in `extra`).
    pub fn run_on(&self, socket: &Path, mqtt_url: &str, extra: &[&str]) -> Daemon {
        let log = self.dir.path().join("agent.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = self
            .agent()
            .args(["run", "--mqtt-url", mqtt_url, "--verifier-key"])
            .arg(self.dir.path().join("verifier.pub"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn vouch-agent run");
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if status_over_socket(socket).is_some() {
                return d;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("vouch-agent run exited ({st}):\n{}", d.log());
            }
            assert!(Instant::now() < deadline, "no punch socket:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `vouch-agent punch ARGS`.
    pub fn punch(&self, args: &[&str]) -> Output {
        self.agent()
            .arg("punch")
            .args(args)
            .output()
            .expect("run vouch-agent punch")
    }

    /// `vouch-agent punch` that must succeed; returns the seq it printed.
    pub fn punch_ok(&self, employee: &str) -> u64 {
        let out = self.punch(&["--employee", employee, "--kind", "in", "--method", "card"]);
        assert_success("punch", &out);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("punch prints the seq")
    }

    /// Opens the buffer file (the daemon must not be running).
    pub fn buffer(&self) -> Buffer {
        Buffer::open(&self.state().join("punches.redb"), self.device()).expect("open buffer")
    }

    pub fn meta(&self) -> Meta {
        self.buffer().meta().expect("meta")
    }

    pub fn status_json(&self) -> serde_json::Value {
        self.status_json_with(&[])
    }

    /// `vouch-agent status --json ARGS`, which must succeed.
    pub fn status_json_with(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .agent()
            .args(["status", "--json"])
            .args(args)
            .output()
            .expect("status");
        assert_success("status --json", &out);
        serde_json::from_slice(&out.stdout).expect("status json")
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).expect("mkdir");
        self
    }
}

/// A running `vouch-agent run`, SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (a clean shutdown: the buffer is closed) and reap.
    pub fn terminate(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// kill -9 and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback URL nothing listens on.
pub fn no_broker() -> String {
    let port = vouch_test_kit::process::free_port().expect("free port");
    format!("mqtt://127.0.0.1:{port}")
}

/// Sends `lines` on one connection (pipelined, all written before any answer is read) and
/// returns the answers.
pub fn pipeline(socket: &Path, lines: &[String]) -> Vec<serde_json::Value> {
    let s = UnixStream::connect(socket).expect("connect punch socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut all = String::new();
    for l in lines {
        all.push_str(l);
        all.push('\n');
    }
    let writer = {
        let mut w = s.try_clone().expect("clone");
        std::thread::spawn(move || w.write_all(all.as_bytes()).expect("write requests"))
    };
    let mut r = BufReader::new(s);
    let answers = (0..lines.len())
        .map(|_| {
            let mut line = String::new();
            r.read_line(&mut line).expect("read answer");
            serde_json::from_str(&line).expect("answer is JSON")
        })
        .collect();
    writer.join().expect("writer");
    answers
}

/// `{"op":"status"}` on the socket, or `None` when nobody answers.
pub fn status_over_socket(socket: &Path) -> Option<serde_json::Value> {
    UnixStream::connect(socket).ok()?;
    pipeline(socket, &[r#"{"op":"status"}"#.to_owned()]).pop()
}

pub fn punch_line(employee: &str) -> String {
    serde_json::json!({"op": "punch", "employee": employee, "kind": "in", "method": "card"})
        .to_string()
}

pub use vouch_test_kit::process::assert_success;
