//! Closed-world per-event policy (hardening issue, case 5) on synthesized boots: the quoted PCR
//! values are what a TPM holds after the digests of one boot were extended, the log is what the
//! terminal's file claims, and the reference is captured from a clean boot with only PCRs 0-7
//! pinned — so the event checks alone must catch a log that omits or relabels a boot-loader
//! event the quote reflects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use vouch_protocol::appraisal::{self, Policy};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::eventlog::EventType;
use vouch_protocol::eventlog::build::{LogBuilder, TerminalBoot};
use vouch_protocol::policy::events::EventKind;
use vouch_protocol::policy::{Measurements, ReferenceValues};
use vouch_protocol::reason::Reason;
use vouch_protocol::verdict::Status;

const FIRMWARE_PCR: u8 = 14;

/// The sha256 PCRs 0-9 and the firmware PCR of a TPM reset and then extended with `boot`'s
/// digests, plus `extra` extends the log does not show.
fn quoted(boot: &LogBuilder, extra: &[(u8, [u8; 32])]) -> BTreeMap<u8, Sha256Digest> {
    let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..=9)
        .chain([FIRMWARE_PCR])
        .map(|i| (i, vec![0; 32]))
        .collect();
    let extends = boot.extends(HashAlg::Sha256).into_iter();
    let extra = extra.iter().map(|(p, d)| (u32::from(*p), d.to_vec()));
    for (pcr, digest) in extends.chain(extra) {
        let value = pcrs.get_mut(&u8::try_from(pcr).unwrap()).unwrap();
        HashAlg::Sha256.extend(value, &digest);
    }
    pcrs.into_iter()
        .map(|(i, v)| (i, Sha256Digest::from_slice(&v).unwrap()))
        .collect()
}

/// What the verifier proves from `written` (the log file) against `pcrs` (a verified quote).
fn measurements(written: &[u8], pcrs: BTreeMap<u8, Sha256Digest>) -> Measurements {
    let log = vouch_protocol::eventlog::parse(written).unwrap();
    let (_, lm) = appraisal::check_log(&log, &pcrs, FIRMWARE_PCR).unwrap();
    Measurements {
        pcrs,
        firmware_pcr: FIRMWARE_PCR,
        firmware: Vec::new(),
        eventlog: Some(lm),
        firmware_version: None,
        inventory: None,
    }
}

/// Captured from the clean boot, then reduced to the issue's policy: PCRs 0-7 pinned, boot
/// events (`ipl` included) constrained.
fn boot_events_policy() -> ReferenceValues {
    let clean = TerminalBoot::default().log();
    let mut rv = measurements(&clean.bytes(), quoted(&clean, &[])).capture();
    rv.pcrs.retain(|i, _| *i <= 7);
    let events = rv.events.as_ref().unwrap();
    assert!(events.digests.keys().any(|k| format!("{k:?}") == "Ipl"));
    assert_eq!(
        events.event_types.keys().copied().collect::<Vec<_>>(),
        (0..=9).collect::<Vec<u32>>(),
        "capture constrains every quoted PCR the log explains"
    );
    rv
}

fn appraise(m: &Measurements, rv: &ReferenceValues) -> (Status, Vec<Reason>) {
    let policy = Policy {
        values: rv,
        id: "p",
        label: "model T-100",
    };
    let a = appraisal::reevaluate(m, Some(policy), "model T-100");
    (a.status, a.reasons)
}

fn shell_boot() -> LogBuilder {
    TerminalBoot {
        kernel_cmdline: "/vmlinuz root=/dev/mmcblk0p2 ro quiet init=/bin/sh".into(),
        ..TerminalBoot::default()
    }
    .log()
}

/// `bytes` without its PCR 8 EV_IPL record, or with that record's type set to `relabel`.
fn doctor_pcr8_ipl(bytes: &[u8], relabel: Option<EventType>) -> Vec<u8> {
    vouch_protocol::eventlog::build::doctor_event(bytes, 8, EventType::IPL, relabel).unwrap()
}

