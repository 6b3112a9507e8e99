//! A demo terminal as in production, but on a software TPM: a `vouch-agent` daemon process
//! talking to its own swtpm (through tss-esapi, exactly like a hardware TPM), manufactured with
//! an EK certificate from the demo TPM manufacturer, whose PCRs the demo fills by "booting" it
//! with a firmware event log. The agent runs in the terminal's directory, so its firmware file,
//! event log, state directory and fake hardware tree (`--sysfs-root sysfs`) are relative paths.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vouch_protocol::digest::HashAlg;
use vouch_test_kit::ekca::{SwtpmWithEkCert, TpmManufacturerCa};
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_test_kit::process::Proc;
use vouch_test_kit::swtpm::Swtpm;

use super::{EVENTLOG, FIRMWARE, FIRMWARE_VERSION, SYSFS, Setup};

#[derive(Debug)]
pub struct RealTerminal {
    pub dir: PathBuf,
    tpm: SwtpmWithEkCert,
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
    /// Manufactures the terminal's TPM in `dir` (swtpm with EK certificates from `ca`), starts
    /// it and boots it.
    pub fn manufacture(ca: &TpmManufacturerCa, dir: &Path) -> Result<Self> {
        let tpm = SwtpmWithEkCert::start(ca, dir).context("starting swtpm")?;
        boot(dir, tpm.swtpm(), &TerminalBoot::default())?;
        Ok(Self {
            dir: dir.to_owned(),
            tpm,
            agent: None,
        })
    }

    /// `vouch-agent`'s arguments for `rest` on this terminal: its state directory (relative to
    /// the terminal's directory, where the agent runs) and its TPM.
    pub fn agent_args(&self, rest: &[&str]) -> Vec<String> {
        ["--state", "state", "--tcti", &self.tpm.tcti()]
            .iter()
            .chain(rest)
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Starts the agent daemon.
    pub fn run(&mut self, setup: &Setup, id: &str) -> Result<()> {
        let mut cmd = Command::new(&setup.agent_bin);
        cmd.current_dir(&self.dir)
            .args(self.agent_args(&["run", "--mqtt-url", &setup.mqtt_url, "--verifier-key"]))
            .arg(&setup.verifier_pub)
            .args(["--firmware", FIRMWARE, "--eventlog", EVENTLOG])
            .args([
                "--sysfs-root",
                SYSFS,
                "--firmware-version",
                FIRMWARE_VERSION,
            ])
            .args(["--interval", &setup.interval.to_string()])
            .env("TSS2_LOG", "all+NONE");
        let log = self.dir.join("agent.log");
        self.agent = Some(Proc::spawn(&format!("vouch-agent {id}"), &mut cmd, &log)?);
        Ok(())
    }

    /// Stops the agent, reboots the TPM into `b`, starts the agent again.
    pub fn reboot_into(&mut self, setup: &Setup, id: &str, b: &TerminalBoot) -> Result<()> {
        self.stop();
        boot(&self.dir, self.tpm.swtpm(), b)?;
        self.run(setup, id)
    }

    pub fn stop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop_within(Duration::from_secs(5));
        }
    }
}
