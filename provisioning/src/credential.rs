//! TPM2_MakeCredential in pure Rust, so the provisioning station needs no TPM: it wraps a random
//! secret so that only the TPM holding a given endorsement key (EK) can unwrap it, and only
//! for the attestation key (AK) whose Name the credential names (TPM 2.0 Library Part 1,
//! "Credential Protection", and Part 1 Annex B/C for the RSA and ECC secret sharing).
//!
//! - Seed: hash-length random bytes (the EK's name algorithm). RSA EK: the seed is encrypted
//!   with RSA-OAEP (that hash, label `"IDENTITY\0"`). ECC EK: an ephemeral key agreement on the
//!   EK's curve; the seed is KDFe over the shared x coordinate, `"IDENTITY\0"`, the ephemeral
//!   x and the EK's x, and the encrypted secret is the ephemeral point.
//! - AES key = KDFa(seed, `"STORAGE\0"`, AK Name) of the EK's symmetric key size; encIdentity =
//!   AES-CFB (zero IV) over `u16 len || secret`. HMAC key = KDFa(seed, `"INTEGRITY\0"`);
//!   integrity = HMAC(encIdentity || AK Name). The ID object is `TPM2B(integrity) ||
//!   encIdentity`.
//!
//! The primitives come from RustCrypto crates (rsa, p256/p384, aes, cfb-mode, hmac, sha2); only
//! the two TPM key-derivation functions (KDFa, KDFe) are written here: they are a few lines of
//! HMAC/hash framing that no maintained crate provides in the TPM's exact form.
//!
//! [`challenge_for_request`] is the station's whole step: validate the enrollment request,
//! draw the secret, make the credential, and return the challenge file and the [`Pending`]
//! record `issue` later checks the response against.

use hmac::{KeyInit, Mac};
use rand::CryptoRng;
use sha2::{Sha256, Sha384};
use thiserror::Error;
use zeroize::Zeroizing;

use vouch_protocol::bytes::Bytes;
use vouch_protocol::credential::{CredentialChallenge, VERSION, request_digest};
use vouch_protocol::digest::HashAlg;
use vouch_protocol::enrollment::{EnrollError, Enrollment};
use vouch_protocol::tpm::{EccCurve, Name, PublicParameters, TpmError, TpmPublic, alg};

use crate::pending::Pending;

/// TPM_ALG_CFB, the only symmetric mode an EK template uses.
const TPM_ALG_CFB: u16 = 0x0043;
const LABEL_IDENTITY: &[u8] = b"IDENTITY\0";
const LABEL_STORAGE: &[u8] = b"STORAGE\0";
const LABEL_INTEGRITY: &[u8] = b"INTEGRITY\0";

/// Why no credential could be made for this EK and AK.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("endorsement key public area: {0}")]
    EkPublic(#[from] TpmError),
    #[error(
        "the endorsement key is not a restricted decryption key, so it cannot receive a credential"
    )]
    EkNotStorageKey,
    #[error("the endorsement key's name algorithm {0} is not supported (SHA-256 and SHA-384 are)")]
    UnsupportedNameAlg(HashAlg),
    #[error(
        "the endorsement key's symmetric algorithm must be AES-128 or AES-256 in CFB mode \
         (found {found})"
    )]
    UnsupportedSymmetric { found: String },
    #[error("the endorsement key's ECC curve {curve:#06x} is not supported (P-256 and P-384 are)")]
    UnsupportedCurve { curve: u16 },
    #[error("the endorsement key's ECC point is not a valid point on its curve")]
    EkPoint,
    #[error("the endorsement key's RSA public key is not usable: {0}")]
    EkRsa(String),
    #[error("the attestation key Name is not nameAlg || digest of a known hash")]
    AkName,
    #[error("the secret is {len} bytes; it must be 1 to {max} (the EK's digest size)")]
    SecretLength { len: usize, max: usize },
    #[error("RSA-OAEP encryption of the seed failed: {0}")]
    Oaep(String),
    #[error("the enrollment request is not valid: {0}")]
    Request(#[from] EnrollError),
}

