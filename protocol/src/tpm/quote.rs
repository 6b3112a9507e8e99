//! TPM2_Quote verification: that a TPMS_ATTEST/TPMT_SIGNATURE pair was produced by a given
//! attestation key, over the verifier's nonce and exactly the PCR values the verifier expects.
//! Each check has its own [`QuoteError`] variant so an operator is told which one failed. Also the
//! pure clock check between two successive quotes from one TPM.

use std::fmt;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;

use super::attest::{Attest, ClockInfo};
use super::pcr::{PcrRef, PcrSelection, PcrValues, pcr_composite_digest};
use super::public::{AkAttributeError, EccCurve, KeyScheme, Name, PublicParameters, TpmPublic};
use super::signature::Signature;
use super::{TpmError, alg};
use crate::digest::HashAlg;

/// Why a quote was rejected. Variants are listed in the order [`verify_quote`] checks them. Where
/// a lower-level error says more, it is kept as the source rather than repeated in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    #[error("the key the quote was checked against is not an attestation key")]
    NotAnAttestationKey(#[source] AkAttributeError),
    #[error("attestation key not supported for quote verification: {reason}")]
    UnsupportedAttestationKey { reason: &'static str },
    #[error("quote attestation (TPMS_ATTEST) is malformed")]
    AttestMalformed(#[source] TpmError),
    #[error(
        "quote magic is {found:#010x}, not TPM_GENERATED_VALUE (0xff544347): \
         the TPM did not produce this attestation"
    )]
    BadMagic { found: u32 },
    #[error("attestation type is {st:#06x}, not a quote (TPM_ST_ATTEST_QUOTE, 0x8018)")]
    NotAQuote { st: u16 },
    #[error("quote signature (TPMT_SIGNATURE) is malformed")]
    SignatureMalformed(#[source] TpmError),
    #[error(
        "quote signature algorithm is {found:#06x}, but the attestation key signs with \
         {expected:#06x}"
    )]
    SignatureAlgorithmMismatch { expected: u16, found: u16 },
    #[error(
        "quote signature hash is {found:#06x}, but the attestation key's scheme uses \
         {expected:#06x}"
    )]
    SignatureHashMismatch { expected: u16, found: u16 },
    #[error("quote signature does not verify with the attestation key")]
    SignatureInvalid,
    #[error(
        "quote nonce (extraData) does not match the nonce the verifier issued: replayed or stale"
    )]
    NonceMismatch,
    #[error(
        "quoted PCRs differ from the PCRs values were supplied for \
         (quoted without a value: [{}]; value supplied but not quoted: [{}])",
        list(.quoted_without_value),
        list(.supplied_not_quoted)
    )]
    PcrSelectionMismatch {
        quoted_without_value: Vec<PcrRef>,
        supplied_not_quoted: Vec<PcrRef>,
    },
    #[error(
        "quoted PCR digest {quoted} does not match {expected}, the digest of the expected PCR \
         values: the PCRs hold other values than expected"
    )]
    PcrDigestMismatch { quoted: String, expected: String },
}

