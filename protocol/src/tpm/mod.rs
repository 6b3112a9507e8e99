//! Pure-Rust parsing of the TPM 2.0 structures a verifier receives (TPMS_ATTEST, TPMT_PUBLIC,
//! TPMT_SIGNATURE, TPML_PCR_SELECTION) and verification of TPM2_Quote output against an
//! attestation key, a nonce and a set of PCR values. Nothing here links libtss2: the wire format
//! is TPM 2.0 Library Part 2 (Structures), big-endian, read through a bounds-checked cursor.
//!
//! Every parser takes untrusted bytes: lengths are bounded by the specification's `buffer[]` sizes
//! before anything is allocated, a structure that is meant to be the whole input rejects trailing
//! bytes, and every failure is a [`TpmError`] or [`QuoteError`] variant naming the check that
//! failed.

#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod attest;
mod pcr;
mod public;
mod quote;
mod reader;
mod signature;

pub use attest::{Attest, Attested, ClockInfo, QuoteInfo};
pub use pcr::{PCR_COUNT, PcrBank, PcrRef, PcrSelection, PcrValues, pcr_composite_digest};
pub use public::{
    AkAttributeError, EccCurve, EccParameters, KeyScheme, Name, ObjectAttributes, PublicParameters,
    RsaParameters, SymmetricDef, TpmPublic,
};
pub use quote::{ClockError, QuoteError, VerifiedQuote, clock_consistent, verify_quote};
pub use signature::Signature;

use crate::digest::HashAlg;

/// `TPM_GENERATED_VALUE`: the magic every TPMS_ATTEST the TPM itself produced starts with.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

/// `TPM_ST` structure tags for the attestation types (Part 2, table "TPM_ST").
pub mod st {
    pub const ATTEST_NV: u16 = 0x8014;
    pub const ATTEST_COMMAND_AUDIT: u16 = 0x8015;
    pub const ATTEST_SESSION_AUDIT: u16 = 0x8016;
    pub const ATTEST_CERTIFY: u16 = 0x8017;
    pub const ATTEST_QUOTE: u16 = 0x8018;
    pub const ATTEST_TIME: u16 = 0x8019;
    pub const ATTEST_CREATION: u16 = 0x801A;
    pub const ATTEST_NV_DIGEST: u16 = 0x801C;
}

/// `TPM_ALG_ID` values used by the structures parsed here (TCG Algorithm Registry). Hash
/// algorithm ids live in [`HashAlg`].
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const HMAC: u16 = 0x0005;
    pub const AES: u16 = 0x0006;
    pub const MGF1: u16 = 0x0007;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const ECDAA: u16 = 0x001A;
    pub const SM2: u16 = 0x001B;
    pub const ECSCHNORR: u16 = 0x001C;
    pub const ECMQV: u16 = 0x001D;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF2: u16 = 0x0021;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const SYMCIPHER: u16 = 0x0025;
}

/// Handle of the endorsement hierarchy (`TPM_RH_ENDORSEMENT`), the parent of an EK, used when
/// computing qualified names with [`TpmPublic::qualified_name`].
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;

/// Size bounds from Part 2 for the TPM2B types parsed here, for a TPM supporting hashes up to
/// SHA-512, ECC up to P-521 and RSA up to 4096 bits.
pub mod limits {
    /// `sizeof(TPMU_HA)`: the largest digest (SHA-512). Bounds TPM2B_DIGEST.
    pub const MAX_DIGEST: usize = 64;
    /// `sizeof(TPMT_HA)`: algorithm id + largest digest. Bounds TPM2B_DATA and TPM2B_NAME.
    pub const MAX_HA: usize = 2 + MAX_DIGEST;
    /// `MAX_ECC_KEY_BYTES` for P-521. Bounds TPM2B_ECC_PARAMETER.
    pub const MAX_ECC_KEY_BYTES: usize = 66;
    /// `MAX_RSA_KEY_BYTES` for RSA-4096. Bounds TPM2B_PUBLIC_KEY_RSA.
    pub const MAX_RSA_KEY_BYTES: usize = 512;
    /// Largest TPMT_PUBLIC accepted inside a TPM2B_PUBLIC (Part 2 bounds it by
    /// `sizeof(TPMT_PUBLIC)`; every field above is bounded, so this is generous).
    pub const MAX_PUBLIC: usize = 1024;
    /// PCR banks accepted in one TPML_PCR_SELECTION (`HASH_COUNT` is implementation specific; no
    /// TPM has more than a handful of banks).
    pub const MAX_PCR_BANKS: usize = 16;
    /// Largest `sizeofSelect` accepted: enough for 32 PCRs, of which only 0..=23 may be set.
    pub const MAX_PCR_SELECT: usize = 4;
}

