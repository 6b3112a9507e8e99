//! The factory flow on a real TPM: swtpm manufactured with an EK certificate by a test TPM
//! manufacturer CA (test-kit `ekca`), the real `vouch-agent enroll` reading a fake sysfs tree,
//! `vouch-provision challenge`, the real `vouch-agent activate`, then `vouch-provision issue
//! --tpm-roots`: refused against another manufacturer's roots (the challenge survives), then
//! issued against the right ones, and the manifest carries the EK certificate, the inventory
//! and `credential_activated`. Needs swtpm, swtpm_setup and swtpm_localca: fails without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_test_kit::ekca::{SwtpmWithEkCert, TpmManufacturerCa};
use vouch_test_kit::process::assert_success;

/// `vouch-agent`, built on first use into this test's target directory (cargo gives a test
/// only its own package's binaries).
fn agent_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "vouch-agent", "--bin", "vouch-agent"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Variables cargo set for this test would make build scripts that track them (ring's
        // tracks CARGO_MANIFEST_DIR) rebuild (as tests/harness does).
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
            ]
            .contains(&name.as_ref())
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"]
                    .contains(&name.as_ref())
                || name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
            {
                cmd.env_remove(name.as_ref());
            }
        }
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert_success("cargo build -p vouch-agent", &out);
    });
    dir.join("vouch-agent")
}

/// A plausible terminal's sysfs: SMBIOS strings, one PCI function, one NIC.
fn fake_sysfs(root: &Path) {
    let put = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("sys/class/dmi/id/board_vendor", "Acme Boards\n");
    put("sys/class/dmi/id/board_name", "AB-7\n");
    put("sys/class/dmi/id/sys_vendor", "Acme Terminals\n");
    put("sys/class/dmi/id/product_name", "T-100\n");
    put("sys/bus/pci/devices/0000:00:1f.3/vendor", "0x8086\n");
    put("sys/bus/pci/devices/0000:00:1f.3/device", "0xa348\n");
    put("sys/class/net/eth0/address", "02:11:22:33:44:55\n");
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
}

#[test]
fn enroll_challenge_activate_issue_on_swtpm_with_an_ek_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = TpmManufacturerCa::create(&d.join("ca")).expect("test TPM manufacturer CA");
    let other_ca = TpmManufacturerCa::create(&d.join("other-ca")).expect("second CA");
    let tpm = SwtpmWithEkCert::start(&ca, &d.join("t1")).expect("swtpm with EK certificate");
    let sysfs = d.join("sysfs");
    fake_sysfs(&sysfs);
    let agent = || {
        let mut c = Command::new(agent_bin());
        c.arg("--state")
            .arg(d.join("state"))
            .arg("--tcti")
            .arg(tpm.tcti());
        c
    };
    let request = d.join("t1.req");
    let out = agent()
        .args([
            "enroll",
            "--device-id",
            "t1",
            "--model",
            "T-100",
            "--firmware-version",
            "1.0",
        ])
        .arg("--sysfs-root")
        .arg(&sysfs)
        .arg("--out")
        .arg(&request)
        .output()
        .unwrap();
    assert_success("vouch-agent enroll", &out);

    let v = vendor(d, "acme");
    let pending = d.join("pending");
    let challenge = d.join("t1.challenge");
    ok(&[
        "challenge",
        s(&request),
        "--out",
        s(&challenge),
        "--pending",
        s(&pending),
    ]);
    let response = d.join("t1.response");
    let out = agent()
        .arg("activate")
        .arg(&challenge)
        .arg("--out")
        .arg(&response)
        .output()
        .unwrap();
    assert_success("vouch-agent activate", &out);

    let manifest = d.join("t1.manifest");
    let issue = |roots: &Path| {
        run(&[
            "issue",
            s(&request),
            s(&response),
            "--vendor",
            s(&v),
            "--model",
            "T-100",
            "--firmware-version",
            "1.0",
            "--tpm-roots",
            s(roots),
            "--pending",
            s(&pending),
            "--out",
            s(&manifest),
        ])
    };
    // Another manufacturer's roots: the EK certificate does not chain; nothing is issued.
    let refused = issue(&other_ca.roots_dir());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("EK certificate") && err.contains("trusted"),
        "{err}"
    );
    assert!(!manifest.exists());
    // The right roots: issued.
    let out = issue(&ca.roots_dir());
    assert_success("vouch-provision issue", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("credential activated"), "{stdout}");

    let bytes = std::fs::read(&manifest).unwrap();
    let (_, m) = vouch_protocol::vendor::decode::<DeviceManifest>(&bytes)
        .unwrap()
        .verify::<DeviceManifest>(&vendor_key(&v))
        .unwrap();
    assert!(m.credential_activated && !m.simulated);
    assert_eq!(m.ek_certificates.len(), 1);
    assert_eq!(
        m.inventory.smbios.board_vendor.as_deref(),
        Some("Acme Boards")
    );
    assert_eq!(m.inventory.pci.len(), 1);
    assert_eq!(m.inventory.pci[0].vendor, 0x8086);
    // The pending challenge was consumed.
    assert!(std::fs::read_dir(&pending).unwrap().next().is_none());
}
