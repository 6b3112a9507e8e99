//! A SIMULATED demo terminal, used when swtpm is not installed (or with `--simulated`): the real
//! agent shell (`vouch_agent::session::Session`, with its attester, measurement, state directory
//! and enrollment) running in this process over a software TPM (`vouch-sim`) that produces
//! byte-exact quotes. Only the TPM differs from a `vouch-agent` on swtpm. The verifier cannot
//! tell the two apart — which is exactly why the demo labels these terminals SIMULATED and why
//! enrollment, not the quote, is the trust anchor until credential activation lands. Each runs
//! its session on its own thread: a demo has a handful of terminals.

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use vouch_agent::config::{DeviceReport, EventLogSource, RunConfig, mqtt_password_path};
use vouch_agent::session::{Ended, Mode, Session};
use vouch_agent::state::StateDir;
use vouch_protocol::digest::HashAlg;
use vouch_sim::SimTpm;
use vouch_test_kit::eventlog::TerminalBoot;

use super::{EVENTLOG, FIRMWARE, FIRMWARE_PCR, MODEL, Setup};
use crate::sim_tpm::SimConnector;

/// A TPM seed per terminal id, so a demo terminal keeps its keys across its reboots.
fn seed(id: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vouch demo simulated terminal\0")
        .chain_update(id)
        .finalize()
        .into()
}

/// What a simulated terminal reports: the inventory of its own (fake) tree `DIR/sysfs`, empty
/// but for the simulated TPM's `SIM` unless the demo writes one there; no firmware version.
fn device_report(dir: &Path) -> DeviceReport {
    DeviceReport {
        sysfs_root: dir.join("sysfs"),
        firmware_version: None,
    }
}

#[derive(Debug)]
pub struct SimulatedTerminal {
    pub dir: PathBuf,
    tpm: Arc<SimConnector>,
    running: Option<Running>,
}

/// The agent session of a running terminal and how to end it.
#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<Result<Ended>>,
}

/// Plays the firmware's part on the simulated TPM: a reset, then every digest of `boot`'s event
/// log extended into its PCR, and the log left where the agent reads it.
fn boot(dir: &Path, tpm: &SimConnector, boot: &TerminalBoot) -> Result<()> {
    let log = boot.log();
    tpm.with(|tpm: &mut SimTpm| {
        tpm.reboot();
        log.extends(HashAlg::Sha256)
            .into_iter()
            .try_for_each(|(pcr, digest)| {
                let digest: [u8; 32] = digest.as_slice().try_into().context("sha256 digest")?;
                tpm.pcr_extend(u8::try_from(pcr).context("PCR index")?, &digest)
                    .context("extending a simulated PCR")
            })
    })??;
    std::fs::write(dir.join(EVENTLOG), log.bytes())?;
    Ok(())
}

impl SimulatedTerminal {
    /// Boots the simulated terminal, enrolls it with the agent's own `enroll` and returns the
    /// enrollment request for the operator.
    pub fn start(id: &str, dir: &Path) -> Result<(Self, Vec<u8>)> {
        let tpm = Arc::new(SimConnector::new(SimTpm::from_seed(seed(id))));
        boot(dir, &tpm, &TerminalBoot::default())?;
        let state_dir = dir.join("state");
        let state = StateDir::open(&state_dir)?;
        let request = dir.join("enroll.cbor");
        // What `vouch-agent enroll` prints goes to the terminal's log, as for a real terminal.
        let mut report = std::fs::File::create(dir.join("agent.log"))?;
        vouch_agent::enroll::enroll_on(
            tpm.as_ref(),
            &state,
            &id.parse()?,
            MODEL,
            &request,
            &mqtt_password_path(&state_dir),
            &device_report(dir),
            &mut report,
        )
        .context("enrolling the simulated terminal")?;
        let request = std::fs::read(request)?;
        Ok((
            Self {
                dir: dir.to_owned(),
                tpm,
                running: None,
            },
            request,
        ))
    }

    /// Starts the agent session (as `vouch-agent run` would) on its own thread.
    pub fn run(&mut self, setup: &Setup) -> Result<()> {
        let state_dir = self.dir.join("state");
        let cfg = RunConfig {
            eventlog: EventLogSource {
                path: self.dir.join(EVENTLOG),
                required: true,
            },
            broker: setup.mqtt_url.parse()?,
            mqtt_password_file: mqtt_password_path(&state_dir),
            mqtt_tls: None,
            verifier_key: setup.verifier_key,
            // Relative, as `vouch-agent run --firmware firmware.bin` in the terminal's directory
            // records it, so one model policy names the same file for every terminal.
            firmware: vec![PathBuf::from(FIRMWARE)],
            interval: Duration::from_secs(setup.interval),
            firmware_pcr: FIRMWARE_PCR,
            timeout: Duration::from_secs(30),
            report: device_report(&self.dir),
            punch: vouch_agent::punch::PunchConfig::defaults(&state_dir),
        };
        let password = vouch_agent::enroll::read_mqtt_password(&cfg.mqtt_password_file)?;
        let session = Session::open(
            StateDir::open(&state_dir)?,
            self.tpm.clone(),
            password,
            cfg,
            Mode::Daemon,
        )?
        .with_firmware_dir(self.dir.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(session.run_until(async {
                // A dropped sender (the demo is gone) stops the terminal too.
                let _ = stopped.await;
            }))
        });
        self.running = Some(Running { stop, thread });
        Ok(())
    }

    /// Stops the agent, reboots the simulated TPM into `b`, starts the agent again.
    pub fn reboot_into(&mut self, setup: &Setup, b: &TerminalBoot) -> Result<()> {
        self.stop();
        boot(&self.dir, &self.tpm, b)?;
        self.run(setup)
    }

    /// Ends the agent session (it says goodbye to the broker) and waits for its thread.
    pub fn stop(&mut self) {
        if let Some(Running { stop, thread }) = self.running.take() {
            let _ = stop.send(());
            let ended = thread
                .join()
                .map_err(|_| anyhow!("the simulated terminal's thread panicked"))
                .and_then(|r| r);
            if let Err(e) = ended {
                tracing::error!(dir = %self.dir.display(), error = %format!("{e:#}"), "simulated terminal");
            }
        }
    }
}
