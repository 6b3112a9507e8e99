//! End-to-end measured-boot scenarios (event-log issue, section 5; hardening issue, cases 5 and
//! 6): the harness writes a synthetic crypto-agile log and extends the same digests into a
//! freshly reset swtpm, so the agent sends a real log and a real quote that agree — until a test
//! makes them disagree, or makes the evidence wrong inside. Evidence the device signed is never
//! dropped: it gets a contraindicated verdict naming what was wrong, and the device is
//! quarantined by the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tempfile::TempDir;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::spy::Spy;
use vouch_e2e::wait_for;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::eventlog::EventType;
use vouch_protocol::eventlog::build::TerminalBoot;
use vouch_protocol::messages::{Challenge, EventLogPart, Evidence, PcrValue};
use vouch_protocol::wire;

struct Fleet {
    _dir: TempDir,
    tpm: Swtpm,
    v: Verifier,
    t: Terminal,
}

/// A terminal booted with the default terminal boot, enrolled, and trusted under the
/// reference values captured from its verified log.
fn trusted_with_log() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), BrokerKind::Managed);
    let mut t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.boot(&tpm, &TerminalBoot::default().log(), None);
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    v.capture("term-1");
    t.attest_expect(0);
    Fleet {
        _dir: dir,
        tpm,
        v,
        t,
    }
}

#[test]
fn clean_boot_is_trusted_and_the_policy_names_boot_events() {
    let f = trusted_with_log();
    assert_eq!(f.v.device("term-1")["state"], "trusted");
    let policy = f.v.ctl_json(&["policy", "show", "--device", "term-1"]);
    let events = &policy["events"];
    assert!(
        events["boot_application"]["\\EFI\\BOOT\\BOOTX64.EFI"].is_array(),
        "{policy:#}"
    );
    assert_eq!(events["secure_boot_required"], true);
    assert_eq!(events["dbx_min_entries"], 371);
}

#[test]
fn later_evidence_of_the_same_boot_sends_only_what_is_new() {
    let f = trusted_with_log();
    let spy = Spy::connect(f.v.mqtt_port, "delta");
    spy.subscribe("vouch/v1/term-1/evidence");
    f.t.attest_expect(0);
    let ev: Evidence = wire::decode_detached(
        &spy.wait_on("vouch/v1/term-1/evidence"),
        wire::DEFAULT_MAX_PAYLOAD,
    )
    .unwrap()
    .verify(&f.t.device_key().verifying_key())
    .unwrap()
    .open()
    .unwrap();
    let part = ev.eventlog.unwrap();
    let full = std::fs::read(f.t.eventlog.as_ref().unwrap()).unwrap();
    assert_eq!(part.offset, full.len() as u64);
    assert!(part.bytes.0.is_empty());
}

#[test]
fn changed_boot_application_is_quarantined_naming_the_event() {
    let mut f = trusted_with_log();
    let evil = TerminalBoot {
        bootloader: b"boot loader with an implant".to_vec(),
        ..TerminalBoot::default()
    };
    f.t.boot(&f.tpm, &evil.log(), None);
    let out = f.t.attest_expect(3);
    let want = "PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION \\EFI\\BOOT\\BOOTX64.EFI digest";
    assert!(out.contains(want), "{out}");
    let codes = f.v.reason_codes("term-1");
    assert!(
        codes.iter().any(|c| c == "event_not_in_reference"),
        "{codes:?}"
    );
}

#[test]
fn tampered_log_is_quarantined_as_a_mismatch() {
    let mut f = trusted_with_log();
    // The TPM measured the genuine boot; the file claims another boot loader.
    let genuine = TerminalBoot::default().log();
    let claimed = TerminalBoot {
        bootloader: b"what the attacker wants you to see".to_vec(),
        ..TerminalBoot::default()
    };
    f.t.boot(&f.tpm, &genuine, Some(&claimed.log().bytes()));
    let out = f.t.attest_expect(3);
    assert!(
        out.contains("event log does not match the quote: PCR 4"),
        "{out}"
    );
}

