//! [`Reason`]: why a verdict says what it says, as a value. Appraisals, policy findings and the
//! device state machine produce reasons; they are rendered to operator text only at the edge
//! (the signed verdict's `vouch.reasons`, the HTTP API, logs). Each reason has a stable
//! snake_case [`Reason::code`] for machines and tests, documented in docs/protocol.md ("Reason
//! codes"), and a [`std::fmt::Display`] text for operators, which is the text vouch has always
//! shown.
//!
//! Serde (reasons are stored with the device): internally tagged, the code as the tag
//! (`{"code": "pcr_mismatch", "index": 4, ...}`); an evidence [`Defect`] keeps its own
//! representation, tagged with its code; a reason recorded as plain text before reasons were
//! typed reads back as [`Reason::Legacy`]. Digests are hex text in every format.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::appraisal::Defect;
use crate::bytes::Sha256Digest;
use crate::device::Actor;
use crate::policy::events::EventKind;

/// One reason of a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// More reasons than a verdict carries: this many were left out
    /// ([`crate::appraisal::MAX_REASONS`]).
    MoreReasons { count: usize },
    /// Neither the device nor its model has reference values (`subject` names where they were
    /// looked for).
    NoReferenceValues { subject: String },
    /// A PCR of the sha256 bank (the bank reference values hold) differs from its reference.
    PcrMismatch {
        index: u8,
        #[serde(with = "hex_digest")]
        quoted: Sha256Digest,
        #[serde(with = "hex_digest")]
        reference: Sha256Digest,
    },
    /// A PCR with a reference value was not quoted.
    PcrNotQuoted { index: u8 },
    /// The firmware list went into another PCR than the reference pins.
    FirmwarePcrMoved {
        measured: u8,
        expected: u8,
        scope: String,
    },
    /// A firmware file on the list could not be hashed on the terminal.
    FirmwareMissing { path: String },
    /// A firmware file the reference values do not list.
    FirmwareNotInReference { path: String },
    /// A firmware file whose hash is not among the approved ones.
    FirmwareHashNotApproved {
        path: String,
        #[serde(with = "hex_digest")]
        sha256: Sha256Digest,
    },
    /// A firmware file the reference lists was not measured.
    FirmwareNotMeasured { path: String },
    /// The reference constrains boot events, but the evidence carries no event log.
    #[serde(rename = "eventlog_missing")]
    EventLogMissing { scope: String },
    /// Secure Boot is required and disabled.
    SecureBootDisabled,
    /// Secure Boot is required and the log does not say its state.
    SecureBootUnknown,
    /// The dbx revocation list is shorter than the reference's minimum.
    DbxShrunk {
        entries: u64,
        min: u64,
        scope: String,
    },
    /// A dbx minimum is required and the log does not show dbx.
    DbxMissing,
    /// An event whose digest the reference does not approve for its class and subject.
    EventNotInReference {
        pcr: u32,
        event_type: String,
        subject: String,
        #[serde(with = "hex_digest")]
        digest: Sha256Digest,
        scope: String,
    },
    /// The reference requires events of a class and the log shows none the quote vouches for.
    EventClassMissing { kind: EventKind, scope: String },
    /// Event log entries in PCRs whose quoted values the log does not reproduce.
    EventsUnverifiable { pcrs: Vec<u32> },
    /// Stored measurements taken before closed-world checks existed, under a reference that
    /// needs them.
    ClosedWorldStaleMeasurements { scope: String },
    /// A PCR the reference constrains closed-world was not quoted.
    ClosedWorldPcrNotQuoted { pcr: u32, scope: String },
    /// A closed-world PCR whose events do not replay to its quoted value.
    ClosedWorldPcrMismatch { pcr: u32 },
    /// A closed-world PCR the log has no events for, quoted with a value other than its reset
    /// value.
    ClosedWorldPcrUnexplained { pcr: u32 },
    /// An event type the reference does not allow in a closed-world PCR.
    ClosedWorldEventType {
        pcr: u32,
        event_type: String,
        scope: String,
    },
    /// A firmware event type in an OS PCR (8-15): a relabelled boot-loader measurement.
    FirmwareEventInOsPcr { pcr: u32, event_type: String },
    /// A verdict expired with no fresh evidence since this time (Unix seconds).
    NoFreshEvidence { since: u64 },
    /// Quarantined after this many consecutive verdict periods without fresh evidence.
    Unresponsive { expiries: u32 },
    /// The device is held in a quarantine, by `actor`, for `reasons`.
    Quarantined { actor: Actor, reasons: Vec<Reason> },
    /// A punch batch on the device's topic whose signature does not verify with its key.
    PunchForged,
    /// A punch batch whose record `seq` differs from the one the mirror holds.
    PunchFork { seq: u64 },
    /// A punch batch whose chain breaks at record `seq` (its `prev_hash` or the head hash).
    PunchChainBroken { seq: u64 },
    /// A hardware component the operator's supply-chain policy refuses.
    SupplyChainDenied { component: String, rule: String },
    /// The hardware differs from the inventory in the device's manifest (a swapped board).
    HardwareChanged {
        component: String,
        was: String,
        now: String,
    },
    /// The device was enrolled from a manifest (or a supply-chain policy is in force), and its
    /// evidence carries no inventory.
    InventoryMissing,
    /// The evidence's inventory is not the newest inventory measurement in the quoted
    /// firmware list, so the quote does not vouch for it.
    InventoryNotMeasured,
    /// The vendor's reference values for this model and firmware version were revoked.
    FirmwareRevoked {
        model: String,
        version: String,
        reason: String,
    },
    /// The operator requires an EK certificate chaining to a trusted TPM-manufacturer root,
    /// and this device's does not (`detail` says why).
    #[serde(rename = "ek_cert_untrusted")]
    EkCertUntrusted { detail: String },
    /// An operator's own words (the reason given with `vouchctl quarantine`).
    Operator { text: String },
    /// The evidence is wrong inside ([`Defect`]); its code is the defect's.
    #[serde(untagged)]
    Evidence(Defect),
    /// A reason recorded as text before reasons were typed (stores written by an older vouch).
    #[serde(untagged)]
    Legacy(String),
}

