//! Unit tests of MakeCredential: the ECC paths are opened again by a software stand-in for
//! TPM2_ActivateCredential holding the EK's private key (written from the specification, apart
//! from the code under test's framing), and the refusals name what was wrong. The RSA path and
//! the real TPM's view of all three key types are covered on swtpm in agent/tests/activate.rs.

use super::*;
use cfb_mode::cipher::KeyIvInit;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `PolicyA` (SHA-256) of the TCG EK templates: PolicySecret(TPM_RH_ENDORSEMENT).
const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// A TPMT_PUBLIC shaped like the TCG default ECC EK template for `curve`, around the public
/// point (x, y).
fn ecc_ek(curve: u16, x: &[u8], y: &[u8]) -> Vec<u8> {
    let (name_alg, attrs, policy, aes_bits): (u16, u32, Vec<u8>, u16) = match curve {
        0x0003 => (0x000b, 0x0003_00b2, POLICY_A_SHA256.to_vec(), 128),
        _ => (0x000c, 0x0003_00f2, vec![0xb2; 48], 256),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&0x0023u16.to_be_bytes());
    out.extend_from_slice(&name_alg.to_be_bytes());
    out.extend_from_slice(&attrs.to_be_bytes());
    out.extend_from_slice(&(policy.len() as u16).to_be_bytes());
    out.extend_from_slice(&policy);
    for v in [0x0006, aes_bits, 0x0043, 0x0010, curve, 0x0010] {
        out.extend_from_slice(&u16::to_be_bytes(v));
    }
    for c in [x, y] {
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn p256_ek(rng: &mut StdRng) -> (p256::SecretKey, Vec<u8>) {
    use p256::elliptic_curve::{Generate, sec1::ToSec1Point};
    let sk = p256::SecretKey::generate_from_rng(rng);
    let point = sk.public_key().to_sec1_point(false);
    let ek = ecc_ek(0x0003, point.x().unwrap(), point.y().unwrap());
    (sk, ek)
}

fn p384_ek(rng: &mut StdRng) -> (p384::SecretKey, Vec<u8>) {
    use p384::elliptic_curve::{Generate, sec1::ToSec1Point};
    let sk = p384::SecretKey::generate_from_rng(rng);
    let point = sk.public_key().to_sec1_point(false);
    let ek = ecc_ek(0x0004, point.x().unwrap(), point.y().unwrap());
    (sk, ek)
}

fn ak_name(fill: u8) -> Vec<u8> {
    [vec![0x00, 0x0b], vec![fill; 32]].concat()
}

/// Reads `u16 len || bytes` from the front of `b`.
fn tpm2b(b: &[u8]) -> (&[u8], &[u8]) {
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    (&b[2..2 + len], &b[2 + len..])
}

/// What TPM2_ActivateCredential does once the seed is recovered: check the integrity HMAC
/// against `name`, decrypt encIdentity, return the secret (or `None` where the TPM fails).
fn unwrap_with_seed(
    hash: HashAlg,
    seed: &[u8],
    aes_bits: u32,
    name: &[u8],
    id_object: &[u8],
) -> Option<Vec<u8>> {
    let (integrity, enc_identity) = tpm2b(id_object);
    let hmac_key = kdfa(
        hash,
        seed,
        b"INTEGRITY\0",
        &[],
        &[],
        hash.digest_len() as u32 * 8,
    )
    .ok()?;
    let expected = hmac(hash, &hmac_key, &[enc_identity, name]).ok()?;
    if expected.as_slice() != integrity {
        return None;
    }
    let key = kdfa(hash, seed, b"STORAGE\0", name, &[], aes_bits).ok()?;
    let mut plain = enc_identity.to_vec();
    let iv = [0u8; 16];
    match key.len() {
        16 => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .ok()?
            .decrypt(&mut plain),
        _ => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .ok()?
            .decrypt(&mut plain),
    }
    let (secret, rest) = tpm2b(&plain);
    assert!(rest.is_empty());
    Some(secret.to_vec())
}

/// The EK side of ECC secret sharing: Z = d_EK * ephemeral point, then KDFe.
fn p256_seed(sk: &p256::SecretKey, ek_x: &[u8], encrypted: &[u8]) -> Vec<u8> {
    let (x, rest) = tpm2b(encrypted);
    let (y, rest) = tpm2b(rest);
    assert!(rest.is_empty() && x.len() == 32 && y.len() == 32);
    let eph = p256::PublicKey::from_sec1_bytes(&[&[4u8][..], x, y].concat()).unwrap();
    let z = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), eph.as_affine());
    let mut data = vec![0, 0, 0, 1];
    data.extend_from_slice(z.raw_secret_bytes());
    data.extend_from_slice(b"IDENTITY\0");
    data.extend_from_slice(x);
    data.extend_from_slice(ek_x);
    HashAlg::Sha256.hash(&[&data])
}

