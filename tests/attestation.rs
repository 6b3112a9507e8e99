//! End-to-end attestation scenarios (foundation issue, section 8), each run once with the
//! verifier's managed Mosquitto and once with an external Mosquitto: real swtpm, real binaries, real MQTT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tempfile::TempDir;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::spy::Spy;
use vouch_e2e::wait_for;
use vouch_protocol::messages::Evidence;
use vouch_protocol::wire;

/// A verifier, a swtpm and one enrolled terminal that is trusted under a captured policy.
struct Fleet {
    dir: TempDir,
    tpm: Swtpm,
    v: Verifier,
    t: Terminal,
}

fn fleet(kind: BrokerKind) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), kind);
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    assert_eq!(v.device("term-1")["state"], "pending");
    let out = t.attest_expect(4);
    assert!(out.contains("no reference values"), "{out}");
    v.capture("term-1");
    t.attest_expect(0);
    assert_eq!(v.device("term-1")["state"], "trusted");
    Fleet { dir, tpm, v, t }
}

fn evidence_topic(id: &str) -> String {
    format!("vouch/v1/{id}/evidence")
}

/// (a) enrolled terminal + captured policy: trusted, and the agent knows it.
fn trusted_after_capture(kind: BrokerKind) {
    let f = fleet(kind);
    let d = f.v.device("term-1");
    assert_eq!(d["verdict_status"], "affirming");
    assert!(
        d["policy_id"]
            .as_str()
            .unwrap()
            .starts_with("device:term-1@")
    );
    assert!(d["last_verdict_at"].as_str().unwrap().ends_with('Z'));
    let s = f.t.status();
    assert_eq!(s["state"], "trusted");
    assert_eq!(s["quarantined"], false);
}

/// (b) a firmware file changes: quarantined, the reason names the file, exit 3.
fn firmware_change_quarantines(kind: BrokerKind) {
    let f = fleet(kind);
    f.t.change_firmware("firmware v2 (tampered)");
    let path = f.t.firmware[0].to_str().unwrap().to_owned();
    let out = f.t.attest_expect(3);
    assert!(out.contains(&path), "{out}");
    let d = f.v.device("term-1");
    assert_eq!(d["state"], "quarantined");
    assert_eq!(
        f.v.reason_codes("term-1"),
        ["firmware_hash_not_approved"],
        "{:?}",
        f.v.reasons("term-1")
    );
    assert_eq!(d["quarantine"]["actor"], "verifier");
    assert_eq!(f.t.status()["state"], "quarantined");
}

/// (c) a boot PCR extended behind the agent's back: quarantined, the reason names the PCR.
fn pcr_extended_behind_the_agents_back(kind: BrokerKind) {
    let f = fleet(kind);
    f.tpm.pcr_extend(4, &"ab".repeat(32)).unwrap();
    let out = f.t.attest_expect(3);
    assert!(out.contains("PCR 4 "), "{out}");
    let d = f.v.device("term-1");
    assert_eq!(d["state"], "quarantined");
    assert_eq!(
        f.v.reason_codes("term-1"),
        ["pcr_mismatch"],
        "{:?}",
        f.v.reasons("term-1")
    );
}

/// (c') the firmware PCR extended behind the agent's back: the list no longer replays.
fn firmware_pcr_extended_behind_the_agents_back(kind: BrokerKind) {
    let f = fleet(kind);
    f.tpm.pcr_extend(14, &"cd".repeat(32)).unwrap();
    let out = f.t.attest_expect(3);
    assert!(out.contains("PCR 14"), "{out}");
}

/// (d) captured evidence re-published: rejected as a replay, state unchanged.
fn replayed_evidence_is_rejected(kind: BrokerKind) {
    let f = fleet(kind);
    let spy = Spy::connect(f.v.mqtt_port, "replay");
    spy.subscribe(&evidence_topic("term-1"));
    f.t.attest_expect(0);
    let captured = spy.wait_on(&evidence_topic("term-1"));
    let before = f.v.device("term-1");
    spy.publish(&evidence_topic("term-1"), captured);
    wait_for(Duration::from_secs(30), "a replay rejection", || {
        (f.v.rejected("replay") >= 1).then_some(())
    });
    assert_eq!(f.v.device("term-1"), before);
}

