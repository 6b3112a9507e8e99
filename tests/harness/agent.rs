//! A terminal under test: a vouch-agent state directory bound to one swtpm and one verifier,
//! with its firmware files, driven through the real `vouch-agent` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vouch_protocol::digest::HashAlg;
use vouch_protocol::eventlog::build::LogBuilder;

use crate::bin;
use crate::procs::{Proc, Swtpm, Verifier};

/// `vouch-agent run`'s punch flags; `None` leaves the agent's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PunchFlags {
    pub capacity: Option<u64>,
    pub batch: Option<usize>,
    pub linger_ms: Option<u64>,
    pub retention_secs: Option<u64>,
}

impl PunchFlags {
    fn args(&self, c: &mut Command) {
        let flags = [
            ("--punch-capacity", self.capacity),
            ("--punch-batch", self.batch.map(|b| b as u64)),
            ("--punch-linger-ms", self.linger_ms),
            ("--punch-retention", self.retention_secs),
        ];
        for (flag, value) in flags {
            if let Some(v) = value {
                c.arg(flag).arg(v.to_string());
            }
        }
    }
}

#[derive(Debug)]
pub struct Terminal {
    pub id: String,
    pub state: PathBuf,
    pub firmware: Vec<PathBuf>,
    /// The firmware event log file passed with `--eventlog`, once [`Terminal::boot`] wrote one.
    pub eventlog: Option<PathBuf>,
    /// The CA passed with `--mqtt-ca` (TLS brokers).
    pub mqtt_ca: Option<PathBuf>,
    tcti: String,
    mqtt_url: String,
    verifier_pub: PathBuf,
    dir: PathBuf,
}

impl Terminal {
    /// A terminal with one firmware file `app.bin` holding `firmware`.
    pub fn new(dir: &Path, id: &str, tpm: &Swtpm, v: &Verifier, firmware: &str) -> Self {
        let root = dir.join(id);
        fs::create_dir_all(&root).unwrap();
        let fw = root.join("app.bin");
        fs::write(&fw, firmware).unwrap();
        Self {
            id: id.to_owned(),
            state: root.join("state"),
            firmware: vec![fw],
            eventlog: None,
            mqtt_ca: v.mqtt_ca(),
            tcti: tpm.tcti(),
            mqtt_url: v.mqtt_url(),
            verifier_pub: v.verifier_pub(),
            dir: root,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(bin("vouch-agent"));
        c.arg("--state")
            .arg(&self.state)
            .arg("--tcti")
            .arg(&self.tcti)
            .env("TSS2_LOG", "all+NONE")
            .env("RUST_LOG", "info");
        c
    }

    fn run_args(&self, c: &mut Command) {
        c.arg("--mqtt-url")
            .arg(&self.mqtt_url)
            .arg("--verifier-key")
            .arg(&self.verifier_pub);
        if let Some(ca) = &self.mqtt_ca {
            c.arg("--mqtt-ca").arg(ca);
        }
        for f in &self.firmware {
            c.arg("--firmware").arg(f);
        }
        if let Some(log) = &self.eventlog {
            c.arg("--eventlog").arg(log);
        }
    }

    /// Boots the terminal's (software) TPM into `log`: a TPM reset, then every digest the log
    /// records extended into the PCRs, as firmware would. The file the agent reads holds
    /// `written` when given (a tampered or truncated log), otherwise the log itself.
    pub fn boot(&mut self, tpm: &Swtpm, log: &LogBuilder, written: Option<&[u8]>) {
        tpm.reboot().unwrap();
        for (pcr, digest) in log.extends(HashAlg::Sha256) {
            tpm.pcr_extend(u8::try_from(pcr).unwrap(), &hex::encode(digest))
                .unwrap();
        }
        let path = self.dir.join("binary_bios_measurements");
        fs::write(&path, written.map_or_else(|| log.bytes(), <[u8]>::to_vec)).unwrap();
        self.eventlog = Some(path);
    }

    /// `vouch-agent enroll`; returns the request file.
    pub fn enroll_request(&self, model: &str) -> PathBuf {
        let out_file = self.dir.join("enroll.cbor");
        let out = self
            .cmd()
            .args(["enroll", "--device-id", &self.id, "--model", model, "--out"])
            .arg(&out_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_file
    }

    /// Enrolls with the agent and registers the request with the verifier.
    pub fn enroll(&self, v: &Verifier, model: &str) {
        let req = self.enroll_request(model);
        let out = v.ctl(&["enroll", req.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "vouchctl enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), self.id);
    }

    /// `vouch-agent attest --once`; returns its output (exit code 0/3/4/1).
    pub fn attest_once(&self) -> Output {
        self.attest_once_within(60)
    }

    /// `vouch-agent attest --once --timeout SECS`.
    pub fn attest_once_within(&self, secs: u64) -> Output {
        let mut c = self.cmd();
        c.args(["attest", "--once", "--timeout", &secs.to_string()]);
        self.run_args(&mut c);
        c.output().unwrap()
    }

    /// Runs `attest --once` and returns its exit code, printing its output if it is not `want`.
    pub fn attest_expect(&self, want: i32) -> String {
        let out = self.attest_once();
        let code = out.status.code().unwrap_or(-1);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            code, want,
            "attest --once of {} exited {code}, expected {want}:\n{text}",
            self.id
        );
        text
    }

    /// Starts `vouch-agent run` (the daemon) with a short interval.
    pub fn spawn_daemon(&self, interval_secs: u64) -> Proc {
        self.spawn_daemon_with(interval_secs, &PunchFlags::default())
    }

    /// Starts `vouch-agent run` with the punch intake and upload flags in `punch`.
    pub fn spawn_daemon_with(&self, interval_secs: u64, punch: &PunchFlags) -> Proc {
        let mut c = self.cmd();
        c.args(["run", "--interval", &interval_secs.to_string()]);
        self.run_args(&mut c);
        punch.args(&mut c);
        Proc::spawn(
            &format!("vouch-agent {}", self.id),
            &mut c,
            self.dir.join("daemon.log"),
        )
    }

    /// The agent's punch socket (the default, `STATE/punch.sock`).
    pub fn punch_socket(&self) -> PathBuf {
        self.state.join("punch.sock")
    }

    /// `vouch-agent punch ARGS` against the default socket.
    pub fn punch_cli(&self, args: &[&str]) -> Output {
        self.cmd().arg("punch").args(args).output().unwrap()
    }

    /// `vouch-agent status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cmd().args(["status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Replaces the content of the first firmware file.
    pub fn change_firmware(&self, content: &str) {
        fs::write(&self.firmware[0], content).unwrap();
    }

    /// The Ed25519 device key this terminal signs with.
    pub fn device_key(&self) -> ed25519_dalek::SigningKey {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let pem = fs::read_to_string(self.state.join("device.key")).unwrap();
        ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap()
    }
}
