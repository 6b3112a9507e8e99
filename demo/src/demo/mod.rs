//! `vouch-demo` (what `./scripts/demo` runs): the main job, end to end, on the default ports,
//! with trust flowing from roots the operator chose. It makes a demo terminal vendor
//! (`vouch-provision vendor-init`) and a demo TPM manufacturer (a CA that certifies each
//! terminal's EK, as `swtpm_setup --create-ek-cert` does at a TPM factory), starts a
//! `vouch-verifier` (its managed MQTT broker and store) that trusts that manufacturer's roots
//! and requires EK certificates, and provisions a small fleet through the factory flow: each
//! terminal is a real `vouch-agent` on its own software TPM (swtpm with an EK certificate,
//! driven through tss-esapi exactly like a hardware TPM) booted with a firmware event log, with
//! a fake hardware tree of its own (`sysfs`); `vouch-agent enroll` → `vouch-provision
//! challenge` → `vouch-agent activate` → `vouch-provision issue --tpm-roots` makes its
//! vendor-signed manifest, and the operator trusts the vendor and imports the manifests
//! (`provision`).
//!
//! Then (`acts`): the first attestations, the vendor's reference bundle captured from terminal
//! 1's verified evidence and imported → the fleet trusted; one terminal's firmware file
//! tampered with, another rebooted into a patched boot loader, each quarantined with the
//! reason; staff punches mirrored (`punches`); and the hidden board (`supply_chain`): the
//! operator denies a board vendor, one terminal's SMBIOS now reports that vendor's board behind
//! the brand, and it alone is quarantined with the component named.
//!
//! Where swtpm, its tools or openssl are missing, or with `--simulated`, the terminals are
//! SIMULATED instead: `vouch-provision batch` manifests (no EK certificate, no credential
//! activation), run by the same agent shell in this process over a software TPM (see
//! `simulated`), against a verifier with `require_ek_cert` false; every line says so.
//!
//! Everything runs as child processes (or, for simulated terminals, threads) in a private
//! directory and is ended when the demo finishes or is interrupted (Ctrl-C), so nothing is left
//! behind.

mod acts;
mod provision;
mod punches;
pub(crate) mod real;
mod simulated;
mod supply_chain;
mod sysfs;
mod tools;

use anyhow::{Result, bail};
use clap::Parser;
use real::RealTerminal;
use serde_json::Value;
use simulated::SimulatedTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tools::Tool;
use vouch_test_kit::ekca::TpmManufacturerCa;
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_test_kit::process::{Proc, free_port, have, wait_for_port};
use vouch_verifier::api::DeviceView;
use vouch_verifier::ctl::client::Client;

/// vouch demo: a vendor provisions a fleet of terminals, the verifier trusts them through their
/// vendor's manifests and EK certificates; three get tampered with (firmware, boot loader,
/// a hidden mainboard) and are quarantined with the reason, while the rest stay trusted.
#[derive(Debug, Parser)]
#[command(name = "vouch-demo", version)]
pub struct DemoArgs {
    /// Number of terminals in the fleet (the boot-loader act needs 4, a fleet that stays
    /// trusted beside the three tampered ones 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=16))]
    pub terminals: u8,
    /// Seconds between the terminals' periodic attestations.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub interval: u64,
    /// Keep the demo directory (keys, store, logs) instead of deleting it at the end.
    #[arg(long)]
    pub keep: bool,
    /// Use SIMULATED terminals (software quotes, no TPM) even where swtpm is installed.
    #[arg(long)]
    pub simulated: bool,
}

