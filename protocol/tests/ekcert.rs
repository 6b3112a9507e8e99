//! EK certificate validation on committed fixtures (`tests/vectors/ekcert/`, see its README):
//! real swtpm EK certificates from `swtpm_setup --create-ek-cert` under swtpm_localca's root
//! and intermediate, and openssl-made ones for the same EKs under other CAs (ECDSA, RSA-PSS,
//! an empty subject as real vendors use), expired, SHA-1-signed and wrong-key cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vouch_protocol::ekcert::{
    EkCertError, MAX_INTERMEDIATES, TrustAnchors, parse_pem_certificates, verify_ek_certificate,
};

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!("vectors/ekcert/", $name)).as_slice()
    };
}
macro_rules! pem {
    ($name:literal) => {
        include_str!(concat!("vectors/ekcert/", $name))
    };
}

/// 2027-01-15: after the fixtures were made (2026-12-02), before the ten-year ones expire.
const NOW: u64 = 1_800_000_000;

fn der(pem_text: &str) -> Vec<u8> {
    let mut certs = parse_pem_certificates(pem_text).expect("fixture PEM");
    assert_eq!(certs.len(), 1, "fixture holds one certificate");
    certs.remove(0)
}

fn anchors(pems: &[&str]) -> TrustAnchors {
    TrustAnchors::from_der(pems.iter().map(|p| der(p)).collect()).expect("fixture anchors")
}

fn swtpm_root() -> TrustAnchors {
    anchors(&[pem!("swtpm-root.pem")])
}

const RSA_TPMT: &[u8] = vector!("rsa2048-ek.tpmt");
const P384_TPMT: &[u8] = vector!("p384-ek.tpmt");

#[test]
fn swtpm_rsa_ek_certificate_chains_through_the_supplied_intermediate_to_the_root() {
    let chain = [
        vector!("rsa2048-ek.der").to_vec(),
        der(pem!("swtpm-intermediate.pem")),
    ];
    let info = verify_ek_certificate(&chain, RSA_TPMT, &swtpm_root(), NOW).expect("verifies");
    assert_eq!(info.subject, "CN=unknown");
    assert_eq!(info.issuer, "CN=swtpm-localca");
    assert_eq!(info.anchor, "CN=swtpm-localca-rootca");
    assert_eq!(info.tpm_manufacturer.as_deref(), Some("id:00001014"));
    assert_eq!(info.tpm_model.as_deref(), Some("swtpm"));
    assert_eq!(info.tpm_version.as_deref(), Some("id:20191023"));
    // notAfter 99991231235959Z (GeneralizedTime).
    assert_eq!(info.not_after, 253_402_300_799);
}

#[test]
fn swtpm_p384_ek_certificate_verifies_against_an_intermediate_placed_among_the_anchors() {
    let roots = anchors(&[pem!("swtpm-root.pem"), pem!("swtpm-intermediate.pem")]);
    let chain = [vector!("p384-ek.der").to_vec()];
    let info = verify_ek_certificate(&chain, P384_TPMT, &roots, NOW).expect("verifies");
    assert_eq!(info.anchor, "CN=swtpm-localca");
    assert_eq!(info.tpm_manufacturer.as_deref(), Some("id:00001014"));
}

#[test]
fn leaf_alone_does_not_reach_a_root_whose_intermediate_is_missing() {
    let chain = [vector!("p384-ek.der").to_vec()];
    let err = verify_ek_certificate(&chain, P384_TPMT, &swtpm_root(), NOW).unwrap_err();
    assert_eq!(
        err,
        EkCertError::UntrustedIssuer {
            issuer: "CN=swtpm-localca".into()
        }
    );
}

#[test]
fn certificate_for_the_right_ek_from_an_untrusted_ca_is_refused() {
    let roots = anchors(&[pem!("swtpm-root.pem"), pem!("swtpm-intermediate.pem")]);
    let chain = [der(pem!("p384-ek-othervendor.pem"))];
    let err = verify_ek_certificate(&chain, P384_TPMT, &roots, NOW).unwrap_err();
    match err {
        EkCertError::UntrustedIssuer { issuer } => assert!(issuer.contains("Other TPM Vendor")),
        other => panic!("expected UntrustedIssuer, got {other:?}"),
    }
    let no_roots = TrustAnchors::from_der(Vec::new()).expect("empty set");
    assert!(matches!(
        verify_ek_certificate(&chain, P384_TPMT, &no_roots, NOW),
        Err(EkCertError::UntrustedIssuer { .. })
    ));
}

