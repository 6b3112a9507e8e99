//! End-to-end verdict expiry (issue 6, case 7): a real verifier whose verdicts live two seconds
//! and a real agent on swtpm. A trusted terminal that stops attesting must become `unresponsive`
//! on its own (state, audit entry, warning verdict with the reason), and fresh evidence makes it
//! trusted again. The engine tests cover the rules in detail with an explicit `now`; this one
//! proves the sweep runs in the real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};
use vouch_e2e::wait_for;

/// Audit entries of `id`, oldest first, as (action, actor, reason).
fn audit_of(v: &Verifier, id: &str) -> Vec<(String, String, String)> {
    let audit = v.ctl_json(&["audit", "--json"]);
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device"] == id)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("actor"), s("reason"))
        })
        .collect()
}

#[test]
fn a_trusted_terminal_that_stops_attesting_becomes_unresponsive() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start_with(dir.path(), BrokerKind::Mosquitto, "verdict_ttl = 2\n");
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    v.capture("term-1");
    // Fresh evidence that passes: trusted (whatever the short-lived verdicts did meanwhile).
    t.attest_expect(0);
    let trusted_at = audit_of(&v, "term-1")
        .iter()
        .rposition(|(action, _, _)| action == "trusted")
        .unwrap();

    // No more attestations: within a verdict lifetime and a sweep, it is unresponsive.
    let d = wait_for(
        Duration::from_secs(30),
        "the terminal to become unresponsive",
        || {
            let d = v.device("term-1");
            (d["state"] == "unresponsive").then_some(d)
        },
    );
    let reason = format!(
        "no fresh evidence since {}",
        d["measured_at"].as_str().unwrap()
    );
    assert_eq!(d["verdict_status"], "warning");
    assert_eq!(d["reason_codes"][0], "no_fresh_evidence", "{d:#}");
    assert_eq!(d["reasons"][0], reason.as_str(), "{d:#}");
    let audit = audit_of(&v, "term-1");
    assert!(
        audit[trusted_at..].contains(&("unresponsive".into(), "verifier".into(), reason.clone())),
        "{audit:?}"
    );
    let list = v.ctl(&["devices"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("unresponsive"), "{list}");
    assert!(!list.contains("stale"), "{list}");

    // Fresh evidence brings it back.
    t.attest_expect(0);
    let audit = audit_of(&v, "term-1");
    let back = audit.iter().rposition(|(a, _, _)| a == "trusted").unwrap();
    assert!(
        audit[back]
            .2
            .starts_with("attestation passed after no fresh evidence since"),
        "{audit:?}"
    );
}