const MODEL: &str = "T-100";
/// The firmware version every demo terminal runs and reports.
const FIRMWARE_VERSION: &str = "1.0";
/// The demo vendor's name (`vouch-provision vendor-init --name`, `vouchctl vendor trust`).
const VENDOR: &str = "acme-terminals";
/// The demo TPM manufacturer (its CAs' names derive from it).
const TPM_MANUFACTURER: &str = "Demo TPM Manufacturer";
pub(crate) const FIRMWARE: &str = "firmware.bin";
/// The PCR the terminals' agents measure firmware files into (the agent's default).
const FIRMWARE_PCR: u8 = vouch_agent::config::DEFAULT_FIRMWARE_PCR;
pub(crate) const EVENTLOG: &str = "binary_bios_measurements";
/// A terminal's fake hardware tree, relative to its directory (`--sysfs-root`).
pub(crate) const SYSFS: &str = "sysfs";
/// Programs a TPM-backed demo needs; without one of them the terminals are simulated.
const TPM_TOOLS: [&str; 6] = [
    "swtpm",
    "swtpm_setup",
    "swtpm_ioctl",
    "tpm2_pcrextend",
    "tpm2_startup",
    "openssl",
];

/// The id of demo terminal number `n` (1-based), as `vouch-provision batch --prefix term` names
/// its terminals, so both kinds of fleet read the same.
fn terminal_id(n: usize) -> String {
    format!("term-{n:05}")
}

/// A flag set by SIGINT/SIGTERM; every wait in the demo checks it.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let f = flag.clone();
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        f.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

/// What terminals need to reach the verifier.
#[derive(Debug)]
pub(crate) struct Setup {
    agent_bin: PathBuf,
    mqtt_url: String,
    verifier_pub: PathBuf,
    verifier_key: ed25519_dalek::VerifyingKey,
    interval: u64,
}

/// A demo terminal: a real agent on swtpm, or a simulated one.
#[derive(Debug)]
enum Backend {
    Real(RealTerminal),
    Simulated(SimulatedTerminal),
}

#[derive(Debug)]
struct Terminal {
    id: String,
    backend: Backend,
}

impl Terminal {
    fn dir(&self) -> &Path {
        match &self.backend {
            Backend::Real(t) => &t.dir,
            Backend::Simulated(t) => &t.dir,
        }
    }

    fn run(&mut self, setup: &Setup) -> Result<()> {
        match &mut self.backend {
            Backend::Real(t) => t.run(setup, &self.id),
            Backend::Simulated(t) => t.run(setup),
        }
    }

    fn reboot_into(&mut self, setup: &Setup, boot: &TerminalBoot) -> Result<()> {
        match &mut self.backend {
            Backend::Real(t) => t.reboot_into(setup, &self.id, boot),
            Backend::Simulated(t) => t.reboot_into(setup, boot),
        }
    }

    fn stop(&mut self) {
        match &mut self.backend {
            Backend::Real(t) => t.stop(),
            Backend::Simulated(t) => t.stop(),
        }
    }
}

/// The command-line tools the demo runs (see `tools`).
#[derive(Debug)]
struct Tools {
    agent: Tool,
    provision: Tool,
    vouchctl: Tool,
}

struct Demo {
    dir: PathBuf,
    start: Instant,
    stop: Arc<AtomicBool>,
    simulated: bool,
    client: Client,
    tools: Tools,
    /// The demo TPM manufacturer (TPM-backed fleets only).
    ca: Option<TpmManufacturerCa>,
    setup: Option<Setup>,
    terminals: Vec<Terminal>,
    verifier: Option<Proc>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let missing = TPM_TOOLS.into_iter().find(|p| !have(p));
    let simulated = args.simulated || missing.is_some();
    if let (Some(m), false) = (missing, args.simulated) {
        println!(
            "note: {m} is not installed, so the terminals are SIMULATED (software quotes, no TPM).\n\
             \x20     Run scripts/setup (apt-get install swtpm swtpm-tools tpm2-tools openssl) for TPM-backed terminals.\n"
        );
    }
    let stop = interrupt_flag()?;
    let dir = std::env::temp_dir().join(format!("vouch-demo-{}", std::process::id()));
    vouch_common::fs::ensure_private_dir(&dir)?;
    let result = play(&args, &dir, stop.clone(), simulated);
    if args.keep {
        println!(
            "\nThe demo's keys, store and logs are kept in {}",
            dir.display()
        );
    } else if std::fs::remove_dir_all(&dir).is_err() {
        eprintln!("could not remove {}", dir.display());
    }
    match result {
        Err(_) if stop.load(Ordering::SeqCst) => {
            println!("\ninterrupted: every process the demo started has been stopped");
            Ok(())
        }
        other => other,
    }
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found next to {} (build the whole workspace: cargo build --bins)",
            name,
            exe.display()
        );
    }
    Ok(p)
}

