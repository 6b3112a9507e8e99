//! TPMT_SIGNATURE: the signature tpm2_quote writes with `-s FILE` in its default `-f tss` format
//! (`-f plain` writes the bare algorithm signature instead, for ECDSA a DER ECDSA-Sig-Value, which
//! this module does not accept). ECDSA signatures convert to `p256` signatures; RSASSA and RSAPSS
//! are decoded so they can be reported precisely, but are not verified by this version.

use p256::ecdsa::Signature as P256Signature;

use super::limits::{MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES};
use super::reader::Reader;
use super::{TpmError, alg, left_pad};

/// A decoded TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// TPM_ALG_ECDSA: TPMS_SIGNATURE_ECDSA. `r` and `s` are as the TPM sent them, which may be
    /// shorter than the curve's field size (leading zero bytes dropped).
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
    /// TPM_ALG_RSASSA: TPMS_SIGNATURE_RSASSA (PKCS#1 v1.5).
    RsaSsa { hash: u16, sig: Vec<u8> },
    /// TPM_ALG_RSAPSS: TPMS_SIGNATURE_RSAPSS.
    RsaPss { hash: u16, sig: Vec<u8> },
}

impl Signature {
    /// Decodes a TPMT_SIGNATURE that is the whole of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let sig_alg = r.u16("sigAlg")?;
        let sig = match sig_alg {
            alg::ECDSA => r.nested("TPMS_SIGNATURE_ECDSA", |r| {
                Ok(Self::Ecdsa {
                    hash: r.u16("hash")?,
                    r: r.tpm2b("signatureR", MAX_ECC_KEY_BYTES)?.to_vec(),
                    s: r.tpm2b("signatureS", MAX_ECC_KEY_BYTES)?.to_vec(),
                })
            })?,
            alg::RSASSA => r.nested("TPMS_SIGNATURE_RSASSA", |r| {
                Ok(Self::RsaSsa {
                    hash: r.u16("hash")?,
                    sig: r.tpm2b("sig", MAX_RSA_KEY_BYTES)?.to_vec(),
                })
            })?,
            alg::RSAPSS => r.nested("TPMS_SIGNATURE_RSAPSS", |r| {
                Ok(Self::RsaPss {
                    hash: r.u16("hash")?,
                    sig: r.tpm2b("sig", MAX_RSA_KEY_BYTES)?.to_vec(),
                })
            })?,
            other => return Err(TpmError::UnsupportedSignatureAlg { alg: other }),
        };
        r.finish()?;
        Ok(sig)
    }

    /// The signature algorithm's TPM_ALG_ID.
    pub fn alg(&self) -> u16 {
        match self {
            Self::Ecdsa { .. } => alg::ECDSA,
            Self::RsaSsa { .. } => alg::RSASSA,
            Self::RsaPss { .. } => alg::RSAPSS,
        }
    }

    /// The TPM_ALG_ID of the hash the signed digest was computed with.
    pub fn hash(&self) -> u16 {
        match self {
            Self::Ecdsa { hash, .. } | Self::RsaSsa { hash, .. } | Self::RsaPss { hash, .. } => {
                *hash
            }
        }
    }

    /// The `p256` signature of an ECDSA TPMT_SIGNATURE, with `r` and `s` left-padded to 32 bytes.
    /// Returns `Ok(None)` for a non-ECDSA signature.
    pub fn to_p256(&self) -> Result<Option<P256Signature>, TpmError> {
        let Self::Ecdsa { r, s, .. } = self else {
            return Ok(None);
        };
        let r = pad_scalar(r, "r")?;
        let s = pad_scalar(s, "s")?;
        P256Signature::from_scalars(r, s)
            .map(Some)
            .map_err(|_| TpmError::EcdsaScalarOutOfRange)
    }
}

