//! Appraisal of evidence: the verifier's checks, in order, each failing with a reason an
//! operator can act on. Split in two so the expensive, stateless part can run on worker threads:
//!
//! 1. [`verify_evidence`] (stateless): firmware-PCR range, list bounds, quote coverage of PCRs
//!    0-7 and the firmware PCR, TPMS_ATTEST magic and type, signature by the enrolled AK,
//!    extraData = nonce, pcrDigest = digest of the reported PCR values, qualified signer = the
//!    enrolled AK under the enrolled EK, the event log (if sent) replays to the quoted PCRs 0-7,
//!    the firmware list replays to the firmware PCR (on top of what the log put there).
//! 2. [`appraise`] (needs the device's history and policy): TPM clock consistent with the last
//!    accepted quote, then measurements against reference values.
//!
//! Envelope signature, enrollment and nonce freshness are checked before either (see the
//! verifier engine): a message failing those is *rejected*, while evidence failing these checks
//! was signed by the device and yields a *contraindicated verdict* whose reason is a [`Defect`]
//! — so is anything wrong inside the evidence before them: a garbage `attest`, an event log that
//! does not parse, is rewritten within a boot or continues an unknown boot ([`log_part`]).

mod defect;
pub mod log_part;
pub mod vetting;

use std::collections::{BTreeMap, BTreeSet};

use crate::bytes::Sha256Digest;
use crate::digest::HashAlg;
use crate::enrollment::Enrollment;
use crate::eventlog::EventLog;
use crate::firmware;
use crate::messages::Evidence;
use crate::policy::events::LogMeasurements;
use crate::policy::{Area, Measurements, ReferenceValues, evaluate};
use crate::reason::Reason;
use crate::tpm::{self, ClockInfo, PcrValues, TpmPublic};
use crate::verdict::{Status, TrustVector, claim};

pub use defect::{Defect, FailedClaim};
pub use log_part::{SentDigest, SentLog};
pub use vetting::{Vetting, vet};

/// What the stateless checks established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub measurements: Measurements,
    pub clock: ClockInfo,
}

/// A failed check: what was wrong, and the claim it counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub claim: FailedClaim,
    pub reason: Defect,
    /// The clock of the quote when the quote itself verified (signature, nonce, PCR digest,
    /// signer) and a later check failed: the evidence is genuine TPM output, so it can be told
    /// apart from tampering when it merely arrived after a newer quote (see [`superseded`]).
    pub genuine_clock: Option<ClockInfo>,
}

fn fail(reason: Defect) -> Failure {
    Failure {
        claim: reason.claim(),
        reason,
        genuine_clock: None,
    }
}

