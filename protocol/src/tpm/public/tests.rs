//! Unit tests for TPMT_PUBLIC / TPM2B_PUBLIC decoding, Names and the attestation-key checks,
//! on public areas built field by field.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use p256::ecdsa::SigningKey;

use super::*;
use crate::digest::sha256;

/// Attributes of the AK tpm2_createak makes: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, restricted, sign.
const AK_ATTRS: u32 = 0x0005_0072;
/// Attributes of the default ECC EK: fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy,
/// restricted, decrypt.
const EK_ATTRS: u32 = 0x0003_00b2;

fn tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// An ECC TPMT_PUBLIC. `sym` and `scheme` are the already-marshalled TPMT_SYM_DEF_OBJECT and
/// TPMT_ECC_SCHEME.
fn ecc_tpmt(attrs: u32, sym: &[u8], scheme: &[u8], curve: u16, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 0x23, 0x00, 0x0b];
    b.extend_from_slice(&attrs.to_be_bytes());
    tpm2b(&mut b, &[]); // authPolicy
    b.extend_from_slice(sym);
    b.extend_from_slice(scheme);
    b.extend_from_slice(&curve.to_be_bytes());
    b.extend_from_slice(&[0x00, 0x10]); // kdf NULL
    tpm2b(&mut b, x);
    tpm2b(&mut b, y);
    b
}

const SYM_NULL: &[u8] = &[0x00, 0x10];
const SYM_AES128_CFB: &[u8] = &[0x00, 0x06, 0x00, 0x80, 0x00, 0x43];
const ECDSA_SHA256: &[u8] = &[0x00, 0x18, 0x00, 0x0b];

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn xy(key: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    (bytes[1..33].to_vec(), bytes[33..65].to_vec())
}

fn ak_tpmt(key: &SigningKey) -> Vec<u8> {
    let (x, y) = xy(key);
    ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 0x0003, &x, &y)
}

#[test]
fn decodes_ecc_attestation_key() {
    let key = signing_key(7);
    let bytes = ak_tpmt(&key);
    let public = TpmPublic::parse(&bytes).unwrap();
    assert_eq!(public.as_tpmt_bytes(), &bytes[..]);
    assert_eq!(public.name_alg(), HashAlg::Sha256);
    let a = public.attributes();
    assert!(a.fixed_tpm() && a.fixed_parent() && a.sensitive_data_origin());
    assert!(a.user_with_auth() && a.restricted() && a.sign() && !a.decrypt());
    assert!(public.auth_policy().is_empty());
    let PublicParameters::Ecc(ecc) = public.parameters() else {
        unreachable!("not ECC")
    };
    assert_eq!(ecc.symmetric, None);
    assert_eq!(
        ecc.scheme,
        KeyScheme::Hashed {
            alg: alg::ECDSA,
            hash: 0x000b
        }
    );
    assert_eq!(ecc.curve, EccCurve::NistP256);
    assert_eq!(ecc.kdf, KeyScheme::Null);
    assert_eq!(public.scheme().hash(), Some(0x000b));
    public.check_attestation_key().unwrap();
    assert_eq!(&public.p256_verifying_key().unwrap(), key.verifying_key());
}

#[test]
fn name_is_name_alg_then_digest_of_tpmt() {
    let bytes = ak_tpmt(&signing_key(7));
    let public = TpmPublic::parse(&bytes).unwrap();
    let name = public.name();
    assert_eq!(&name.as_bytes()[..2], &[0x00, 0x0b]);
    assert_eq!(&name.as_bytes()[2..], &sha256(&bytes));
    assert_eq!(name.alg(), Some(HashAlg::Sha256));
    assert_eq!(Name::from_bytes(&[0x40, 0, 0, 0x0b]).alg(), None);
}

