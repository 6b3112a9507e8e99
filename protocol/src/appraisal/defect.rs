//! [`Defect`]: why evidence that passed the envelope, enrollment and nonce checks does not hold
//! up, as a value. Each variant has a stable machine code ([`Defect::code`]) for logs and
//! counters, a human reason ([`std::fmt::Display`], what verdicts carry in `reasons`), and the
//! trustworthiness claim it counts against ([`Defect::claim`]). Every defect makes the verdict
//! `contraindicated`: the device's own key vouched for evidence that is wrong inside.
//!
//! A defect is stored with the device (as a [`crate::reason::Reason`]), so it holds plain data:
//! a parser's or quote check's own error is kept as its text, which is what the reason shows.
//! Serde: tagged with the code (`{"code": "pcr_not_covered", "detail": 7}`).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::tpm::{ClockError, QuoteError};

/// Which claim a failed check counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedClaim {
    /// Cryptographic validation of the quote failed.
    Crypto,
    /// The TPM's state is implausible (clock, signer hierarchy).
    Hardware,
    /// Something was measured that the evidence does not account for.
    Executables,
    /// The evidence is malformed in a way only a broken or hostile agent produces.
    Evidence,
}

/// Something wrong inside device-signed evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Defect {
    /// The enrolled AK public area does not parse (a verifier-side problem, reported as such);
    /// the parser's reason.
    EnrolledAkUnusable(String),
    /// The evidence names a firmware PCR that cannot hold measurements.
    FirmwarePcrUnusable(u8),
    /// The firmware measurement list breaks its bounds.
    FirmwareListMalformed(String),
    /// The reported PCR values are not a valid set (duplicates, bad index).
    PcrValuesMalformed(String),
    /// A PCR every quote must cover is missing.
    PcrNotCovered(u8),
    /// `attest` is not a TPMS_ATTEST quote structure.
    AttestMalformed(String),
    /// The quote's signature does not verify with the enrolled AK.
    QuoteSignatureInvalid,
    /// The quote's extraData is not the nonce the verifier issued.
    QuoteNonceMismatch,
    /// The quote's pcrDigest is not the digest of the reported PCR values (the check's text).
    QuotePcrDigestMismatch(String),
    /// The quote fails another check (key, signature scheme, selection); the check's text.
    QuoteInvalid(String),
    /// The quote's qualified signer is not the enrolled AK under the enrolled EK.
    WrongSigner,
    /// The firmware list does not replay to the firmware PCR.
    FirmwareReplayMismatch(u8),
    /// The (reassembled) event log does not parse.
    #[serde(rename = "eventlog_malformed")]
    EventLogMalformed(String),
    /// The event log has no sha256 bank to check against the sha256 quote.
    #[serde(rename = "eventlog_no_sha256")]
    EventLogNoSha256,
    /// The event log's replay differs from these quoted PCRs.
    #[serde(rename = "eventlog_mismatch")]
    EventLogMismatch(Vec<u8>),
    /// The event log cannot be replayed for this PCR (an event lacks its sha256 digest).
    #[serde(rename = "eventlog_unreplayable")]
    EventLogUnreplayable(u8),
    /// A whole log sent for a TPM boot whose log the verifier holds does not extend it.
    #[serde(rename = "eventlog_changed")]
    EventLogChanged { boot: u32, held: u64 },
    /// A log part continues a log of a TPM boot the verifier holds none of.
    #[serde(rename = "eventlog_unknown_boot")]
    EventLogUnknownBoot { boot: u32, offset: u64 },
    /// The TPM clock is inconsistent with the last accepted quote.
    Clock(ClockError),
    /// The hardware inventory breaks its bounds (`Inventory::check`'s words).
    InventoryMalformed(String),
    /// The reported firmware version is no valid label (`vendor::bundle::check_label`'s words).
    FirmwareVersionMalformed(String),
}