/// The event log as [`verify_evidence_with_log`] sees it.
#[derive(Debug, Clone, Copy)]
enum LogInput<'a> {
    Absent,
    Log(&'a EventLog),
    Defective(&'a Defect),
}

/// The boot-chain PCRs every quote must cover.
pub const REQUIRED_PCRS: std::ops::RangeInclusive<u8> = 0..=7;

/// Stateless checks of `ev` from the device enrolled as `device`. `log` is the device's whole
/// firmware event log for this boot, already parsed (the evidence may carry only its new part).
pub fn verify_evidence(
    device: &Enrollment,
    ev: &Evidence,
    log: Option<&EventLog>,
) -> Result<Verified, Failure> {
    let input = log.map_or(LogInput::Absent, LogInput::Log);
    verify(device, ev, input)
}

/// [`verify_evidence`] with the log as the verifier assembled it from the evidence
/// ([`log_part::assemble`]). A defective log fails the evidence, but only after the quote's own
/// checks: a quote that does not verify is named first, and a log defect judged against the
/// boot a quote claims counts only once that quote is known to be genuine.
pub fn verify_evidence_with_log(
    device: &Enrollment,
    ev: &Evidence,
    log: &SentLog,
) -> Result<Verified, Failure> {
    let input = match log {
        SentLog::Absent => LogInput::Absent,
        SentLog::Parsed { log, .. } => LogInput::Log(log),
        SentLog::Defective(d) => LogInput::Defective(d),
    };
    verify(device, ev, input)
}

fn verify(device: &Enrollment, ev: &Evidence, log: LogInput<'_>) -> Result<Verified, Failure> {
    let ak = TpmPublic::parse(device.ak_public.as_slice())
        .map_err(|e| fail(Defect::EnrolledAkUnusable(e.to_string())))?;
    if !firmware::usable_pcr(ev.firmware_pcr) {
        return Err(fail(Defect::FirmwarePcrUnusable(ev.firmware_pcr)));
    }
    firmware::check_list(&ev.firmware).map_err(|e| fail(Defect::FirmwareListMalformed(e)))?;
    let mut values = PcrValues::new();
    for p in &ev.pcrs {
        values
            .insert(HashAlg::Sha256, p.index, p.value.0.to_vec())
            .map_err(|e| fail(Defect::PcrValuesMalformed(e.to_string())))?;
    }
    for index in REQUIRED_PCRS.chain([ev.firmware_pcr]) {
        if !ev.pcrs.iter().any(|p| p.index == index) {
            return Err(fail(Defect::PcrNotCovered(index)));
        }
    }
    let quote = tpm::verify_quote(
        &ak,
        ev.attest.as_slice(),
        ev.signature.as_slice(),
        ev.nonce.as_bytes(),
        &values,
    )
    .map_err(|e| fail(Defect::of_quote(e)))?;
    match device.expected_signer() {
        Some(signer) if quote.qualified_signer() == &signer => {}
        _ => return Err(fail(Defect::WrongSigner)),
    }
    let clock = quote.clock_info();
    verify_after_quote(ev, log, clock).map_err(|mut f| {
        f.genuine_clock = Some(clock);
        f
    })
}

/// The checks that follow a verified quote: the event log against the quoted PCRs, and the
/// firmware list against the firmware PCR.
fn verify_after_quote(
    ev: &Evidence,
    log: LogInput<'_>,
    clock: ClockInfo,
) -> Result<Verified, Failure> {
    let pcrs: BTreeMap<u8, Sha256Digest> = ev.pcrs.iter().map(|p| (p.index, p.value)).collect();
    let (firmware_start, eventlog) = match log {
        LogInput::Log(log) => {
            let (start, lm) = check_log(log, &pcrs, ev.firmware_pcr)?;
            (start, Some(lm))
        }
        LogInput::Defective(d) => return Err(fail(d.clone())),
        LogInput::Absent => (Sha256Digest::ZERO, None),
    };
    let replayed = firmware::replay_from(&firmware_start, &ev.firmware);
    if pcrs.get(&ev.firmware_pcr) != Some(&replayed) {
        return Err(fail(Defect::FirmwareReplayMismatch(ev.firmware_pcr)));
    }
    if let Some(inv) = &ev.inventory {
        inv.check()
            .map_err(|e| fail(Defect::InventoryMalformed(e.to_string())))?;
    }
    // The version selects a vendor bundle and is named in reasons: bounded like the bundle's.
    if let Some(v) = &ev.firmware_version {
        crate::vendor::bundle::check_label("reported firmware version", v)
            .map_err(|e| fail(Defect::FirmwareVersionMalformed(e)))?;
    }
    Ok(Verified {
        measurements: Measurements {
            pcrs,
            firmware_pcr: ev.firmware_pcr,
            firmware: ev.firmware.clone(),
            eventlog,
            firmware_version: ev.firmware_version.clone(),
            inventory: ev.inventory.clone(),
        },
        clock,
    })
}

/// Whether a genuine quote is older than the last one accepted in the same TPM boot (two quotes
/// in flight arriving out of order). Such evidence is superseded, not a sign of tampering: the
/// TPM clock cannot go backwards within a boot, so the newer quote already stands for the device.
///
/// A genuine quote whose event log fails (say an older round's whole log, which the log held for
/// the boot has since extended) is judged the same way, by its quote's clock: it is superseded,
/// not a rewrite of the log.
pub fn superseded(last: Option<&ClockInfo>, outcome: &Result<Verified, Failure>) -> bool {
    let clock = match outcome {
        Ok(v) => &v.clock,
        Err(f) => match &f.genuine_clock {
            Some(c) => c,
            None => return false,
        },
    };
    last.is_some_and(|l| {
        l.reset_count == clock.reset_count
            && l.restart_count == clock.restart_count
            && clock.clock <= l.clock
    })
}

/// The sha256 value `log` leaves in `pcr`: its replay, zero for a PCR it never extends, `None`
/// when the log lacks sha256 digests for that PCR. The agent's firmware list starts from it.
pub fn log_pcr_value(log: &EventLog, pcr: u8) -> Option<Sha256Digest> {
    replayed_sha256(&log.replay(), pcr)
}

fn replayed_sha256(replay: &crate::eventlog::Replay, pcr: u8) -> Option<Sha256Digest> {
    if replay
        .unreplayable()
        .get(&HashAlg::Sha256)
        .is_some_and(|u| u.contains(&u32::from(pcr)))
    {
        return None;
    }
    match replay.get(HashAlg::Sha256, u32::from(pcr)) {
        Some(v) => Sha256Digest::from_slice(v).ok(),
        // A PCR the log never extends holds its reset value.
        None => Some(Sha256Digest::ZERO),
    }
}

/// Requires the log's sha256 replay to reproduce every quoted boot PCR (0-7), and returns what
/// the log left in the firmware PCR (where the firmware list starts) and the measurements of the
/// events the quote vouches for: PCRs 0-7, and OS PCRs whose quoted value the log reproduces
/// (listed as explained, so closed-world policy can tell which quoted PCRs the log accounts
/// for, with or without events). This is the log half of [`verify_evidence`], for `quoted`
/// values whose quote has already been verified.
pub fn check_log(
    log: &EventLog,
    quoted: &BTreeMap<u8, Sha256Digest>,
    firmware_pcr: u8,
) -> Result<(Sha256Digest, LogMeasurements), Failure> {
    if !log.banks().contains(&HashAlg::Sha256) {
        return Err(fail(Defect::EventLogNoSha256));
    }
    let replay = log.replay();
    let replayed = |pcr: u8| replayed_sha256(&replay, pcr);
    let mismatched: Vec<u8> = REQUIRED_PCRS
        .filter(|i| {
            quoted
                .get(i)
                .is_none_or(|q| replayed(*i).as_ref() != Some(q))
        })
        .collect();
    if !mismatched.is_empty() {
        return Err(fail(Defect::EventLogMismatch(mismatched)));
    }
    let start =
        replayed(firmware_pcr).ok_or_else(|| fail(Defect::EventLogUnreplayable(firmware_pcr)))?;
    let explained: BTreeSet<u32> = quoted
        .iter()
        .filter(|(i, q)| **i != firmware_pcr && replayed(**i).as_ref() == Some(*q))
        .map(|(i, _)| u32::from(*i))
        .collect();
    let verified = |pcr: u32| -> bool {
        let Ok(p) = u8::try_from(pcr) else {
            return false;
        };
        if REQUIRED_PCRS.contains(&p) {
            return true;
        }
        p != firmware_pcr
            && quoted
                .get(&p)
                .is_some_and(|q| replayed(p).as_ref() == Some(q))
    };
    let mut lm = LogMeasurements::from_log(log, verified);
    lm.explained_pcrs = Some(explained);
    Ok((start, lm))
}

/// The reference values that apply, the policy id naming them, and how reasons name their
/// scope (`model T-100`).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub values: &'a ReferenceValues,
    pub id: &'a str,
    pub label: &'a str,
}