#[test]
fn qualified_name_hashes_parent_qualified_name_then_name() {
    let public = TpmPublic::parse(&ak_tpmt(&signing_key(7))).unwrap();
    let parent = [0x40, 0x00, 0x00, 0x0b];
    let mut cat = parent.to_vec();
    cat.extend_from_slice(public.name().as_bytes());
    let qn = public.qualified_name(&parent);
    assert_eq!(&qn.as_bytes()[..2], &[0x00, 0x0b]);
    assert_eq!(&qn.as_bytes()[2..], &sha256(&cat));
}

#[test]
fn tpm2b_form_wraps_tpmt_exactly() {
    let tpmt = ak_tpmt(&signing_key(7));
    let mut tpm2b_bytes = Vec::new();
    tpm2b(&mut tpm2b_bytes, &tpmt);
    let public = TpmPublic::from_tpm2b(&tpm2b_bytes).unwrap();
    assert_eq!(public, TpmPublic::parse(&tpmt).unwrap());
    assert_eq!(public.to_tpm2b_bytes(), tpm2b_bytes);

    // Bytes after the TPM2B.
    let mut long = tpm2b_bytes.clone();
    long.push(0);
    assert_eq!(
        TpmPublic::from_tpm2b(&long),
        Err(TpmError::TrailingBytes {
            structure: "TPM2B_PUBLIC",
            extra: 1
        })
    );
    // A size that covers one byte more than the TPMT_PUBLIC.
    let mut padded = tpm2b_bytes.clone();
    padded.push(0);
    padded[..2].copy_from_slice(&((tpmt.len() + 1) as u16).to_be_bytes());
    assert_eq!(
        TpmPublic::from_tpm2b(&padded),
        Err(TpmError::TrailingBytes {
            structure: "TPMT_PUBLIC",
            extra: 1
        })
    );
    // A size that cuts the TPMT_PUBLIC short: the parser must not read past it.
    let mut short = tpm2b_bytes;
    short[..2].copy_from_slice(&((tpmt.len() - 1) as u16).to_be_bytes());
    assert!(matches!(
        TpmPublic::from_tpm2b(&short),
        Err(TpmError::Truncated {
            structure: "TPMS_ECC_POINT",
            field: "y",
            ..
        })
    ));
}

#[test]
fn every_truncation_errors_and_trailing_bytes_are_rejected() {
    let bytes = ak_tpmt(&signing_key(7));
    for len in 0..bytes.len() {
        assert!(TpmPublic::parse(&bytes[..len]).is_err(), "len {len}");
    }
    let mut long = bytes;
    long.push(0);
    assert_eq!(
        TpmPublic::parse(&long),
        Err(TpmError::TrailingBytes {
            structure: "TPMT_PUBLIC",
            extra: 1
        })
    );
}

#[test]
fn decodes_endorsement_key_with_aes_and_rejects_it_as_ak() {
    let (x, y) = xy(&signing_key(9));
    let bytes = ecc_tpmt(EK_ATTRS, SYM_AES128_CFB, &[0x00, 0x10], 0x0003, &x, &y);
    let ek = TpmPublic::parse(&bytes).unwrap();
    let PublicParameters::Ecc(ecc) = ek.parameters() else {
        unreachable!("not ECC")
    };
    assert_eq!(
        ecc.symmetric,
        Some(SymmetricDef {
            alg: alg::AES,
            key_bits: 128,
            mode: 0x0043
        })
    );
    assert_eq!(ecc.scheme, KeyScheme::Null);
    assert_eq!(
        ek.check_attestation_key(),
        Err(AkAttributeError::NotSigning)
    );
}

