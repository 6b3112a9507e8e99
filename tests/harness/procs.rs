//! Process guards: swtpm, Mosquitto and the verifier, each started as a child on free loopback
//! ports and ended (SIGTERM, then SIGKILL) by its own pid on drop. Their output goes to log files
//! in the test's directory and is printed when a test fails, to make failures diagnosable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
pub use vouch_test_kit::swtpm::Swtpm;

use crate::tls::TestPki;
use crate::{bin, free_port, wait_for_port};

/// A child process whose log is printed when the test using it fails.
#[derive(Debug)]
pub struct Proc(vouch_test_kit::process::Proc);

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Self {
        Self(
            vouch_test_kit::process::Proc::spawn(name, cmd, &log)
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

    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// SIGKILL, as a crash or a power cut would end it, and waits until it is gone.
    pub fn kill9(&mut self) {
        self.0.kill9();
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

/// The password every test spy account uses (test-only; its hash goes into the verifier's
/// extra password lines).
pub const SPY_PASSWORD: &str = "vouch-e2e-spy-password";
/// How many spy accounts (`vouch@spy0` ...) the harness creates: client id = user name, so each
/// connected spy needs its own.
pub const SPY_ACCOUNTS: usize = 8;

/// The spy accounts' user names.
pub fn spy_user(n: usize) -> String {
    format!("vouch@spy{}", n % SPY_ACCOUNTS)
}

/// An external Mosquitto on a free port as `deploy/` describes it: authentication against the
/// verifier's password file, the published ACL (plus the test spies' rights), client id = user.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub pid_file: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    tls_port: Option<u16>,
    proc: Option<Proc>,
}

impl Mosquitto {
    /// Starts it on `port` (plain) and, with `tls`, a TLS listener on `tls.0` serving its files.
    pub fn start(dir: &Path, port: u16, passwd: &Path, tls: Option<(u16, &TestPki)>) -> Self {
        let conf = dir.join("mosquitto.conf");
        let acl = dir.join("mosquitto.acl");
        let deploy_acl =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/vouch.acl");
        fs::write(
            &acl,
            format!("{}{}", fs::read_to_string(deploy_acl).unwrap(), spy_acl()),
        )
        .unwrap();
        let pid_file = dir.join("mosquitto.pid");
        fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous false\npassword_file {}\n\
                 acl_file {}\npid_file {}\nuser root\n\
                 persistence false\nmax_packet_size 1052672\nlog_dest stderr\n\
                 listener {port} 127.0.0.1\nuse_username_as_clientid true\n{}",
                passwd.display(),
                acl.display(),
                pid_file.display(),
                tls.map(|(p, pki)| format!(
                    "listener {p} 127.0.0.1\nuse_username_as_clientid true\ncertfile {}\n\
                     keyfile {}\n",
                    pki.cert.display(),
                    pki.key.display()
                ))
                .unwrap_or_default()
            ),
        )
        .unwrap();
        let mut m = Self {
            port,
            pid_file,
            conf,
            log: dir.join("mosquitto.log"),
            tls_port: tls.map(|(p, _)| p),
            proc: None,
        };
        m.start_again();
        m
    }

    /// Starts it again with the same configuration and ports (after [`Mosquitto::kill9`]).
    ///
    /// The port was free when chosen, but until the broker binds it a client connecting to it
    /// (the verifier retrying, or the wait below) can hold it: a loopback connect to an unbound
    /// port in the ephemeral range may connect to itself (TCP simultaneous open). Mosquitto
    /// then exits with "address in use", and the wait may even have succeeded on that
    /// self-connection. So it must still be running once its ports answer; if it is not, it is
    /// started again (the self-connection is gone by then).
    pub fn start_again(&mut self) {
        assert!(self.proc.is_none(), "mosquitto is still running");
        for attempt in 1..=5 {
            let mut proc = Proc::spawn(
                "mosquitto",
                Command::new("mosquitto").arg("-c").arg(&self.conf),
                self.log.clone(),
            );
            wait_for_port(self.port, "mosquitto");
            if let Some(p) = self.tls_port {
                wait_for_port(p, "mosquitto's TLS listener");
            }
            std::thread::sleep(Duration::from_millis(200));
            if proc.alive() {
                self.proc = Some(proc);
                return;
            }
            eprintln!("mosquitto exited at start (attempt {attempt}): its port was taken; again");
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("mosquitto would not stay up on port {}", self.port);
    }

    /// Kills it with SIGKILL (a broker crash: sessions and queued messages are gone, nothing
    /// is saved) and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

/// ACL lines giving the spies what an attacker who owns the broker has: everything.
fn spy_acl() -> String {
    (0..SPY_ACCOUNTS)
        .map(|n| format!("\nuser {}\ntopic readwrite vouch/v1/#\n", spy_user(n)))
        .collect()
}

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// The verifier's own managed Mosquitto (`--mqtt-listen`).
    Managed,
    /// An external Mosquitto started by the harness (`--mqtt-url`), configured from `deploy/`.
    Mosquitto,
}

/// A verifier process (plus an external Mosquitto when asked), its data directory and ports.
#[derive(Debug)]
pub struct Verifier {
    pub data: PathBuf,
    pub mqtt_port: u16,
    pub http_port: u16,
    dir: PathBuf,
    kind: BrokerKind,
    /// With TLS: the broker's TLS port and the certificates it serves.
    tls: Option<(u16, TestPki)>,
    /// `spawn` waits for `/v1/health` to say `ready`.
    wait: bool,
    proc: Option<Proc>,
    mosquitto: Option<Mosquitto>,
}

impl Verifier {
    pub fn start(dir: &Path, kind: BrokerKind) -> Self {
        Self::start_with(dir, kind, "")
    }

    /// [`Verifier::start`] with extra lines for the verifier's TOML config file.
    pub fn start_with(dir: &Path, kind: BrokerKind, extra_config: &str) -> Self {
        Self::start_full(dir, kind, None, extra_config)
    }

    /// A verifier whose broker also serves TLS with `pki` (managed: `mqtt_tls_listen`;
    /// external: a TLS listener the verifier itself connects to over mqtts://, trusting
    /// `verifier_ca`). Terminals connect over TLS, trusting `pki.ca`; spies use the plain port.
    pub fn start_tls(dir: &Path, kind: BrokerKind, pki: &TestPki, verifier_ca: &Path) -> Self {
        Self::start_full(dir, kind, Some((pki, verifier_ca)), "")
    }

    /// [`Verifier::start_tls`] without waiting for health (for a verifier expected not to
    /// reach its broker).
    pub fn start_tls_unhealthy(
        dir: &Path,
        kind: BrokerKind,
        pki: &TestPki,
        verifier_ca: &Path,
    ) -> Self {
        let mut v = Self::start_full_no_spawn(dir, kind, Some((pki, verifier_ca)), "");
        v.wait = false;
        v.spawn();
        v
    }

    fn start_full(
        dir: &Path,
        kind: BrokerKind,
        tls: Option<(&TestPki, &Path)>,
        extra_config: &str,
    ) -> Self {
        let mut v = Self::start_full_no_spawn(dir, kind, tls, extra_config);
        v.spawn();
        v
    }

    fn start_full_no_spawn(
        dir: &Path,
        kind: BrokerKind,
        tls: Option<(&TestPki, &Path)>,
        extra_config: &str,
    ) -> Self {
        let v = Self {
            data: dir.join("vouch-data"),
            mqtt_port: free_port(),
            http_port: free_port(),
            dir: dir.to_owned(),
            kind,
            tls: tls.map(|(pki, _)| (free_port(), pki.clone())),
            wait: true,
            proc: None,
            mosquitto: None,
        };
        let mut extra = extra_config.to_owned();
        if let Some(((port, pki), (_, ca))) = v.tls.as_ref().zip(tls) {
            extra.push_str(&match kind {
                BrokerKind::Managed => format!(
                    "mqtt_tls_listen = \"127.0.0.1:{port}\"\nmqtt_tls_cert = {:?}\n\
                     mqtt_tls_key = {:?}\n",
                    pki.cert.display().to_string(),
                    pki.key.display().to_string()
                ),
                BrokerKind::Mosquitto => {
                    format!("mqtt_ca = {:?}\n", ca.display().to_string())
                }
            });
        }
        v.write_config(&extra);
        v
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("verifier.toml")
    }

    fn write_config(&self, extra: &str) {
        let spies = self.dir.join("spies.passwd");
        let lines: String = (0..SPY_ACCOUNTS)
            .map(|n| {
                format!(
                    "{}:{}\n",
                    spy_user(n),
                    vouch_common::mqtt_passwd::hash_random_salt(SPY_PASSWORD).unwrap()
                )
            })
            .collect();
        fs::write(&spies, lines).unwrap();
        let spy_acl_path = self.dir.join("spies.acl");
        fs::write(&spy_acl_path, spy_acl()).unwrap();
        let mut toml = format!(
            "mqtt_extra_passwd = {:?}\nmqtt_extra_acl = {:?}\n",
            spies.display().to_string(),
            spy_acl_path.display().to_string()
        );
        if self.kind == BrokerKind::Mosquitto {
            toml.push_str(&format!(
                "mqtt_reload_command = \"kill -HUP $(cat {})\"\n",
                self.dir.join("mosquitto.pid").display()
            ));
        }
        // Test terminals' EK certificates chain to no configured root; a test about that rule
        // sets it itself.
        if !extra.contains("require_ek_cert") {
            toml.push_str("require_ek_cert = false\n");
        }
        toml.push_str(extra);
        fs::write(self.config_path(), toml).unwrap();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin("vouch-verifier"));
        cmd.arg("run")
            .arg("--data")
            .arg(&self.data)
            .arg("--config")
            .arg(self.config_path())
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port));
        match self.kind {
            BrokerKind::Managed => cmd
                .arg("--mqtt-listen")
                .arg(format!("127.0.0.1:{}", self.mqtt_port)),
            BrokerKind::Mosquitto => cmd.arg("--mqtt-url").arg(self.mqtt_url()),
        };
        cmd.env("RUST_LOG", "info");
        let n = fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        self.proc = Some(Proc::spawn(
            "vouch-verifier",
            &mut cmd,
            self.dir.join(format!("verifier-{n}.log")),
        ));
        // The verifier serves its API once its store is open, its broker files are written and
        // a managed broker listens; `/v1/health` says `ready: false` until it is subscribed.
        crate::wait_for(Duration::from_secs(60), "the verifier's HTTP API", || {
            (self.health().0 != 0).then_some(())
        });
        if self.kind == BrokerKind::Mosquitto && self.mosquitto.is_none() {
            // The verifier wrote the password file the external broker reads.
            let passwd = self.data.join("broker/passwd");
            assert!(
                passwd.exists(),
                "the verifier answers but wrote no {passwd:?}"
            );
            let tls = self.tls.as_ref().map(|(p, pki)| (*p, pki));
            self.mosquitto = Some(Mosquitto::start(&self.dir, self.mqtt_port, &passwd, tls));
        }
        if self.wait {
            self.wait_ready();
        }
    }

    /// `GET /v1/health`: the status code and the JSON body.
    pub fn health(&self) -> (u16, serde_json::Value) {
        crate::http_get(self.http_port, "/v1/health")
    }

    /// Waits until `/v1/health` says `ready`: the verifier's MQTT client is connected and the
    /// broker acknowledged its subscriptions, so what terminals publish from now on reaches it.
    pub fn wait_ready(&self) {
        crate::wait_for(Duration::from_secs(60), "the verifier to be ready", || {
            let (_, body) = self.health();
            (body["ready"] == true).then_some(())
        });
    }

    /// Waits until `/v1/health` says ok (ready, and the broker and the store are up).
    pub fn wait_healthy(&self) {
        crate::wait_for(
            Duration::from_secs(60),
            "the verifier to be healthy",
            || {
                let (code, body) = self.health();
                (code == 200 && body["ok"] == true).then_some(())
            },
        );
    }

    /// The pid of the external Mosquitto, or of the managed one as the verifier recorded it.
    pub fn broker_pid(&self) -> Option<u32> {
        let file = match &self.mosquitto {
            Some(m) => m.pid_file.clone(),
            None => self.data.join("broker/mosquitto.pid"),
        };
        fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Kills the broker with SIGKILL: the managed Mosquitto by the pid the verifier recorded
    /// (the verifier's supervisor starts a new one), the external one by its process (it stays
    /// down until [`Verifier::start_broker_again`]). Waits until the old process is gone.
    pub fn kill9_broker(&mut self) {
        match &mut self.mosquitto {
            Some(m) => m.kill9(),
            None => {
                let pid = self
                    .broker_pid()
                    .expect("the managed broker has a pid file");
                let status = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(status.success(), "kill -KILL {pid} (the managed broker)");
                let proc_dir = PathBuf::from(format!("/proc/{pid}"));
                crate::wait_for(Duration::from_secs(30), "the managed broker to die", || {
                    // The verifier reaps its child; until then it is a zombie.
                    let state = fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
                    let gone = state.is_empty() || state.contains(") Z ");
                    gone.then_some(())
                });
            }
        }
    }

    /// Starts the external broker again after [`Verifier::kill9_broker`].
    pub fn start_broker_again(&mut self) {
        self.mosquitto
            .as_mut()
            .expect("only an external broker is started by the test")
            .start_again();
    }

    /// The verifier process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Stops the verifier (SIGTERM) and starts it again on the same data and ports.
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            assert!(p.stop(), "verifier did not exit on SIGTERM");
        }
        self.spawn();
    }

    /// Stops the verifier with SIGTERM (it stops its managed broker).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            assert!(p.stop(), "verifier did not exit on SIGTERM");
        }
    }

    /// Kills the verifier with SIGKILL, as a crash or the OOM killer would: it cannot stop its
    /// managed broker, which keeps running. Waits until the verifier is gone.
    pub fn kill9(&mut self) {
        let Some(mut p) = self.proc.take() else {
            return;
        };
        let pid = p.pid().expect("the verifier has a pid");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        crate::wait_for(Duration::from_secs(30), "the verifier to die", || {
            (!p.alive()).then_some(())
        });
    }

    /// Starts the verifier again on the same data, ports and broker (after `stop` or `kill9`).
    pub fn start_again(&mut self) {
        assert!(self.proc.is_none(), "the verifier is still running");
        self.spawn();
    }

    /// Whether the verifier process is still running.
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::alive)
    }

    /// The verifier's log so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// The URL agents (and, for an external broker, the verifier) connect to: the TLS
    /// listener when there is one.
    pub fn mqtt_url(&self) -> String {
        match &self.tls {
            Some((port, _)) => format!("mqtts://localhost:{port}"),
            None => format!("mqtt://127.0.0.1:{}", self.mqtt_port),
        }
    }

    /// The broker's log (the managed Mosquitto's, or the harness's external one).
    pub fn broker_log(&self) -> String {
        let path = match &self.mosquitto {
            Some(_) => self.dir.join("mosquitto.log"),
            None => self.data.join("broker/mosquitto.log"),
        };
        fs::read_to_string(path).unwrap_or_default()
    }

    /// The broker's TLS port, if it serves TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(p, _)| *p)
    }

    /// The CA terminals trust for the broker's TLS certificate.
    pub fn mqtt_ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|(_, pki)| pki.ca.clone())
    }

    /// Whether `wait_healthy` would pass now.
    pub fn healthy(&self) -> bool {
        let (code, body) = self.health();
        code == 200 && body["ok"] == true
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn verifier_pub(&self) -> PathBuf {
        self.data.join("verifier.pub")
    }

    /// One raw HTTP/1.0 request to the API with an optional bearer token and an empty body:
    /// the status code and the body.
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n{auth}\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap();
        (code, body)
    }

    /// The bootstrap admin token from the data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
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

    /// `vouchctl policy capture ID`: adopts the device's last verified measurements as its
    /// reference values; the test fails if the verifier refuses.
    pub fn capture(&self, id: &str) {
        let out = self.ctl(&["policy", "capture", id]);
        assert!(
            out.status.success(),
            "policy capture {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn device(&self, id: &str) -> serde_json::Value {
        self.ctl_json(&["device", id, "--json"])
    }

    /// The reasons `vouchctl device ID --json` gives for a device's state.
    pub fn reasons(&self, id: &str) -> Vec<String> {
        self.device_strings(id, "reasons")
    }

    /// The codes of those reasons, in the same order (`reason_codes`; docs/protocol.md).
    pub fn reason_codes(&self, id: &str) -> Vec<String> {
        self.device_strings(id, "reason_codes")
    }

    /// The strings of the device view's array `field` (empty when it is absent).
    fn device_strings(&self, id: &str, field: &str) -> Vec<String> {
        self.device(id)[field]
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