impl Defect {
    /// A stable snake_case code naming the check, for logs, counters and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Defect::EnrolledAkUnusable(_) => "enrolled_ak_unusable",
            Defect::FirmwarePcrUnusable(_) => "firmware_pcr_unusable",
            Defect::FirmwareListMalformed(_) => "firmware_list_malformed",
            Defect::PcrValuesMalformed(_) => "pcr_values_malformed",
            Defect::PcrNotCovered(_) => "pcr_not_covered",
            Defect::AttestMalformed(_) => "attest_malformed",
            Defect::QuoteSignatureInvalid => "quote_signature_invalid",
            Defect::QuoteNonceMismatch => "quote_nonce_mismatch",
            Defect::QuotePcrDigestMismatch(_) => "quote_pcr_digest_mismatch",
            Defect::QuoteInvalid(_) => "quote_invalid",
            Defect::WrongSigner => "wrong_signer",
            Defect::FirmwareReplayMismatch(_) => "firmware_replay_mismatch",
            Defect::EventLogMalformed(_) => "eventlog_malformed",
            Defect::EventLogNoSha256 => "eventlog_no_sha256",
            Defect::EventLogMismatch(_) => "eventlog_mismatch",
            Defect::EventLogUnreplayable(_) => "eventlog_unreplayable",
            Defect::EventLogChanged { .. } => "eventlog_changed",
            Defect::EventLogUnknownBoot { .. } => "eventlog_unknown_boot",
            Defect::Clock(_) => "clock",
            Defect::InventoryMalformed(_) => "inventory_malformed",
            Defect::FirmwareVersionMalformed(_) => "firmware_version_malformed",
        }
    }

    /// The claim this defect counts against.
    pub fn claim(&self) -> FailedClaim {
        match self {
            Defect::QuoteSignatureInvalid
            | Defect::QuoteNonceMismatch
            | Defect::QuotePcrDigestMismatch(_) => FailedClaim::Crypto,
            Defect::WrongSigner | Defect::Clock(_) => FailedClaim::Hardware,
            Defect::FirmwareReplayMismatch(_)
            | Defect::EventLogMismatch(_)
            | Defect::EventLogChanged { .. } => FailedClaim::Executables,
            _ => FailedClaim::Evidence,
        }
    }

    /// The defect for a quote error: a structure that does not parse as a quote is named as
    /// such, with the parser's reason.
    pub fn of_quote(e: QuoteError) -> Self {
        match e {
            QuoteError::AttestMalformed(inner) => Defect::AttestMalformed(inner.to_string()),
            QuoteError::BadMagic { .. } | QuoteError::NotAQuote { .. } => {
                Defect::AttestMalformed(e.to_string())
            }
            QuoteError::SignatureInvalid => Defect::QuoteSignatureInvalid,
            QuoteError::NonceMismatch => Defect::QuoteNonceMismatch,
            QuoteError::PcrDigestMismatch { .. } => Defect::QuotePcrDigestMismatch(e.to_string()),
            other => Defect::QuoteInvalid(other.to_string()),
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::EnrolledAkUnusable(e) => write!(f, "enrolled AK unusable: {e}"),
            Defect::FirmwarePcrUnusable(p) => {
                write!(f, "firmware PCR {p} cannot hold measurements (8-16 or 23)")
            }
            Defect::FirmwareListMalformed(r) => f.write_str(r),
            Defect::PcrValuesMalformed(r) => write!(f, "PCR values: {r}"),
            Defect::PcrNotCovered(p) => write!(f, "evidence does not cover PCR {p}"),
            Defect::AttestMalformed(r) => write!(f, "attestation structure malformed: {r}"),
            Defect::QuoteSignatureInvalid => write!(f, "quote: {}", QuoteError::SignatureInvalid),
            Defect::QuoteNonceMismatch => write!(f, "quote: {}", QuoteError::NonceMismatch),
            Defect::QuotePcrDigestMismatch(e) | Defect::QuoteInvalid(e) => write!(f, "quote: {e}"),
            Defect::WrongSigner => {
                f.write_str("quote was not signed by the enrolled AK under the enrolled EK")
            }
            Defect::FirmwareReplayMismatch(p) => write!(
                f,
                "firmware list does not replay to PCR {p}: it was extended with measurements the list does not show"
            ),
            Defect::EventLogMalformed(r) => write!(f, "event log malformed: {r}"),
            Defect::EventLogNoSha256 => f.write_str(
                "event log has no sha256 bank, so it cannot be checked against the quote",
            ),
            Defect::EventLogMismatch(pcrs) => {
                let list: Vec<String> = pcrs.iter().map(u8::to_string).collect();
                write!(
                    f,
                    "event log does not match the quote: PCR {}",
                    list.join(", ")
                )
            }
            Defect::EventLogUnreplayable(p) => {
                write!(f, "event log cannot be replayed for PCR {p}")
            }
            Defect::EventLogChanged { boot, held } => write!(
                f,
                "log changed within a boot: the log sent for TPM boot {boot} does not begin with \
                 the {held} bytes accepted earlier in that boot"
            ),
            Defect::EventLogUnknownBoot { boot, offset } => write!(
                f,
                "event log part at offset {offset} continues a log of TPM boot {boot} that the \
                 verifier does not hold"
            ),
            Defect::Clock(e) => write!(f, "TPM clock: {e}"),
            Defect::InventoryMalformed(e) => write!(f, "hardware inventory malformed: {e}"),
            Defect::FirmwareVersionMalformed(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_what_was_seen_and_codes_are_stable() {
        let d = Defect::EventLogMismatch(vec![4, 8]);
        assert_eq!(
            d.to_string(),
            "event log does not match the quote: PCR 4, 8"
        );
        assert_eq!(d.code(), "eventlog_mismatch");
        assert_eq!(d.claim(), FailedClaim::Executables);
        let d = Defect::EventLogChanged { boot: 3, held: 100 };
        assert!(
            d.to_string().starts_with("log changed within a boot"),
            "{d}"
        );
        let d = Defect::EventLogMalformed("event 3 at offset 9: truncated".into());
        assert_eq!(
            d.to_string(),
            "event log malformed: event 3 at offset 9: truncated"
        );
        assert_eq!(d.claim(), FailedClaim::Evidence);
        let d = Defect::of_quote(QuoteError::BadMagic { found: 0 });
        assert_eq!(d.code(), "attest_malformed");
        assert!(
            d.to_string()
                .starts_with("attestation structure malformed: quote magic"),
            "{d}"
        );
        assert_eq!(
            Defect::of_quote(QuoteError::SignatureInvalid).claim(),
            FailedClaim::Crypto
        );
    }
}