/// An appraisal result, before the device state machine shapes the published verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appraisal {
    pub status: Status,
    pub trust: TrustVector,
    pub reasons: Vec<Reason>,
    pub policy_id: Option<String>,
    /// The quote itself was accepted (crypto, signer, replay and clock checks passed), so its
    /// measurements and clock may be recorded as the device's latest, whatever the policy says.
    pub quote_accepted: bool,
}

/// Appraises fresh evidence: `outcome` of [`verify_evidence`], the device's last accepted clock,
/// and its policy (`None` when neither device nor model has reference values; `subject`
/// names them in that case).
pub fn appraise(
    outcome: &Result<Verified, Failure>,
    last_clock: Option<&ClockInfo>,
    policy: Option<Policy<'_>>,
    subject: &str,
) -> Appraisal {
    let verified = match outcome {
        Ok(v) => v,
        Err(f) => return failed(f, policy),
    };
    if let Some(last) = last_clock
        && let Err(e) = tpm::clock_consistent(last, &verified.clock)
    {
        return failed(&fail(Defect::Clock(e)), policy);
    }
    reevaluate(&verified.measurements, policy, subject)
}

/// Appraises measurements already verified (policy changes re-evaluate stored measurements).
pub fn reevaluate(m: &Measurements, policy: Option<Policy<'_>>, subject: &str) -> Appraisal {
    let mut trust = TrustVector {
        instance_identity: claim::TRUSTWORTHY_INSTANCE,
        hardware: claim::GENUINE_HARDWARE,
        ..TrustVector::default()
    };
    let Some(policy) = policy else {
        return Appraisal {
            status: Status::Warning,
            trust,
            reasons: vec![Reason::NoReferenceValues {
                subject: subject.to_owned(),
            }],
            policy_id: None,
            quote_accepted: true,
        };
    };
    let findings = evaluate(policy.values, m, policy.label);
    let any = |area: Area| findings.iter().any(|f| f.area == area);
    trust.configuration = if any(Area::Configuration) {
        claim::UNSUPPORTABLE_CONFIG
    } else {
        claim::APPROVED_CONFIG
    };
    trust.executables = if any(Area::Executables) {
        claim::CONTRAINDICATED_RUNTIME
    } else {
        claim::APPROVED_BOOT
    };
    if !policy.values.firmware.is_empty() || any(Area::FileSystem) {
        trust.file_system = if any(Area::FileSystem) {
            claim::CONTRAINDICATED_FILES
        } else {
            claim::APPROVED_FILES
        };
    }
    Appraisal {
        status: trust.worst(),
        trust,
        reasons: bounded_reasons(findings.into_iter().map(|f| f.reason).collect()),
        policy_id: Some(policy.id.to_owned()),
        quote_accepted: true,
    }
}