/// The tool `name`, the binary of that name next to `vouch-demo`.
fn tool(name: &'static str) -> Result<Tool> {
    Ok(Tool {
        name,
        bin: sibling(name)?,
        env: Vec::new(),
    })
}

/// The embedded defaults if free, otherwise free ports (and the narration says so).
fn ports() -> Result<(u16, u16, bool)> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    if free(1883) && free(8080) {
        Ok((1883, 8080, true))
    } else {
        Ok((free_port()?, free_port()?, false))
    }
}

fn play(args: &DemoArgs, dir: &Path, stop: Arc<AtomicBool>, simulated: bool) -> Result<()> {
    let (mqtt, http, defaults) = ports()?;
    let data = dir.join("verifier-data");
    let base = format!("http://127.0.0.1:{http}");
    let mut demo = Demo {
        dir: dir.to_owned(),
        start: Instant::now(),
        stop,
        simulated,
        client: Client::new(&base, String::new()),
        tools: Tools {
            agent: tool("vouch-agent")?,
            provision: tool("vouch-provision")?,
            vouchctl: tool("vouchctl")?,
        },
        ca: None,
        setup: None,
        terminals: Vec::new(),
        verifier: None,
    };
    let kind = if simulated {
        "a SIMULATED terminal (software TPM quotes, no EK certificate)"
    } else {
        "a vouch-agent on its own software TPM (swtpm) with an EK certificate"
    };
    println!(
        "vouch demo: {} terminals (model {MODEL}, firmware {FIRMWARE_VERSION}), each {kind},\n\
         one verifier on the default ports; logs in {}\n",
        args.terminals,
        dir.display()
    );
    let mut cmd = Command::new(sibling("vouch-verifier")?);
    cmd.args(["run", "--data"])
        .arg(&data)
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "info");
    if simulated {
        // Simulated TPMs have no EK certificate: nothing could satisfy the rule.
        cmd.args(["--require-ek-cert", "false"]);
    } else {
        let ca = demo.tpm_manufacturer()?;
        cmd.arg("--tpm-roots")
            .arg(ca.roots_dir())
            .args(["--require-ek-cert", "true"]);
    }
    demo.verifier = Some(Proc::spawn(
        "vouch-verifier",
        &mut cmd,
        &dir.join("verifier.log"),
    )?);
    if !wait_for_port(http, Duration::from_secs(20)) {
        bail!(
            "the verifier did not start; see {}",
            dir.join("verifier.log").display()
        );
    }
    // The port answers before the verifier has written its key and token (the listener is
    // bound first): wait until it says it is ready, which is after both.
    let anonymous = Client::new(&base, String::new());
    demo.wait("the verifier to be ready", Duration::from_secs(60), || {
        Ok(anonymous
            .get::<Value>("/v1/health")
            .ok()
            .filter(|h| h["ready"] == true))
    })?;
    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let token = token.trim().to_owned();
    demo.client = Client::new(&base, token.clone());
    demo.tools.vouchctl.env = vec![
        ("VOUCH_API".to_owned(), base.clone()),
        ("VOUCH_TOKEN".to_owned(), token),
    ];
    demo.setup = Some(Setup {
        agent_bin: demo.tools.agent.bin.clone(),
        mqtt_url: format!("mqtt://127.0.0.1:{mqtt}"),
        verifier_key: vouch_common::keys::read_public(&data.join("verifier.pub"))?,
        verifier_pub: data.join("verifier.pub"),
        interval: args.interval,
    });
    demo.say(
        "verifier",
        &format!(
            "up: managed MQTT broker (Mosquitto) on 127.0.0.1:{mqtt}, operator API on {base}{}",
            if defaults {
                " (the defaults)"
            } else {
                " (default ports were busy)"
            }
        ),
    );
    if simulated {
        demo.say(
            "verifier",
            "SIMULATED fleet: require_ek_cert = false (simulated TPMs have no EK certificate)",
        );
    } else {
        demo.say(
            "verifier",
            &format!(
                "require_ek_cert = true; tpm_roots = {TPM_MANUFACTURER}'s root and EK CA ({})",
                tools::rel(&demo.ca_roots()?, dir)
            ),
        );
    }
    demo.provision_fleet(usize::from(args.terminals))?;
    demo.act()
}