#[test]
fn the_clean_boot_and_the_honest_shell_boot_are_told_apart() {
    let rv = boot_events_policy();
    let clean = TerminalBoot::default().log();
    let (status, reasons) = appraise(&measurements(&clean.bytes(), quoted(&clean, &[])), &rv);
    assert_eq!(status, Status::Affirming, "{reasons:?}");
    // Logged honestly, the shell boot's command line is an unapproved IPL event.
    let evil = shell_boot();
    let (status, reasons) = appraise(&measurements(&evil.bytes(), quoted(&evil, &[])), &rv);
    assert_eq!(status, Status::Contraindicated);
    assert!(
        reasons.iter().any(|r| matches!(
            r,
            Reason::EventNotInReference { pcr: 8, event_type, subject, .. }
                if event_type == "EV_IPL" && subject.starts_with("kernel_cmdline: ")
                    && subject.contains("init=/bin/sh")
        )),
        "{reasons:?}"
    );
}

#[test]
fn omitted_ipl_event_does_not_pass_a_policy_pinning_boot_events() {
    let rv = boot_events_policy();
    let evil = shell_boot();
    let written = doctor_pcr8_ipl(&evil.bytes(), None);
    let (status, reasons) = appraise(&measurements(&written, quoted(&evil, &[])), &rv);
    assert_eq!(status, Status::Contraindicated, "{reasons:?}");
    assert!(
        reasons.contains(&Reason::ClosedWorldPcrUnexplained { pcr: 8 }),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&Reason::EventClassMissing {
            kind: EventKind::Ipl,
            scope: "model T-100".into()
        }),
        "an approved class the policy lists is required: {reasons:?}"
    );
}

#[test]
fn relabelled_ipl_event_does_not_escape_its_class() {
    let rv = boot_events_policy();
    let evil = shell_boot();
    for relabel in [
        EventType::POST_CODE,
        EventType::SEPARATOR,
        EventType::EFI_ACTION,
    ] {
        let written = doctor_pcr8_ipl(&evil.bytes(), Some(relabel));
        let (status, reasons) = appraise(&measurements(&written, quoted(&evil, &[])), &rv);
        assert_eq!(status, Status::Contraindicated, "{relabel}: {reasons:?}");
        let want = Reason::ClosedWorldEventType {
            pcr: 8,
            event_type: relabel.to_string(),
            scope: "model T-100".into(),
        };
        assert!(reasons.contains(&want), "{reasons:?}");
    }
    // Firmware types in OS PCRs are named as relabelled even where a reference lists them.
    let mut lenient = rv.clone();
    let events = lenient.events.as_mut().unwrap();
    events
        .event_types
        .get_mut(&8)
        .unwrap()
        .insert("EV_POST_CODE".into());
    let written = doctor_pcr8_ipl(&evil.bytes(), Some(EventType::POST_CODE));
    let (status, reasons) = appraise(&measurements(&written, quoted(&evil, &[])), &lenient);
    assert_eq!(status, Status::Contraindicated);
    assert!(
        reasons.contains(&Reason::FirmwareEventInOsPcr {
            pcr: 8,
            event_type: "EV_POST_CODE".into()
        }),
        "{reasons:?}"
    );
}

#[test]
fn quoted_pcr_without_events_fails_when_constrained() {
    let rv = boot_events_policy();
    assert_eq!(rv.events.as_ref().unwrap().event_types[&9].len(), 0);
    let clean = TerminalBoot::default().log();
    // Something extended PCR 9 (GRUB's file PCR) without logging it.
    let pcrs = quoted(&clean, &[(9, [0x42; 32])]);
    let (status, reasons) = appraise(&measurements(&clean.bytes(), pcrs.clone()), &rv);
    assert_eq!(status, Status::Contraindicated, "{reasons:?}");
    assert_eq!(reasons, vec![Reason::ClosedWorldPcrUnexplained { pcr: 9 }]);
    // A constrained PCR the evidence does not quote is named too.
    let mut m = measurements(&clean.bytes(), pcrs);
    m.pcrs.remove(&9);
    let (_, reasons) = appraise(&m, &rv);
    assert!(
        reasons.contains(&Reason::ClosedWorldPcrNotQuoted {
            pcr: 9,
            scope: "model T-100".into()
        }),
        "{reasons:?}"
    );
}

#[test]
fn measurements_recorded_before_closed_world_checks_need_fresh_evidence() {
    let rv = boot_events_policy();
    let clean = TerminalBoot::default().log();
    let mut m = measurements(&clean.bytes(), quoted(&clean, &[]));
    m.eventlog.as_mut().unwrap().explained_pcrs = None;
    let (status, reasons) = appraise(&m, &rv);
    assert_eq!(status, Status::Contraindicated);
    assert!(
        reasons.contains(&Reason::ClosedWorldStaleMeasurements {
            scope: "model T-100".into()
        }),
        "{reasons:?}"
    );
}