/// TPM2_MakeCredential: the TPM2B_ID_OBJECT contents and the TPM2B_ENCRYPTED_SECRET contents
/// that let the TPM holding the EK (TPMT_PUBLIC bytes `ek_public`) recover `secret` with
/// TPM2_ActivateCredential, for the loaded object whose Name is `ak_name` only. RSA-2048 and
/// ECC P-256/P-384 EKs (the TCG default templates) are supported; `rng` supplies the seed and,
/// for ECC, the ephemeral key.
pub fn make_credential<R: CryptoRng + ?Sized>(
    ek_public: &[u8],
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let ek = TpmPublic::parse(ek_public)?;
    let attrs = ek.attributes();
    if !(attrs.restricted() && attrs.decrypt()) {
        return Err(CredentialError::EkNotStorageKey);
    }
    let hash = ek.name_alg();
    if !matches!(hash, HashAlg::Sha256 | HashAlg::Sha384) {
        return Err(CredentialError::UnsupportedNameAlg(hash));
    }
    if secret.is_empty() || secret.len() > hash.digest_len() {
        return Err(CredentialError::SecretLength {
            len: secret.len(),
            max: hash.digest_len(),
        });
    }
    if Name::from_bytes(ak_name).alg().is_none() {
        return Err(CredentialError::AkName);
    }
    let (symmetric, seed, encrypted_secret) = match ek.parameters() {
        PublicParameters::Rsa(rsa_params) => {
            let mut seed = Zeroizing::new(vec![0u8; hash.digest_len()]);
            rng.fill_bytes(&mut seed);
            let key = rsa_key(&rsa_params.modulus, rsa_params.exponent())?;
            let encrypted = oaep_encrypt(&key, hash, &seed, rng)?;
            (rsa_params.symmetric, seed, encrypted)
        }
        PublicParameters::Ecc(ecc) => {
            let (seed, point) = ecc_seed(ecc.curve, &ecc.x, &ecc.y, hash, rng)?;
            (ecc.symmetric, seed, point)
        }
    };
    let aes_bits = match symmetric {
        Some(s)
            if s.alg == alg::AES && s.mode == TPM_ALG_CFB && matches!(s.key_bits, 128 | 256) =>
        {
            s.key_bits
        }
        other => {
            return Err(CredentialError::UnsupportedSymmetric {
                found: format!("{other:?}"),
            });
        }
    };
    let id_object = wrap(hash, &seed, aes_bits, ak_name, secret)?;
    Ok((id_object, encrypted_secret))
}

/// The credential blob for a given seed: `TPM2B(HMAC) || AES-CFB(u16 len || secret)`.
fn wrap(
    hash: HashAlg,
    seed: &[u8],
    aes_bits: u16,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let sym_key = kdfa(hash, seed, LABEL_STORAGE, ak_name, &[], u32::from(aes_bits))?;
    let mut enc_identity = Zeroizing::new(Vec::with_capacity(2 + secret.len()));
    // `secret` is at most a digest long (checked by the caller), so its length fits a u16.
    enc_identity.extend_from_slice(&(secret.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(secret);
    aes_cfb_encrypt(&sym_key, &mut enc_identity)?;
    let digest_bits = (hash.digest_len() * 8) as u32;
    let hmac_key = kdfa(hash, seed, LABEL_INTEGRITY, &[], &[], digest_bits)?;
    let integrity = hmac(hash, &hmac_key, &[&enc_identity, ak_name])?;
    let mut out = Vec::with_capacity(2 + integrity.len() + enc_identity.len());
    out.extend_from_slice(&(integrity.len() as u16).to_be_bytes());
    out.extend_from_slice(&integrity);
    out.extend_from_slice(&enc_identity);
    Ok(out)
}

fn rsa_key(modulus: &[u8], exponent: u32) -> Result<rsa::PublicKey, CredentialError> {
    let n = rsa::BoxedUint::from_be_slice_vartime(modulus);
    let e = rsa::BoxedUint::from(u64::from(exponent));
    rsa::PublicKey::new(n, e).map_err(|e| CredentialError::EkRsa(e.to_string()))
}

fn oaep_encrypt<R: CryptoRng + ?Sized>(
    key: &rsa::PublicKey,
    hash: HashAlg,
    seed: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CredentialError> {
    let result = match hash {
        HashAlg::Sha384 => key.encrypt(
            rng,
            rsa::Oaep::<Sha384>::new_with_label(LABEL_IDENTITY),
            seed,
        ),
        _ => key.encrypt(
            rng,
            rsa::Oaep::<Sha256>::new_with_label(LABEL_IDENTITY),
            seed,
        ),
    };
    result.map_err(|e| CredentialError::Oaep(e.to_string()))
}

/// ECC secret sharing (Part 1, C.6.4): an ephemeral key on the EK's curve; seed = KDFe(Z,
/// "IDENTITY", ephemeral.x, EK.x). Returns the seed and the TPMS_ECC_POINT of the ephemeral
/// public key (`u16 len || x || u16 len || y`).
fn ecc_seed<R: CryptoRng + ?Sized>(
    curve: EccCurve,
    ek_x: &[u8],
    ek_y: &[u8],
    hash: HashAlg,
    rng: &mut R,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CredentialError> {
    macro_rules! agree {
        ($curve:ident, $len:expr) => {{
            use $curve::elliptic_curve::{Generate, sec1::ToSec1Point};
            let sec1 = sec1_point::<$len>(ek_x, ek_y)?;
            let ek_key =
                $curve::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CredentialError::EkPoint)?;
            let ephemeral = $curve::ecdh::EphemeralSecret::generate_from_rng(rng);
            let shared = ephemeral.diffie_hellman(&ek_key);
            let point = ephemeral.public_key().to_sec1_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                // An uncompressed encoding of a public key always has both coordinates.
                return Err(CredentialError::EkPoint);
            };
            let z = Zeroizing::new(shared.raw_secret_bytes().to_vec());
            let seed = kdfe(hash, &z, LABEL_IDENTITY, x, ek_x, hash.digest_len());
            (seed, tpms_ecc_point(x, y))
        }};
    }
    Ok(match curve {
        EccCurve::NistP256 => agree!(p256, 32),
        EccCurve::NistP384 => agree!(p384, 48),
        EccCurve::Other(id) => return Err(CredentialError::UnsupportedCurve { curve: id }),
    })
}

/// SEC1 uncompressed `04 || x || y`, the coordinates left-padded to the field size `N` (the
/// TPM may drop leading zero bytes).
fn sec1_point<const N: usize>(x: &[u8], y: &[u8]) -> Result<Vec<u8>, CredentialError> {
    if x.len() > N || y.len() > N {
        return Err(CredentialError::EkPoint);
    }
    let mut out = vec![0u8; 1 + 2 * N];
    out[0] = 0x04;
    out[1 + N - x.len()..1 + N].copy_from_slice(x);
    out[1 + 2 * N - y.len()..].copy_from_slice(y);
    Ok(out)
}

fn tpms_ecc_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + x.len() + y.len());
    for c in [x, y] {
        // A coordinate is at most 48 bytes here.
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// HMAC with `hash` over the concatenation of `parts`.
fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(p);
        }
        Zeroizing::new(mac.finalize().into_bytes().to_vec())
    }
    match hash {
        HashAlg::Sha256 => Ok(run::<hmac::Hmac<Sha256>>(key, parts)),
        HashAlg::Sha384 => Ok(run::<hmac::Hmac<Sha384>>(key, parts)),
        other => Err(CredentialError::UnsupportedNameAlg(other)),
    }
}

