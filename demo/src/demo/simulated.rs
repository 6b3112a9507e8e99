//! A SIMULATED demo terminal, used when swtpm is not installed (or with `--simulated`): one of
//! `vouch-provision batch`'s terminals, run by the real agent shell
//! (`vouch_agent::session::Session`, with its attester, measurement, inventory and state
//! directory) in this process over a software TPM (`vouch-sim`) that produces byte-exact
//! quotes. Only the TPM differs from a `vouch-agent` on swtpm, but that is everything: a
//! simulated TPM has no EK certificate and cannot activate a credential, so nothing proves its
//! keys live in hardware. Its manifest says `simulated`, the verifier runs with
//! `require_ek_cert` false, and the demo labels these terminals SIMULATED. Each runs its session
//! on its own thread: a demo has a handful of terminals.

use anyhow::{Context, Result, anyhow};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use vouch_agent::config::{DeviceReport, EventLogSource, RunConfig, mqtt_password_path};
use vouch_agent::session::{Ended, Mode, Session};
use vouch_agent::state::{StateDir, StoredIdentity};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::inventory::Inventory;
use vouch_sim::{SimTerminal, SimTpm};
use vouch_test_kit::eventlog::TerminalBoot;
use zeroize::Zeroizing;

use super::{EVENTLOG, FIRMWARE, FIRMWARE_PCR, FIRMWARE_VERSION, SYSFS, Setup};
use crate::sim_tpm::SimConnector;

/// A terminal of `vouch-provision batch` (`OUT/terminals/<id>.json`): the seed its simulated
/// TPM and device key derive from, its MQTT password and the inventory its manifest records.
#[derive(Deserialize)]
pub struct BatchTerminal {
    pub id: DeviceId,
    seed: Zeroizing<String>,
    pub model: String,
    pub firmware_version: String,
    mqtt_password: Zeroizing<String>,
    pub inventory: Inventory,
}

impl BatchTerminal {
    /// Reads and parses the terminal file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(vouch_common::fs::read_limited(path, 1 << 20)?);
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a batch terminal file", path.display()))
    }

    fn seed(&self) -> Result<[u8; 32]> {
        let bytes = Zeroizing::new(hex::decode(self.seed.as_str()).context("seed is not hex")?);
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("seed of {} is not 32 bytes", self.id))
    }
}

/// What a simulated terminal reports: the inventory of its own fake tree and its firmware
/// version.
fn device_report(dir: &Path) -> DeviceReport {
    DeviceReport {
        sysfs_root: dir.join(SYSFS),
        firmware_version: Some(FIRMWARE_VERSION.to_owned()),
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
    /// The terminal `file` describes, in `dir`: its simulated TPM and device key from the
    /// batch seed, its state directory holding the identity and MQTT password the manifest was
    /// made for (what the factory leaves on the terminal), booted. The TPM's part of the
    /// inventory comes from the simulated TPM, which reports `SIM`, as the batch records.
    pub fn from_batch(file: &BatchTerminal, dir: &Path) -> Result<Self> {
        let mut terminal = SimTerminal::from_seed(file.id.clone(), file.seed()?, FIRMWARE_PCR);
        let key = terminal.device_key().clone();
        // The terminal's TPM, taken out of the SimTerminal that derived it.
        let sim = std::mem::replace(terminal.tpm_mut(), SimTpm::from_seed([0; 32]));
        let state_dir = dir.join("state");
        let state = StateDir::open(&state_dir)?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encoding the device key: {e}"))?;
        vouch_common::fs::write_atomic(&state_dir.join("device.key"), pem.as_bytes(), 0o600)?;
        state.save_identity(&StoredIdentity {
            device_id: file.id.clone(),
            model: file.model.clone(),
            ek_public: Bytes(sim.ek_public()),
            ek_certificate: None,
            ak_public: Bytes(sim.ak_public()),
            ak_name: Bytes(sim.ak_name()),
            ak_private: Bytes(Vec::new()),
        })?;
        vouch_common::fs::write_atomic(
            &mqtt_password_path(&state_dir),
            format!("{}\n", file.mqtt_password.as_str()).as_bytes(),
            0o600,
        )?;
        let tpm = Arc::new(SimConnector::new(sim));
        boot(dir, &tpm, &TerminalBoot::default())?;
        std::fs::write(
            dir.join("agent.log"),
            format!(
                "provisioned by vouch-provision batch: {} (model {}, firmware {})\n",
                file.id, file.model, file.firmware_version
            ),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            tpm,
            running: None,
        })
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
