//! TPMT_PUBLIC and TPM2B_PUBLIC: the public area of a TPM key, as tpm2-tools writes it with
//! `-f tpmt` and `-f tss` respectively. From it come the key's Name (which the TPM uses to refer to
//! the key), its attributes (which say whether it is a genuine attestation key) and, for ECC
//! P-256, a `p256` verifying key.

use std::fmt;

use p256::ecdsa::VerifyingKey;

use super::limits::{MAX_DIGEST, MAX_ECC_KEY_BYTES, MAX_PUBLIC, MAX_RSA_KEY_BYTES};
use super::reader::Reader;
use super::{TpmError, alg, left_pad};
use crate::digest::HashAlg;

/// A TPM Name or qualified Name: `nameAlg (u16, big-endian) || digest`, or for a handle-named
/// entity the 4-byte handle. Kept as the raw bytes the TPM uses.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name(Vec<u8>);

impl Name {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name algorithm, if this is a digest Name of a hash vouch knows.
    pub fn alg(&self) -> Option<HashAlg> {
        let (id, digest) = self.0.split_first_chunk::<2>()?;
        HashAlg::from_tcg_id(u16::from_be_bytes(*id)).filter(|a| a.digest_len() == digest.len())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// TPMA_OBJECT: the object attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    /// The key cannot be duplicated out of this TPM.
    pub fn fixed_tpm(self) -> bool {
        self.has(Self::FIXED_TPM)
    }
    /// The key cannot be moved to another parent.
    pub fn fixed_parent(self) -> bool {
        self.has(Self::FIXED_PARENT)
    }
    /// The TPM generated the key's sensitive part itself.
    pub fn sensitive_data_origin(self) -> bool {
        self.has(Self::SENSITIVE_DATA_ORIGIN)
    }
    pub fn user_with_auth(self) -> bool {
        self.has(Self::USER_WITH_AUTH)
    }
    /// A restricted signing key refuses to sign external data that starts with
    /// TPM_GENERATED_VALUE, so it cannot be made to sign a forged TPMS_ATTEST.
    pub fn restricted(self) -> bool {
        self.has(Self::RESTRICTED)
    }
    pub fn decrypt(self) -> bool {
        self.has(Self::DECRYPT)
    }
    pub fn sign(self) -> bool {
        self.has(Self::SIGN)
    }
    /// The object is exempt from dictionary-attack protection: its authorizations neither
    /// count failures nor are refused while the TPM is in lockout. vouch creates its AK with
    /// it so that lockout (e.g. after unclean power cuts) cannot stop quotes; an AK without
    /// it still verifies, but its quotes stop for as long as the TPM is locked out.
    pub fn no_da(self) -> bool {
        self.has(Self::NO_DA)
    }
}

/// Why a key is not acceptable as an attestation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkAttributeError {
    #[error("attestation key is not restricted, so it could sign a forged attestation")]
    NotRestricted,
    #[error("attestation key does not have the sign attribute")]
    NotSigning,
    #[error("attestation key can decrypt; an attestation key must be signing-only")]
    Decrypts,
    #[error("attestation key is not fixedTPM: it may have been duplicated out of the TPM")]
    NotFixedTpm,
    #[error("attestation key is not fixedParent: it may have been moved to another parent")]
    NotFixedParent,
    #[error("attestation key is not sensitiveDataOrigin: the TPM did not generate it")]
    NotSensitiveDataOrigin,
    #[error("attestation key's name algorithm is not SHA-256")]
    NameAlgNotSha256,
    #[error("attestation key is not an ECC NIST P-256 key")]
    NotP256,
    #[error("attestation key's scheme is not ECDSA with SHA-256")]
    NotEcdsaSha256,
}

/// TPMT_SYM_DEF_OBJECT when not TPM_ALG_NULL (only AES is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricDef {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A key's scheme (TPMT_ECC_SCHEME, TPMT_RSA_SCHEME) or KDF (TPMT_KDF_SCHEME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScheme {
    /// TPM_ALG_NULL: the key fixes no scheme.
    Null,
    /// A scheme whose details are a hash algorithm (ECDSA, RSASSA, MGF1, ...).
    Hashed { alg: u16, hash: u16 },
    /// ECDAA: a hash and a commit count.
    Ecdaa { hash: u16, count: u16 },
    /// RSAES: no details.
    Rsaes,
}

impl KeyScheme {
    /// The scheme's TPM_ALG_ID.
    pub fn alg(self) -> u16 {
        match self {
            Self::Null => alg::NULL,
            Self::Hashed { alg, .. } => alg,
            Self::Ecdaa { .. } => alg::ECDAA,
            Self::Rsaes => alg::RSAES,
        }
    }

