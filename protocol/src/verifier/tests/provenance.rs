//! Core decisions on the chain of trust: which reference values govern a device enrolled from a
//! vendor manifest (device and model overrides before the vendor bundle for its model and
//! reported firmware version), revoked firmware (contraindicated even under an override), the
//! hardware inventory (bound to the quote, compared with the manifest's baseline, judged by the
//! supply-chain policy, also when stored measurements are re-appraised), and the `warning` cap
//! of a device without a trusted EK certificate.

use super::*;
use crate::device::Actor;
use crate::enrollment::Provenance;
use crate::inventory::{Inventory, PciDevice, Smbios};
use crate::reason::Reason;
use crate::supply_chain::SupplyChainPolicy;
use crate::vendor::trust::{BundleRecord, Revocation};
use crate::verdict::{Status, claim};
use crate::verifier::{Lookup, VerdictDraft, governing_with};

/// The model of the test records.
const MODEL: &str = "T";

fn inventory(board_vendor: &str, pci_vendor: u16) -> Inventory {
    let mut inv = Inventory {
        smbios: Smbios {
            board_vendor: Some(board_vendor.into()),
            board_name: Some("AB-200".into()),
            ..Smbios::default()
        },
        pci: vec![PciDevice {
            slot: "0000:01:00.0".into(),
            vendor: pci_vendor,
            device: 0x8168,
        }],
        ..Inventory::default()
    };
    inv.normalize();
    inv
}

fn baseline() -> Inventory {
    inventory("Acme Boards", 0x8086)
}

/// A record enrolled from a manifest saying firmware "1.0" and [`baseline`].
fn manifest_record(id: &str) -> DeviceRecord {
    let mut rec = record(id);
    rec.enrollment.provenance = Some(Provenance {
        vendor: "acme".parse().unwrap(),
        firmware_version: "1.0".into(),
        inventory: baseline(),
        issued_at: T0 - 100,
        credential_activated: true,
        simulated: false,
        ek_certificates: Vec::new(),
    });
    rec
}

/// Measurements with `pcr0`, reporting `version` and `inv`; `measured` extends the inventory's
/// digest into the firmware list, as the agent does.
fn reporting(
    pcr0: u8,
    version: Option<&str>,
    inv: Option<Inventory>,
    measured: bool,
) -> Measurements {
    let mut m = measurements(pcr0);
    if let (Some(i), true) = (&inv, measured) {
        m.firmware.push(i.measurement());
    }
    m.firmware_version = version.map(str::to_owned);
    m.inventory = inv;
    m
}

fn quote(m: Measurements, clock: u64) -> Result<Verified, Failure> {
    let Ok(mut v) = verified(0, clock) else {
        unreachable!("verified() is a genuine quote")
    };
    v.measurements = m;
    Ok(v)
}

/// A store for [`governing_with`]: the operator's values per scope, bundles, a supply-chain
/// policy; it records every lookup.
#[derive(Default)]
struct Shelf {
    device: Option<ReferenceValues>,
    model: Option<ReferenceValues>,
    bundles: Vec<BundleRecord>,
    supply_chain: Option<SupplyChainPolicy>,
    asked: Vec<String>,
}

impl Lookup for Shelf {
    type Error = ();

    fn policy(&mut self, scope: &PolicyScope) -> Result<Option<ReferenceValues>, ()> {
        self.asked.push(scope.to_string());
        Ok(match scope {
            PolicyScope::Device(_) => self.device.clone(),
            PolicyScope::Model(_) => self.model.clone(),
            PolicyScope::Firmware { .. } => None,
        })
    }

    fn bundle(&mut self, model: &str, version: &str) -> Result<Option<BundleRecord>, ()> {
        self.asked.push(format!("bundle:{model}@{version}"));
        Ok(self
            .bundles
            .iter()
            .find(|b| b.model == model && b.firmware_version == version)
            .cloned())
    }

