//! TPMS_ATTEST: the structure a TPM signs for TPM2_Quote (and its other attestation commands).
//! The header (magic, type, qualified signer, extra data, clock, firmware version) is decoded for
//! every attestation type; the `attested` union is decoded for quotes and kept raw otherwise.
//! The exact input bytes are kept, since they are what the signature covers.

use super::limits::{MAX_DIGEST, MAX_HA};
use super::pcr::PcrSelection;
use super::public::Name;
use super::reader::Reader;
use super::{TPM_GENERATED_VALUE, TpmError, st};

/// TPMS_CLOCK_INFO: the TPM's clock when it produced the attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its last TPM2_Clear; non-volatile, and
    /// advanced only while powered.
    pub clock: u64,
    /// TPM Resets (power cycles with TPM2_Startup(CLEAR)) since the last TPM2_Clear.
    pub reset_count: u32,
    /// TPM Restarts and Resumes since the last TPM Reset.
    pub restart_count: u32,
    /// YES when the TPM guarantees this `clock` value was never reported before (it is NO after
    /// an unorderly shutdown, when the last saved clock may be behind values already reported).
    pub safe: bool,
}

impl ClockInfo {
    fn read(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        r.nested("TPMS_CLOCK_INFO", |r| {
            let clock = r.u64("clock")?;
            let reset_count = r.u32("resetCount")?;
            let restart_count = r.u32("restartCount")?;
            let safe = match r.u8("safe")? {
                0 => false,
                1 => true,
                value => return Err(TpmError::InvalidSafe { value }),
            };
            Ok(Self {
                clock,
                reset_count,
                restart_count,
                safe,
            })
        })
    }
}

/// TPMS_QUOTE_INFO: which PCRs were quoted and the digest of their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    pub pcr_select: PcrSelection,
    pub pcr_digest: Vec<u8>,
}

/// The type-specific part of a TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// TPM_ST_ATTEST_QUOTE.
    Quote(QuoteInfo),
    /// Any other TPM_ST_ATTEST_* type: its tag and the undecoded remainder of the structure.
    Other { st: u16, raw: Vec<u8> },
}

/// A decoded TPMS_ATTEST together with the exact bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    raw: Vec<u8>,
    st: u16,
    qualified_signer: Name,
    extra_data: Vec<u8>,
    clock_info: ClockInfo,
    firmware_version: u64,
    attested: Attested,
}

