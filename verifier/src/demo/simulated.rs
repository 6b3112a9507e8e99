//! A SIMULATED demo terminal, used when swtpm is not installed (or with `demo --simulated`): the
//! protocol's own agent core over a real MQTT connection, with a software TPM (`sim`) producing
//! byte-exact quotes. The verifier cannot tell it from a TPM — which is exactly why the demo
//! labels these terminals SIMULATED and why enrollment, not the quote, is the trust anchor until
//! credential activation lands. Each runs on its own thread: a demo has a handful of terminals.

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;
use vouch_protocol::agent::{AgentAction, AgentCore, AgentView};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::eventlog::build::TerminalBoot;
use vouch_protocol::firmware::{FirmwareEntry, FirmwareLog};
use vouch_protocol::ids::{DeviceId, Topic};
use vouch_protocol::messages::{Challenge, EventLogPart, Evidence, Hello};
use vouch_protocol::wire::{self, Message};

use super::{FIRMWARE, MODEL, Setup};
use crate::sim::SimTpm;

const FIRMWARE_PCR: u8 = 14;

enum Control {
    Reboot(Box<TerminalBoot>),
    Stop,
}

/// The simulated device itself: software TPM, device key, its files and measurement list.
struct Device {
    id: DeviceId,
    dir: PathBuf,
    tpm: SimTpm,
    key: SigningKey,
    /// Its MQTT password (user name = device id); the enrollment request carries only its hash.
    mqtt_password: zeroize::Zeroizing<String>,
    log: Vec<u8>,
    firmware: FirmwareLog,
}

fn seed(label: &str, id: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vouch demo simulated terminal\0")
        .chain_update(label)
        .chain_update(id)
        .finalize()
        .into()
}

impl Device {
    fn new(id: &str, dir: &Path) -> Result<Self> {
        let mut d = Device {
            id: id.parse()?,
            dir: dir.to_owned(),
            tpm: SimTpm::from_seed(seed("tpm", id)),
            key: SigningKey::from_bytes(&seed("device key", id)),
            mqtt_password: vouch_common::mqtt_passwd::generate_password()?,
            log: Vec::new(),
            firmware: FirmwareLog::default(),
        };
        d.boot(&TerminalBoot::default())?;
        Ok(d)
    }

    fn boot(&mut self, boot: &TerminalBoot) -> Result<()> {
        let log = boot.log();
        self.tpm.reboot();
        for (pcr, digest) in log.extends(HashAlg::Sha256) {
            let digest: [u8; 32] = digest.as_slice().try_into().context("sha256 digest")?;
            self.tpm.pcr_extend(u8::try_from(pcr)?, &digest)?;
        }
        self.log = log.bytes();
        Ok(())
    }

    fn evidence(&mut self, c: &Challenge) -> Result<Evidence> {
        let sha256 = std::fs::read(self.dir.join(FIRMWARE))
            .ok()
            .map(|b| Sha256Digest(Sha256::digest(&b).into()));
        let current = [FirmwareEntry {
            path: FIRMWARE.into(),
            sha256,
        }];
        let reset = self.tpm.clock_info().reset_count;
        let new = self.firmware.plan(reset, &current);
        self.tpm.measure_firmware(FIRMWARE_PCR, &new)?;
        let pcrs: Vec<u8> = (0..=9).chain([FIRMWARE_PCR]).collect();
        let mut ev =
            self.tpm
                .evidence(&c.nonce, &pcrs, FIRMWARE_PCR, self.firmware.entries.clone())?;
        ev.eventlog = Some(EventLogPart::for_challenge(
            &self.log,
            reset,
            c.eventlog_held.as_ref(),
        ));
        Ok(ev)
    }

    fn publish<T: Message>(&self, client: &AsyncClient, msg: &T) {
        let topic = Topic::new(self.id.clone(), T::KIND).to_string();
        let _ = client.try_publish(
            topic,
            QoS::AtLeastOnce,
            false,
            wire::seal(&self.id, msg, &self.key),
        );
    }
}

/// The next freshness counter of a simulated terminal (kept in memory: it starts from the wall
/// clock, so a restarted demo's terminals are still above what the verifier recorded).
fn next_counter(last: &mut u64) -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    *last = vouch_protocol::nonce::next_counter(*last, micros);
    *last
}