fn p384_seed(sk: &p384::SecretKey, ek_x: &[u8], encrypted: &[u8]) -> Vec<u8> {
    let (x, rest) = tpm2b(encrypted);
    let (y, rest) = tpm2b(rest);
    assert!(rest.is_empty() && x.len() == 48 && y.len() == 48);
    let eph = p384::PublicKey::from_sec1_bytes(&[&[4u8][..], x, y].concat()).unwrap();
    let z = p384::ecdh::diffie_hellman(sk.to_nonzero_scalar(), eph.as_affine());
    let mut data = vec![0, 0, 0, 1];
    data.extend_from_slice(z.raw_secret_bytes());
    data.extend_from_slice(b"IDENTITY\0");
    data.extend_from_slice(x);
    data.extend_from_slice(ek_x);
    HashAlg::Sha384.hash(&[&data])
}

fn ek_x(ek: &[u8]) -> Vec<u8> {
    let PublicParameters::Ecc(e) = TpmPublic::parse(ek).unwrap().parameters().clone() else {
        panic!("not ECC")
    };
    e.x
}

#[test]
fn p256_credential_opens_only_for_its_ak_name() {
    let mut rng = StdRng::seed_from_u64(1);
    let (sk, ek) = p256_ek(&mut rng);
    let secret = [0x5a; 32];
    let (id_object, encrypted) = make_credential(&ek, &ak_name(7), &secret, &mut rng).unwrap();
    assert_eq!(encrypted.len(), 2 + 32 + 2 + 32, "TPMS_ECC_POINT of P-256");
    assert_eq!(
        id_object.len(),
        2 + 32 + 2 + 32,
        "TPM2B(HMAC-SHA256) || encIdentity"
    );
    let seed = p256_seed(&sk, &ek_x(&ek), &encrypted);
    let opened = unwrap_with_seed(HashAlg::Sha256, &seed, 128, &ak_name(7), &id_object);
    assert_eq!(opened.as_deref(), Some(&secret[..]));
    // Another AK (another Name) fails the integrity check, as on the TPM.
    assert_eq!(
        unwrap_with_seed(HashAlg::Sha256, &seed, 128, &ak_name(8), &id_object),
        None
    );
    // Another EK derives another seed.
    let (other_sk, _) = p256_ek(&mut rng);
    let wrong_seed = p256_seed(&other_sk, &ek_x(&ek), &encrypted);
    assert_eq!(
        unwrap_with_seed(HashAlg::Sha256, &wrong_seed, 128, &ak_name(7), &id_object),
        None
    );
}

#[test]
fn p384_credential_uses_sha384_and_aes256() {
    let mut rng = StdRng::seed_from_u64(2);
    let (sk, ek) = p384_ek(&mut rng);
    let secret = [0x33; 32];
    let (id_object, encrypted) = make_credential(&ek, &ak_name(1), &secret, &mut rng).unwrap();
    assert_eq!(encrypted.len(), 2 + 48 + 2 + 48);
    assert_eq!(
        id_object.len(),
        2 + 48 + 2 + 32,
        "TPM2B(HMAC-SHA384) || encIdentity"
    );
    let seed = p384_seed(&sk, &ek_x(&ek), &encrypted);
    assert_eq!(seed.len(), 48);
    let opened = unwrap_with_seed(HashAlg::Sha384, &seed, 256, &ak_name(1), &id_object);
    assert_eq!(opened.as_deref(), Some(&secret[..]));
    // A secret may be as long as the EK's digest.
    make_credential(&ek, &ak_name(1), &[1; 48], &mut rng).unwrap();
}