    fn supply_chain(&mut self) -> Result<Option<SupplyChainPolicy>, ()> {
        Ok(self.supply_chain.clone())
    }

    fn revoked_bundles(&mut self, model: &str) -> Result<Vec<BundleRecord>, ()> {
        Ok(self
            .bundles
            .iter()
            .filter(|b| b.model == model && b.revoked.is_some())
            .cloned()
            .collect())
    }
}

fn bundle(version: &str, pcr0: u8, revoked: Option<&str>) -> BundleRecord {
    BundleRecord {
        vendor: "acme".parse().unwrap(),
        model: MODEL.into(),
        firmware_version: version.into(),
        issued_at: T0 - 50,
        imported_at: T0 - 40,
        reference: measurements(pcr0).capture(),
        revoked: revoked.map(|reason| Revocation {
            at: T0 - 30,
            by: Actor::Operator("test".into()),
            reason: reason.into(),
        }),
    }
}

fn firmware(version: &str) -> PolicyScope {
    PolicyScope::Firmware {
        model: MODEL.into(),
        version: version.into(),
    }
}

/// A world whose device came from a manifest, with `require_ek_cert` as given.
fn manifest_world(require_ek_cert: bool) -> World {
    let mut w = World::new();
    w.core = VerifierCore::new(Rules {
        require_ek_cert,
        ..w.core.rules().clone()
    });
    w.rec = manifest_record("t1");
    w
}

/// Fresh evidence of `m` under `shelf`, looked up with the version the evidence reports.
fn attest(w: &mut World, m: Measurements, shelf: &mut Shelf) -> VerdictDraft {
    let n = w.challenge();
    let rec = w.rec.clone();
    let gov = governing_with(&rec, m.firmware_version.as_deref(), shelf).unwrap();
    let clock = 100 + w.seq * 10;
    let d = w.evidence(n, &quote(m, clock), &gov);
    assert_eq!(d.rejected, None);
    d.effects.verdict().expect("a verdict").clone()
}

#[test]
fn the_vendor_bundle_for_the_reported_version_governs_a_device_without_operator_values() {
    let rec = manifest_record("t1");
    let mut shelf = Shelf {
        bundles: vec![bundle("1.0", 1, None), bundle("1.1", 2, None)],
        ..Shelf::default()
    };
    let g = governing_with(&rec, Some("1.1"), &mut shelf).unwrap();
    let found = g.found.unwrap();
    assert_eq!(found.scope, firmware("1.1"));
    assert_eq!(found.label, "firmware T@1.1");
    assert!(found.id.starts_with("firmware:T@1.1@"), "{}", found.id);
    assert_eq!(found.values, measurements(2).capture());
    assert_eq!(g.subject, "device t1 or model T or firmware T@1.1");
    // Nothing reported: the version the vendor provisioned.
    let g = governing_with(&rec, None, &mut shelf).unwrap();
    assert_eq!(g.found.unwrap().scope, firmware("1.0"));
    // A version without a bundle: no reference values, and the subject says where they were
    // looked for.
    let g = governing_with(&rec, Some("9.9"), &mut shelf).unwrap();
    assert_eq!(g.found, None);
    assert_eq!(g.subject, "device t1 or model T or firmware T@9.9");
    // A device that never reported a version and has no manifest has no bundle to look up.
    shelf.asked.clear();
    let g = governing_with(&record("t2"), None, &mut shelf).unwrap();
    assert_eq!(g.found, None);
    assert!(
        !shelf.asked.iter().any(|a| a.starts_with("bundle:")),
        "{:?}",
        shelf.asked
    );
}

