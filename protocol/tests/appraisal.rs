//! Appraisal of real swtpm quotes (vectors in tests/vectors/tpm): the happy path and each named
//! failure a verdict must report, from quote crypto to firmware replay, clock and policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use std::path::Path;
use vouch_protocol::appraisal::{self, Defect, FailedClaim, Policy, SentLog, log_part};
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::Nonce;
use vouch_protocol::messages::{
    EnrollmentRequest, EventLogPart, Evidence, PcrValue, ReassembleError,
};
use vouch_protocol::policy::ReferenceValues;
use vouch_protocol::reason::{self, Reason};
use vouch_protocol::verdict::Status;
use vouch_protocol::wire;

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/tpm")
            .join(name),
    )
    .unwrap()
}

fn enrollment() -> Enrollment {
    let key = SigningKey::from_bytes(&[5; 32]);
    let req = EnrollmentRequest {
        model: "T-100".into(),
        ek_public: Bytes(vector("ek.pub")[2..].to_vec()),
        ek_certificate: None,
        ak_public: Bytes(vector("ak.tpmt")),
        ak_name: Bytes(vector("ak.name")),
        device_key: Bytes(key.verifying_key().to_bytes().to_vec()),
        mqtt_password_hash: "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==".into(),
        firmware_version: None,
        inventory: None,
    };
    let bytes = wire::seal(&"t1".parse().unwrap(), &req, &key);
    Enrollment::from_request(&bytes, 0).unwrap()
}

/// The reference values `rv` as the device's own policy.
fn policy(rv: &ReferenceValues) -> Policy<'_> {
    Policy {
        values: rv,
        id: "p",
        label: "device t1",
    }
}

fn pcrs(name: &str) -> Vec<PcrValue> {
    String::from_utf8(vector(name))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("sha256:"))
        .map(|l| {
            let (i, v) = l.split_once(' ').unwrap();
            PcrValue {
                index: i.parse().unwrap(),
                value: v.parse().unwrap(),
            }
        })
        .collect()
}

fn nonce(name: &str) -> Nonce {
    let hex = String::from_utf8(vector(name)).unwrap();
    Nonce::from_slice(&hex::decode(hex.trim()).unwrap()).unwrap()
}

/// Evidence from the quote taken after a TPM reset: PCR 14 is zero, so an empty firmware list
/// replays to it.
fn reset_evidence() -> Evidence {
    Evidence {
        nonce: nonce("nonce3.hex"),
        attest: Bytes(vector("quote-reset.msg")),
        signature: Bytes(vector("quote-reset.sig")),
        pcrs: pcrs("quote-reset.pcrs.txt"),
        firmware_pcr: 14,
        firmware: vec![],
        eventlog: None,
        firmware_version: None,
        inventory: None,
    }
}

#[test]
fn real_quote_verifies_and_captured_policy_affirms() {
    let verified = appraisal::verify_evidence(&enrollment(), &reset_evidence(), None).unwrap();
    assert_eq!(verified.measurements.pcrs.len(), 9);
    let rv = verified.measurements.capture();
    let a = appraisal::appraise(&Ok(verified), None, Some(policy(&rv)), "t1");
    assert_eq!(a.status, Status::Affirming, "{:?}", a.reasons);
    assert!(a.reasons.is_empty());
}

#[test]
fn no_reference_values_is_a_warning_that_names_them() {
    let verified = appraisal::verify_evidence(&enrollment(), &reset_evidence(), None);
    let a = appraisal::appraise(&verified, None, None, "device t1 or model T-100");
    assert_eq!(a.status, Status::Warning);
    assert_eq!(
        a.reasons,
        vec![Reason::NoReferenceValues {
            subject: "device t1 or model T-100".into()
        }]
    );
}

#[test]
fn wrong_nonce_is_a_crypto_failure() {
    let mut ev = reset_evidence();
    ev.nonce = nonce("nonce1.hex");
    let f = appraisal::verify_evidence(&enrollment(), &ev, None).unwrap_err();
    assert_eq!(f.claim, FailedClaim::Crypto);
    assert_eq!(f.reason.code(), "quote_nonce_mismatch", "{}", f.reason);
}

#[test]
fn reported_pcr_that_differs_from_the_quote_is_caught() {
    let mut ev = reset_evidence();
    ev.pcrs[4].value = Sha256Digest([9; 32]);
    let f = appraisal::verify_evidence(&enrollment(), &ev, None).unwrap_err();
    assert_eq!(f.claim, FailedClaim::Crypto);
    assert_eq!(f.reason.code(), "quote_pcr_digest_mismatch", "{}", f.reason);
}

