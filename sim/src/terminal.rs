//! One simulated terminal: a [`SimTpm`], an Ed25519 device key and the firmware list it measured
//! into its firmware PCR, speaking the protocol's messages without a network. The scale bench
//! drives thousands of them straight into the verifier engine; the demo runs the real agent shell
//! over a [`SimTpm`] instead (see `vouch-demo`), so this type never pretends to be an agent.
//!
//! Like the agent, a terminal may report a firmware version and a hardware inventory with its
//! enrollment request and every evidence; the inventory's digest is measured into the firmware
//! PCR as the newest `vouch:inventory` entry of the list whenever it differs from the newest
//! one measured in this boot ([`SimTerminal::set_inventory`]).

use ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::inventory::{self, Inventory};
use vouch_protocol::messages::Evidence;
use vouch_protocol::wire::{self, Message};

use crate::tpm::{SimError, SimTpm};

/// The PCRs a simulated terminal quotes besides its firmware PCR: the boot chain 0-7.
pub const BOOT_PCRS: std::ops::RangeInclusive<u8> = 0..=7;

/// A simulated terminal. See the module docs.
#[derive(Debug)]
pub struct SimTerminal {
    id: DeviceId,
    tpm: SimTpm,
    key: SigningKey,
    firmware_pcr: u8,
    firmware: Vec<FirmwareEntry>,
    firmware_version: Option<String>,
    inventory: Option<Inventory>,
}

/// `SHA-256("vouch-sim terminal\0" || label || 0 || seed)`: the TPM seed and the device key of one
/// terminal are unrelated, and neither collides with a seed used for anything else.
fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"vouch-sim terminal\0")
        .chain_update(label)
        .chain_update([0])
        .chain_update(seed)
        .finalize()
        .into()
}

impl SimTerminal {
    /// A freshly booted terminal `id` whose TPM and device key derive from `seed`, measuring its
    /// firmware into `firmware_pcr` (nothing measured yet).
    pub fn from_seed(id: DeviceId, seed: [u8; 32], firmware_pcr: u8) -> Self {
        Self {
            id,
            tpm: SimTpm::from_seed(derive(&seed, b"tpm")),
            key: SigningKey::from_bytes(&derive(&seed, b"device key")),
            firmware_pcr,
            firmware: Vec::new(),
            firmware_version: None,
            inventory: None,
        }
    }

    /// The firmware version the terminal reports from now on (`None`: none, as older agents).
    pub fn set_firmware_version(&mut self, version: Option<String>) {
        self.firmware_version = version;
    }

    /// The hardware inventory the terminal reports from now on, normalized; measured (record,
    /// then extend) as a `vouch:inventory` entry unless the newest one of the list already is
    /// its digest.
    pub fn set_inventory(&mut self, mut inv: Inventory) -> Result<(), SimError> {
        inv.normalize();
        if inventory::measured_digest(&self.firmware) != Some(inv.digest()) {
            self.measure(&[inv.measurement()])?;
        }
        self.inventory = Some(inv);
        Ok(())
    }

    /// The inventory the terminal reports, if any.
    pub fn inventory(&self) -> Option<&Inventory> {
        self.inventory.as_ref()
    }

    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    pub fn tpm(&self) -> &SimTpm {
        &self.tpm
    }

    pub fn tpm_mut(&mut self) -> &mut SimTpm {
        &mut self.tpm
    }

    pub fn device_key(&self) -> &SigningKey {
        &self.key
    }

    /// Measures `entries` as the agent does: appends them to the list, then extends each one's
    /// event digest into the firmware PCR.
    pub fn measure(&mut self, entries: &[FirmwareEntry]) -> Result<(), SimError> {
        self.firmware.extend_from_slice(entries);
        self.tpm.measure_firmware(self.firmware_pcr, entries)
    }

    /// This terminal's enrollment request for `model`, sealed with its device key. Its MQTT
    /// credential opens no broker account (see [`crate::LOCKED_MQTT_HASH`]).
    pub fn enrollment_request(&self, model: &str) -> Vec<u8> {
        let mut request = self
            .tpm
            .enrollment_request(model, &self.key.verifying_key());
        request.firmware_version = self.firmware_version.clone();
        request.inventory = self.inventory.clone();
        self.seal(&request)
    }