impl Demo {
    fn say(&self, who: &str, what: &str) {
        println!(
            "[{:>5.1}s] {who:<9} {what}",
            self.start.elapsed().as_secs_f64()
        );
    }

    /// A short pause between acts so the timeline can be followed as it happens.
    fn pause(&self) -> Result<()> {
        for _ in 0..8 {
            self.check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Waits until `id` is quarantined, then says `headline` and lists the reasons.
    fn show_quarantine(&self, id: &str, headline: &str) -> Result<()> {
        let d = self.wait(
            &format!("{id}'s quarantine"),
            Duration::from_secs(10 * self.setup()?.interval + 30),
            || {
                let d = self.device(id)?;
                Ok((d.state.as_str() == "quarantined").then_some(d))
            },
        )?;
        self.say("verifier", headline);
        for r in &d.reasons {
            println!("{:>18}{r}", "");
        }
        Ok(())
    }

    /// Polls `f` until it returns `Some`, the timeout passes, or the demo is interrupted.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            self.check()?;
            if let Some(v) = f()? {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out waiting for {what}; logs are in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn device(&self, id: &str) -> Result<DeviceView> {
        self.client.get(&format!("/v1/devices/{id}"))
    }

    fn setup(&self) -> Result<&Setup> {
        self.setup
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the verifier is not up"))
    }

    /// The fleet as `vouchctl devices` lists it: state, marks (SIMULATED, REVOKED-FW) and the
    /// first reason. The API's view is read as JSON, so this shows what the verifier says
    /// without a type of its own.
    fn fleet(&self, title: &str) -> Result<()> {
        let page: Value = self.client.get("/v1/devices")?;
        self.say("fleet", &format!("{title} (vouchctl devices):"));
        let none = Vec::new();
        let rows: Vec<[String; 4]> = page["devices"]
            .as_array()
            .unwrap_or(&none)
            .iter()
            .map(|d| {
                let mut marks = Vec::new();
                if d["simulated"] == true {
                    marks.push("SIMULATED");
                }
                if d["firmware_revoked"] == true {
                    marks.push("REVOKED-FW");
                }
                let reasons = d["reasons"].as_array().unwrap_or(&none);
                let mut reason = reasons
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if reasons.len() > 1 {
                    reason.push_str(&format!(" (+{} more)", reasons.len() - 1));
                }
                [
                    d["id"].as_str().unwrap_or("").to_owned(),
                    d["state"].as_str().unwrap_or("").to_owned(),
                    marks.join(","),
                    reason,
                ]
            })
            .collect();
        let marks = rows.iter().map(|r| r[2].len()).max().unwrap_or(0);
        for [id, state, mark, reason] in rows {
            let line = if marks == 0 {
                format!("{id:<11} {state:<12} {reason}")
            } else {
                format!("{id:<11} {state:<12} {mark:<marks$} {reason}")
            };
            println!("{:>18}{}", "", line.trim_end());
        }
        Ok(())
    }

    /// Stops terminals first (their agents say goodbye to the broker), then the verifier; any
    /// remaining process is ended by its guard's `Drop`.
    fn shutdown(&mut self) {
        for t in &mut self.terminals {
            t.stop();
        }
        if let Some(mut v) = self.verifier.take() {
            v.stop_within(Duration::from_secs(10));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.shutdown();
    }
}