    /// The scheme's hash algorithm id, if it has one.
    pub fn hash(self) -> Option<u16> {
        match self {
            Self::Hashed { hash, .. } | Self::Ecdaa { hash, .. } => Some(hash),
            Self::Null | Self::Rsaes => None,
        }
    }

    /// Reads a TPMT_*_SCHEME of the given kind. Which algorithms are valid, and what details
    /// follow each, depends on the kind (Part 2, TPMU_ASYM_SCHEME and TPMU_KDF_SCHEME).
    fn read(r: &mut Reader<'_>, kind: SchemeKind) -> Result<Self, TpmError> {
        use SchemeKind::{Ecc, Kdf, Rsa};
        let structure = match kind {
            Ecc => "TPMT_ECC_SCHEME",
            Rsa => "TPMT_RSA_SCHEME",
            Kdf => "TPMT_KDF_SCHEME",
        };
        r.nested(structure, |r| {
            let scheme = r.u16("scheme")?;
            match (kind, scheme) {
                (_, alg::NULL) => Ok(Self::Null),
                (Ecc, alg::ECDSA | alg::ECDH | alg::SM2 | alg::ECSCHNORR | alg::ECMQV)
                | (Rsa, alg::RSASSA | alg::RSAPSS | alg::OAEP)
                | (Kdf, alg::MGF1 | alg::KDF1_SP800_56A | alg::KDF2 | alg::KDF1_SP800_108) => {
                    Ok(Self::Hashed {
                        alg: scheme,
                        hash: r.u16("details.hashAlg")?,
                    })
                }
                (Ecc, alg::ECDAA) => Ok(Self::Ecdaa {
                    hash: r.u16("details.hashAlg")?,
                    count: r.u16("details.count")?,
                }),
                (Rsa, alg::RSAES) => Ok(Self::Rsaes),
                _ => Err(TpmError::UnsupportedScheme {
                    structure,
                    alg: scheme,
                }),
            }
        })
    }
}

/// Which scheme structure is being read.
#[derive(Debug, Clone, Copy)]
enum SchemeKind {
    Ecc,
    Rsa,
    Kdf,
}

/// TPMI_ECC_CURVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EccCurve {
    NistP256,
    NistP384,
    /// Any other TPM_ECC_CURVE id (P-521, BN, SM2, ...): parsed, not used.
    Other(u16),
}

impl EccCurve {
    fn from_id(id: u16) -> Self {
        match id {
            0x0003 => Self::NistP256,
            0x0004 => Self::NistP384,
            other => Self::Other(other),
        }
    }

    pub fn id(self) -> u16 {
        match self {
            Self::NistP256 => 0x0003,
            Self::NistP384 => 0x0004,
            Self::Other(id) => id,
        }
    }
}

/// TPMS_ECC_PARMS plus the TPMS_ECC_POINT from `unique`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccParameters {
    pub symmetric: Option<SymmetricDef>,
    pub scheme: KeyScheme,
    pub curve: EccCurve,
    pub kdf: KeyScheme,
    /// `unique.ecc.x`, as the TPM sent it (possibly shorter than the field size).
    pub x: Vec<u8>,
    /// `unique.ecc.y`, likewise.
    pub y: Vec<u8>,
}

/// TPMS_RSA_PARMS plus the modulus from `unique`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaParameters {
    pub symmetric: Option<SymmetricDef>,
    pub scheme: KeyScheme,
    pub key_bits: u16,
    /// The raw exponent field: 0 means the default, 65537 (see [`RsaParameters::exponent`]).
    pub exponent_field: u32,
    pub modulus: Vec<u8>,
}

impl RsaParameters {
    /// The public exponent, with 0 mapped to the TPM default 65537.
    pub fn exponent(&self) -> u32 {
        if self.exponent_field == 0 {
            65537
        } else {
            self.exponent_field
        }
    }
}

/// The type-specific parameters and unique field of a public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParameters {
    Ecc(EccParameters),
    Rsa(RsaParameters),
}

/// A decoded TPMT_PUBLIC, with the exact bytes it came from (which its Name is computed over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    raw: Vec<u8>,
    name_alg: HashAlg,
    attributes: ObjectAttributes,
    auth_policy: Vec<u8>,
    parameters: PublicParameters,
}