#[test]
fn a_device_under_its_bundle_is_trusted_and_its_verdict_names_the_bundle() {
    let mut w = manifest_world(false);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.1", 1, None)],
        ..Shelf::default()
    };
    let v = attest(
        &mut w,
        reporting(1, Some("1.1"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(
        (v.status, v.state),
        (Status::Affirming, DeviceState::Trusted)
    );
    assert!(
        v.policy_id
            .as_deref()
            .is_some_and(|p| p.starts_with("firmware:T@1.1@")),
        "{:?}",
        v.policy_id
    );
    assert_eq!(v.reasons, []);
    assert_eq!(v.trust.hardware, claim::GENUINE_HARDWARE);
}

#[test]
fn device_and_model_values_beat_the_bundle_but_a_revocation_beats_them_all() {
    let rec = manifest_record("t1");
    let mut shelf = Shelf {
        model: Some(measurements(3).capture()),
        bundles: vec![bundle("1.0", 1, Some("CVE-2026-1"))],
        ..Shelf::default()
    };
    let g = governing_with(&rec, None, &mut shelf).unwrap();
    assert_eq!(
        g.found.as_ref().unwrap().scope,
        PolicyScope::Model(MODEL.into())
    );
    shelf.device = Some(measurements(4).capture());
    let g = governing_with(&rec, None, &mut shelf).unwrap();
    assert_eq!(
        g.found.as_ref().unwrap().scope,
        PolicyScope::Device("t1".into())
    );
    assert_eq!(
        g.revoked.as_ref().map(|r| r.reason.as_str()),
        Some("CVE-2026-1")
    );

    // The device meets its own values exactly, and still its firmware is revoked.
    let mut w = manifest_world(false);
    let v = attest(
        &mut w,
        reporting(4, Some("1.0"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(
        v.reasons,
        [Reason::FirmwareRevoked {
            model: MODEL.into(),
            version: "1.0".into(),
            reason: "CVE-2026-1".into(),
        }]
    );
    assert_eq!(v.trust.executables, claim::CONTRAINDICATED_RUNTIME);
    assert!(
        v.policy_id
            .as_deref()
            .is_some_and(|p| p.starts_with("device:t1@"))
    );
}

#[test]
fn relabelling_the_firmware_version_does_not_escape_a_revocation() {
    // The device runs revoked 1.0 (its measurements are 1.0's) but reports "1.0a", for which
    // there is no bundle, under the operator's own values that approve those measurements.
    let mut shelf = Shelf {
        device: Some(measurements(1).capture()),
        bundles: vec![bundle("1.0", 1, Some("CVE-2026-1")), bundle("2.0", 2, None)],
        ..Shelf::default()
    };
    let mut w = manifest_world(false);
    let v = attest(
        &mut w,
        reporting(1, Some("1.0a"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(
        v.reasons,
        [Reason::FirmwareRevoked {
            model: MODEL.into(),
            version: "1.0".into(),
            reason: "CVE-2026-1".into(),
        }]
    );
    // Measurements of another firmware are not hit by 1.0's revocation.
    let mut shelf = Shelf {
        device: Some(measurements(2).capture()),
        bundles: vec![bundle("1.0", 1, Some("CVE-2026-1")), bundle("2.0", 2, None)],
        ..Shelf::default()
    };
    let mut w = manifest_world(false);
    let v = attest(
        &mut w,
        reporting(2, Some("2.0"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Affirming, "{:?}", v.reasons);
}

#[test]
fn without_a_trusted_ek_certificate_a_device_is_at_best_warning() {
    let mut w = manifest_world(true);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.0", 1, None)],
        ..Shelf::default()
    };
    let v = attest(
        &mut w,
        reporting(1, Some("1.0"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!((v.status, v.state), (Status::Warning, DeviceState::Pending));
    assert_eq!(
        v.reasons,
        [Reason::EkCertUntrusted {
            detail: "it was enrolled without an EK certificate".into()
        }]
    );
    assert_eq!(v.trust.hardware, claim::UNSAFE_HARDWARE);
    assert_eq!(v.trust.worst(), Status::Warning);

    // A certificate that did not chain is named as such; a contraindication is not softened.
    w.rec.enrollment.ek_certificate = Some(Bytes(vec![0x30]));
    let v = attest(
        &mut w,
        reporting(9, Some("1.0"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert!(
        v.reasons.contains(&Reason::EkCertUntrusted {
            detail: "its EK certificate did not chain to a trusted root when it was enrolled"
                .into()
        }),
        "{:?}",
        v.reasons
    );

    // With an anchor, the same device can be trusted.
    let mut w = manifest_world(true);
    w.rec.enrollment.ek_cert_anchor = Some("CN=swtpm-localca".into());
    let v = attest(
        &mut w,
        reporting(1, Some("1.0"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(
        (v.status, v.state),
        (Status::Affirming, DeviceState::Trusted)
    );
}

#[test]
fn an_inventory_without_its_measurement_is_not_vouched_for_by_the_quote() {
    let mut w = manifest_world(false);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.0", 1, None)],
        supply_chain: Some(
            SupplyChainPolicy::from_json(r#"{"deny": {"pci_vendors": ["10ec"]}}"#).unwrap(),
        ),
        ..Shelf::default()
    };
    // It claims the baseline, but the quote measured another inventory: only the binding is
    // named (nothing is judged on an unbound inventory).
    let mut m = reporting(1, Some("1.0"), Some(baseline()), false);
    m.firmware
        .push(inventory("Hidden Board", 0x10ec).measurement());
    let v = attest(&mut w, m, &mut shelf);
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.reasons, [Reason::InventoryNotMeasured]);
    assert_eq!(v.trust.hardware, claim::CONTRAINDICATED_HARDWARE);
}

#[test]
fn a_manifest_device_must_send_its_inventory() {
    let mut w = manifest_world(false);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.0", 1, None)],
        ..Shelf::default()
    };
    let v = attest(&mut w, reporting(1, Some("1.0"), None, false), &mut shelf);
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.reasons, [Reason::InventoryMissing]);
    // A device enrolled from its own request may send none.
    let mut w = World::new();
    let v = attest(
        &mut w,
        reporting(1, None, None, false),
        &mut Shelf {
            device: Some(measurements(1).capture()),
            ..Shelf::default()
        },
    );
    assert_eq!(v.status, Status::Affirming);
    // ... but not while a supply-chain policy is in force: silence must not evade its rules.
    let mut w = World::new();
    let v = attest(
        &mut w,
        reporting(1, None, None, false),
        &mut Shelf {
            device: Some(measurements(1).capture()),
            supply_chain: Some(
                SupplyChainPolicy::from_json(r#"{"deny": {"pci_vendors": ["10ec"]}}"#).unwrap(),
            ),
            ..Shelf::default()
        },
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.reasons, [Reason::InventoryMissing]);
}

#[test]
fn a_swapped_board_is_named_component_was_and_now() {
    let mut w = manifest_world(false);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.0", 1, None)],
        ..Shelf::default()
    };
    let swapped = inventory("Hidden Board", 0x8086);
    let v = attest(
        &mut w,
        reporting(1, Some("1.0"), Some(swapped), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(v.state, DeviceState::Quarantined);
    assert_eq!(
        v.reasons,
        [Reason::HardwareChanged {
            component: "smbios.board_vendor".into(),
            was: "Acme Boards".into(),
            now: "Hidden Board".into(),
        }]
    );
    assert_eq!(v.trust.hardware, claim::CONTRAINDICATED_HARDWARE);
}

#[test]
fn a_denied_component_is_named_with_its_rule_for_any_device_that_sends_an_inventory() {
    // No manifest: only the supply-chain policy judges the inventory.
    let mut w = World::new();
    let mut shelf = Shelf {
        device: Some(measurements(1).capture()),
        supply_chain: Some(
            SupplyChainPolicy::from_json(r#"{"deny": {"pci_vendors": ["10ec"]}}"#).unwrap(),
        ),
        ..Shelf::default()
    };
    let v = attest(
        &mut w,
        reporting(1, None, Some(inventory("Acme Boards", 0x10ec)), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(
        v.reasons,
        [Reason::SupplyChainDenied {
            component: "PCI device 10ec:8168 at 0000:01:00.0".into(),
            rule: "deny.pci_vendors 10ec".into(),
        }]
    );
    assert_eq!(v.trust.hardware, claim::CONTRAINDICATED_HARDWARE);
}

#[test]
fn allow_only_refuses_what_it_does_not_list() {
    // Allow-only needs every kind present: board and system vendor, and the TPM.
    let complete = |pci_vendor: u16| {
        let mut inv = inventory("Acme Boards", pci_vendor);
        inv.smbios.sys_vendor = Some("Acme".into());
        inv.tpm = Some(crate::inventory::TpmInfo {
            manufacturer: "IFX".into(),
            firmware_version: "7.85".into(),
        });
        inv
    };
    let mut w = World::new();
    let mut shelf = Shelf {
        device: Some(measurements(1).capture()),
        supply_chain: Some(
            SupplyChainPolicy::from_json(
                r#"{"mode": "allow_only", "allow": {"pci_vendors": ["8086"],
                    "smbios_manufacturers": ["Acme"], "tpm_manufacturers": ["IFX"]}}"#,
            )
            .unwrap(),
        ),
        ..Shelf::default()
    };
    let v = attest(
        &mut w,
        reporting(1, None, Some(complete(0x8086)), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Affirming, "{:?}", v.reasons);
    let v = attest(
        &mut w,
        reporting(1, None, Some(complete(0x10ec)), true),
        &mut shelf,
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(
        v.reasons,
        [Reason::SupplyChainDenied {
            component: "PCI device 10ec:8168 at 0000:01:00.0".into(),
            rule: "allow_only: not in allow.pci_vendors".into(),
        }]
    );
}

#[test]
fn importing_a_bundle_reevaluates_the_devices_it_governs_and_a_stored_inventory_is_judged_again() {
    let mut w = manifest_world(false);
    let mut shelf = Shelf {
        bundles: vec![bundle("1.1", 1, None)],
        ..Shelf::default()
    };
    let v = attest(
        &mut w,
        reporting(1, Some("1.1"), Some(baseline()), true),
        &mut shelf,
    );
    assert_eq!(v.state, DeviceState::Trusted);

    // A bundle for another version does not govern it (its stored measurements report 1.1).
    let rec = w.rec.clone();
    let gov = governing_with(&rec, Some("1.1"), &mut shelf).unwrap();
    let r = w
        .core
        .on_policy_change(rec.clone(), &firmware("1.0"), &gov, w.now, &mut w.nonces)
        .unwrap();
    assert_eq!(r, None);

    // A new 1.1 bundle whose values it does not meet, and a supply-chain policy that now
    // refuses its board: re-appraising the stored measurements names both.
    shelf.bundles = vec![bundle("1.1", 2, None)];
    shelf.supply_chain = Some(
        SupplyChainPolicy::from_json(r#"{"deny": {"smbios_manufacturers": ["acme boards"]}}"#)
            .unwrap(),
    );
    let gov = governing_with(&rec, Some("1.1"), &mut shelf).unwrap();
    let e = w
        .core
        .on_policy_change(rec, &firmware("1.1"), &gov, w.now, &mut w.nonces)
        .unwrap()
        .expect("re-evaluated");
    let e = w.commit(e);
    let v = e.verdict().unwrap();
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(
        v.reasons[0],
        Reason::SupplyChainDenied {
            component: "SMBIOS board_vendor \"Acme Boards\"".into(),
            rule: "deny.smbios_manufacturers \"acme boards\"".into(),
        },
        "{:?}",
        v.reasons
    );
    assert!(
        v.reasons
            .iter()
            .any(|r| matches!(r, Reason::PcrMismatch { index: 0, .. })),
        "{:?}",
        v.reasons
    );
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
}