#[test]
fn firmware_list_that_does_not_replay_names_the_pcr() {
    // The first quote's PCR 14 was extended by something other than a vouch firmware list.
    let ev = Evidence {
        nonce: nonce("nonce1.hex"),
        attest: Bytes(vector("quote.msg")),
        signature: Bytes(vector("quote.sig")),
        pcrs: pcrs("quote.pcrs.txt"),
        firmware_pcr: 14,
        firmware: vec![FirmwareEntry {
            path: "/fw/app.bin".into(),
            sha256: Some(Sha256Digest([1; 32])),
        }],
        eventlog: None,
        firmware_version: None,
        inventory: None,
    };
    let f = appraisal::verify_evidence(&enrollment(), &ev, None).unwrap_err();
    assert_eq!(f.claim, FailedClaim::Executables);
    assert_eq!(f.reason, Defect::FirmwareReplayMismatch(14));
}

#[test]
fn evidence_missing_a_boot_pcr_is_refused() {
    let mut ev = reset_evidence();
    ev.pcrs.retain(|p| p.index != 7);
    let f = appraisal::verify_evidence(&enrollment(), &ev, None).unwrap_err();
    assert_eq!(f.reason, Defect::PcrNotCovered(7));
}

#[test]
fn quote_by_an_ak_under_another_ek_is_refused() {
    let mut e = enrollment();
    // Pretend the AK was enrolled under a different EK: the quote's qualified signer differs.
    e.ek_public = Bytes(vector("ak.tpmt"));
    let f = appraisal::verify_evidence(&e, &reset_evidence(), None).unwrap_err();
    assert_eq!(f.claim, FailedClaim::Hardware);
}

#[test]
fn clock_going_backwards_is_contraindicated() {
    let verified = appraisal::verify_evidence(&enrollment(), &reset_evidence(), None).unwrap();
    let mut later = verified.clock;
    later.clock += 1000;
    let a = appraisal::appraise(&Ok(verified), Some(&later), None, "t1");
    assert_eq!(a.status, Status::Contraindicated);
    assert_eq!(reason::codes(&a.reasons), ["clock"], "{:?}", a.reasons);
}

#[test]
fn changed_pcr_against_policy_names_it() {
    let verified = appraisal::verify_evidence(&enrollment(), &reset_evidence(), None).unwrap();
    let mut rv: ReferenceValues = verified.measurements.capture();
    rv.pcrs.insert(4, Sha256Digest([4; 32]));
    let a = appraisal::appraise(&Ok(verified), None, Some(policy(&rv)), "t1");
    assert_eq!(a.status, Status::Contraindicated);
    assert!(
        a.reasons
            .iter()
            .any(|r| matches!(r, Reason::PcrMismatch { index: 4, .. })),
        "{:?}",
        a.reasons
    );
    assert_eq!(a.policy_id.as_deref(), Some("p"));
}

#[test]
fn event_log_that_reproduces_the_quote_is_accepted() {
    // The vector's PCRs 0-7 are all zero: a log with only its header reproduces them.
    let header_only = vouch_protocol::eventlog::build::LogBuilder::new(&[
        vouch_protocol::digest::HashAlg::Sha256,
    ]);
    let log = vouch_protocol::eventlog::parse(&header_only.bytes()).unwrap();
    let v = appraisal::verify_evidence(&enrollment(), &reset_evidence(), Some(&log)).unwrap();
    assert!(v.measurements.eventlog.unwrap().events.is_empty());
}

#[test]
fn event_log_that_does_not_reproduce_the_quote_names_the_pcrs() {
    let boot = vouch_protocol::eventlog::build::TerminalBoot::default().log();
    let log = vouch_protocol::eventlog::parse(&boot.bytes()).unwrap();
    let f = appraisal::verify_evidence(&enrollment(), &reset_evidence(), Some(&log)).unwrap_err();
    assert_eq!(f.claim, FailedClaim::Executables);
    assert_eq!(f.reason, Defect::EventLogMismatch((0..=7).collect()));
    assert_eq!(
        f.reason.to_string(),
        "event log does not match the quote: PCR 0, 1, 2, 3, 4, 5, 6, 7"
    );
}

#[test]
fn sha1_only_event_log_cannot_be_checked() {
    let sha1 =
        vouch_protocol::eventlog::build::LogBuilder::new(&[vouch_protocol::digest::HashAlg::Sha1]);
    let log = vouch_protocol::eventlog::parse(&sha1.bytes()).unwrap();
    let f = appraisal::verify_evidence(&enrollment(), &reset_evidence(), Some(&log)).unwrap_err();
    assert_eq!(f.reason, Defect::EventLogNoSha256);
}

#[test]
fn firmware_pcr_outside_the_usable_range_is_refused() {
    for pcr in [7u8, 17, 22, 24] {
        let mut ev = reset_evidence();
        ev.firmware_pcr = pcr;
        let f = appraisal::verify_evidence(&enrollment(), &ev, None).unwrap_err();
        assert_eq!(f.reason, Defect::FirmwarePcrUnusable(pcr));
    }
}