#[test]
fn attestation_key_check_names_each_attribute() {
    let (x, y) = xy(&signing_key(7));
    let cases = [
        (
            AK_ATTRS & !ObjectAttributes::RESTRICTED,
            AkAttributeError::NotRestricted,
        ),
        (
            AK_ATTRS & !ObjectAttributes::SIGN,
            AkAttributeError::NotSigning,
        ),
        (
            AK_ATTRS | ObjectAttributes::DECRYPT,
            AkAttributeError::Decrypts,
        ),
        (
            AK_ATTRS & !ObjectAttributes::FIXED_TPM,
            AkAttributeError::NotFixedTpm,
        ),
        (
            AK_ATTRS & !ObjectAttributes::FIXED_PARENT,
            AkAttributeError::NotFixedParent,
        ),
        (
            AK_ATTRS & !ObjectAttributes::SENSITIVE_DATA_ORIGIN,
            AkAttributeError::NotSensitiveDataOrigin,
        ),
    ];
    for (attrs, want) in cases {
        let public = TpmPublic::parse(&ecc_tpmt(attrs, SYM_NULL, ECDSA_SHA256, 3, &x, &y)).unwrap();
        assert_eq!(public.check_attestation_key(), Err(want), "{attrs:#x}");
    }
}

#[test]
fn short_coordinates_are_left_padded() {
    // Find a key whose x starts with a zero byte, as a TPM would then send 31 bytes.
    let key = (1u8..=255)
        .flat_map(|a| (1u8..=255).map(move |b| (a, b)))
        .map(|(a, b)| {
            let mut scalar = [a; 32];
            scalar[31] = b;
            SigningKey::from_slice(&scalar).unwrap()
        })
        .find(|k| xy(k).0[0] == 0)
        .unwrap();
    let (x, y) = xy(&key);
    let bytes = ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 3, &x[1..], &y);
    let public = TpmPublic::parse(&bytes).unwrap();
    assert_eq!(&public.p256_verifying_key().unwrap(), key.verifying_key());
}

#[test]
fn verifying_key_rejects_wrong_curve_long_coordinate_and_off_curve_point() {
    let (x, y) = xy(&signing_key(7));
    let p384 = TpmPublic::parse(&ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 4, &x, &y)).unwrap();
    assert_eq!(
        p384.p256_verifying_key(),
        Err(TpmError::UnsupportedCurve { curve: 4 })
    );
    let mut long_x = vec![0];
    long_x.extend_from_slice(&x);
    let long = TpmPublic::parse(&ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 3, &long_x, &y));
    assert_eq!(
        long.unwrap().p256_verifying_key(),
        Err(TpmError::EccCoordinateTooLong {
            coordinate: "x",
            len: 33,
            max: 32
        })
    );
    let mut bad_y = y.clone();
    bad_y[31] ^= 1;
    let off = TpmPublic::parse(&ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 3, &x, &bad_y));
    assert_eq!(
        off.unwrap().p256_verifying_key(),
        Err(TpmError::InvalidPublicPoint)
    );
}

#[test]
fn ecc_scheme_variants() {
    let (x, y) = xy(&signing_key(7));
    let ecdaa = ecc_tpmt(
        AK_ATTRS,
        SYM_NULL,
        &[0x00, 0x1a, 0x00, 0x0b, 0x00, 0x05],
        3,
        &x,
        &y,
    );
    assert_eq!(
        TpmPublic::parse(&ecdaa).unwrap().scheme(),
        KeyScheme::Ecdaa {
            hash: 0x000b,
            count: 5
        }
    );
    // RSASSA is not an ECC scheme.
    let rsassa = ecc_tpmt(AK_ATTRS, SYM_NULL, &[0x00, 0x14, 0x00, 0x0b], 3, &x, &y);
    assert_eq!(
        TpmPublic::parse(&rsassa),
        Err(TpmError::UnsupportedScheme {
            structure: "TPMT_ECC_SCHEME",
            alg: alg::RSASSA
        })
    );
}

