//! `vouch-provision challenge` and `issue` without a TPM: a simulated terminal's enrollment
//! request (vouch-sim) gets a real challenge; its response is made from the station's pending
//! record, which is exactly what a TPM holding the EK would recover. Covers the refusals that
//! need no TPM (malformed request, no pending challenge, wrong or malformed response, model
//! mismatch, no inventory, no EK-certificate decision) and a successful, single-use issue. The
//! activation on a real TPM is in `issue_swtpm.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::credential::{
    CredentialChallenge, CredentialResponse, VERSION, request_digest,
};
use vouch_protocol::inventory::{Inventory, Nic};
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_sim::SimTerminal;

struct Station {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vendor: PathBuf,
    pending: PathBuf,
    request: PathBuf,
    terminal: SimTerminal,
}

fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.smbios.board_vendor = Some("Acme Boards".into());
    inv.nics = vec![Nic {
        name: "eth0".into(),
        mac: "02:00:00:00:00:01".into(),
    }];
    inv
}

/// A simulated terminal's signed request with firmware version and (optionally) inventory.
fn request(t: &SimTerminal, inventory: Option<Inventory>) -> Vec<u8> {
    let hash = vouch_common::mqtt_passwd::hash_generated("pw");
    let mut req =
        t.tpm()
            .enrollment_request_with_mqtt("T-100", &t.device_key().verifying_key(), &hash);
    req.firmware_version = Some("1.0".into());
    req.inventory = inventory;
    t.seal(&req)
}

fn station() -> Station {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let vendor = vendor(&dir, "acme");
    let terminal = SimTerminal::from_seed("t1".parse().unwrap(), [7; 32], 14);
    let request_path = dir.join("t1.req");
    std::fs::write(&request_path, request(&terminal, Some(inventory()))).unwrap();
    Station {
        pending: dir.join("pending"),
        _tmp: tmp,
        dir,
        vendor,
        request: request_path,
        terminal,
    }
}

impl Station {
    fn challenge(&self) -> CredentialChallenge {
        let out = self.dir.join("t1.challenge");
        ok(&[
            "challenge",
            s(&self.request),
            "--out",
            s(&out),
            "--pending",
            s(&self.pending),
        ]);
        CredentialChallenge::from_cbor(&std::fs::read(out).unwrap()).unwrap()
    }

    /// The response a TPM holding the EK would give: the secret the station wrapped.
    fn right_response(&self) -> PathBuf {
        let bytes = std::fs::read(&self.request).unwrap();
        let digest = request_digest(&bytes);
        let pending = vouch_provisioning::pending::load(&self.pending, &digest).unwrap();
        self.response(pending.secret.clone())
    }

    fn response(&self, secret: Bytes) -> PathBuf {
        let bytes = std::fs::read(&self.request).unwrap();
        let r = CredentialResponse {
            v: VERSION,
            device: "t1".parse().unwrap(),
            request_digest: request_digest(&bytes),
            secret,
        };
        let path = self.dir.join("t1.response");
        std::fs::write(&path, r.to_cbor()).unwrap();
        path
    }

