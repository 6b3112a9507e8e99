//! The chain of trust through the engine: simulated terminals (vouch-sim's `SimTerminal`) that
//! report a firmware version and a hardware inventory measured into their firmware PCR, enrolled
//! from a vendor-signed manifest, appraised against the vendor's bundle for their model and
//! firmware version, the operator's supply-chain policy and their manifest's inventory. The
//! vendor records, bundles and policy are seeded into the store directly (the operator commands
//! that write them are tested with the API); the engine must read them at every attestation.

use ed25519_dalek::SigningKey;
use vouch_protocol::device::Actor;
use vouch_protocol::inventory::{Inventory, PciDevice, Smbios};
use vouch_protocol::messages::Evidence;
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_protocol::vendor::trust::{BundleRecord, Revocation, VendorRecord};
use vouch_protocol::vendor::{self, VendorName};
use vouch_sim::{LOCKED_MQTT_HASH, SimTerminal};

use super::*;

const MODEL: &str = "T";
const VERSION: &str = "1.0";

fn vendor_name() -> VendorName {
    "acme".parse().unwrap()
}

fn inventory(board_vendor: &str, pci_vendor: u16) -> Inventory {
    let mut inv = Inventory {
        smbios: Smbios {
            board_vendor: Some(board_vendor.into()),
            board_name: Some("AB-200".into()),
            ..Smbios::default()
        },
        cpu_model: Some("ARM Cortex-A53".into()),
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

/// A simulated terminal reporting firmware [`VERSION`] and `inv`, with one firmware file.
fn sim(id: &str, seed: u8, inv: Inventory) -> SimTerminal {
    let mut t = SimTerminal::from_seed(id.parse().unwrap(), [seed; 32], FW_PCR);
    t.measure(&[FirmwareEntry {
        path: "/fw".into(),
        sha256: Some(Sha256Digest([1; 32])),
    }])
    .unwrap();
    t.set_firmware_version(Some(VERSION.into()));
    t.set_inventory(inv).unwrap();
    t
}

/// What the vendor's station issues for `t`: a manifest recording `baseline`, signed by the
/// vendor, verified and turned into an enrollment as the verifier's import does.
fn manifest_enrollment(t: &SimTerminal, baseline: Inventory) -> Enrollment {
    let m = DeviceManifest {
        device: t.id().clone(),
        model: MODEL.into(),
        firmware_version: VERSION.into(),
        ek_public: t.tpm().ek_public().into(),
        ek_certificates: Vec::new(),
        ak_public: t.tpm().ak_public().into(),
        ak_name: t.tpm().ak_name().into(),
        device_key: t.device_key().verifying_key().to_bytes().to_vec().into(),
        mqtt_password_hash: LOCKED_MQTT_HASH.into(),
        inventory: baseline,
        issued_at: T0 - 100,
        credential_activated: false,
        simulated: true,
    };
    let key = SigningKey::from_bytes(&[0x77; 32]);
    let bytes = vendor::seal(&vendor_name(), &m, &key);
    let (name, m) = vendor::decode::<DeviceManifest>(&bytes)
        .unwrap()
        .verify::<DeviceManifest>(&key.verifying_key())
        .unwrap();
    Enrollment::from_manifest(name, m, T0).unwrap()
}

/// Writes straight into the engine's store (what the operator commands would have written).
fn seed(b: &Bench, f: impl FnOnce(&mut vouch_verifier::store::Writer)) {
    let mut w = b.engine.store().write().unwrap();
    f(&mut w);
    w.commit().unwrap();
}

fn enroll(b: &Bench, e: Enrollment) {
    seed(b, |w| w.put_device(&DeviceRecord::new(e)).unwrap());
}

/// The vendor's bundle for [`MODEL`] at [`VERSION`]: what a known-good terminal `t` measures.
fn bundle_of(t: &mut SimTerminal) -> BundleRecord {
    let enrollment = Enrollment::from_request(&t.enrollment_request(MODEL), T0).unwrap();
    let ev = t.evidence(&Nonce::from_bytes([0xee; 32])).unwrap();
    let v = vouch_protocol::appraisal::verify_evidence(&enrollment, &ev, None).unwrap();
    BundleRecord {
        vendor: vendor_name(),
        model: MODEL.into(),
        firmware_version: VERSION.into(),
        issued_at: T0 - 50,
        imported_at: T0 - 40,
        reference: v.measurements.capture(),
        revoked: None,
    }
}

fn hello(b: &mut Bench, t: &SimTerminal) -> Inbound {
    b.counter += 1;
    let hello = Hello {
        agent_version: "sim".into(),
        model: MODEL.into(),
        reset_count: 0,
        request: 5,
        counter: b.counter,
    };
    Inbound {
        topic: Topic::new(t.id().clone(), Kind::Hello).to_string(),
        payload: t.seal(&hello).into(),
    }
}

/// The nonces of the challenges among `out` for `t`.
fn challenges(b: &Bench, t: &SimTerminal, out: &[Outgoing]) -> Vec<Nonce> {
    let topic = Topic::new(t.id().clone(), Kind::Challenge);
    out.iter()
        .filter(|m| m.topic == topic.to_string())
        .map(|m| {
            let c: Challenge = wire::decode(&topic, &m.payload, wire::DEFAULT_MAX_PAYLOAD)
                .unwrap()
                .verify(&b.engine.verifier_key())
                .unwrap()
                .open()
                .unwrap();
            c.nonce
        })
        .collect()
}

fn challenge(b: &mut Bench, t: &SimTerminal) -> Nonce {
    let msg = hello(b, t);
    let job = b.engine.prepare(msg).unwrap();
    b.engine.apply(vec![job]).unwrap();
    let out = b.drain();
    let nonces = challenges(b, t, &out);
    *nonces.last().expect("a challenge")
}

fn submit(b: &mut Bench, t: &SimTerminal, ev: &Evidence) -> Verdict {
    let msg = Inbound {
        topic: Topic::new(t.id().clone(), Kind::Evidence).to_string(),
        payload: t.seal(ev).into(),
    };
    let job = b
        .engine
        .prepare(msg)
        .expect("evidence accepted for appraisal");
    b.engine.apply(vec![job]).unwrap();
    let (mut verdicts, _) = b.verdicts(t.id().as_str());
    verdicts.pop().expect("a verdict").0
}

/// A fresh attestation of `t`; its verdict.
fn attest(b: &mut Bench, t: &mut SimTerminal) -> Verdict {
    let n = challenge(b, t);
    let ev = t.evidence(&n).unwrap();
    submit(b, t, &ev)
}

fn codes(b: &Bench, id: &str) -> Vec<String> {
    b.engine.device(id).unwrap().reason_codes
}

/// A manifest-enrolled terminal and the bundle for its firmware, trusted on its first
/// attestation.
fn trusted_under_bundle(b: &mut Bench) -> SimTerminal {
    let mut t = sim("k1", 3, baseline());
    let bundle = bundle_of(&mut t);
    enroll(b, manifest_enrollment(&t, baseline()));
    seed(b, |w| w.put_bundle(&bundle).unwrap());
    let v = attest(b, &mut t);
    assert_eq!(
        (v.status, v.state),
        (Status::Affirming, DeviceState::Trusted),
        "{:?}",
        v.reasons
    );
    t
}

#[test]
fn a_manifest_enrolled_terminal_is_trusted_under_its_vendor_bundle() {
    let mut b = bench_with(0, |_| {});
    let t = trusted_under_bundle(&mut b);
    let v = b.engine.device("k1").unwrap();
    assert!(
        v.policy_id
            .as_deref()
            .is_some_and(|p| p.starts_with("firmware:T@1.0@")),
        "the bundle governs: {:?}",
        v.policy_id
    );
    // The reported version and inventory are kept with the measurements.
    let rec = b
        .engine
        .store()
        .read()
        .unwrap()
        .device(t.id())
        .unwrap()
        .unwrap();
    let m = rec.measurements.unwrap();
    assert_eq!(m.firmware_version.as_deref(), Some(VERSION));
    assert_eq!(m.inventory, Some(baseline()));
    assert!(rec.enrollment.provenance.is_some_and(|p| p.simulated));
}

#[test]
fn a_bundle_imported_later_governs_a_device_without_operator_values() {
    let mut b = bench_with(0, |_| {});
    let mut t = sim("k1", 3, baseline());
    let bundle = bundle_of(&mut t);
    enroll(&b, manifest_enrollment(&t, baseline()));
    let v = attest(&mut b, &mut t);
    assert_eq!(v.status, Status::Warning);
    assert_eq!(codes(&b, "k1"), ["no_reference_values"]);
    assert!(
        v.reasons[0].contains("firmware T@1.0"),
        "the bundle is where the values were looked for: {:?}",
        v.reasons
    );
    seed(&b, |w| w.put_bundle(&bundle).unwrap());
    let re = b.engine.reevaluate_bundle(MODEL, VERSION).unwrap();
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].state, DeviceState::Trusted);
    assert_eq!(b.state_of("k1"), DeviceState::Trusted);
    // A bundle for another version governs nothing here.
    assert_eq!(b.engine.reevaluate_bundle(MODEL, "9.9").unwrap(), []);
}

