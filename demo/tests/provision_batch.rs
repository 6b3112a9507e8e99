//! `vouch-provision batch`: 50 simulated terminals whose manifests decode, verify with the
//! vendor key, say simulated, and pass the verifier's import check; whose terminal files are
//! private and rebuild the very keys the manifests carry; and the batch summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeSet;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::inventory::Inventory;
use vouch_protocol::vendor::manifest::DeviceManifest;

#[test]
fn a_batch_of_50_simulated_terminals_imports_and_rebuilds_from_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor(tmp.path(), "acme");
    let out = tmp.path().join("fleet");
    let stdout = ok(&[
        "batch",
        "--count",
        "50",
        "--model",
        "T-100",
        "--vendor",
        s(&v),
        "--out",
        s(&out),
        "--firmware-version",
        "2.0",
        "--prefix",
        "lab",
    ]);
    assert!(
        stdout.contains("provisioned 50 simulated terminals in"),
        "{stdout}"
    );
    assert!(stdout.contains("SIMULATED"), "{stdout}");

    let batch: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("batch.json")).unwrap()).unwrap();
    assert_eq!(batch["vendor"], "acme");
    assert_eq!(batch["model"], "T-100");
    assert_eq!(batch["firmware_version"], "2.0");
    assert_eq!(batch["count"], 50);
    assert_eq!(batch["simulated"], true);
    let ids: Vec<String> = serde_json::from_value(batch["ids"].clone()).unwrap();
    let want: Vec<String> = (1..=50).map(|i| format!("lab-{i:05}")).collect();
    assert_eq!(ids, want);
    assert_eq!(mode(&out.join("terminals")), 0o700);

    let key = vendor_key(&v);
    let mut macs = BTreeSet::new();
    for id in &ids {
        let bytes = std::fs::read(out.join("manifests").join(format!("{id}.cbor"))).unwrap();
        let u = vouch_protocol::vendor::decode::<DeviceManifest>(&bytes).unwrap();
        let (vendor, m) = u.verify::<DeviceManifest>(&key).unwrap();
        assert_eq!(m.device.as_str(), id);
        assert!(m.simulated && !m.credential_activated);
        assert!(m.ek_certificates.is_empty());
        assert_eq!(
            (m.model.as_str(), m.firmware_version.as_str()),
            ("T-100", "2.0")
        );

        let path = out.join("terminals").join(format!("{id}.json"));
        assert_eq!(mode(&path), 0o600, "{id}");
        let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(t["id"], id.as_str());
        assert_eq!(
            (t["model"].as_str(), t["firmware_version"].as_str()),
            (Some("T-100"), Some("2.0"))
        );
        let inv: Inventory = serde_json::from_value(t["inventory"].clone()).unwrap();
        assert_eq!(inv, m.inventory);
        assert_eq!(inv.smbios.product_name.as_deref(), Some("T-100"));
        assert_eq!(inv.tpm.as_ref().unwrap().manufacturer, "SIM");
        macs.insert(inv.nics[0].mac.clone());
        // The MQTT password opens the manifest's broker identity.
        let pw = t["mqtt_password"].as_str().unwrap();
        assert!(
            vouch_common::mqtt_passwd::verify(pw, &m.mqtt_password_hash),
            "{id}"
        );
        // The seed rebuilds the terminal whose keys the manifest carries.
        let seed: [u8; 32] = hex::decode(t["seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let dev: DeviceId = id.parse().unwrap();
        let sim = vouch_sim::SimTerminal::from_seed(dev, seed, 14);
        assert_eq!(m.ak_public.0, sim.tpm().ak_public());
        assert_eq!(m.ek_public.0, sim.tpm().ek_public());
        assert_eq!(
            m.device_key.0,
            sim.device_key().verifying_key().to_bytes().to_vec()
        );

        let e = Enrollment::from_manifest(vendor, m, 1).unwrap();
        assert!(e.provenance.unwrap().simulated);
    }
    assert_eq!(macs.len(), 50, "every terminal has its own MAC");

    // A second batch into the same directory is refused; the first one is intact.
    let err = refused(&[
        "batch",
        "--count",
        "1",
        "--model",
        "T-100",
        "--vendor",
        s(&v),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("already holds a batch"), "{err}");
}

#[test]
fn one_inventory_file_for_the_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor(tmp.path(), "acme");
    let mut inv = Inventory::default();
    inv.smbios.board_vendor = Some("Hidden Board Co".into());
    inv.pci = vec![vouch_protocol::inventory::PciDevice {
        slot: "0000:00:1f.3".into(),
        vendor: 0x10ec,
        device: 0x8168,
    }];
    let file = tmp.path().join("inv.json");
    std::fs::write(&file, serde_json::to_vec(&inv).unwrap()).unwrap();
    let out = tmp.path().join("fleet");
    ok(&[
        "batch",
        "--count",
        "3",
        "--model",
        "T-100",
        "--vendor",
        s(&v),
        "--out",
        s(&out),
        "--inventory",
        s(&file),
    ]);
    for i in 1..=3 {
        let bytes = std::fs::read(out.join(format!("manifests/sim-{i:05}.cbor"))).unwrap();
        let (_, m) = vouch_protocol::vendor::decode::<DeviceManifest>(&bytes)
            .unwrap()
            .verify::<DeviceManifest>(&vendor_key(&v))
            .unwrap();
        assert_eq!(m.inventory, inv);
        assert_eq!(m.firmware_version, "1.0", "the default firmware version");
    }
    // A malformed inventory is refused before anything is written.
    std::fs::write(&file, b"{\"smbios\": 1}").unwrap();
    let out2 = tmp.path().join("fleet2");
    let err = refused(&[
        "batch",
        "--count",
        "3",
        "--model",
        "T-100",
        "--vendor",
        s(&v),
        "--out",
        s(&out2),
        "--inventory",
        s(&file),
    ]);
    assert!(err.contains("inv.json"), "{err}");
    assert!(!out2.join("manifests").exists());
}