/// KDFa (Part 1, 11.4.10.2, SP 800-108 counter mode with HMAC): `bits` of
/// `HMAC(key, [i]32 || label || contextU || contextV || [bits]32)` for i = 1, 2, ...; `label`
/// carries its terminating NUL.
fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    let want = bits.div_ceil(8) as usize;
    let mut out = Zeroizing::new(Vec::with_capacity(want + hash.digest_len()));
    let mut counter: u32 = 1;
    while out.len() < want {
        let block = hmac(
            hash,
            key,
            &[
                &counter.to_be_bytes(),
                label,
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )?;
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(want);
    Ok(out)
}

/// KDFe (Part 1, 11.4.10.3, SP 800-56A concatenation KDF): `len` bytes of
/// `H([i]32 || Z || label || partyU || partyV)` for i = 1, 2, ...; `label` carries its NUL.
fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.digest_len()));
    let mut counter: u32 = 1;
    while out.len() < len {
        let block =
            Zeroizing::new(hash.hash(&[&counter.to_be_bytes(), z, label, party_u, party_v]));
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// AES-CFB with a zero IV, in place; the key length picks AES-128 or AES-256.
fn aes_cfb_encrypt(key: &[u8], buf: &mut [u8]) -> Result<(), CredentialError> {
    use cfb_mode::cipher::KeyIvInit;
    let iv = [0u8; 16];
    let bad_key = || CredentialError::UnsupportedSymmetric {
        found: format!("AES key of {} bytes", key.len()),
    };
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(|_| bad_key())?
            .encrypt(buf),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(|_| bad_key())?
            .encrypt(buf),
        _ => return Err(bad_key()),
    }
    Ok(())
}

/// How many bytes of secret a challenge carries: 32, what every supported EK can carry.
pub const SECRET_LEN: usize = 32;

/// The station's `challenge` step for the enrollment request file `request` (its exact
/// bytes): validates it (signature, AK attributes and Name, EK public area), draws a
/// [`SECRET_LEN`]-byte secret, makes the credential for the request's EK and AK Name, and
/// returns the challenge to hand the terminal and the [`Pending`] record to keep for `issue`.
/// The challenge is valid from `now` for `ttl_secs` seconds.
pub fn challenge_for_request<R: CryptoRng + ?Sized>(
    request: &[u8],
    now: u64,
    ttl_secs: u64,
    rng: &mut R,
) -> Result<(CredentialChallenge, Pending), CredentialError> {
    let enrollment = Enrollment::from_request(request, now)?;
    let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rng.fill_bytes(&mut secret);
    let (id_object, encrypted_secret) = make_credential(
        enrollment.ek_public.as_slice(),
        enrollment.ak_name.as_slice(),
        &secret,
        rng,
    )?;
    let digest = request_digest(request);
    let expires_at = now.saturating_add(ttl_secs);
    let challenge = CredentialChallenge {
        v: VERSION,
        device: enrollment.id.clone(),
        request_digest: digest,
        ak_name: enrollment.ak_name.clone(),
        id_object: Bytes(id_object),
        encrypted_secret: Bytes(encrypted_secret),
        issued_at: now,
        expires_at,
    };
    let pending = Pending {
        device: enrollment.id,
        request_digest: digest,
        secret: Bytes(secret.to_vec()),
        issued_at: now,
        expires_at,
    };
    Ok((challenge, pending))
}

#[cfg(test)]
mod tests;