#[test]
fn a_revoked_vendors_bundle_stops_governing() {
    let mut b = bench_with(0, |_| {});
    let mut t = trusted_under_bundle(&mut b);
    seed(&b, |w| {
        w.put_vendor(&VendorRecord {
            name: vendor_name(),
            key: [7; 32],
            trusted_at: 1,
            trusted_by: Actor::Operator("admin".into()),
            revoked: Some(Revocation {
                at: 2,
                by: Actor::Operator("admin".into()),
                reason: "signing key leaked".into(),
            }),
        })
        .unwrap()
    });
    let v = attest(&mut b, &mut t);
    assert_eq!(v.status, Status::Warning, "{:?}", v.reasons);
    assert_eq!(codes(&b, "k1"), ["no_reference_values"]);
}

#[test]
fn a_denied_pci_vendor_quarantines_the_terminal_naming_it() {
    let mut b = bench_with(0, |_| {});
    let denied = inventory("Acme Boards", 0x10ec);
    let mut t = sim("k1", 3, denied.clone());
    let bundle = bundle_of(&mut t);
    enroll(&b, manifest_enrollment(&t, denied));
    seed(&b, |w| {
        w.put_bundle(&bundle).unwrap();
        w.put_supply_chain(
            &SupplyChainPolicy::from_json(r#"{"deny": {"pci_vendors": ["10ec"]}}"#).unwrap(),
        )
        .unwrap();
    });
    let v = attest(&mut b, &mut t);
    assert_eq!(
        (v.status, v.state),
        (Status::Contraindicated, DeviceState::Quarantined)
    );
    assert_eq!(
        v.reasons,
        [
            "PCI device 10ec:8168 at 0000:01:00.0 is refused by the supply-chain policy (deny.pci_vendors 10ec)"
        ]
    );
    assert_eq!(codes(&b, "k1"), ["supply_chain_denied"]);
}

#[test]
fn a_changed_inventory_quarantines_the_terminal_naming_the_change() {
    let mut b = bench_with(0, |_| {});
    let mut t = trusted_under_bundle(&mut b);
    t.set_inventory(inventory("Hidden Board", 0x8086)).unwrap();
    let v = attest(&mut b, &mut t);
    assert_eq!(
        (v.status, v.state),
        (Status::Contraindicated, DeviceState::Quarantined)
    );
    assert!(
        v.reasons.contains(
            &"hardware changed since provisioning: smbios.board_vendor was Acme Boards, is now Hidden Board"
                .to_string()
        ),
        "{:?}",
        v.reasons
    );
    assert!(codes(&b, "k1").contains(&"hardware_changed".to_string()));
}

#[test]
fn an_inventory_the_quote_does_not_cover_is_contraindicated() {
    let mut b = bench_with(0, |_| {});
    let mut t = trusted_under_bundle(&mut b);
    let n = challenge(&mut b, &t);
    let mut ev = t.evidence(&n).unwrap();
    // The agent claims the baseline while the quote measured the same hardware: fine; a
    // claimed inventory other than the measured one is not.
    ev.inventory = Some(inventory("Acme Boards", 0x1234));
    let v = submit(&mut b, &t, &ev);
    assert_eq!(v.status, Status::Contraindicated);
    assert_eq!(codes(&b, "k1"), ["inventory_not_measured"]);
}

#[test]
fn a_revoked_firmware_version_quarantines_its_terminals_at_their_next_attestation() {
    let mut b = bench_with(0, |_| {});
    let mut t = trusted_under_bundle(&mut b);
    seed(&b, |w| {
        let mut bundle = w.bundle(MODEL, VERSION).unwrap().unwrap();
        bundle.revoked = Some(Revocation {
            at: T0 + 1,
            by: Actor::Operator("test".into()),
            reason: "CVE-2026-0001".into(),
        });
        w.put_bundle(&bundle).unwrap();
    });
    // Not before its next attestation, but it is asked for one now.
    assert_eq!(b.state_of("k1"), DeviceState::Trusted);
    assert_eq!(b.engine.challenge_firmware(MODEL, "0.9").unwrap(), 0);
    assert_eq!(b.engine.challenge_firmware(MODEL, VERSION).unwrap(), 1);
    let out = b.drain();
    let asked = challenges(&b, &t, &out);
    assert_eq!(asked.len(), 1);
    assert_eq!(b.state_of("k1"), DeviceState::Trusted);
    let ev = t.evidence(&asked[0]).unwrap();
    let v = submit(&mut b, &t, &ev);
    assert_eq!(
        (v.status, v.state),
        (Status::Contraindicated, DeviceState::Quarantined)
    );
    assert_eq!(
        v.reasons,
        ["firmware 1.0 of model T was revoked: CVE-2026-0001"]
    );
    // An operator's own values for the device do not lift it.
    b.engine
        .set_policy(
            PolicyScope::Device("k1".into()),
            b.engine
                .policy(&PolicyScope::Firmware {
                    model: MODEL.into(),
                    version: VERSION.into(),
                })
                .unwrap(),
            op(),
        )
        .unwrap();
    b.engine.release("k1", "checked", op()).unwrap();
    let v = attest(&mut b, &mut t);
    assert_eq!(v.status, Status::Contraindicated);
    assert!(codes(&b, "k1").contains(&"firmware_revoked".to_string()));
}

#[test]
fn with_require_ek_cert_a_terminal_without_a_trusted_ek_certificate_is_at_best_warning() {
    let mut b = bench_requiring_ek_cert();
    let mut t = sim("k1", 3, baseline());
    let bundle = bundle_of(&mut t);
    enroll(&b, manifest_enrollment(&t, baseline()));
    seed(&b, |w| w.put_bundle(&bundle).unwrap());
    let v = attest(&mut b, &mut t);
    assert_eq!((v.status, v.state), (Status::Warning, DeviceState::Pending));
    assert_eq!(codes(&b, "k1"), ["ek_cert_untrusted"]);
    assert_eq!(
        v.trust.hardware,
        vouch_protocol::verdict::claim::UNSAFE_HARDWARE
    );
    // Anchored at enrollment (as the import does when the chain verifies): trusted.
    seed(&b, |w| {
        let mut rec = w.device(t.id()).unwrap().unwrap();
        rec.enrollment.ek_cert_anchor = Some("CN=test TPM CA".into());
        w.put_device(&rec).unwrap();
    });
    let v = attest(&mut b, &mut t);
    assert_eq!(
        (v.status, v.state),
        (Status::Affirming, DeviceState::Trusted)
    );
}