impl TpmPublic {
    /// Decodes a TPMT_PUBLIC that is the whole of `bytes` (tpm2-tools `-f tpmt`).
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        Self::read(Reader::new(bytes, "TPMT_PUBLIC"), bytes)
    }

    /// Decodes a TPM2B_PUBLIC (a u16 size, then a TPMT_PUBLIC of exactly that size) that is the
    /// whole of `bytes` (tpm2-tools `-f tss`, the default).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPM2B_PUBLIC");
        let size = usize::from(r.u16("size")?);
        if size > MAX_PUBLIC {
            return Err(TpmError::TooLarge {
                structure: "TPM2B_PUBLIC",
                field: "size",
                size,
                max: MAX_PUBLIC,
            });
        }
        let (inner, tpmt) = r.window(size, "publicArea", "TPMT_PUBLIC")?;
        let public = Self::read(inner, tpmt)?;
        r.finish()?;
        Ok(public)
    }

    /// Decodes the TPMT_PUBLIC `raw` through `r`, which must end exactly where `raw` does.
    fn read(mut r: Reader<'_>, raw: &[u8]) -> Result<Self, TpmError> {
        let key_type = r.u16("type")?;
        let name_alg_id = r.u16("nameAlg")?;
        let name_alg = HashAlg::from_tcg_id(name_alg_id).ok_or(TpmError::UnsupportedHashAlg {
            structure: "TPMT_PUBLIC",
            field: "nameAlg",
            alg: name_alg_id,
        })?;
        let attributes = ObjectAttributes(r.u32("objectAttributes")?);
        let auth_policy = r.tpm2b("authPolicy", MAX_DIGEST)?.to_vec();
        let parameters = match key_type {
            alg::ECC => PublicParameters::Ecc(read_ecc(&mut r)?),
            alg::RSA => PublicParameters::Rsa(read_rsa(&mut r)?),
            other => return Err(TpmError::UnsupportedKeyType { alg: other }),
        };
        r.finish()?;
        Ok(Self {
            raw: raw.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            parameters,
        })
    }

    /// The TPMT_PUBLIC bytes.
    pub fn as_tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The TPM2B_PUBLIC encoding of this public area.
    pub fn to_tpm2b_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.raw.len());
        // `parse` and `from_tpm2b` both bound the TPMT_PUBLIC to at most u16::MAX bytes: the
        // former because every field is bounded, the latter by its size field.
        out.extend_from_slice(&(self.raw.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.raw);
        out
    }

    pub fn name_alg(&self) -> HashAlg {
        self.name_alg
    }

    pub fn attributes(&self) -> ObjectAttributes {
        self.attributes
    }

    pub fn auth_policy(&self) -> &[u8] {
        &self.auth_policy
    }

    pub fn parameters(&self) -> &PublicParameters {
        &self.parameters
    }

    /// The key's scheme (NULL if the key fixes none).
    pub fn scheme(&self) -> KeyScheme {
        match &self.parameters {
            PublicParameters::Ecc(p) => p.scheme,
            PublicParameters::Rsa(p) => p.scheme,
        }
    }

    /// The key's TPM Name: `nameAlg || H_nameAlg(TPMT_PUBLIC)`.
    pub fn name(&self) -> Name {
        let mut name = self.name_alg.tcg_id().to_be_bytes().to_vec();
        name.extend_from_slice(&self.name_alg.hash(&[&self.raw]));
        Name(name)
    }

    /// This key's qualified Name, given its parent's: `nameAlg || H_nameAlg(parent QN || Name)`.
    /// A hierarchy's qualified Name is its 4-byte handle, so an EK's qualified Name is
    /// `ek.qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes())`, and an AK created under that EK
    /// has `ak.qualified_name(ek_qn.as_bytes())` — the `qualifiedSigner` of its quotes.
    pub fn qualified_name(&self, parent_qualified_name: &[u8]) -> Name {
        let mut qn = self.name_alg.tcg_id().to_be_bytes().to_vec();
        qn.extend_from_slice(
            &self
                .name_alg
                .hash(&[parent_qualified_name, self.name().as_bytes()]),
        );
        Name(qn)
    }

    /// Checks the attributes an attestation key must have: restricted, sign, fixedTPM,
    /// fixedParent and sensitiveDataOrigin set, decrypt clear.
    pub fn check_attestation_key(&self) -> Result<(), AkAttributeError> {
        let a = self.attributes;
        let checks = [
            (a.restricted(), AkAttributeError::NotRestricted),
            (a.sign(), AkAttributeError::NotSigning),
            (!a.decrypt(), AkAttributeError::Decrypts),
            (a.fixed_tpm(), AkAttributeError::NotFixedTpm),
            (a.fixed_parent(), AkAttributeError::NotFixedParent),
            (
                a.sensitive_data_origin(),
                AkAttributeError::NotSensitiveDataOrigin,
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, err)) => Err(err),
            None => Ok(()),
        }
    }

    /// Checks everything vouch requires of an attestation key: the attestation-key attributes,
    /// and the one shape vouch verifies (ECC NIST P-256, ECDSA with SHA-256, SHA-256 Name). The
    /// agent checks its own AK with it before use, and the verifier at enrollment.
    pub fn check_vouch_attestation_key(&self) -> Result<(), AkAttributeError> {
        self.check_attestation_key()?;
        if self.name_alg != HashAlg::Sha256 {
            return Err(AkAttributeError::NameAlgNotSha256);
        }
        match &self.parameters {
            PublicParameters::Ecc(ecc) if ecc.curve == EccCurve::NistP256 => {}
            _ => return Err(AkAttributeError::NotP256),
        }
        let ecdsa_sha256 = KeyScheme::Hashed {
            alg: alg::ECDSA,
            hash: HashAlg::Sha256.tcg_id(),
        };
        if self.scheme() != ecdsa_sha256 {
            return Err(AkAttributeError::NotEcdsaSha256);
        }
        Ok(())
    }

    /// The `p256` verifying key of an ECC NIST P-256 public area. The TPM may send x and y
    /// shorter than 32 bytes (leading zeros dropped); they are left-padded here.
    pub fn p256_verifying_key(&self) -> Result<VerifyingKey, TpmError> {
        let PublicParameters::Ecc(ecc) = &self.parameters else {
            return Err(TpmError::NotEccKey);
        };
        if ecc.curve != EccCurve::NistP256 {
            return Err(TpmError::UnsupportedCurve {
                curve: ecc.curve.id(),
            });
        }
        let coordinate = |bytes: &[u8], coordinate| {
            left_pad::<32>(bytes).ok_or(TpmError::EccCoordinateTooLong {
                coordinate,
                len: bytes.len(),
                max: 32,
            })
        };
        let x = coordinate(&ecc.x, "x")?;
        let y = coordinate(&ecc.y, "y")?;
        // SEC1 uncompressed point: 0x04 || x || y.
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| TpmError::InvalidPublicPoint)
    }
}

