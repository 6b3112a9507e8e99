//! `vouch-provision reference --vendor DIR --model M --firmware-version V --out BUNDLE`: the
//! bundle verifies with the vendor's public key and carries the computed values; and
//! `--evidence FILE` captures them from a terminal's verified measurements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeMap;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::inventory::INVENTORY_PATH;
use vouch_protocol::policy::{Measurements, ReferenceValues};
use vouch_protocol::vendor::bundle::ReferenceBundle;

fn open(bundle: &std::path::Path, vendor: &std::path::Path) -> ReferenceBundle {
    let bytes = std::fs::read(bundle).unwrap();
    let u = vouch_protocol::vendor::decode::<ReferenceBundle>(&bytes).unwrap();
    let (name, b) = u.verify::<ReferenceBundle>(&vendor_key(vendor)).unwrap();
    assert_eq!(name.as_str(), "acme");
    b
}

#[test]
fn a_reference_bundle_verifies_with_the_vendor_key_and_carries_the_values() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor(tmp.path(), "acme");
    let golden = tmp.path().join("fw.bin");
    std::fs::write(&golden, b"abc").unwrap();
    let out = tmp.path().join("t100-2.1.cbor");
    let fw = format!("/opt/terminal/fw.bin={}", s(&golden));
    let pcr = format!("7={}", "11".repeat(32));
    ok(&[
        "reference",
        "--firmware",
        &fw,
        "--pcr",
        &pcr,
        "--vendor",
        s(&v),
        "--model",
        "T-100",
        "--firmware-version",
        "2.1",
        "--out",
        s(&out),
    ]);
    let b = open(&out, &v);
    assert_eq!(
        (b.model.as_str(), b.firmware_version.as_str()),
        ("T-100", "2.1")
    );
    assert!(b.issued_at > 1_700_000_000);
    let abc: Sha256Digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        .parse()
        .unwrap();
    assert!(b.reference.firmware["/opt/terminal/fw.bin"].contains(&abc));
    assert_eq!(b.reference.pcrs[&7], Sha256Digest([0x11; 32]));
    assert_eq!(b.reference.firmware_pcr, Some(14));
    // Another vendor's key does not verify it.
    let other = vendor(tmp.path(), "other");
    let bytes = std::fs::read(&out).unwrap();
    let u = vouch_protocol::vendor::decode::<ReferenceBundle>(&bytes).unwrap();
    assert!(u.verify::<ReferenceBundle>(&vendor_key(&other)).is_err());
}

#[test]
fn a_bundle_needs_model_version_and_out_and_valid_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor(tmp.path(), "acme");
    let pcr = format!("7={}", "11".repeat(32));
    let out = tmp.path().join("b.cbor");
    // clap refuses a missing --model with its usage error (exit 2).
    let o = run(&[
        "reference",
        "--pcr",
        &pcr,
        "--vendor",
        s(&v),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = refused(&[
        "reference",
        "--pcr",
        &pcr,
        "--vendor",
        s(&v),
        "--model",
        "T@100",
        "--firmware-version",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(err.contains("model"), "{err}");
    assert!(!out.exists());
}

fn measurements() -> Measurements {
    let h = |b: u8| Some(Sha256Digest([b; 32]));
    Measurements {
        pcrs: BTreeMap::from([
            (0, Sha256Digest([1; 32])),
            (7, Sha256Digest([7; 32])),
            (14, Sha256Digest([14; 32])),
        ]),
        firmware_pcr: 14,
        firmware: vec![
            FirmwareEntry {
                path: "/opt/terminal/app.bin".into(),
                sha256: h(0xaa),
            },
            FirmwareEntry {
                path: INVENTORY_PATH.into(),
                sha256: h(0xbb),
            },
        ],
        eventlog: None,
    }
}

#[test]
fn evidence_captures_the_values_of_a_known_good_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let v = vendor(tmp.path(), "acme");
    let evidence = tmp.path().join("measurements.json");
    std::fs::write(&evidence, serde_json::to_vec(&measurements()).unwrap()).unwrap();
    // As JSON for `vouchctl policy set`...
    let json = ok(&["reference", "--evidence", s(&evidence)]);
    let rv: ReferenceValues = serde_json::from_str(&json).unwrap();
    // ...and as a bundle.
    let out = tmp.path().join("b.cbor");
    ok(&[
        "reference",
        "--evidence",
        s(&evidence),
        "--vendor",
        s(&v),
        "--model",
        "T-100",
        "--firmware-version",
        "1.0",
        "--out",
        s(&out),
    ]);
    let b = open(&out, &v);
    assert_eq!(b.reference, rv);
    // Every quoted PCR but the firmware PCR, every firmware file; the inventory entry is no
    // firmware file (each terminal's differs) and is left out.
    assert_eq!(rv.pcrs.keys().copied().collect::<Vec<_>>(), vec![0, 7]);
    assert_eq!(
        rv.firmware.keys().collect::<Vec<_>>(),
        vec!["/opt/terminal/app.bin"]
    );
    assert!(rv.firmware["/opt/terminal/app.bin"].contains(&Sha256Digest([0xaa; 32])));
    assert_eq!(rv.firmware_pcr, Some(14));
}

#[test]
fn evidence_that_is_not_measurements_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let evidence = tmp.path().join("junk.json");
    std::fs::write(&evidence, b"{\"pcrs\": 3}").unwrap();
    let err = refused(&["reference", "--evidence", s(&evidence)]);
    assert!(
        err.contains("junk.json") && err.contains("measurements"),
        "{err}"
    );
    // --evidence does not mix with golden images.
    let o = run(&["reference", "--evidence", s(&evidence), "--pcr", "7=00"]);
    assert_eq!(o.status.code(), Some(2));
}
