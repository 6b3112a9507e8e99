//! EK certificates end to end: a software TPM manufactured by the test kit's TPM manufacturer
//! CA (`swtpm_setup --create-ek-cert` signing through `swtpm_localca`), the certificate read by
//! the real `vouch-agent enroll` into its enrollment request, and `verify_ek_certificate`
//! against the manufacturer's roots directory (the `--tpm-roots` an operator passes) — and
//! against another manufacturer's, which must refuse it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use vouch_e2e::bin;
use vouch_protocol::ekcert::{
    EkCertError, TrustAnchors, parse_pem_certificates, verify_ek_certificate,
};
use vouch_protocol::enrollment::Enrollment;
use vouch_test_kit::ekca::{SwtpmWithEkCert, TpmManufacturerCa};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every PEM file of a roots directory, as `--tpm-roots` reads it.
fn load_roots(dir: &Path) -> TrustAnchors {
    let mut ders = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        ders.extend(parse_pem_certificates(&text).unwrap_or_else(|e| panic!("{f:?}: {e}")));
    }
    TrustAnchors::from_der(ders).unwrap()
}

fn pem_der(path: &Path) -> Vec<u8> {
    parse_pem_certificates(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
}

/// `vouch-agent enroll` against `tpm`, decoded and validated as the verifier would.
fn enroll(tpm: &SwtpmWithEkCert, dir: &Path) -> Enrollment {
    std::fs::create_dir_all(dir).unwrap();
    let request = dir.join("enroll.cbor");
    let out = Command::new(bin("vouch-agent"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--tcti")
        .arg(tpm.tcti())
        .env("TSS2_LOG", "all+NONE")
        .args([
            "enroll",
            "--device-id",
            "T-EK-1",
            "--model",
            "ekcert-test",
            "--out",
        ])
        .arg(&request)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vouch-agent enroll failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Enrollment::from_request(&std::fs::read(&request).unwrap(), now()).unwrap()
}

#[test]
fn agent_reported_ek_certificate_chains_to_its_manufacturer_and_not_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let maker = TpmManufacturerCa::create(&dir.path().join("maker")).unwrap();
    let stranger = TpmManufacturerCa::create(&dir.path().join("stranger")).unwrap();
    // Declared after `dir`, so it is stopped before the directory is removed.
    let tpm = SwtpmWithEkCert::start(&maker, &dir.path().join("tpm")).unwrap();
    let enrollment = enroll(&tpm, dir.path());
    let cert = enrollment
        .ek_certificate
        .as_ref()
        .expect("the agent reports the TPM's EK certificate")
        .0
        .clone();
    let ek = enrollment.ek_public.0.clone();

    // A second opinion on the certificate itself.
    let leaf = dir.path().join("ek.der");
    std::fs::write(&leaf, &cert).unwrap();
    let openssl = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(maker.root_cert())
        .arg("-untrusted")
        .arg(maker.intermediate_cert())
        .arg(&leaf)
        .output()
        .expect("openssl");
    assert!(
        openssl.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&openssl.stderr)
    );

    let info = verify_ek_certificate(
        std::slice::from_ref(&cert),
        &ek,
        &load_roots(&maker.roots_dir()),
        now(),
    )
    .expect("chains to the manufacturer's roots");
    assert_eq!(
        info.anchor,
        format!("CN={} EK CA,O=vouch tests", maker.name())
    );
    assert_eq!(info.issuer, info.anchor);
    assert_eq!(info.tpm_manufacturer.as_deref(), Some("id:00001014"));
    assert_eq!(info.tpm_model.as_deref(), Some("swtpm"));

    // The root alone is enough once the intermediate comes with the chain.
    let root_only = TrustAnchors::from_der(vec![pem_der(&maker.root_cert())]).unwrap();
    let chain = [cert.clone(), pem_der(&maker.intermediate_cert())];
    let info = verify_ek_certificate(&chain, &ek, &root_only, now()).expect("via intermediate");
    assert_eq!(
        info.anchor,
        format!("CN={} Root,O=vouch tests", maker.name())
    );
    assert!(matches!(
        verify_ek_certificate(&chain[..1], &ek, &root_only, now()),
        Err(EkCertError::UntrustedIssuer { .. })
    ));

    // Another manufacturer's roots refuse it, naming the issuer.
    match verify_ek_certificate(
        std::slice::from_ref(&cert),
        &ek,
        &load_roots(&stranger.roots_dir()),
        now(),
    ) {
        Err(EkCertError::UntrustedIssuer { issuer }) => {
            assert!(issuer.contains(maker.name()), "{issuer}")
        }
        other => panic!("expected UntrustedIssuer, got {other:?}"),
    }
}

#[test]
fn ek_certificate_of_one_tpm_does_not_pass_for_another_tpm_of_the_same_maker() {
    let dir = tempfile::tempdir().unwrap();
    let maker = TpmManufacturerCa::create(&dir.path().join("maker")).unwrap();
    let first = SwtpmWithEkCert::start(&maker, &dir.path().join("tpm1")).unwrap();
    let second = SwtpmWithEkCert::start(&maker, &dir.path().join("tpm2")).unwrap();
    let a = enroll(&first, &dir.path().join("a"));
    let b = enroll(&second, &dir.path().join("b"));
    let roots = load_roots(&maker.roots_dir());
    let cert_a = [a.ek_certificate.as_ref().unwrap().0.clone()];
    verify_ek_certificate(&cert_a, &a.ek_public.0, &roots, now()).expect("its own EK");
    assert!(matches!(
        verify_ek_certificate(&cert_a, &b.ek_public.0, &roots, now()),
        Err(EkCertError::KeyMismatch { .. })
    ));
}