/// TPMT_SYM_DEF_OBJECT: NULL, or AES with key size and mode.
fn read_symmetric(r: &mut Reader<'_>) -> Result<Option<SymmetricDef>, TpmError> {
    r.nested("TPMT_SYM_DEF_OBJECT", |r| match r.u16("algorithm")? {
        alg::NULL => Ok(None),
        alg::AES => Ok(Some(SymmetricDef {
            alg: alg::AES,
            key_bits: r.u16("keyBits")?,
            mode: r.u16("mode")?,
        })),
        other => Err(TpmError::UnsupportedSymmetric { alg: other }),
    })
}

/// TPMS_ECC_PARMS then TPMS_ECC_POINT.
fn read_ecc(r: &mut Reader<'_>) -> Result<EccParameters, TpmError> {
    let symmetric = read_symmetric(r)?;
    let scheme = KeyScheme::read(r, SchemeKind::Ecc)?;
    let curve = EccCurve::from_id(r.nested("TPMS_ECC_PARMS", |r| r.u16("curveID"))?);
    let kdf = KeyScheme::read(r, SchemeKind::Kdf)?;
    let (x, y) = r.nested("TPMS_ECC_POINT", |r| {
        Ok((
            r.tpm2b("x", MAX_ECC_KEY_BYTES)?.to_vec(),
            r.tpm2b("y", MAX_ECC_KEY_BYTES)?.to_vec(),
        ))
    })?;
    Ok(EccParameters {
        symmetric,
        scheme,
        curve,
        kdf,
        x,
        y,
    })
}

/// TPMS_RSA_PARMS then TPM2B_PUBLIC_KEY_RSA.
fn read_rsa(r: &mut Reader<'_>) -> Result<RsaParameters, TpmError> {
    let symmetric = read_symmetric(r)?;
    let scheme = KeyScheme::read(r, SchemeKind::Rsa)?;
    let (key_bits, exponent_field) = r.nested("TPMS_RSA_PARMS", |r| {
        Ok((r.u16("keyBits")?, r.u32("exponent")?))
    })?;
    let modulus = r
        .nested("TPM2B_PUBLIC_KEY_RSA", |r| {
            r.tpm2b("buffer", MAX_RSA_KEY_BYTES)
        })?
        .to_vec();
    Ok(RsaParameters {
        symmetric,
        scheme,
        key_bits,
        exponent_field,
        modulus,
    })
}

#[cfg(test)]
mod tests;