#[test]
fn vendor_style_certificate_with_empty_subject_and_ecdsa_p384_verifies_under_its_root() {
    let chain = [der(pem!("p384-ek-othervendor.pem"))];
    let info = verify_ek_certificate(&chain, P384_TPMT, &anchors(&[pem!("vendor-root.pem")]), NOW)
        .expect("verifies");
    assert_eq!(info.subject, "");
    assert_eq!(
        info.anchor,
        "CN=Other TPM Vendor EK Root,O=Other TPM Vendor,C=XX"
    );
    assert_eq!(info.tpm_manufacturer.as_deref(), Some("id:49464700"));
    assert_eq!(info.tpm_model.as_deref(), Some("SLB9672"));
    assert_eq!(info.tpm_version.as_deref(), Some("id:000F0010"));
}

#[test]
fn rsa_ek_via_an_ecdsa_p256_intermediate_verifies() {
    let chain = [
        der(pem!("rsa2048-ek-othervendor-int.pem")),
        der(pem!("vendor-int.pem")),
    ];
    let roots = anchors(&[pem!("vendor-root.pem")]);
    let info = verify_ek_certificate(&chain, RSA_TPMT, &roots, NOW).expect("verifies");
    assert!(info.issuer.contains("Intermediate 01"), "{}", info.issuer);
    // Without the intermediate the chain stops short of the root.
    assert!(matches!(
        verify_ek_certificate(&chain[..1], RSA_TPMT, &roots, NOW),
        Err(EkCertError::UntrustedIssuer { .. })
    ));
}

#[test]
fn rsa_pss_signed_ek_certificate_verifies() {
    let chain = [der(pem!("rsa2048-ek-pss.pem"))];
    verify_ek_certificate(&chain, RSA_TPMT, &anchors(&[pem!("pss-root.pem")]), NOW)
        .expect("verifies");
}

#[test]
fn genuine_certificate_of_another_key_is_refused_as_key_mismatch() {
    let roots = anchors(&[pem!("vendor-root.pem")]);
    let chain = [der(pem!("p384-ek-wrongkey.pem"))];
    assert_eq!(
        verify_ek_certificate(&chain, P384_TPMT, &roots, NOW),
        Err(EkCertError::KeyMismatch {
            detail: "ECC point differs".into()
        })
    );
    // The swtpm RSA certificate presented with the P-384 EK, and the other way round.
    let swtpm = anchors(&[pem!("swtpm-root.pem"), pem!("swtpm-intermediate.pem")]);
    let rsa = [vector!("rsa2048-ek.der").to_vec()];
    assert!(matches!(
        verify_ek_certificate(&rsa, P384_TPMT, &swtpm, NOW),
        Err(EkCertError::KeyMismatch { .. })
    ));
    let p384 = [vector!("p384-ek.der").to_vec()];
    assert!(matches!(
        verify_ek_certificate(&p384, RSA_TPMT, &swtpm, NOW),
        Err(EkCertError::KeyMismatch { .. })
    ));
}