impl Reason {
    /// Every code a reason can have, in the order of the table in docs/protocol.md.
    pub const CODES: &'static [&'static str] = &[
        "more_reasons",
        "no_reference_values",
        "pcr_mismatch",
        "pcr_not_quoted",
        "firmware_pcr_moved",
        "firmware_missing",
        "firmware_not_in_reference",
        "firmware_hash_not_approved",
        "firmware_not_measured",
        "eventlog_missing",
        "secure_boot_disabled",
        "secure_boot_unknown",
        "dbx_shrunk",
        "dbx_missing",
        "event_not_in_reference",
        "event_class_missing",
        "events_unverifiable",
        "closed_world_stale_measurements",
        "closed_world_pcr_not_quoted",
        "closed_world_pcr_mismatch",
        "closed_world_pcr_unexplained",
        "closed_world_event_type",
        "firmware_event_in_os_pcr",
        "no_fresh_evidence",
        "unresponsive",
        "quarantined",
        "punch_forged",
        "punch_fork",
        "punch_chain_broken",
        "supply_chain_denied",
        "hardware_changed",
        "inventory_missing",
        "inventory_not_measured",
        "firmware_revoked",
        "ek_cert_untrusted",
        "operator",
        "legacy",
        // Evidence defects (`appraisal::Defect::code`).
        "enrolled_ak_unusable",
        "firmware_pcr_unusable",
        "firmware_list_malformed",
        "pcr_values_malformed",
        "pcr_not_covered",
        "attest_malformed",
        "quote_signature_invalid",
        "quote_nonce_mismatch",
        "quote_pcr_digest_mismatch",
        "quote_invalid",
        "wrong_signer",
        "firmware_replay_mismatch",
        "eventlog_malformed",
        "eventlog_no_sha256",
        "eventlog_mismatch",
        "eventlog_unreplayable",
        "eventlog_changed",
        "eventlog_unknown_boot",
        "clock",
        "inventory_malformed",
        "firmware_version_malformed",
    ];

    /// The stable snake_case code naming this kind of reason (the serde tag, too).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::MoreReasons { .. } => "more_reasons",
            Reason::NoReferenceValues { .. } => "no_reference_values",
            Reason::PcrMismatch { .. } => "pcr_mismatch",
            Reason::PcrNotQuoted { .. } => "pcr_not_quoted",
            Reason::FirmwarePcrMoved { .. } => "firmware_pcr_moved",
            Reason::FirmwareMissing { .. } => "firmware_missing",
            Reason::FirmwareNotInReference { .. } => "firmware_not_in_reference",
            Reason::FirmwareHashNotApproved { .. } => "firmware_hash_not_approved",
            Reason::FirmwareNotMeasured { .. } => "firmware_not_measured",
            Reason::EventLogMissing { .. } => "eventlog_missing",
            Reason::SecureBootDisabled => "secure_boot_disabled",
            Reason::SecureBootUnknown => "secure_boot_unknown",
            Reason::DbxShrunk { .. } => "dbx_shrunk",
            Reason::DbxMissing => "dbx_missing",
            Reason::EventNotInReference { .. } => "event_not_in_reference",
            Reason::EventClassMissing { .. } => "event_class_missing",
            Reason::EventsUnverifiable { .. } => "events_unverifiable",
            Reason::ClosedWorldStaleMeasurements { .. } => "closed_world_stale_measurements",
            Reason::ClosedWorldPcrNotQuoted { .. } => "closed_world_pcr_not_quoted",
            Reason::ClosedWorldPcrMismatch { .. } => "closed_world_pcr_mismatch",
            Reason::ClosedWorldPcrUnexplained { .. } => "closed_world_pcr_unexplained",
            Reason::ClosedWorldEventType { .. } => "closed_world_event_type",
            Reason::FirmwareEventInOsPcr { .. } => "firmware_event_in_os_pcr",
            Reason::NoFreshEvidence { .. } => "no_fresh_evidence",
            Reason::Unresponsive { .. } => "unresponsive",
            Reason::Quarantined { .. } => "quarantined",
            Reason::PunchForged => "punch_forged",
            Reason::PunchFork { .. } => "punch_fork",
            Reason::PunchChainBroken { .. } => "punch_chain_broken",
            Reason::SupplyChainDenied { .. } => "supply_chain_denied",
            Reason::HardwareChanged { .. } => "hardware_changed",
            Reason::InventoryMissing => "inventory_missing",
            Reason::InventoryNotMeasured => "inventory_not_measured",
            Reason::FirmwareRevoked { .. } => "firmware_revoked",
            Reason::EkCertUntrusted { .. } => "ek_cert_untrusted",
            Reason::Operator { .. } => "operator",
            Reason::Evidence(d) => d.code(),
            Reason::Legacy(_) => "legacy",
        }
    }

    /// Whether `a` and `b` say the same. Typed reasons compare as values; a reason recorded as
    /// text ([`Reason::Legacy`]) compares by its text, so a quarantine stored by an older vouch
    /// is still recognised in the appraisal that repeats it.
    pub fn same(a: &[Reason], b: &[Reason]) -> bool {
        let legacy = |r: &[Reason]| r.iter().any(|r| matches!(r, Reason::Legacy(_)));
        if legacy(a) || legacy(b) {
            join(a) == join(b)
        } else {
            a == b
        }
    }
}