#[test]
fn fresh_randomness_gives_fresh_credentials_and_the_same_randomness_the_same() {
    let (_, ek) = p256_ek(&mut StdRng::seed_from_u64(3));
    let make = |seed| {
        make_credential(&ek, &ak_name(7), &[1; 32], &mut StdRng::seed_from_u64(seed)).unwrap()
    };
    assert_eq!(make(10), make(10));
    assert_ne!(make(10), make(11));
}

#[test]
fn kdfa_matches_its_definition_for_multi_block_output() {
    // Two HMAC blocks (counter 1 and 2) for 384 bits under SHA-256.
    let out = kdfa(HashAlg::Sha256, b"key", b"LABEL\0", b"u", b"v", 384).unwrap();
    let block = |i: u32| {
        hmac(
            HashAlg::Sha256,
            b"key",
            &[
                &i.to_be_bytes(),
                b"LABEL\0",
                b"u",
                b"v",
                &384u32.to_be_bytes(),
            ],
        )
        .unwrap()
    };
    assert_eq!(out.as_slice(), [&block(1)[..], &block(2)[..16]].concat());
    assert_eq!(
        kdfa(HashAlg::Sha256, b"key", b"L\0", &[], &[], 128)
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn refusals_name_the_problem() {
    let mut rng = StdRng::seed_from_u64(4);
    let (_, ek) = p256_ek(&mut rng);
    let err = |r: Result<_, CredentialError>| r.unwrap_err().to_string();
    // Secret longer than the EK's digest, or empty.
    let e = err(make_credential(&ek, &ak_name(1), &[1; 33], &mut rng));
    assert!(e.contains("33 bytes") && e.contains("1 to 32"), "{e}");
    let e = err(make_credential(&ek, &ak_name(1), &[], &mut rng));
    assert!(e.contains("0 bytes"), "{e}");
    // An AK Name that is not nameAlg || digest.
    let e = err(make_credential(&ek, &[0, 0x0b, 1, 2], &[1; 32], &mut rng));
    assert!(e.contains("attestation key Name"), "{e}");
    // The AK itself (a signing key) is not an EK.
    let ak = include_bytes!("../../../protocol/tests/vectors/tpm/ak.tpmt");
    let e = err(make_credential(ak, &ak_name(1), &[1; 32], &mut rng));
    assert!(e.contains("restricted decryption key"), "{e}");
    // Truncated EK public area.
    let e = err(make_credential(
        &ek[..ek.len() - 3],
        &ak_name(1),
        &[1; 32],
        &mut rng,
    ));
    assert!(e.contains("endorsement key public area"), "{e}");
    // A point not on the curve.
    let mut bad = ek.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = err(make_credential(&bad, &ak_name(1), &[1; 32], &mut rng));
    assert!(e.contains("not a valid point"), "{e}");
    // A symmetric mode other than CFB.
    let mut ofb = ek.clone();
    let pos = 4 + 4 + 2 + 32 + 4; // type, nameAlg, attributes, authPolicy, AES + keyBits
    assert_eq!(&ofb[pos..pos + 2], &[0x00, 0x43]);
    ofb[pos + 1] = 0x42;
    let e = err(make_credential(&ofb, &ak_name(1), &[1; 32], &mut rng));
    assert!(e.contains("CFB"), "{e}");
}

#[test]
fn a_real_swtpm_p256_ek_is_accepted() {
    // The EK vector the protocol's tests use came from swtpm's default P-256 EK.
    let ek = include_bytes!("../../../protocol/tests/vectors/tpm/ek.pub");
    let (id_object, encrypted) = make_credential(
        &ek[2..],
        &ak_name(1),
        &[1; 32],
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    assert_eq!((id_object.len(), encrypted.len()), (68, 68));
}