/// The TPM boot (resetCount) of the reset vector's quote.
fn reset_boot() -> u32 {
    vouch_protocol::tpm::Attest::parse(&vector("quote-reset.msg"))
        .unwrap()
        .clock_info()
        .reset_count
}

fn with_log(offset: u64, bytes: &[u8]) -> Evidence {
    Evidence {
        eventlog: Some(EventLogPart {
            offset,
            bytes: Bytes(bytes.to_vec()),
        }),
        ..reset_evidence()
    }
}

fn defect(log: Result<SentLog, ReassembleError>) -> Defect {
    match log {
        Ok(SentLog::Defective(d)) => d,
        other => panic!("expected a defect, got {other:?}"),
    }
}

#[test]
fn garbage_attest_is_a_defect_even_with_a_delta() {
    let held = header_only_log();
    let mut ev = with_log(held.len() as u64, b"");
    ev.attest = Bytes(b"not a TPMS_ATTEST".to_vec());
    let d = defect(log_part::assemble(
        &ev,
        Some((reset_boot(), &held)),
        1 << 20,
    ));
    assert_eq!(d.code(), "attest_malformed");
    // The verdict names the structure, after the quote's own parse says the same.
    let f = appraisal::verify_evidence_with_log(&enrollment(), &ev, &SentLog::Defective(d))
        .unwrap_err();
    assert_eq!(f.claim, FailedClaim::Evidence);
    assert_eq!(f.reason.code(), "attest_malformed", "{}", f.reason);
}

fn header_only_log() -> Vec<u8> {
    vouch_protocol::eventlog::build::LogBuilder::new(&[vouch_protocol::digest::HashAlg::Sha256])
        .bytes()
}

#[test]
fn a_log_that_does_not_parse_is_a_defect_naming_the_parser() {
    let log = header_only_log();
    let truncated = &log[..log.len() - 3];
    let d = defect(log_part::assemble(&with_log(0, truncated), None, 1 << 20));
    assert_eq!(d.code(), "eventlog_malformed");
    // A delta that makes the held log unparsable is the same defect.
    let d = defect(log_part::assemble(
        &with_log(log.len() as u64, &[1, 2, 3]),
        Some((reset_boot(), &log)),
        1 << 20,
    ));
    assert_eq!(d.code(), "eventlog_malformed");
}

#[test]
fn a_whole_log_that_does_not_extend_the_held_one_changed_within_the_boot() {
    let held = vouch_protocol::eventlog::build::TerminalBoot::default()
        .log()
        .bytes();
    let other = header_only_log();
    let boot = reset_boot();
    let d = defect(log_part::assemble(
        &with_log(0, &other),
        Some((boot, &held)),
        1 << 20,
    ));
    assert_eq!(
        d,
        Defect::EventLogChanged {
            boot,
            held: held.len() as u64
        }
    );
    // The same log whole, or the held log of another boot: accepted for parsing.
    assert!(matches!(
        log_part::assemble(&with_log(0, &held), Some((boot, &held)), 1 << 20),
        Ok(SentLog::Parsed { .. })
    ));
    assert!(matches!(
        log_part::assemble(&with_log(0, &other), Some((boot + 1, &held)), 1 << 20),
        Ok(SentLog::Parsed { .. })
    ));
    // With a genuine quote, the defect is the verdict's reason.
    let f = appraisal::verify_evidence_with_log(
        &enrollment(),
        &with_log(0, &other),
        &SentLog::Defective(d),
    )
    .unwrap_err();
    assert_eq!(f.reason.code(), "eventlog_changed");
    assert_eq!(f.claim, FailedClaim::Executables);
}

#[test]
fn quote_failures_are_named_before_log_defects() {
    let mut ev = with_log(0, b"");
    ev.nonce = nonce("nonce1.hex");
    let d = Defect::EventLogMalformed("x".into());
    let f = appraisal::verify_evidence_with_log(&enrollment(), &ev, &SentLog::Defective(d))
        .unwrap_err();
    assert_eq!(f.reason.code(), "quote_nonce_mismatch");
}

#[test]
fn a_delta_is_a_gap_only_when_it_misfits_the_held_log_of_its_boot() {
    let held = header_only_log();
    let boot = reset_boot();
    let misfit = with_log(held.len() as u64 - 1, b"");
    assert!(matches!(
        log_part::assemble(&misfit, Some((boot, &held)), 1 << 20),
        Err(ReassembleError::Gap { .. })
    ));
    // A delta for a boot the verifier holds no log of is wrong inside the evidence.
    let delta = with_log(held.len() as u64, b"");
    for held in [None, Some((boot + 1, held.as_slice()))] {
        let d = defect(log_part::assemble(&delta, held, 1 << 20));
        assert_eq!(d.code(), "eventlog_unknown_boot");
    }
    assert!(matches!(
        log_part::assemble(&with_log(0, &held), None, 8),
        Err(ReassembleError::TooLarge { .. })
    ));
}