fn list(pcrs: &[PcrRef]) -> String {
    pcrs.iter()
        .map(PcrRef::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A quote that passed every check in [`verify_quote`], and what it attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    clock_info: ClockInfo,
    firmware_version: u64,
    selection: PcrSelection,
    qualified_signer: Name,
    pcr_digest: Vec<u8>,
}

impl VerifiedQuote {
    /// The TPM clock, reset and restart counts and `safe` flag at the time of the quote.
    pub fn clock_info(&self) -> ClockInfo {
        self.clock_info
    }
    pub fn clock(&self) -> u64 {
        self.clock_info.clock
    }
    pub fn reset_count(&self) -> u32 {
        self.clock_info.reset_count
    }
    pub fn restart_count(&self) -> u32 {
        self.clock_info.restart_count
    }
    pub fn safe(&self) -> bool {
        self.clock_info.safe
    }
    pub fn firmware_version(&self) -> u64 {
        self.firmware_version
    }
    /// The PCRs the quote covers (equal, as a set, to the PCRs whose values were supplied).
    pub fn selection(&self) -> &PcrSelection {
        &self.selection
    }
    /// The signing key's qualified Name as the TPM reported it; compare with
    /// [`TpmPublic::qualified_name`] to bind the AK to its EK.
    pub fn qualified_signer(&self) -> &Name {
        &self.qualified_signer
    }
    pub fn pcr_digest(&self) -> &[u8] {
        &self.pcr_digest
    }
}

/// Verifies a TPM2_Quote.
///
/// `attest` is the TPMS_ATTEST (`tpm2_quote -m`), `signature` the TPMT_SIGNATURE (`tpm2_quote -s`
/// with the default `-f tss`), `expected_nonce` the qualifying data the verifier sent, and
/// `pcr_values` the values the verifier expects for exactly the PCRs it asked to be quoted.
///
/// Checks, in order, each failing with its own [`QuoteError`]: `ak` has attestation-key
/// attributes and is an ECDSA/SHA-256 NIST P-256 key (the only kind this version verifies); the
/// attestation parses; its magic is TPM_GENERATED_VALUE; it is a quote; the signature parses; its
/// algorithm and hash match the AK's scheme; it verifies over the attestation bytes; extraData is
/// the nonce; the quoted PCRs are exactly the supplied ones; pcrDigest is the digest of the
/// supplied values.
pub fn verify_quote(
    ak: &TpmPublic,
    attest: &[u8],
    signature: &[u8],
    expected_nonce: &[u8],
    pcr_values: &PcrValues,
) -> Result<VerifiedQuote, QuoteError> {
    // A restricted signing key only signs TPMS_ATTEST structures the TPM built itself (it refuses
    // to sign external data starting with TPM_GENERATED_VALUE); any other key could sign a forgery.
    ak.check_attestation_key()
        .map_err(QuoteError::NotAnAttestationKey)?;
    let (key, scheme_hash) = p256_ecdsa_key(ak)?;

    let attest = Attest::parse(attest).map_err(|e| match e {
        TpmError::BadMagic { found } => QuoteError::BadMagic { found },
        other => QuoteError::AttestMalformed(other),
    })?;
    let quote = attest
        .quote_info()
        .ok_or(QuoteError::NotAQuote { st: attest.st() })?;

    let sig = Signature::parse(signature).map_err(QuoteError::SignatureMalformed)?;
    if sig.alg() != alg::ECDSA {
        return Err(QuoteError::SignatureAlgorithmMismatch {
            expected: alg::ECDSA,
            found: sig.alg(),
        });
    }
    if sig.hash() != scheme_hash.tcg_id() {
        return Err(QuoteError::SignatureHashMismatch {
            expected: scheme_hash.tcg_id(),
            found: sig.hash(),
        });
    }
    let p256_sig = match sig.to_p256() {
        Ok(Some(s)) => s,
        // An r or s out of range can never verify.
        Ok(None) | Err(TpmError::EcdsaScalarOutOfRange) => {
            return Err(QuoteError::SignatureInvalid);
        }
        Err(e) => return Err(QuoteError::SignatureMalformed(e)),
    };
    // The TPM signs H_scheme(TPMS_ATTEST). p256 does not insist on low-s, which TPMs do not
    // produce; both s and n - s verify.
    let digest = scheme_hash.hash(&[attest.as_bytes()]);
    key.verify_prehash(&digest, &p256_sig)
        .map_err(|_| QuoteError::SignatureInvalid)?;

    if attest.extra_data() != expected_nonce {
        return Err(QuoteError::NonceMismatch);
    }

    let quoted: Vec<PcrRef> = quote.pcr_select.pcrs().collect();
    let quoted_without_value: Vec<PcrRef> = quoted
        .iter()
        .copied()
        .filter(|p| pcr_values.get(*p).is_none())
        .collect();
    let supplied_not_quoted: Vec<PcrRef> =
        pcr_values.pcrs().filter(|p| !quoted.contains(p)).collect();
    if !quoted_without_value.is_empty() || !supplied_not_quoted.is_empty() {
        return Err(QuoteError::PcrSelectionMismatch {
            quoted_without_value,
            supplied_not_quoted,
        });
    }

    // TPM2_Quote computes pcrDigest with the signing scheme's hash, over the values in TPML order.
    let values: Vec<&[u8]> = quoted.iter().filter_map(|p| pcr_values.get(*p)).collect();
    let expected = pcr_composite_digest(scheme_hash, &values);
    if quote.pcr_digest != expected {
        return Err(QuoteError::PcrDigestMismatch {
            quoted: hex::encode(&quote.pcr_digest),
            expected: hex::encode(expected),
        });
    }

    Ok(VerifiedQuote {
        clock_info: attest.clock_info(),
        firmware_version: attest.firmware_version(),
        selection: quote.pcr_select.clone(),
        qualified_signer: attest.qualified_signer().clone(),
        pcr_digest: quote.pcr_digest.clone(),
    })
}

/// The AK's p256 key and scheme hash, if it is an ECDSA/SHA-256 NIST P-256 key.
fn p256_ecdsa_key(ak: &TpmPublic) -> Result<(p256::ecdsa::VerifyingKey, HashAlg), QuoteError> {
    let ecc = match ak.parameters() {
        PublicParameters::Ecc(ecc) => ecc,
        PublicParameters::Rsa(_) => {
            return Err(QuoteError::UnsupportedAttestationKey {
                reason: "RSA attestation keys are not verified in this version; use ECC NIST P-256",
            });
        }
    };
    if ecc.curve != EccCurve::NistP256 {
        return Err(QuoteError::UnsupportedAttestationKey {
            reason: "only ECC NIST P-256 attestation keys are verified in this version",
        });
    }
    let sha256 = HashAlg::Sha256.tcg_id();
    if ecc.scheme
        != (KeyScheme::Hashed {
            alg: alg::ECDSA,
            hash: sha256,
        })
    {
        return Err(QuoteError::UnsupportedAttestationKey {
            reason: "a P-256 attestation key must have the ECDSA scheme with SHA-256",
        });
    }
    let key = ak
        .p256_verifying_key()
        .map_err(|_| QuoteError::UnsupportedAttestationKey {
            reason: "the attestation key's public point is not a valid P-256 point",
        })?;
    Ok((key, HashAlg::Sha256))
}

/// Why a quote's clock is inconsistent with an earlier quote from the same TPM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ClockError {
    #[error(
        "TPM resetCount went down from {previous} to {current}: the TPM was cleared or this is \
         a replayed or foreign quote"
    )]
    ResetCountDecreased { previous: u32, current: u32 },
    #[error(
        "TPM restartCount went down from {previous} to {current} within resetCount \
         {reset_count}: replayed or foreign quote"
    )]
    RestartCountDecreased {
        reset_count: u32,
        previous: u32,
        current: u32,
    },
    #[error(
        "TPM clock did not advance ({previous} ms, then {current} ms) within one boot \
         (resetCount {reset_count}, restartCount {restart_count}): replayed or reordered quote"
    )]
    ClockNotIncreasing {
        reset_count: u32,
        restart_count: u32,
        previous: u64,
        current: u64,
    },
    #[error(
        "TPM clock went back from {previous} ms to {current} ms across a reboot while the TPM \
         reports safe=YES, which it may only do for never-reported clock values"
    )]
    ClockRolledBackWhileSafe { previous: u64, current: u64 },
}