#[test]
fn unsupported_type_symmetric_and_name_alg_are_named() {
    let (x, y) = xy(&signing_key(7));
    let mut keyedhash = ak_tpmt(&signing_key(7));
    keyedhash[..2].copy_from_slice(&alg::KEYEDHASH.to_be_bytes());
    assert_eq!(
        TpmPublic::parse(&keyedhash),
        Err(TpmError::UnsupportedKeyType {
            alg: alg::KEYEDHASH
        })
    );
    let camellia = ecc_tpmt(
        AK_ATTRS,
        &[0x00, 0x26, 0, 128, 0, 0x43],
        ECDSA_SHA256,
        3,
        &x,
        &y,
    );
    assert_eq!(
        TpmPublic::parse(&camellia),
        Err(TpmError::UnsupportedSymmetric { alg: 0x0026 })
    );
    let mut sm3 = ak_tpmt(&signing_key(7));
    sm3[2..4].copy_from_slice(&0x0012u16.to_be_bytes());
    assert_eq!(
        TpmPublic::parse(&sm3),
        Err(TpmError::UnsupportedHashAlg {
            structure: "TPMT_PUBLIC",
            field: "nameAlg",
            alg: 0x0012
        })
    );
}

fn rsa_tpmt(scheme: &[u8], exponent: u32, modulus_len: usize) -> Vec<u8> {
    let mut b = vec![0x00, 0x01, 0x00, 0x0b];
    b.extend_from_slice(&AK_ATTRS.to_be_bytes());
    tpm2b(&mut b, &[]);
    b.extend_from_slice(SYM_NULL);
    b.extend_from_slice(scheme);
    b.extend_from_slice(&2048u16.to_be_bytes());
    b.extend_from_slice(&exponent.to_be_bytes());
    tpm2b(&mut b, &vec![0xc5; modulus_len]);
    b
}

#[test]
fn decodes_rsa_schemes_and_default_exponent() {
    let public = TpmPublic::parse(&rsa_tpmt(&[0x00, 0x14, 0x00, 0x0b], 0, 256)).unwrap();
    let PublicParameters::Rsa(rsa) = public.parameters() else {
        unreachable!("not RSA")
    };
    assert_eq!(rsa.key_bits, 2048);
    assert_eq!(rsa.exponent(), 65537);
    assert_eq!(rsa.modulus.len(), 256);
    assert_eq!(
        rsa.scheme,
        KeyScheme::Hashed {
            alg: alg::RSASSA,
            hash: 0x000b
        }
    );
    assert_eq!(public.p256_verifying_key(), Err(TpmError::NotEccKey));

    // RSAES has no details; the next field is keyBits.
    let rsaes = TpmPublic::parse(&rsa_tpmt(&[0x00, 0x15], 3, 256)).unwrap();
    assert_eq!(rsaes.scheme(), KeyScheme::Rsaes);
    let PublicParameters::Rsa(rsa) = rsaes.parameters() else {
        unreachable!("not RSA")
    };
    assert_eq!(rsa.exponent(), 3);

    assert!(matches!(
        TpmPublic::parse(&rsa_tpmt(&[0x00, 0x10], 0, 513)),
        Err(TpmError::TooLarge {
            structure: "TPM2B_PUBLIC_KEY_RSA",
            size: 513,
            max: 512,
            ..
        })
    ));
}

#[test]
fn no_da_is_exposed_and_both_ak_generations_are_accepted() {
    let (x, y) = xy(&signing_key(7));
    let legacy = TpmPublic::parse(&ecc_tpmt(AK_ATTRS, SYM_NULL, ECDSA_SHA256, 3, &x, &y)).unwrap();
    assert!(!legacy.attributes().no_da());
    let no_da = AK_ATTRS | ObjectAttributes::NO_DA;
    let current = TpmPublic::parse(&ecc_tpmt(no_da, SYM_NULL, ECDSA_SHA256, 3, &x, &y)).unwrap();
    assert!(current.attributes().no_da());
    // AKs enrolled before noDA keep verifying; new ones are accepted too.
    assert_eq!(legacy.check_vouch_attestation_key(), Ok(()));
    assert_eq!(current.check_vouch_attestation_key(), Ok(()));
    assert_ne!(
        legacy.name(),
        current.name(),
        "attributes are part of the Name"
    );
}