impl Attest {
    /// Decodes a TPMS_ATTEST that is the whole of `bytes`. The magic is checked first, so input
    /// that is not TPM-generated fails with [`TpmError::BadMagic`] before anything else.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::BadMagic { found: magic });
        }
        let st = r.u16("type")?;
        if !matches!(
            st,
            st::ATTEST_NV
                | st::ATTEST_COMMAND_AUDIT
                | st::ATTEST_SESSION_AUDIT
                | st::ATTEST_CERTIFY
                | st::ATTEST_QUOTE
                | st::ATTEST_TIME
                | st::ATTEST_CREATION
                | st::ATTEST_NV_DIGEST
        ) {
            return Err(TpmError::UnknownAttestType { st });
        }
        let qualified_signer = Name::from_bytes(r.tpm2b("qualifiedSigner", MAX_HA)?);
        let extra_data = r.tpm2b("extraData", MAX_HA)?.to_vec();
        let clock_info = ClockInfo::read(&mut r)?;
        let firmware_version = r.u64("firmwareVersion")?;
        let attested = if st == st::ATTEST_QUOTE {
            let info = r.nested("TPMS_QUOTE_INFO", |r| {
                let pcr_select = PcrSelection::read(r)?;
                let pcr_digest = r.tpm2b("pcrDigest", MAX_DIGEST)?.to_vec();
                Ok(QuoteInfo {
                    pcr_select,
                    pcr_digest,
                })
            })?;
            r.finish()?;
            Attested::Quote(info)
        } else {
            let rest = bytes.get(r.position()..).unwrap_or_default();
            Attested::Other {
                st,
                raw: rest.to_vec(),
            }
        };
        Ok(Self {
            raw: bytes.to_vec(),
            st,
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }

    /// The exact bytes this was decoded from: what the TPM signed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The TPM_ST_ATTEST_* type tag.
    pub fn st(&self) -> u16 {
        self.st
    }

    /// Qualified Name of the signing key (`nameAlg || H(parent's qualified name || key Name)`).
    /// This is *not* the key's Name: see [`super::TpmPublic::qualified_name`].
    pub fn qualified_signer(&self) -> &Name {
        &self.qualified_signer
    }

    /// The caller-supplied qualifying data (for a quote, the verifier's nonce).
    pub fn extra_data(&self) -> &[u8] {
        &self.extra_data
    }

    pub fn clock_info(&self) -> ClockInfo {
        self.clock_info
    }

    /// Vendor-specific firmware version of the TPM.
    pub fn firmware_version(&self) -> u64 {
        self.firmware_version
    }

    pub fn attested(&self) -> &Attested {
        &self.attested
    }

    /// The quote information, if this is a TPM_ST_ATTEST_QUOTE.
    pub fn quote_info(&self) -> Option<&QuoteInfo> {
        match &self.attested {
            Attested::Quote(q) => Some(q),
            Attested::Other { .. } => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::digest::HashAlg;

    /// A quote laid out field by field (values are arbitrary but well-formed).
    fn sample_quote() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xff54_4347u32.to_be_bytes()); // magic
        b.extend_from_slice(&0x8018u16.to_be_bytes()); // type
        b.extend_from_slice(&[0, 4, 0x40, 0, 0, 0x0b]); // qualifiedSigner: a handle-sized name
        b.extend_from_slice(&[0, 3, 0xaa, 0xbb, 0xcc]); // extraData
        b.extend_from_slice(&1234u64.to_be_bytes()); // clock
        b.extend_from_slice(&7u32.to_be_bytes()); // resetCount
        b.extend_from_slice(&2u32.to_be_bytes()); // restartCount
        b.push(1); // safe
        b.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes()); // firmwareVersion
        b.extend_from_slice(&hex::decode("00000001000b03810000").unwrap()); // sha256:0,7
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&[0x5a; 32]); // pcrDigest
        b
    }

    #[test]
    fn decodes_every_quote_field() {
        let bytes = sample_quote();
        let a = Attest::parse(&bytes).unwrap();
        assert_eq!(a.as_bytes(), &bytes[..]);
        assert_eq!(a.st(), st::ATTEST_QUOTE);
        assert_eq!(a.qualified_signer().as_bytes(), &[0x40, 0, 0, 0x0b]);
        assert_eq!(a.extra_data(), &[0xaa, 0xbb, 0xcc]);
        assert_eq!(
            a.clock_info(),
            ClockInfo {
                clock: 1234,
                reset_count: 7,
                restart_count: 2,
                safe: true
            }
        );
        assert_eq!(a.firmware_version(), 0x0102_0304_0506_0708);
        let q = a.quote_info().unwrap();
        let pcrs: Vec<_> = q.pcr_select.pcrs().map(|p| (p.bank, p.index)).collect();
        assert_eq!(pcrs, [(HashAlg::Sha256, 0), (HashAlg::Sha256, 7)]);
        assert_eq!(q.pcr_digest, [0x5a; 32]);
    }

    #[test]
    fn bad_magic_is_reported_first() {
        let mut bytes = sample_quote();
        bytes[0] = 0;
        assert_eq!(
            Attest::parse(&bytes),
            Err(TpmError::BadMagic { found: 0x0054_4347 })
        );
    }

    #[test]
    fn unknown_type_is_rejected_other_types_are_kept_raw() {
        let mut bytes = sample_quote();
        bytes[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(
            Attest::parse(&bytes),
            Err(TpmError::UnknownAttestType { st: 0x1234 })
        );
        bytes[4..6].copy_from_slice(&st::ATTEST_CERTIFY.to_be_bytes());
        let a = Attest::parse(&bytes).unwrap();
        assert!(a.quote_info().is_none());
        match a.attested() {
            Attested::Other { st, raw } => {
                assert_eq!(*st, st::ATTEST_CERTIFY);
                assert_eq!(raw.len(), 10 + 34);
            }
            Attested::Quote(_) => unreachable!("certify parsed as quote"),
        }
    }

    #[test]
    fn safe_must_be_boolean() {
        let mut bytes = sample_quote();
        // magic 4 + type 2 + signer 6 + extraData 5 + clock 8 + reset 4 + restart 4.
        bytes[33] = 2;
        assert_eq!(
            Attest::parse(&bytes),
            Err(TpmError::InvalidSafe { value: 2 })
        );
    }

    #[test]
    fn extra_data_and_pcr_digest_are_bounded() {
        let mut bytes = sample_quote();
        bytes[12..14].copy_from_slice(&67u16.to_be_bytes());
        assert!(matches!(
            Attest::parse(&bytes),
            Err(TpmError::TooLarge {
                field: "extraData",
                size: 67,
                max: 66,
                ..
            })
        ));
        let mut bytes = sample_quote();
        let at = bytes.len() - 34;
        bytes[at..at + 2].copy_from_slice(&65u16.to_be_bytes());
        assert!(matches!(
            Attest::parse(&bytes),
            Err(TpmError::TooLarge {
                field: "pcrDigest",
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_errors_and_trailing_bytes_are_rejected() {
        let bytes = sample_quote();
        for len in 0..bytes.len() {
            assert!(Attest::parse(&bytes[..len]).is_err(), "len {len}");
        }
        let mut long = bytes;
        long.extend_from_slice(&[0, 0]);
        assert_eq!(
            Attest::parse(&long),
            Err(TpmError::TrailingBytes {
                structure: "TPMS_ATTEST",
                extra: 2
            })
        );
    }

    #[test]
    fn truncation_names_the_field() {
        let bytes = sample_quote();
        assert_eq!(
            Attest::parse(&bytes[..20]),
            Err(TpmError::Truncated {
                structure: "TPMS_CLOCK_INFO",
                field: "clock",
                offset: 17
            })
        );
    }
}