fn request_id() -> u64 {
    vouch_common::keys::random_bytes::<8>()
        .map(|b| u64::from_le_bytes(*b))
        .unwrap_or(1)
        .max(1)
}

#[derive(Debug)]
pub struct SimulatedTerminal {
    pub dir: PathBuf,
    device: Option<Box<Device>>,
    control: Option<mpsc::UnboundedSender<Control>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SimulatedTerminal {
    /// Creates the simulated device and its enrollment request.
    pub fn start(id: &str, dir: &Path) -> Result<(Self, Vec<u8>)> {
        let device = Device::new(id, dir)?;
        let request = wire::seal(
            &device.id,
            &device.tpm.enrollment_request_with_mqtt(
                MODEL,
                &device.key.verifying_key(),
                &vouch_common::mqtt_passwd::hash_generated(&device.mqtt_password),
            ),
            &device.key,
        );
        Ok((
            Self {
                dir: dir.to_owned(),
                device: Some(Box::new(device)),
                control: None,
                thread: None,
            },
            request,
        ))
    }

    /// Connects it to the broker and starts answering challenges.
    pub fn run(&mut self, setup: &Setup) -> Result<()> {
        let device = self
            .device
            .take()
            .context("the simulated terminal already runs")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (host, port) = (setup.mqtt_host.clone(), setup.mqtt_port);
        let (key, interval) = (setup.verifier_key, Duration::from_secs(setup.interval));
        self.thread = Some(std::thread::spawn(move || {
            rt.block_on(session(*device, host, port, key, interval, rx));
        }));
        self.control = Some(tx);
        Ok(())
    }

    pub fn reboot_into(&mut self, boot: &TerminalBoot) -> Result<()> {
        self.control
            .as_ref()
            .context("the simulated terminal is not running")?
            .send(Control::Reboot(Box::new(boot.clone())))
            .map_err(|_| anyhow::anyhow!("the simulated terminal stopped"))
    }

    pub fn stop(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.send(Control::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn session(
    mut device: Device,
    host: String,
    port: u16,
    verifier_key: ed25519_dalek::VerifyingKey,
    interval: Duration,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    // Client id = user name = device id, as for a real agent (the broker enforces it).
    let mut opts = MqttOptions::new(device.id.as_str(), host, port);
    opts.set_credentials(device.id.as_str(), device.mqtt_password.as_str());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut core = AgentCore::new(device.id.clone(), verifier_key, AgentView::default(), true);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut counter = 0;
    let hello = |core: &mut AgentCore, device: &Device, counter: &mut u64| {
        let request = request_id();
        core.open_request(request);
        device.publish(
            &client,
            &Hello {
                agent_version: format!("{} (simulated)", env!("CARGO_PKG_VERSION")),
                model: MODEL.into(),
                reset_count: device.tpm.clock_info().reset_count,
                request,
                counter: next_counter(counter),
            },
        );
    };
    loop {
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Reboot(b)) => {
                    if let Err(e) = device.boot(&b) {
                        tracing::error!(error = %e, "simulated reboot failed");
                    }
                    hello(&mut core, &device, &mut counter);
                }
                Some(Control::Stop) | None => break,
            },
            _ = tick.tick() => {
                let request = request_id();
                core.open_request(request);
                device.publish(&client, &core.status(request, next_counter(&mut counter)));
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let subs = core.subscriptions().into_iter().map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
                    let _ = client.try_subscribe_many(subs);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => hello(&mut core, &device, &mut counter),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let now = vouch_common::time::now_unix();
                    let Ok(mut actions) = core.on_message(&p.topic, &p.payload, now) else { continue };
                    // Evidence is produced inline, so each attestation finishes before the next
                    // action; a challenge the core held meanwhile comes back from it.
                    while !actions.is_empty() {
                        let mut next = Vec::new();
                        for a in actions {
                            match a {
                                AgentAction::Attest(c) => {
                                    match device.evidence(&c) {
                                        Ok(ev) => device.publish(&client, &ev),
                                        Err(e) => tracing::error!(error = %e, "simulated evidence failed"),
                                    }
                                    next.extend(core.attestation_finished(now));
                                }
                                AgentAction::RequestChallenge => {
                                    let request = request_id();
                                    core.open_request(request);
                                    device.publish(&client, &core.status(request, next_counter(&mut counter)));
                                }
                                _ => {}
                            }
                        }
                        actions = next;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            },
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(300), eventloop.poll()).await;
}