/// The reasons as one line (`; ` between them), as audit entries and commands carry them.
pub fn join(reasons: &[Reason]) -> String {
    texts(reasons).join("; ")
}

/// The operator texts of `reasons`, in order (what `vouch.reasons` and the API's `reasons`
/// carry).
pub fn texts(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}

/// The codes of `reasons`, in order (the API's `reason_codes`).
pub fn codes(reasons: &[Reason]) -> Vec<&'static str> {
    reasons.iter().map(Reason::code).collect()
}

fn list(pcrs: &[u32]) -> String {
    pcrs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MoreReasons { count } => write!(f, "and {count} more reasons"),
            Reason::NoReferenceValues { subject } => {
                write!(f, "no reference values for {subject}")
            }
            Reason::PcrMismatch {
                index,
                quoted,
                reference,
            } => write!(
                f,
                "PCR {index} (sha256) is {}…, reference is {}…",
                quoted.short(),
                reference.short()
            ),
            Reason::PcrNotQuoted { index } => {
                write!(f, "PCR {index} was not quoted but has a reference value")
            }
            Reason::FirmwarePcrMoved {
                measured,
                expected,
                scope,
            } => write!(
                f,
                "firmware was measured into PCR {measured}, but the reference for {scope} \
                 expects PCR {expected}"
            ),
            Reason::FirmwareMissing { path } => {
                write!(f, "firmware {path} is missing on the terminal")
            }
            Reason::FirmwareNotInReference { path } => {
                write!(f, "firmware {path} is not in the reference values")
            }
            Reason::FirmwareHashNotApproved { path, sha256 } => write!(
                f,
                "firmware {path} has sha256 {}…, which is not an approved hash",
                sha256.short()
            ),
            Reason::FirmwareNotMeasured { path } => write!(f, "firmware {path} was not measured"),
            Reason::EventLogMissing { scope } => write!(
                f,
                "evidence carries no event log, but the reference for {scope} constrains boot events"
            ),
            Reason::SecureBootDisabled => f.write_str("Secure Boot is disabled"),
            Reason::SecureBootUnknown => f.write_str("Secure Boot state is not in the event log"),
            Reason::DbxShrunk {
                entries,
                min,
                scope,
            } => write!(
                f,
                "dbx has {entries} entries, fewer than the {min} of the reference for {scope}: \
                 revocations were removed"
            ),
            Reason::DbxMissing => f.write_str("dbx is not in the event log"),
            Reason::EventNotInReference {
                pcr,
                event_type,
                subject,
                digest,
                scope,
            } => {
                let sep = if subject.is_empty() { "" } else { " " };
                write!(
                    f,
                    "PCR {pcr} {event_type}{sep}{subject} digest {}… not in reference for {scope}",
                    digest.short()
                )
            }
            Reason::EventClassMissing { kind, scope } => write!(
                f,
                "the reference for {scope} requires {} events, but the event log shows none \
                 that the quote vouches for",
                kind.name()
            ),
            Reason::EventsUnverifiable { pcrs } => write!(
                f,
                "event log entries in PCR {} cannot be checked: the quote does not reproduce them",
                list(pcrs)
            ),
            Reason::ClosedWorldStaleMeasurements { scope } => write!(
                f,
                "the measurements predate closed-world event checks, which the reference for \
                 {scope} needs: fresh evidence is required"
            ),
            Reason::ClosedWorldPcrNotQuoted { pcr, scope } => write!(
                f,
                "PCR {pcr} is constrained by the reference for {scope} but was not quoted"
            ),
            Reason::ClosedWorldPcrMismatch { pcr } => {
                write!(f, "event log does not match the quote: PCR {pcr}")
            }
            Reason::ClosedWorldPcrUnexplained { pcr } => {
                write!(f, "quoted PCR {pcr} is not explained by the event log")
            }
            Reason::ClosedWorldEventType {
                pcr,
                event_type,
                scope,
            } => write!(
                f,
                "PCR {pcr} {event_type} event is not in the reference for {scope}"
            ),
            Reason::FirmwareEventInOsPcr { pcr, event_type } => write!(
                f,
                "PCR {pcr} {event_type} event: a firmware event type in a PCR the PC Client \
                 spec leaves to the OS, so a boot-loader measurement relabelled to escape its \
                 class"
            ),
            Reason::NoFreshEvidence { since } => write!(
                f,
                "no fresh evidence since {}",
                crate::device::rfc3339(*since)
            ),
            Reason::Unresponsive { expiries } => write!(
                f,
                "unresponsive: {expiries} verdict periods without fresh evidence"
            ),
            Reason::Quarantined { actor, reasons } => {
                write!(f, "quarantined by {actor}: {}", join(reasons))
            }
            Reason::PunchForged => {
                f.write_str("a punch batch's signature does not verify with the device's key")
            }
            Reason::PunchFork { seq } => write!(
                f,
                "punch {seq} differs from the record the mirror holds (fork)"
            ),
            Reason::PunchChainBroken { seq } => {
                write!(f, "the punch chain is broken at record {seq}")
            }
            Reason::SupplyChainDenied { component, rule } => {
                write!(
                    f,
                    "{component} is refused by the supply-chain policy ({rule})"
                )
            }
            Reason::HardwareChanged {
                component,
                was,
                now,
            } => write!(
                f,
                "hardware changed since provisioning: {component} was {was}, is now {now}"
            ),
            Reason::InventoryMissing => f.write_str(
                "evidence carries no hardware inventory, but the device was enrolled from a \
                 manifest or a supply-chain policy is in force",
            ),
            Reason::InventoryNotMeasured => f.write_str(
                "the hardware inventory in the evidence is not the one measured into the quoted \
                 firmware PCR",
            ),
            Reason::FirmwareRevoked {
                model,
                version,
                reason,
            } => write!(
                f,
                "firmware {version} of model {model} was revoked: {reason}"
            ),
            Reason::EkCertUntrusted { detail } => write!(
                f,
                "no EK certificate chaining to a trusted TPM-manufacturer root ({detail})"
            ),
            Reason::Operator { text } | Reason::Legacy(text) => f.write_str(text),
            Reason::Evidence(d) => d.fmt(f),
        }
    }
}

impl From<Defect> for Reason {
    fn from(d: Defect) -> Self {
        Reason::Evidence(d)
    }
}

/// Digests as hex text in every format: serde buffers the fields of an internally tagged enum
/// in a form that no longer knows whether the format is human-readable, so
/// [`Sha256Digest`]'s own (bytes in CBOR, hex in JSON) would not read back from CBOR.
mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::bytes::Sha256Digest;

    pub fn serialize<S: Serializer>(d: &Sha256Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
