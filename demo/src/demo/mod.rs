//! `vouch-demo` (what `./scripts/demo` runs): the main job, end to end, on the default ports. It
//! starts a `vouch-verifier` (its managed MQTT broker and store), a small fleet of terminals,
//! each a real `vouch-agent` daemon on its own software TPM (swtpm, driven through tss-esapi
//! exactly like a hardware TPM) booted with a firmware event log whose digests are extended into
//! its PCRs,
//! shows them attested and trusted, then tampers with one terminal's firmware file and reboots
//! another into a patched boot loader, and shows each quarantined with the reason while the rest
//! of the fleet stays trusted.
//!
//! Where swtpm (or tpm2-tools) is missing, or with `--simulated`, the terminals are SIMULATED
//! instead (the same agent shell in this process over a software TPM, see `simulated`), and
//! every line says so.
//!
//! Everything runs as child processes (or, for simulated terminals, threads) in a private
//! directory and is ended when the demo finishes or is interrupted (Ctrl-C), so nothing is left
//! behind.

mod punches;
pub(crate) mod real;
mod simulated;

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
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_test_kit::process::{Proc, free_port, have, wait_for_port};
use vouch_verifier::api::{AuditPage, DevicePage, DeviceView, EnrolledView, PolicyView};
use vouch_verifier::ctl::client::Client;