/// Checks that `current` can follow `previous` on the same TPM.
///
/// Rules, in order: resetCount never decreases; within one resetCount, restartCount never
/// decreases; within one resetCount and restartCount, clock strictly increases.
///
/// Across a reset or restart, `clock` is allowed to go backwards only when `current.safe` is NO.
/// The TPM saves Clock to NV only periodically; after an orderly TPM2_Shutdown it resumes from the
/// exact value and reports safe=YES, but after power loss it resumes from the last saved value,
/// which may be below values already reported, and says so with safe=NO. Measured on swtpm 0.7
/// (tests/vectors/tpm): quotes after an orderly restart report safe=1 with the clock advanced;
/// after a restart without TPM2_Shutdown, safe=0, and in one run the clock had gone back by 1 ms.
/// So safe=0 is normal after power loss and is not itself rejected (an attendance terminal loses
/// power routinely); only safe=YES together with a clock that went back is a contradiction.
/// TPM2_Clear resets Clock, resetCount and restartCount, so it shows up as ResetCountDecreased.
pub fn clock_consistent(previous: &ClockInfo, current: &ClockInfo) -> Result<(), ClockError> {
    if current.reset_count < previous.reset_count {
        return Err(ClockError::ResetCountDecreased {
            previous: previous.reset_count,
            current: current.reset_count,
        });
    }
    let same_reset = current.reset_count == previous.reset_count;
    if same_reset && current.restart_count < previous.restart_count {
        return Err(ClockError::RestartCountDecreased {
            reset_count: current.reset_count,
            previous: previous.restart_count,
            current: current.restart_count,
        });
    }
    let same_boot = same_reset && current.restart_count == previous.restart_count;
    if same_boot && current.clock <= previous.clock {
        return Err(ClockError::ClockNotIncreasing {
            reset_count: current.reset_count,
            restart_count: current.restart_count,
            previous: previous.clock,
            current: current.clock,
        });
    }
    if !same_boot && current.safe && current.clock < previous.clock {
        return Err(ClockError::ClockRolledBackWhileSafe {
            previous: previous.clock,
            current: current.clock,
        });
    }
    Ok(())
}