    fn issue(
        &self,
        request: &Path,
        response: &Path,
        model: &str,
        extra: &[&str],
    ) -> std::process::Output {
        let out = self.dir.join("t1.manifest");
        let mut args = vec![
            "issue",
            s(request),
            s(response),
            "--vendor",
            s(&self.vendor),
            "--model",
            model,
            "--firmware-version",
            "1.0",
            "--out",
            s(&out),
            "--pending",
            s(&self.pending),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join("t1.manifest")
    }
}

fn refused_with(out: std::process::Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "not refused: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

#[test]
fn a_right_response_issues_a_signed_manifest_once() {
    let st = station();
    let c = st.challenge();
    assert_eq!(c.device.as_str(), "t1");
    assert_eq!(c.ak_name.0, st.terminal.tpm().ak_name());
    let resp = st.right_response();
    let out = st.issue(&st.request, &resp, "T-100", &["--allow-no-ek-cert"]);
    vouch_test_kit::process::assert_success("issue", &out);
    let bytes = std::fs::read(st.manifest()).unwrap();
    let (vendor, m) = vouch_protocol::vendor::decode::<DeviceManifest>(&bytes)
        .unwrap()
        .verify::<DeviceManifest>(&vendor_key(&st.vendor))
        .unwrap();
    assert_eq!(vendor.as_str(), "acme");
    assert!(m.credential_activated && !m.simulated);
    assert_eq!(
        (m.model.as_str(), m.firmware_version.as_str()),
        ("T-100", "1.0")
    );
    assert_eq!(m.inventory, inventory());
    assert_eq!(m.ak_name.0, st.terminal.tpm().ak_name());
    assert!(m.ek_certificates.is_empty());
    // The challenge was single-use.
    std::fs::remove_file(st.manifest()).unwrap();
    let err = refused_with(
        st.issue(&st.request, &resp, "T-100", &["--allow-no-ek-cert"]),
        "no pending challenge",
    );
    assert!(err.contains("already issued"), "{err}");
    assert!(!st.manifest().exists());
}

#[test]
fn a_wrong_or_malformed_response_is_refused_and_the_challenge_kept() {
    let st = station();
    st.challenge();
    let wrong = st.response(Bytes(vec![0x5a; 32]));
    refused_with(
        st.issue(&st.request, &wrong, "T-100", &["--allow-no-ek-cert"]),
        "wrong secret",
    );
    std::fs::write(&wrong, b"\xa1\x01\x02garbage").unwrap();
    refused_with(
        st.issue(&st.request, &wrong, "T-100", &["--allow-no-ek-cert"]),
        "t1.response",
    );
    assert!(!st.manifest().exists());
    // The pending challenge survives a refusal: the right response still issues.
    let right = st.right_response();
    let out = st.issue(&st.request, &right, "T-100", &["--allow-no-ek-cert"]);
    vouch_test_kit::process::assert_success("issue after refusals", &out);
}

#[test]
fn a_missing_pending_challenge_is_refused() {
    let st = station();
    // No `challenge` was made for this request.
    let resp = st.response(Bytes(vec![1; 32]));
    refused_with(
        st.issue(&st.request, &resp, "T-100", &["--allow-no-ek-cert"]),
        "no pending challenge",
    );
}

#[test]
fn a_malformed_request_is_refused_by_challenge_and_issue() {
    let st = station();
    let bad = st.dir.join("bad.req");
    let mut bytes = std::fs::read(&st.request).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // breaks the device signature
    std::fs::write(&bad, &bytes).unwrap();
    let err = refused(&[
        "challenge",
        s(&bad),
        "--out",
        s(&st.dir.join("c")),
        "--pending",
        s(&st.pending),
    ]);
    assert!(err.contains("bad.req"), "{err}");
    let resp = st.response(Bytes(vec![1; 32]));
    refused_with(
        st.issue(&bad, &resp, "T-100", &["--allow-no-ek-cert"]),
        "not a valid enrollment request",
    );
    std::fs::write(&bad, b"junk").unwrap();
    refused_with(
        st.issue(&bad, &resp, "T-100", &["--allow-no-ek-cert"]),
        "not a valid enrollment request",
    );
}

#[test]
fn a_model_mismatch_names_both_models() {
    let st = station();
    st.challenge();
    let resp = st.right_response();
    let err = refused_with(
        st.issue(&st.request, &resp, "T-200", &["--allow-no-ek-cert"]),
        "T-200",
    );
    assert!(err.contains("T-100"), "{err}");
    assert!(!st.manifest().exists());
}

#[test]
fn a_request_without_inventory_is_refused() {
    let st = station();
    std::fs::write(&st.request, request(&st.terminal, None)).unwrap();
    st.challenge();
    let resp = st.right_response();
    refused_with(
        st.issue(&st.request, &resp, "T-100", &["--allow-no-ek-cert"]),
        "the agent sent no inventory; upgrade it",
    );
}

#[test]
fn the_factory_must_decide_about_ek_certificates() {
    let st = station();
    st.challenge();
    let resp = st.right_response();
    refused_with(st.issue(&st.request, &resp, "T-100", &[]), "--tpm-roots");
    // With roots but a TPM that sent no certificate.
    let ca = vouch_test_kit::ekca::TpmManufacturerCa::create(&st.dir.join("ca")).unwrap();
    let roots = ca.roots_dir();
    refused_with(
        st.issue(&st.request, &resp, "T-100", &["--tpm-roots", s(&roots)]),
        "no EK certificate",
    );
    assert!(!st.manifest().exists());
}