#[test]
fn secure_boot_off_is_quarantined_naming_secure_boot() {
    let mut f = trusted_with_log();
    let off = TerminalBoot {
        secure_boot: false,
        ..TerminalBoot::default()
    };
    f.t.boot(&f.tpm, &off.log(), None);
    let out = f.t.attest_expect(3);
    assert!(out.contains("Secure Boot is disabled"), "{out}");
}

/// Asserts that the verifier quarantined `term-1` by itself with a reason of code `want`.
fn assert_quarantined_by_the_verifier(f: &Fleet, want: &str) {
    let d = f.v.device("term-1");
    assert_eq!(d["state"], "quarantined", "{d:#}");
    assert_eq!(d["verdict_status"], "contraindicated", "{d:#}");
    assert_eq!(d["quarantine"]["actor"], "verifier", "{d:#}");
    let codes = f.v.reason_codes("term-1");
    assert!(
        codes.iter().any(|c| c == want),
        "reason codes {codes:?} do not include {want:?} (reasons {:?})",
        f.v.reasons("term-1")
    );
}

#[test]
fn truncated_eventlog_is_contraindicated_not_dropped() {
    let mut f = trusted_with_log();
    let genuine = TerminalBoot::default().log();
    let bytes = genuine.bytes();
    f.t.boot(&f.tpm, &genuine, Some(&bytes[..bytes.len() - 40]));
    let out = f.t.attest_expect(3);
    assert!(out.contains("event log malformed: event "), "{out}");
    assert_quarantined_by_the_verifier(&f, "eventlog_malformed");
    let reason = f.v.reasons("term-1").join("; ");
    assert!(reason.contains("offset"), "the parser's reason: {reason}");
}

#[test]
fn malformed_eventlog_is_contraindicated_not_dropped() {
    let mut f = trusted_with_log();
    let genuine = TerminalBoot::default().log();
    let mut garbage = genuine.bytes();
    // A digest count no log can have, in the first event after the header.
    let first = vouch_protocol::eventlog::parse(&garbage).unwrap().events[1].offset;
    garbage[first + 8..first + 12].copy_from_slice(&0xffff_u32.to_le_bytes());
    f.t.boot(&f.tpm, &genuine, Some(&garbage));
    let out = f.t.attest_expect(3);
    assert!(out.contains("event log malformed: "), "{out}");
    assert_quarantined_by_the_verifier(&f, "eventlog_malformed");
}

#[test]
fn eventlog_rewritten_within_a_boot_is_contraindicated() {
    let f = trusted_with_log();
    // Same TPM boot, no reboot: the file now tells another story than the one accepted.
    let rewritten = TerminalBoot {
        kernel_cmdline: "/vmlinuz root=/dev/mmcblk0p2 ro quiet init=/bin/sh".into(),
        ..TerminalBoot::default()
    };
    std::fs::write(f.t.eventlog.as_ref().unwrap(), rewritten.log().bytes()).unwrap();
    let out = f.t.attest_expect(3);
    assert!(out.contains("log changed within a boot"), "{out}");
    assert_quarantined_by_the_verifier(&f, "eventlog_changed");
}

