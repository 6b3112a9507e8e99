//! The device manifest: what a vendor's provisioning station signs for each terminal after it
//! proved the AK lives in the TPM holding the EK (credential activation) and checked the EK
//! certificate. The operator imports it (`vouchctl import manifest FILE`); the verifier checks
//! the vendor's signature with the key it trusts for that vendor and enrolls the device from it
//! ([`crate::enrollment::Enrollment::from_manifest`]). docs/provisioning.md shows an example.

use serde::{Deserialize, Serialize};

use super::{DocType, Document};
use crate::bytes::Bytes;
use crate::ids::DeviceId;
use crate::inventory::Inventory;

/// Most certificates in a manifest's EK chain (leaf and intermediates).
pub const MAX_EK_CHAIN: usize = 4;

/// The manifest body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceManifest {
    pub device: DeviceId,
    pub model: String,
    /// The firmware version the terminal was provisioned with.
    pub firmware_version: String,
    /// TPMT_PUBLIC of the endorsement key.
    pub ek_public: Bytes,
    /// DER certificates: the EK certificate first, then any intermediates; empty when the TPM
    /// has none (a simulated terminal never has one).
    pub ek_certificates: Vec<Bytes>,
    /// TPMT_PUBLIC of the attestation key and its TPM Name.
    pub ak_public: Bytes,
    pub ak_name: Bytes,
    /// Ed25519 public key that signs the agent's messages.
    pub device_key: Bytes,
    /// The terminal's broker identity: the Mosquitto `$7$` hash of its MQTT password.
    pub mqtt_password_hash: String,
    /// The hardware inventory at provisioning: the baseline every attestation is compared with.
    pub inventory: Inventory,
    /// Unix seconds.
    pub issued_at: u64,
    /// True when the station proved, by TPM2_ActivateCredential, that the AK is in the TPM of
    /// the EK (false only for simulated terminals).
    pub credential_activated: bool,
    /// A software attester (vouch-sim) stands in for the TPM: it proves nothing about hardware.
    pub simulated: bool,
}

impl Document for DeviceManifest {
    const TYPE: DocType = DocType::Manifest;
    /// Three 16 KiB certificates, keys, and an inventory of 512 devices per bus fit well below.
    const MAX_LEN: usize = 256 * 1024;
}