    /// `msg` as this terminal sends it: signed with its device key and bound to its id.
    pub fn seal<T: Message>(&self, msg: &T) -> Vec<u8> {
        wire::seal(&self.id, msg, &self.key)
    }

    /// Evidence answering `nonce`: a quote over the boot PCRs and the firmware PCR, with the
    /// firmware list measured so far, and the firmware version and inventory the terminal
    /// reports. No event log.
    pub fn evidence(&mut self, nonce: &Nonce) -> Result<Evidence, SimError> {
        let pcrs: Vec<u8> = BOOT_PCRS.chain([self.firmware_pcr]).collect();
        let mut ev = self
            .tpm
            .evidence(nonce, &pcrs, self.firmware_pcr, self.firmware.clone())?;
        ev.firmware_version = self.firmware_version.clone();
        ev.inventory = self.inventory.clone();
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use vouch_protocol::appraisal;
    use vouch_protocol::bytes::Sha256Digest;
    use vouch_protocol::enrollment::Enrollment;
    use vouch_protocol::ids::{Kind, Topic};

    use super::*;

    fn terminal(seed: u8) -> SimTerminal {
        let mut t = SimTerminal::from_seed("sim-term".parse().unwrap(), [seed; 32], 14);
        t.measure(&[FirmwareEntry {
            path: "/fw.bin".into(),
            sha256: Some(Sha256Digest([3; 32])),
        }])
        .unwrap();
        t
    }

    #[test]
    fn evidence_verifies_under_its_own_enrollment_and_carries_the_measured_firmware() {
        let mut t = terminal(1);
        let enrollment = Enrollment::from_request(&t.enrollment_request("T"), 1).unwrap();
        let nonce = Nonce::from_bytes([9; 32]);
        let evidence = t.evidence(&nonce).unwrap();
        assert_eq!(evidence.firmware.len(), 1);
        let sealed = t.seal(&evidence);
        let topic = Topic::new(t.id().clone(), Kind::Evidence);
        let device_key =
            ed25519_dalek::VerifyingKey::try_from(enrollment.device_key.0.as_slice()).unwrap();
        let opened: Evidence = wire::decode(&topic, &sealed, wire::DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .verify(&device_key)
            .unwrap()
            .open()
            .unwrap();
        assert_eq!(opened.nonce, nonce);
        appraisal::verify_evidence(&enrollment, &opened, None).unwrap();
    }

    #[test]
    fn a_reported_inventory_is_measured_once_and_bound_to_the_quote() {
        let mut t = terminal(1);
        t.set_firmware_version(Some("2.1".into()));
        let mut inv = Inventory {
            cpu_model: Some("ARM Cortex-A53".into()),
            ..Inventory::default()
        };
        t.set_inventory(inv.clone()).unwrap();
        t.set_inventory(inv.clone()).unwrap();
        let enrollment = Enrollment::from_request(&t.enrollment_request("T"), 1).unwrap();
        let ev = t.evidence(&Nonce::from_bytes([9; 32])).unwrap();
        assert_eq!(ev.firmware.len(), 2, "measured once: {:?}", ev.firmware);
        assert_eq!(ev.firmware_version.as_deref(), Some("2.1"));
        assert_eq!(ev.inventory.as_ref(), Some(&inv));
        let v = appraisal::verify_evidence(&enrollment, &ev, None).unwrap();
        assert_eq!(
            inventory::measured_digest(&v.measurements.firmware),
            Some(inv.digest())
        );
        // Changed hardware is measured anew, newest last.
        inv.cpu_model = Some("ARM Cortex-A72".into());
        t.set_inventory(inv.clone()).unwrap();
        let ev = t.evidence(&Nonce::from_bytes([8; 32])).unwrap();
        let v = appraisal::verify_evidence(&enrollment, &ev, None).unwrap();
        assert_eq!(ev.firmware.len(), 3);
        assert_eq!(
            inventory::measured_digest(&v.measurements.firmware),
            Some(inv.digest())
        );
    }

    #[test]
    fn seeds_give_distinct_tpm_and_device_keys() {
        let (a, b) = (terminal(1), terminal(2));
        assert_ne!(a.tpm().ak_public(), b.tpm().ak_public());
        assert_ne!(
            a.device_key().verifying_key(),
            b.device_key().verifying_key()
        );
        // The device key is not the TPM's seed reused.
        assert_ne!(derive(&[1; 32], b"tpm"), derive(&[1; 32], b"device key"));
    }
}