#[test]
fn event_types_json_is_validated_and_round_trips() {
    let rv = boot_events_policy();
    let json = serde_json::to_value(&rv).unwrap();
    assert_eq!(json["events"]["event_types"]["8"][0], "EV_IPL");
    let back: ReferenceValues = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, rv);
    for (pcr, types) in [("24", r#"["EV_IPL"]"#), ("8", r#"["EV_KERNEL"]"#)] {
        let bad = format!(r#"{{"events": {{"event_types": {{"{pcr}": {types}}}}}}}"#);
        assert!(
            serde_json::from_str::<ReferenceValues>(&bad).is_err(),
            "{bad}"
        );
    }
}

/// Real firmware logs (tests/data/eventlogs): a reference captured from a log, with every PCR
/// the log reproduces constrained closed-world, accepts that same log — the closed-world and
/// class rules do not trip over what real firmware and boot loaders write.
#[test]
fn a_real_log_satisfies_the_closed_world_reference_captured_from_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eventlogs");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let log = vouch_protocol::eventlog::parse(&std::fs::read(&path).unwrap()).unwrap();
        if !log.banks().contains(&HashAlg::Sha256) {
            continue;
        }
        // A TPM that measured exactly this log, quoted on PCRs 0-9 (the firmware PCR left at
        // zero, outside what the log explains).
        let pcrs: BTreeMap<u8, Sha256Digest> = (0..=9)
            .map(|i| (i, appraisal::log_pcr_value(&log, i).unwrap()))
            .chain([(FIRMWARE_PCR, Sha256Digest::ZERO)])
            .collect();
        let Ok((_, lm)) = appraisal::check_log(&log, &pcrs, FIRMWARE_PCR) else {
            panic!(
                "{}: the log does not reproduce its own replay",
                path.display()
            );
        };
        let m = Measurements {
            pcrs,
            firmware_pcr: FIRMWARE_PCR,
            firmware: Vec::new(),
            eventlog: Some(lm),
            firmware_version: None,
            inventory: None,
        };
        let rv = m.capture();
        assert!(!rv.events.as_ref().unwrap().event_types.is_empty());
        let (status, reasons) = appraise(&m, &rv);
        // Logs with events in PCRs the quote does not cover (sd-boot's PCR 12, shim's 14) are
        // named as such; nothing else may be found.
        let unchecked = |r: &Reason| r.code() == "events_unverifiable";
        assert!(
            reasons.iter().all(unchecked),
            "{}: {status:?} {reasons:?}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} sha256 logs in the corpus");
}

/// Review finding: without `event_types` (every policy stored before closed-world checks, and
/// the issue's own "PCRs 0-7 pinned plus `ipl`" policy), a kernel command line relabelled from
/// `EV_IPL` to `EV_EFI_ACTION`, its data set to the very bytes it measured, was skipped as a
/// harmless action string: the `ipl` class was escaped and the shell boot passed, as long as
/// another IPL event (GRUB logs one per command) kept the class requirement satisfied.
#[test]
fn ipl_relabelled_as_a_digest_bound_action_does_not_escape_ipl_without_event_types() {
    let with_grub_cmd = |b: TerminalBoot| {
        let mut log = b.log();
        log.event(8, 0xd, b"grub_cmd: set root=hd0,gpt2\0");
        log
    };
    let clean = with_grub_cmd(TerminalBoot::default());
    let mut rv = measurements(&clean.bytes(), quoted(&clean, &[])).capture();
    rv.pcrs.retain(|i, _| *i <= 7);
    rv.events.as_mut().unwrap().event_types.clear();
    let (status, reasons) = appraise(&measurements(&clean.bytes(), quoted(&clean, &[])), &rv);
    assert_eq!(status, Status::Affirming, "{reasons:?}");
    let evil = with_grub_cmd(TerminalBoot {
        kernel_cmdline: "/vmlinuz root=/dev/mmcblk0p2 ro quiet init=/bin/sh".into(),
        ..TerminalBoot::default()
    });
    for relabel in [EventType::EFI_ACTION, EventType::ACTION] {
        let written = doctor_pcr8_ipl(&evil.bytes(), Some(relabel));
        let (status, reasons) = appraise(&measurements(&written, quoted(&evil, &[])), &rv);
        assert_eq!(status, Status::Contraindicated, "{relabel}: {reasons:?}");
    }
}