#[test]
fn rsa_modulus_differing_in_one_byte_is_a_key_mismatch() {
    let mut tpmt = RSA_TPMT.to_vec();
    let last = tpmt.len() - 1; // the modulus is the last field of an RSA TPMT_PUBLIC
    tpmt[last] ^= 1;
    let chain = [
        vector!("rsa2048-ek.der").to_vec(),
        der(pem!("swtpm-intermediate.pem")),
    ];
    assert_eq!(
        verify_ek_certificate(&chain, &tpmt, &swtpm_root(), NOW),
        Err(EkCertError::KeyMismatch {
            detail: "RSA modulus differs".into()
        })
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_naming_them() {
    let roots = anchors(&[pem!("vendor-root.pem")]);
    let chain = [der(pem!("p384-ek-oneday.pem"))];
    // Valid for one day from 2026-12-02T05:21:33Z.
    verify_ek_certificate(&chain, P384_TPMT, &roots, 1_796_232_100).expect("valid on its day");
    match verify_ek_certificate(&chain, P384_TPMT, &roots, NOW) {
        Err(EkCertError::Expired { subject, not_after }) => {
            assert_eq!(not_after, 1_796_275_293);
            assert!(subject.contains("serial"), "{subject}");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(matches!(
        verify_ek_certificate(&chain, P384_TPMT, &roots, 1_700_000_000),
        Err(EkCertError::NotYetValid { .. })
    ));
}

#[test]
fn flipped_signature_byte_is_a_bad_signature() {
    let mut leaf = vector!("p384-ek.der").to_vec();
    let last = leaf.len() - 1; // the signature BIT STRING ends the certificate
    leaf[last] ^= 0x01;
    let roots = anchors(&[pem!("swtpm-root.pem"), pem!("swtpm-intermediate.pem")]);
    assert!(matches!(
        verify_ek_certificate(&[leaf], P384_TPMT, &roots, NOW),
        Err(EkCertError::BadSignature { .. })
    ));
}

#[test]
fn sha1_signature_is_an_unsupported_algorithm() {
    let chain = [der(pem!("p384-ek-sha1.pem"))];
    match verify_ek_certificate(&chain, P384_TPMT, &anchors(&[pem!("vendor-root.pem")]), NOW) {
        Err(EkCertError::UnsupportedAlgorithm { oid }) => {
            assert!(oid.starts_with("1.2.840.10045.4.1"), "{oid}")
        }
        other => panic!("expected UnsupportedAlgorithm, got {other:?}"),
    }
}

#[test]
fn a_non_ca_certificate_is_refused_as_anchor_and_as_intermediate() {
    let leaf = vector!("p384-ek.der").to_vec();
    match TrustAnchors::from_der(vec![der(pem!("swtpm-root.pem")), leaf.clone()]) {
        Err(EkCertError::NotACa { subject }) => assert!(subject.contains("CN=unknown")),
        other => panic!("expected NotACa, got {other:?}"),
    }
    let chain = [vector!("rsa2048-ek.der").to_vec(), leaf];
    assert!(matches!(
        verify_ek_certificate(&chain, RSA_TPMT, &swtpm_root(), NOW),
        Err(EkCertError::NotACa { .. })
    ));
}

#[test]
fn chain_longer_than_the_bound_is_refused_before_parsing() {
    let chain = vec![vec![0u8; 4]; MAX_INTERMEDIATES + 2];
    assert_eq!(
        verify_ek_certificate(&chain, P384_TPMT, &swtpm_root(), NOW),
        Err(EkCertError::ChainTooLong {
            len: MAX_INTERMEDIATES + 1,
            max: MAX_INTERMEDIATES
        })
    );
    assert!(matches!(
        verify_ek_certificate(&[], P384_TPMT, &swtpm_root(), NOW),
        Err(EkCertError::Malformed { .. })
    ));
    assert!(matches!(
        verify_ek_certificate(&[vec![0u8; 20_000]], P384_TPMT, &swtpm_root(), NOW),
        Err(EkCertError::TooLarge { .. })
    ));
}

#[test]
fn garbage_and_truncated_certificates_are_malformed() {
    let leaf = vector!("p384-ek.der");
    for bad in [&leaf[..leaf.len() - 1], &[0x30, 0x03, 0x02, 0x01, 0x00][..]] {
        assert!(matches!(
            verify_ek_certificate(&[bad.to_vec()], P384_TPMT, &swtpm_root(), NOW),
            Err(EkCertError::Malformed { .. })
        ));
    }
    let mut trailing = leaf.to_vec();
    trailing.extend([0, 0, 1]);
    match verify_ek_certificate(&[trailing], P384_TPMT, &swtpm_root(), NOW) {
        Err(EkCertError::Malformed { what }) => assert!(what.contains("3 bytes after"), "{what}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn nv_padding_after_the_certificate_is_dropped() {
    let roots = anchors(&[pem!("swtpm-root.pem"), pem!("swtpm-intermediate.pem")]);
    for pad in [0x00, 0xff] {
        let mut padded = vector!("p384-ek.der").to_vec();
        padded.extend([pad; 200]);
        verify_ek_certificate(&[padded], P384_TPMT, &roots, NOW).expect("padding is not signed");
    }
}

#[test]
fn pem_text_yields_every_certificate_and_refuses_none() {
    let both = format!(
        "comment line\n{}{}",
        pem!("swtpm-root.pem"),
        pem!("swtpm-intermediate.pem")
    );
    let certs = parse_pem_certificates(&both).expect("two certificates");
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1], der(pem!("swtpm-intermediate.pem")));
    assert!(matches!(
        parse_pem_certificates("no pem here"),
        Err(EkCertError::Malformed { .. })
    ));
    assert!(matches!(
        parse_pem_certificates("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        Err(EkCertError::Malformed { .. })
    ));
    let huge = "x".repeat(vouch_protocol::ekcert::MAX_PEM_TEXT + 1);
    assert!(matches!(
        parse_pem_certificates(&huge),
        Err(EkCertError::TooLarge { .. })
    ));
}

#[test]
fn expired_trust_anchor_is_refused_even_when_the_chain_below_it_is_valid() {
    let chain = [
        der(pem!("rsa2048-ek-othervendor-int.pem")),
        der(pem!("vendor-int.pem")),
    ];
    let roots = anchors(&[pem!("vendor-root.pem")]);
    // The root's notAfter is 2036-11-29T05:21:09Z; the intermediate and the leaf, made a few
    // seconds later with the same lifetime, are valid until 05:21:31.
    let root_not_after = 2_111_548_869;
    verify_ek_certificate(&chain, RSA_TPMT, &roots, root_not_after).expect("last valid second");
    match verify_ek_certificate(&chain, RSA_TPMT, &roots, root_not_after + 10) {
        Err(EkCertError::Expired { subject, not_after }) => {
            assert_eq!(not_after, root_not_after);
            assert!(
                subject.starts_with("trust anchor CN=Other TPM Vendor EK Root"),
                "{subject}"
            );
        }
        other => panic!("expected the anchor Expired, got {other:?}"),
    }
}
