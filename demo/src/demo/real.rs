//! A demo terminal as in production, but on a software TPM: a `vouch-agent` daemon process
//! talking to its own swtpm (through tss-esapi, exactly like a hardware TPM), whose PCRs the
//! demo fills by "booting" it with a firmware event log.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vouch_protocol::digest::HashAlg;
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_test_kit::process::Proc;
use vouch_test_kit::swtpm::Swtpm;

use super::{EVENTLOG, FIRMWARE, MODEL, Setup};

#[derive(Debug)]
pub struct RealTerminal {
    pub dir: PathBuf,
    tpm: Swtpm,
    agent: Option<Proc>,
}

/// Resets the TPM and plays the firmware's part: extends every digest of `boot`'s event log
/// into the PCRs and leaves the log where the agent reads it.
pub(crate) fn boot(dir: &Path, tpm: &Swtpm, boot: &TerminalBoot) -> Result<()> {
    let log = boot.log();
    tpm.reboot().context("resetting the software TPM")?;
    for (pcr, digest) in log.extends(HashAlg::Sha256) {
        let pcr = u8::try_from(pcr).context("PCR index")?;
        tpm.pcr_extend(pcr, &hex::encode(digest))
            .context("extending a PCR")?;
    }
    std::fs::write(dir.join(EVENTLOG), log.bytes())?;
    Ok(())
}

impl RealTerminal {
    /// Starts the terminal's swtpm, boots it, enrolls it with the agent and returns the
    /// enrollment request for the operator.
    pub fn start(setup: &Setup, id: &str, dir: &Path) -> Result<(Self, Vec<u8>)> {
        let tpm = Swtpm::start(dir).context("starting swtpm")?;
        boot(dir, &tpm, &TerminalBoot::default())?;
        let out = agent(setup, dir, &tpm)
            .args([
                "enroll",
                "--device-id",
                id,
                "--model",
                MODEL,
                "--out",
                "enroll.cbor",
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "vouch-agent enroll failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let request = std::fs::read(dir.join("enroll.cbor"))?;
        Ok((
            Self {
                dir: dir.to_owned(),
                tpm,
                agent: None,
            },
            request,
        ))
    }

    /// Starts the agent daemon.
    pub fn run(&mut self, setup: &Setup, id: &str) -> Result<()> {
        let mut cmd = agent(setup, &self.dir, &self.tpm);
        cmd.args(["run", "--mqtt-url", &setup.mqtt_url, "--verifier-key"])
            .arg(&setup.verifier_pub)
            .args(["--firmware", FIRMWARE, "--eventlog", EVENTLOG])
            .args(["--interval", &setup.interval.to_string()]);
        let log = self.dir.join("agent.log");
        self.agent = Some(Proc::spawn(&format!("vouch-agent {id}"), &mut cmd, &log)?);
        Ok(())
    }

    /// Stops the agent, reboots the TPM into `b`, starts the agent again.
    pub fn reboot_into(&mut self, setup: &Setup, id: &str, b: &TerminalBoot) -> Result<()> {
        self.stop();
        boot(&self.dir, &self.tpm, b)?;
        self.run(setup, id)
    }

    pub fn stop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop_within(Duration::from_secs(5));
        }
    }
}

fn agent(setup: &Setup, dir: &Path, tpm: &Swtpm) -> Command {
    let mut c = Command::new(&setup.agent_bin);
    c.current_dir(dir)
        .arg("--state")
        .arg(dir.join("state"))
        .args(["--tcti", &tpm.tcti()])
        .env("TSS2_LOG", "all+NONE");
    c
}