/// vouch demo: a verifier and a fleet of terminals on this machine; two get tampered with and
/// are quarantined with the reason, while the rest stay trusted.
#[derive(Debug, Parser)]
#[command(name = "vouch-demo", version)]
pub struct DemoArgs {
    /// Number of terminals in the fleet.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
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
pub(crate) const FIRMWARE: &str = "firmware.bin";
/// The PCR the terminals' agents measure firmware files into (the agent's default).
const FIRMWARE_PCR: u8 = vouch_agent::config::DEFAULT_FIRMWARE_PCR;
pub(crate) const EVENTLOG: &str = "binary_bios_measurements";

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

struct Demo {
    dir: PathBuf,
    start: Instant,
    stop: Arc<AtomicBool>,
    simulated: bool,
    client: Client,
    setup: Option<Setup>,
    terminals: Vec<Terminal>,
    verifier: Option<Proc>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let missing = ["swtpm", "swtpm_ioctl", "tpm2_pcrextend", "tpm2_startup"]
        .into_iter()
        .find(|p| !have(p));
    let simulated = args.simulated || missing.is_some();
    if let (Some(m), false) = (missing, args.simulated) {
        println!(
            "note: {m} is not installed, so the terminals are SIMULATED (software quotes, no TPM).\n\
             \x20     Run scripts/setup (apt-get install swtpm swtpm-tools tpm2-tools) for TPM-backed terminals.\n"
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
    let mut demo = Demo {
        dir: dir.to_owned(),
        start: Instant::now(),
        stop,
        simulated,
        client: Client::new(&format!("http://127.0.0.1:{http}"), String::new()),
        setup: None,
        terminals: Vec::new(),
        verifier: None,
    };
    let kind = if simulated {
        "a SIMULATED terminal (software TPM quotes)"
    } else {
        "a vouch-agent on its own software TPM (swtpm)"
    };
    println!(
        "vouch demo: {} terminals (model {MODEL}), each {kind},\n\
         one verifier on the default ports; logs in {}\n",
        args.terminals,
        dir.display()
    );
    let mut cmd = Command::new(sibling("vouch-verifier")?);
    cmd.args(["run", "--data"])
        .arg(&data)
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        // The demo's terminals have no EK certificate from a trusted TPM maker.
        .args(["--require-ek-cert", "false"])
        .env("RUST_LOG", "info");
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
    let base = format!("http://127.0.0.1:{http}");
    let anonymous = Client::new(&base, String::new());
    demo.wait("the verifier to be ready", Duration::from_secs(60), || {
        Ok(anonymous
            .get::<Value>("/v1/health")
            .ok()
            .filter(|h| h["ready"] == true))
    })?;
    let token = std::fs::read_to_string(data.join("admin.token"))?;
    demo.client = Client::new(&base, token.trim().to_owned());
    demo.setup = Some(Setup {
        agent_bin: if simulated {
            PathBuf::new()
        } else {
            sibling("vouch-agent")?
        },
        mqtt_url: format!("mqtt://127.0.0.1:{mqtt}"),
        verifier_key: vouch_common::keys::read_public(&data.join("verifier.pub"))?,
        verifier_pub: data.join("verifier.pub"),
        interval: args.interval,
    });
    demo.say(
        "verifier",
        &format!(
            "up: managed MQTT broker (Mosquitto) on 127.0.0.1:{mqtt}, operator API on http://127.0.0.1:{http}{}",
            if defaults { " (the defaults)" } else { " (default ports were busy)" }
        ),
    );
    for i in 1..=args.terminals {
        demo.add_terminal(&format!("term-{i:02}"))?;
    }
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

    fn add_terminal(&mut self, id: &str) -> Result<()> {
        self.check()?;
        let dir = self.dir.join(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(FIRMWARE), b"attendance terminal firmware 1.4.2\n")?;
        let (backend, request) = if self.simulated {
            let (t, r) = SimulatedTerminal::start(id, &dir)?;
            (Backend::Simulated(t), r)
        } else {
            let (t, r) = RealTerminal::start(self.setup()?, id, &dir)?;
            (Backend::Real(t), r)
        };
        let _: EnrolledView =
            self.client
                .post_bytes("/v1/devices", "application/cbor", &request)?;
        let ak = self.device(id)?.ak_name;
        let how = if self.simulated {
            "SIMULATED: booted (event log in its software TPM) and enrolled"
        } else {
            "booted (firmware event log measured into its swtpm) and enrolled"
        };
        self.say(id, &format!("{how} (AK {}…)", &ak[..16.min(ak.len())]));
        let mut t = Terminal {
            id: id.to_owned(),
            backend,
        };
        t.run(self.setup()?)?;
        self.terminals.push(t);
        Ok(())
    }

    fn ids(&self) -> Vec<String> {
        self.terminals.iter().map(|t| t.id.clone()).collect()
    }

    fn act(&mut self) -> Result<()> {
        for id in self.ids() {
            let d = self.wait(
                &format!("{id}'s first verdict"),
                Duration::from_secs(30),
                || {
                    let d = self.device(&id)?;
                    Ok(d.last_verdict_at.is_some().then_some(d))
                },
            )?;
            self.say(
                &id,
                &format!("attested: {} ({})", d.state, d.reasons.join("; ")),
            );
        }
        self.pause()?;
        let first = self
            .terminals
            .first()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        self.say("operator", &format!("$ vouchctl policy capture {first}"));
        let v: PolicyView = self
            .client
            .post_json(&format!("/v1/devices/{first}/policy/capture"), &())?;
        self.say(
            "verifier",
            &format!(
                "{first} is now {} under policy {}",
                self.device(&first)?.state,
                v.policy_id
            ),
        );
        self.say(
            "operator",
            &format!("$ vouchctl policy show --device {first} > {MODEL}.json && vouchctl policy set --model {MODEL} {MODEL}.json"),
        );
        let values: Value = self.client.get(&format!("/v1/policies/device/{first}"))?;
        let v: PolicyView = self
            .client
            .put_json(&format!("/v1/policies/model/{MODEL}"), &values)?;
        for d in &v.reevaluated {
            self.say(
                "verifier",
                &format!("{} re-evaluated under {}: {}", d.id, v.policy_id, d.state),
            );
        }
        self.fleet("the whole fleet is trusted")?;
        self.pause()?;

        let victim = self
            .terminals
            .get(1)
            .map(|t| (t.id.clone(), t.dir().to_owned()));
        let Some((victim, victim_dir)) = victim else {
            bail!("the demo needs two terminals")
        };
        self.say(
            &victim,
            "firmware.bin is replaced behind the operator's back (a tampered update)",
        );
        std::fs::write(
            victim_dir.join(FIRMWARE),
            b"attendance terminal firmware 1.4.2 + implant\n",
        )?;
        self.show_quarantine(
            &victim,
            &format!("{victim} QUARANTINED at its next attestation; the reason names the file:"),
        )?;
        self.pause()?;
        self.punch_act()?;
        self.pause()?;
        if self.terminals.len() >= 3 {
            self.reboot_act()?;
        }
        // Let every other terminal attest once more to show they are unaffected.
        std::thread::sleep(Duration::from_secs(self.setup()?.interval + 1));
        self.check()?;
        self.fleet("the tampered terminals are cut off, the rest keep working")?;
        let audit: AuditPage = self.client.get("/v1/audit")?;
        println!("\naudit trail (vouchctl audit):");
        for e in audit.entries {
            println!(
                "  {}  {:<8}  {:<15} {:<15} {}",
                e.at,
                e.device.as_deref().unwrap_or("-"),
                e.action,
                e.actor,
                e.reason
            );
        }
        println!(
            "\ndone: each tampered terminal is quarantined with what changed named; the others never stopped,\n\
             and no punch was lost: the quarantined terminal's are mirrored too, held for review."
        );
        self.shutdown();
        Ok(())
    }

    /// A terminal reboots into a patched boot loader: its event log and PCR 4 now show an image
    /// the model's reference values do not list.
    fn reboot_act(&mut self) -> Result<()> {
        const VICTIM: usize = 2;
        let patched = TerminalBoot {
            bootloader: b"terminal boot loader 2.1 (patched)".to_vec(),
            ..TerminalBoot::default()
        };
        let Some(setup) = self.setup.take() else {
            return Ok(());
        };
        let rebooted = match self.terminals.get_mut(VICTIM) {
            Some(t) => t.reboot_into(&setup, &patched).map(|()| Some(t.id.clone())),
            None => Ok(None),
        };
        self.setup = Some(setup);
        let Some(id) = rebooted? else { return Ok(()) };
        self.say(
            &id,
            "rebooted into a patched boot loader (\\EFI\\BOOT\\BOOTX64.EFI changed)",
        );
        self.show_quarantine(
            &id,
            &format!("{id} QUARANTINED at boot; the reason names the boot event:"),
        )?;
        Ok(())
    }

    fn fleet(&self, title: &str) -> Result<()> {
        let page: DevicePage = self.client.get("/v1/devices")?;
        self.say("fleet", &format!("{title} (vouchctl devices):"));
        for d in page.devices {
            println!(
                "{:>18}{:<8} {:<12} {}",
                "",
                d.id,
                d.state.as_str(),
                d.reasons.first().map(String::as_str).unwrap_or("")
            );
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