/// `src` as a big-endian integer left-padded with zeros to `N` bytes, or `None` if it is longer
/// than `N` bytes. The TPM drops leading zero bytes of ECC coordinates and ECDSA scalars.
pub(crate) fn left_pad<const N: usize>(src: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let pad = N.checked_sub(src.len())?;
    out.get_mut(pad..)?.copy_from_slice(src);
    Some(out)
}

/// Why a TPM structure could not be decoded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    #[error("{structure}.{field} is truncated at byte offset {offset}")]
    Truncated {
        structure: &'static str,
        field: &'static str,
        offset: usize,
    },
    #[error("{extra} unexpected trailing byte(s) after {structure}")]
    TrailingBytes {
        structure: &'static str,
        extra: usize,
    },
    #[error(
        "{structure}.{field} claims {size} bytes, more than the {max} the specification allows"
    )]
    TooLarge {
        structure: &'static str,
        field: &'static str,
        size: usize,
        max: usize,
    },
    #[error(
        "attestation magic is {found:#010x}, not TPM_GENERATED_VALUE (0xff544347): \
         the TPM did not produce this structure"
    )]
    BadMagic { found: u32 },
    #[error("attestation type {st:#06x} is not a TPM_ST_ATTEST_* value")]
    UnknownAttestType { st: u16 },
    #[error("TPMS_CLOCK_INFO.safe is {value}, but must be 0 (NO) or 1 (YES)")]
    InvalidSafe { value: u8 },
    #[error("{structure}.{field} names hash algorithm {alg:#06x}, which vouch does not support")]
    UnsupportedHashAlg {
        structure: &'static str,
        field: &'static str,
        alg: u16,
    },
    #[error("key type {alg:#06x} is not supported (only ECC 0x0023 and RSA 0x0001 are)")]
    UnsupportedKeyType { alg: u16 },
    #[error("symmetric algorithm {alg:#06x} is not supported (only NULL and AES are)")]
    UnsupportedSymmetric { alg: u16 },
    #[error("{structure} names scheme {alg:#06x}, which is not valid or not supported there")]
    UnsupportedScheme { structure: &'static str, alg: u16 },
    #[error("signature algorithm {alg:#06x} is not supported (ECDSA, RSASSA and RSAPSS are)")]
    UnsupportedSignatureAlg { alg: u16 },
    #[error("TPML_PCR_SELECTION has {count} banks; at most {max} are accepted")]
    TooManyPcrBanks { count: u32, max: usize },
    #[error("PCR bank {alg} appears more than once in one PCR selection")]
    DuplicatePcrBank { alg: HashAlg },
    #[error("PCR index {index} is out of range (PCRs are 0..=23)")]
    PcrIndexOutOfRange { index: u32 },
    #[error("PCR {bank}:{index} value is {found} bytes, but a {bank} PCR is {expected}")]
    PcrValueLength {
        bank: HashAlg,
        index: u8,
        expected: usize,
        found: usize,
    },
    #[error("PCR {bank}:{index} was given more than one value")]
    DuplicatePcrValue { bank: HashAlg, index: u8 },
    #[error("the key is not an ECC key")]
    NotEccKey,
    #[error("ECC curve {curve:#06x} is not supported here (only NIST P-256, 0x0003)")]
    UnsupportedCurve { curve: u16 },
    #[error("ECC public {coordinate} coordinate is {len} bytes, longer than the curve's {max}")]
    EccCoordinateTooLong {
        coordinate: &'static str,
        len: usize,
        max: usize,
    },
    #[error("ECC public key is not a valid point on the curve")]
    InvalidPublicPoint,
    #[error("ECDSA signature {scalar} is {len} bytes, longer than the curve's {max}")]
    EcdsaScalarTooLong {
        scalar: &'static str,
        len: usize,
        max: usize,
    },
    #[error("ECDSA signature r or s is zero or not less than the curve order")]
    EcdsaScalarOutOfRange,
}