/// Most reasons one appraisal carries. Evidence within the protocol's limits can produce a
/// finding per firmware entry or event (4096 and more), but the verdict carrying them must pass
/// the receivers' pre-scan (at most [`crate::cbor_scan::MAX_CONTAINER_LEN`] elements per array)
/// and fit the payload limit, or nobody — agent, relying party, the verifier's own store — can
/// read it.
pub const MAX_REASONS: usize = 64;

/// The first [`MAX_REASONS`] - 1 reasons and a count of the rest, when there are more.
pub fn bounded_reasons(mut reasons: Vec<Reason>) -> Vec<Reason> {
    if reasons.len() > MAX_REASONS {
        let count = reasons.len() - (MAX_REASONS - 1);
        reasons.truncate(MAX_REASONS - 1);
        reasons.push(Reason::MoreReasons { count });
    }
    reasons
}

fn failed(f: &Failure, policy: Option<Policy<'_>>) -> Appraisal {
    let mut trust = TrustVector::default();
    match f.claim {
        FailedClaim::Crypto => {
            trust.instance_identity = claim::CRYPTO_VALIDATION_FAILED;
            trust.hardware = claim::CRYPTO_VALIDATION_FAILED;
        }
        FailedClaim::Hardware => trust.hardware = claim::CONTRAINDICATED_HARDWARE,
        FailedClaim::Executables => trust.executables = claim::CONTRAINDICATED_RUNTIME,
        FailedClaim::Evidence => trust.instance_identity = claim::UNRECOGNIZED_INSTANCE,
    }
    Appraisal {
        status: Status::Contraindicated,
        trust,
        reasons: vec![Reason::Evidence(f.reason.clone())],
        policy_id: policy.map(|p| p.id.to_owned()),
        quote_accepted: false,
    }
}
