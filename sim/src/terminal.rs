//! One simulated terminal: a [`SimTpm`], an Ed25519 device key and the firmware list it measured
//! into its firmware PCR, speaking the protocol's messages without a network. The scale bench
//! drives thousands of them straight into the verifier engine; the demo runs the real agent shell
//! over a [`SimTpm`] instead (see `vouch-demo`), so this type never pretends to be an agent.

use ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Nonce};
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
        }
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
        let request = self
            .tpm
            .enrollment_request(model, &self.key.verifying_key());
        self.seal(&request)
    }

    /// `msg` as this terminal sends it: signed with its device key and bound to its id.
    pub fn seal<T: Message>(&self, msg: &T) -> Vec<u8> {
        wire::seal(&self.id, msg, &self.key)
    }

    /// Evidence answering `nonce`: a quote over the boot PCRs and the firmware PCR, with the
    /// firmware list measured so far. No event log.
    pub fn evidence(&mut self, nonce: &Nonce) -> Result<Evidence, SimError> {
        let pcrs: Vec<u8> = BOOT_PCRS.chain([self.firmware_pcr]).collect();
        self.tpm
            .evidence(nonce, &pcrs, self.firmware_pcr, self.firmware.clone())
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