impl fmt::Display for ClockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clock {} ms, resetCount {}, restartCount {}, safe {}",
            self.clock,
            self.reset_count,
            self.restart_count,
            if self.safe { "YES" } else { "NO" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(clock: u64, reset_count: u32, restart_count: u32, safe: bool) -> ClockInfo {
        ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        }
    }

    #[test]
    fn clock_advancing_within_a_boot_is_consistent() {
        assert_eq!(
            clock_consistent(&ci(10, 1, 0, true), &ci(11, 1, 0, true)),
            Ok(())
        );
    }

    #[test]
    fn reset_count_must_not_decrease() {
        assert_eq!(
            clock_consistent(&ci(10, 2, 0, true), &ci(99, 1, 5, true)),
            Err(ClockError::ResetCountDecreased {
                previous: 2,
                current: 1
            })
        );
    }

    #[test]
    fn restart_count_must_not_decrease_within_a_reset() {
        assert_eq!(
            clock_consistent(&ci(10, 2, 3, true), &ci(99, 2, 2, true)),
            Err(ClockError::RestartCountDecreased {
                reset_count: 2,
                previous: 3,
                current: 2
            })
        );
        // A new reset starts restartCount again from zero.
        assert_eq!(
            clock_consistent(&ci(10, 2, 3, true), &ci(99, 3, 0, true)),
            Ok(())
        );
    }

    #[test]
    fn clock_must_strictly_increase_within_a_boot() {
        for current in [10, 9] {
            assert_eq!(
                clock_consistent(&ci(10, 1, 0, true), &ci(current, 1, 0, false)),
                Err(ClockError::ClockNotIncreasing {
                    reset_count: 1,
                    restart_count: 0,
                    previous: 10,
                    current
                })
            );
        }
    }

    #[test]
    fn clock_may_go_back_across_a_reboot_only_when_not_safe() {
        assert_eq!(
            clock_consistent(&ci(383, 2, 0, true), &ci(382, 3, 0, false)),
            Ok(())
        );
        assert_eq!(
            clock_consistent(&ci(383, 2, 0, true), &ci(382, 3, 0, true)),
            Err(ClockError::ClockRolledBackWhileSafe {
                previous: 383,
                current: 382
            })
        );
        assert_eq!(
            clock_consistent(&ci(383, 2, 0, true), &ci(382, 2, 1, true)),
            Err(ClockError::ClockRolledBackWhileSafe {
                previous: 383,
                current: 382
            })
        );
    }

    #[test]
    fn selection_mismatch_message_lists_pcrs() {
        let e = QuoteError::PcrSelectionMismatch {
            quoted_without_value: vec![PcrRef {
                bank: HashAlg::Sha256,
                index: 14,
            }],
            supplied_not_quoted: vec![
                PcrRef {
                    bank: HashAlg::Sha1,
                    index: 0,
                },
                PcrRef {
                    bank: HashAlg::Sha1,
                    index: 1,
                },
            ],
        };
        let msg = e.to_string();
        assert!(msg.contains("[sha256:14]"), "{msg}");
        assert!(msg.contains("[sha1:0, sha1:1]"), "{msg}");
    }
}