/// (e) evidence signed by another device's key, or moved to another device's topic: rejected.
fn forged_and_moved_evidence_is_rejected(kind: BrokerKind) {
    let f = fleet(kind);
    let other_tpm = swtpm(&f.dir.path().join("other"));
    let t2 = Terminal::new(f.dir.path(), "term-2", &other_tpm, &f.v, "firmware v1");
    t2.enroll(&f.v, "T-100");
    let spy = Spy::connect(f.v.mqtt_port, "forge");
    spy.subscribe(&evidence_topic("term-1"));
    f.t.attest_expect(0);
    let captured = spy.wait_on(&evidence_topic("term-1"));
    let evidence: Evidence = wire::decode_detached(&captured, wire::DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .verify(&f.t.device_key().verifying_key())
        .unwrap()
        .open()
        .unwrap();
    let before = (f.v.device("term-1"), f.v.device("term-2"));

    // term-2's key signs a body naming term-1.
    let forged = wire::seal(&"term-1".parse().unwrap(), &evidence, &t2.device_key());
    spy.publish(&evidence_topic("term-1"), forged);
    wait_for(Duration::from_secs(30), "a bad-signature rejection", || {
        (f.v.rejected("bad_signature") >= 1).then_some(())
    });
    // term-1's genuine message published on term-2's topic.
    spy.publish(&evidence_topic("term-2"), captured);
    wait_for(Duration::from_secs(30), "a wrong-topic rejection", || {
        (f.v.rejected("wrong_topic") >= 1).then_some(())
    });
    assert_eq!((f.v.device("term-1"), f.v.device("term-2")), before);
}

/// (f) garbage, truncated and oversized payloads on every verifier topic: rejected and
/// counted; the verifier keeps serving.
fn garbage_is_rejected_and_counted(kind: BrokerKind) {
    let mut f = fleet(kind);
    let spy = Spy::connect(f.v.mqtt_port, "garbage");
    spy.subscribe(&evidence_topic("term-1"));
    f.t.attest_expect(0);
    let real = spy.wait_on(&evidence_topic("term-1"));
    let before = f.v.device("term-1");
    let mut sent_malformed = 0;
    for device in ["term-1", "unknown-device"] {
        for kind in ["hello", "evidence", "status"] {
            let topic = format!("vouch/v1/{device}/{kind}");
            spy.publish(&topic, b"\xff\x00 definitely not CBOR".to_vec());
            spy.publish(&topic, real[..real.len() / 2].to_vec());
            spy.publish(&topic, Vec::new());
            sent_malformed += 3;
            spy.publish(&topic, vec![0xa5; (1 << 20) + 1]);
        }
    }
    wait_for(
        Duration::from_secs(60),
        "all rejections to be counted",
        || {
            let s = f.v.stats();
            let n = |l: &str| s["rejected"][l].as_u64().unwrap_or(0);
            (n("malformed") >= sent_malformed && n("oversized") >= 6).then_some(())
        },
    );
    assert!(f.v.alive(), "verifier died");
    assert_eq!(f.v.device("term-1"), before);
    f.t.attest_expect(0);
}

/// (g) verifier restart: device states, policies and nonce single-use survive.
fn verifier_restart_keeps_state_and_nonces(kind: BrokerKind) {
    let mut f = fleet(kind);
    let spy = Spy::connect(f.v.mqtt_port, "restart");
    spy.subscribe(&evidence_topic("term-1"));
    f.t.attest_expect(0);
    let captured = spy.wait_on(&evidence_topic("term-1"));
    let policy = f.v.device("term-1")["policy_id"].clone();
    f.v.restart();
    let d = f.v.device("term-1");
    assert_eq!(d["state"], "trusted");
    assert_eq!(d["policy_id"], policy);
    let spy = Spy::connect(f.v.mqtt_port, "restart-2");
    spy.publish(&evidence_topic("term-1"), captured);
    wait_for(
        Duration::from_secs(30),
        "a replay rejection after restart",
        || (f.v.rejected("replay") >= 1).then_some(()),
    );
    f.t.attest_expect(0);
}

/// (h) agent restart: same identity, attests again.
fn agent_restart_keeps_identity(kind: BrokerKind) {
    let f = fleet(kind);
    let first = std::fs::read(f.t.enroll_request("T-100")).unwrap();
    let again = std::fs::read(f.t.enroll_request("T-100")).unwrap();
    assert_eq!(
        first, again,
        "re-running enroll must give the same keys and request"
    );
    let out =
        f.v.ctl(&["enroll", f.t.enroll_request("T-100").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "re-enrolling the same request is idempotent"
    );
    f.t.attest_expect(0);
    // The daemon also keeps the identity, attests at start, and stops cleanly on SIGTERM.
    let mut daemon = f.t.spawn_daemon(300);
    wait_for(
        Duration::from_secs(60),
        "the daemon's first verdict",
        || daemon.log().contains("verdict").then_some(()),
    );
    assert!(daemon.stop(), "daemon did not exit on SIGTERM");
    assert_eq!(f.v.device("term-1")["state"], "trusted");
}

/// (i) operator quarantine then release: both audited with reasons; the device is trusted again
/// only once its re-attestation passes, which the daemon does on the verifier's challenge.
fn quarantine_and_release_are_audited(kind: BrokerKind) {
    let f = fleet(kind);
    let mut daemon = f.t.spawn_daemon(300);
    wait_for(
        Duration::from_secs(60),
        "the daemon's first verdict",
        || daemon.log().contains("verdict").then_some(()),
    );
    let out =
        f.v.ctl(&["quarantine", "term-1", "--reason", "tamper report #12"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.v.device("term-1")["state"], "quarantined");
    wait_for(
        Duration::from_secs(30),
        "the agent to hear of its quarantine",
        || (f.t.status()["quarantined"] == true).then_some(()),
    );
    let out =
        f.v.ctl(&["release", "term-1", "--reason", "inspected on site"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(60),
        "re-attestation after release",
        || (f.v.device("term-1")["state"] == "trusted").then_some(()),
    );
    let audit = f.v.ctl_json(&["audit", "--json"]);
    let entries = audit.as_array().unwrap();
    let find = |action: &str, reason: &str| {
        entries.iter().any(|e| {
            e["action"] == action && e["reason"] == reason && e["actor"] == "operator:admin"
        })
    };
    assert!(find("quarantined", "tamper report #12"), "{audit:#}");
    assert!(find("released", "inspected on site"), "{audit:#}");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "trusted" && e["actor"] == "verifier")
    );
    // Releasing a device that is not quarantined is refused with a reason.
    let out = f.v.ctl(&["release", "term-1", "--reason", "again"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not quarantined"));
    assert!(daemon.stop());
}

macro_rules! both_brokers {
    ($($name:ident),* $(,)?) => {
        mod managed {
            $( #[test] fn $name() { super::$name(vouch_e2e::procs::BrokerKind::Managed) } )*
        }
        mod mosquitto {
            $( #[test] fn $name() { super::$name(vouch_e2e::procs::BrokerKind::Mosquitto) } )*
        }
    };
}

both_brokers!(
    trusted_after_capture,
    firmware_change_quarantines,
    pcr_extended_behind_the_agents_back,
    firmware_pcr_extended_behind_the_agents_back,
    replayed_evidence_is_rejected,
    forged_and_moved_evidence_is_rejected,
    garbage_is_rejected_and_counted,
    verifier_restart_keeps_state_and_nonces,
    agent_restart_keeps_identity,
    quarantine_and_release_are_audited,
);