/// Left-pads a big-endian scalar to the P-256 field size.
fn pad_scalar(bytes: &[u8], scalar: &'static str) -> Result<[u8; 32], TpmError> {
    left_pad(bytes).ok_or(TpmError::EcdsaScalarTooLong {
        scalar,
        len: bytes.len(),
        max: 32,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn ecdsa_bytes(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut b = vec![0x00, 0x18, 0x00, 0x0b];
        b.extend_from_slice(&(r.len() as u16).to_be_bytes());
        b.extend_from_slice(r);
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
        b
    }

    #[test]
    fn decodes_ecdsa() {
        let sig = Signature::parse(&ecdsa_bytes(&[1; 32], &[2; 32])).unwrap();
        assert_eq!(sig.alg(), alg::ECDSA);
        assert_eq!(sig.hash(), 0x000b);
        let p = sig.to_p256().unwrap().unwrap();
        let (r, s) = p.split_bytes();
        assert_eq!(r.as_slice(), &[1; 32]);
        assert_eq!(s.as_slice(), &[2; 32]);
    }

    #[test]
    fn short_r_and_s_are_left_padded() {
        // A TPM drops leading zero bytes: a 31-byte r and a 30-byte s.
        let sig = Signature::parse(&ecdsa_bytes(&[0x7f; 31], &[0x33; 30])).unwrap();
        let (r, s) = sig.to_p256().unwrap().unwrap().split_bytes();
        let mut want_r = [0x7f; 32];
        want_r[0] = 0;
        let mut want_s = [0x33; 32];
        want_s[..2].fill(0);
        assert_eq!(r.as_slice(), &want_r);
        assert_eq!(s.as_slice(), &want_s);
    }

    #[test]
    fn over_long_or_zero_scalars_are_rejected_at_conversion() {
        let sig = Signature::parse(&ecdsa_bytes(&[1; 33], &[2; 32])).unwrap();
        assert_eq!(
            sig.to_p256(),
            Err(TpmError::EcdsaScalarTooLong {
                scalar: "r",
                len: 33,
                max: 32
            })
        );
        let sig = Signature::parse(&ecdsa_bytes(&[], &[2; 32])).unwrap();
        assert_eq!(sig.to_p256(), Err(TpmError::EcdsaScalarOutOfRange));
        // r = all-ones is above the P-256 group order.
        let sig = Signature::parse(&ecdsa_bytes(&[0xff; 32], &[2; 32])).unwrap();
        assert_eq!(sig.to_p256(), Err(TpmError::EcdsaScalarOutOfRange));
    }

    #[test]
    fn ecdsa_scalars_are_bounded_before_reading() {
        let mut b = vec![0x00, 0x18, 0x00, 0x0b, 0x00, 67];
        b.extend_from_slice(&[0; 67]);
        assert!(matches!(
            Signature::parse(&b),
            Err(TpmError::TooLarge {
                field: "signatureR",
                size: 67,
                max: 66,
                ..
            })
        ));
    }

    #[test]
    fn decodes_rsa_structurally() {
        let mut b = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
        b.extend_from_slice(&[0xab; 256]);
        let sig = Signature::parse(&b).unwrap();
        assert!(matches!(&sig, Signature::RsaSsa { hash: 0x000b, sig } if sig.len() == 256));
        assert_eq!(sig.to_p256(), Ok(None));
        b[1] = 0x16;
        assert!(matches!(Signature::parse(&b), Ok(Signature::RsaPss { .. })));
    }

    #[test]
    fn other_algorithms_are_unsupported() {
        // TPM_ALG_HMAC, TPM_ALG_NULL, and a DER ECDSA-Sig-Value as `tpm2_quote -f plain` writes.
        for first in [[0x00, 0x05], [0x00, 0x10], [0x30, 0x44]] {
            let mut b = first.to_vec();
            b.extend_from_slice(&[0; 8]);
            assert_eq!(
                Signature::parse(&b),
                Err(TpmError::UnsupportedSignatureAlg {
                    alg: u16::from_be_bytes(first)
                })
            );
        }
    }

    #[test]
    fn every_truncation_errors_and_trailing_bytes_are_rejected() {
        let b = ecdsa_bytes(&[1; 32], &[2; 31]);
        for len in 0..b.len() {
            assert!(Signature::parse(&b[..len]).is_err(), "len {len}");
        }
        let mut long = b;
        long.push(0);
        assert_eq!(
            Signature::parse(&long),
            Err(TpmError::TrailingBytes {
                structure: "TPMT_SIGNATURE",
                extra: 1
            })
        );
    }
}