#[test]
fn garbage_attest_is_contraindicated_not_dropped() {
    let mut f = trusted_with_log();
    let held = std::fs::read(f.t.eventlog.as_ref().unwrap()).unwrap().len() as u64;
    let spy = Spy::connect(f.v.mqtt_port, "garbage-attest");
    spy.subscribe("vouch/v1/term-1/challenge");
    // The agent asks for a challenge but cannot answer it (its event log is gone), which leaves
    // the test a fresh nonce to sign garbage evidence over with the device key.
    let log = f.t.eventlog.replace(f._dir.path().join("no-such-log"));
    let out = f.t.attest_once_within(5);
    assert_eq!(out.status.code(), Some(1));
    f.t.eventlog = log;
    let verifier_key = vouch_common::keys::read_public(&f.v.verifier_pub()).unwrap();
    let challenge: Challenge = wire::decode_detached(
        &spy.wait_on("vouch/v1/term-1/challenge"),
        wire::DEFAULT_MAX_PAYLOAD,
    )
    .unwrap()
    .verify(&verifier_key)
    .unwrap()
    .open()
    .unwrap();
    let garbage = Evidence {
        nonce: challenge.nonce,
        attest: Bytes(b"\xff\x54\x43 not a TPMS_ATTEST".to_vec()),
        signature: Bytes(vec![0; 72]),
        pcrs: PcrValue::from_pairs((0..=9).chain([14]).map(|i| (i, [0; 32]))),
        firmware_pcr: 14,
        firmware: Vec::new(),
        // A delta on the held log: before the fix the unreadable boot made this a silent gap.
        eventlog: Some(EventLogPart {
            offset: held,
            bytes: Bytes(Vec::new()),
        }),
        firmware_version: None,
        inventory: None,
    };
    let sealed = wire::seal(&"term-1".parse().unwrap(), &garbage, &f.t.device_key());
    spy.publish("vouch/v1/term-1/evidence", sealed);
    wait_for(
        Duration::from_secs(30),
        "the verifier to quarantine term-1",
        || (f.v.device("term-1")["state"] == "quarantined").then_some(()),
    );
    assert_quarantined_by_the_verifier(&f, "attest_malformed");
}

/// `bytes` without its PCR 8 EV_IPL record, or with that record's type set to `relabel`.
fn doctor_pcr8_ipl(bytes: &[u8], relabel: Option<EventType>) -> Vec<u8> {
    vouch_protocol::eventlog::build::doctor_event(bytes, 8, EventType::IPL, relabel).unwrap()
}

/// The device's captured policy without its pins of PCRs 8 and 9: the policy that pins
/// PCRs 0-7 and constrains boot events (`ipl` included), for the event checks alone to judge.
fn pin_only_boot_pcrs(f: &Fleet) {
    let mut policy = f.v.ctl_json(&["policy", "show", "--device", "term-1"]);
    let pcrs = policy["pcrs"]["sha256"].as_object_mut().unwrap();
    pcrs.retain(|i, _| i.parse::<u8>().unwrap() <= 7);
    assert!(policy["events"]["ipl"].is_object(), "{policy:#}");
    assert!(
        policy["events"]["event_types"]["8"].is_array(),
        "{policy:#}"
    );
    let file = f._dir.path().join("boot-pcrs-policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let out = f.v.ctl(&[
        "policy",
        "set",
        "--device",
        "term-1",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.v.device("term-1")["state"], "trusted");
}

fn shell_boot() -> TerminalBoot {
    TerminalBoot {
        kernel_cmdline: "/vmlinuz root=/dev/mmcblk0p2 ro quiet init=/bin/sh".into(),
        ..TerminalBoot::default()
    }
}

#[test]
fn omitted_ipl_event_does_not_pass_a_policy_pinning_boot_events() {
    let mut f = trusted_with_log();
    pin_only_boot_pcrs(&f);
    let evil = shell_boot().log();
    f.t.boot(&f.tpm, &evil, Some(&doctor_pcr8_ipl(&evil.bytes(), None)));
    let out = f.t.attest_expect(3);
    assert!(
        out.contains("quoted PCR 8 is not explained by the event log"),
        "{out}"
    );
    assert_quarantined_by_the_verifier(&f, "closed_world_pcr_unexplained");
}

#[test]
fn relabelled_ipl_event_does_not_escape_its_class() {
    let mut f = trusted_with_log();
    pin_only_boot_pcrs(&f);
    let evil = shell_boot().log();
    let relabelled = doctor_pcr8_ipl(&evil.bytes(), Some(EventType::POST_CODE));
    f.t.boot(&f.tpm, &evil, Some(&relabelled));
    let out = f.t.attest_expect(3);
    assert!(out.contains("PCR 8 EV_POST_CODE event"), "{out}");
    assert_quarantined_by_the_verifier(&f, "closed_world_event_type");
}
