//! What schema 4 added to the store fixture (`tests/data/store-v4.redb`, on top of the values in
//! `v1.rs` and the v3 punch records): two vendors (one revoked), two reference bundles (one
//! firmware version revoked), a supply-chain policy, and a device enrolled from a vendor
//! manifest — its provenance, its EK-certificate anchor, and measurements carrying the firmware
//! version and inventory it reported. Fixed bytes and times, so the fixture is reproducible.

use std::collections::BTreeMap;
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::device::Actor;
use vouch_protocol::enrollment::{Enrollment, Provenance};
use vouch_protocol::inventory::{Inventory, Nic, PciDevice, Smbios, TpmInfo, UsbDevice};
use vouch_protocol::policy::{Measurements, ReferenceValues};
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::trust::{BundleRecord, Revocation, VendorRecord};
use vouch_verifier::store::DeviceRecord;

use super::v1::T0;

/// Schema 4's additions.
pub struct Additions {
    pub vendors: Vec<VendorRecord>,
    pub bundles: Vec<BundleRecord>,
    pub supply_chain: SupplyChainPolicy,
    /// Enrolled from a manifest; its model (`K-9`) has no other device.
    pub device: DeviceRecord,
}

/// The model of the manifest-enrolled device.
pub const MODEL: &str = "K-9";

pub fn inventory() -> Inventory {
    let mut inv = Inventory {
        smbios: Smbios {
            board_vendor: Some("Acme Boards".into()),
            board_name: Some("AB-7".into()),
            sys_vendor: Some("Acme".into()),
            product_name: Some("Kiosk 9".into()),
            bios_vendor: Some("Coreboot".into()),
            bios_version: Some("4.22".into()),
        },
        cpu_model: Some("ARM Cortex-A53".into()),
        pci: vec![PciDevice {
            slot: "0000:00:1f.3".into(),
            vendor: 0x8086,
            device: 0x1234,
        }],
        usb: vec![UsbDevice {
            port: "1-1".into(),
            vendor: 0x1a86,
            product: 0x7523,
        }],
        tpm: Some(TpmInfo {
            manufacturer: "IFX".into(),
            firmware_version: "7.85".into(),
        }),
        nics: vec![Nic {
            name: "eth0".into(),
            mac: "02:00:00:00:00:09".into(),
        }],
    };
    inv.normalize();
    inv
}

fn reference(b: u8) -> ReferenceValues {
    ReferenceValues {
        pcrs: BTreeMap::from([(0, Sha256Digest([b; 32])), (4, Sha256Digest([b ^ 4; 32]))]),
        firmware_pcr: Some(14),
        ..ReferenceValues::default()
    }
}

fn manifest_device() -> DeviceRecord {
    let inv = inventory();
    let mut rec = DeviceRecord::new(Enrollment {
        id: "k9-1".parse().expect("fixture id"),
        model: MODEL.into(),
        ek_public: Bytes(vec![0xE9, 1, 2]),
        ek_certificate: Some(Bytes(vec![0x30, 0x82, 9])),
        ak_public: Bytes(vec![0xA9, 4, 5]),
        ak_name: Bytes(vec![0x00, 0x0b, 9]),
        device_key: Bytes(vec![9; 32]),
        enrolled_at: T0 + 90,
        mqtt_password_hash: Some("$7$101$c2FsdHNhbHQ9$aGFzaA==".into()),
        provenance: Some(Provenance {
            vendor: "acme".parse().expect("fixture vendor"),
            firmware_version: "2.0.1".into(),
            inventory: inv.clone(),
            issued_at: T0 + 80,
            credential_activated: true,
            simulated: false,
            ek_certificates: vec![Bytes(vec![0x30, 0x82, 9]), Bytes(vec![0x30, 0x82, 0xca])],
        }),
        ek_cert_anchor: Some("CN=swtpm-localca-rootca".into()),
    });
    rec.measurements = Some(Measurements {
        pcrs: BTreeMap::from([
            (0, Sha256Digest([0x90; 32])),
            (14, Sha256Digest([0x9e; 32])),
        ]),
        firmware_pcr: 14,
        firmware: vec![inv.measurement()],
        eventlog: None,
        firmware_version: Some("2.0.2".into()),
        inventory: Some(inv),
    });
    rec.measured_at = Some(T0 + 95);
    rec
}

pub fn additions() -> Additions {
    Additions {
        vendors: vec![
            VendorRecord {
                name: "acme".parse().expect("fixture vendor"),
                key: [0xac; 32],
                trusted_at: T0 + 70,
                trusted_by: Actor::Operator("alice".into()),
                revoked: None,
            },
            VendorRecord {
                name: "shady".parse().expect("fixture vendor"),
                key: [0x5d; 32],
                trusted_at: T0 + 71,
                trusted_by: Actor::Operator("alice".into()),
                revoked: Some(Revocation {
                    at: T0 + 72,
                    by: Actor::Operator("bob".into()),
                    reason: "signing key leaked".into(),
                }),
            },
        ],
        bundles: vec![
            BundleRecord {
                vendor: "acme".parse().expect("fixture vendor"),
                model: MODEL.into(),
                firmware_version: "2.0.1".into(),
                issued_at: T0 + 60,
                imported_at: T0 + 73,
                reference: reference(0x21),
                revoked: Some(Revocation {
                    at: T0 + 74,
                    by: Actor::Operator("bob".into()),
                    reason: "CVE-2026-0001".into(),
                }),
            },
            BundleRecord {
                vendor: "acme".parse().expect("fixture vendor"),
                model: MODEL.into(),
                firmware_version: "2.0.2".into(),
                issued_at: T0 + 61,
                imported_at: T0 + 75,
                reference: reference(0x22),
                revoked: None,
            },
        ],
        supply_chain: SupplyChainPolicy::from_json(
            r#"{"deny": {"pci_vendors": ["10ec"], "smbios_manufacturers": ["Hidden Board"],
                "tpm_manufacturers": ["XYZ"]}}"#,
        )
        .expect("fixture supply-chain policy"),
        device: manifest_device(),
    }
}
