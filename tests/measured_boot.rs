//! End-to-end measured-boot scenarios (event-log issue, section 5): the harness writes a
//! synthetic crypto-agile log and extends the same digests into a freshly reset swtpm, so the
//! agent sends a real log and a real quote that agree — until a test makes them disagree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tempfile::TempDir;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::spy::Spy;
use vouch_e2e::wait_for;
use vouch_protocol::eventlog::build::TerminalBoot;
use vouch_protocol::messages::Evidence;
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
    let v = Verifier::start(dir.path(), BrokerKind::Embedded);
    let mut t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.boot(&tpm, &TerminalBoot::default().log(), None);
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    let out = v.ctl(&["policy", "capture", "term-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        f.v.reasons("term-1")
            .iter()
            .any(|r| r.contains(want) && r.contains("not in reference for device term-1"))
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
        out.contains("event log does not match quote: PCR 4"),
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

#[test]
fn truncated_log_is_rejected_with_the_parsers_reason_and_state_unchanged() {
    let mut f = trusted_with_log();
    let genuine = TerminalBoot::default().log();
    let bytes = genuine.bytes();
    f.t.boot(&f.tpm, &genuine, Some(&bytes[..bytes.len() - 40]));
    let before = f.v.device("term-1");
    let out = f.t.attest_once_within(5);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no verdict for a rejected message"
    );
    let stats = wait_for(
        Duration::from_secs(30),
        "the rejection to be counted",
        || {
            let s = f.v.stats();
            (s["rejected"]["eventlog_malformed"].as_u64().unwrap_or(0) >= 1).then_some(s)
        },
    );
    let reason = stats["recent_rejections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == "eventlog_malformed")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("event log: event ") && reason.contains("offset"),
        "{reason}"
    );
    assert_eq!(f.v.device("term-1"), before);
}
