//! `/metrics` and `/api/timeline` end to end (issue 10 §4), on Mosquitto with the real binaries
//! and a real agent on swtpm: the exposition text is parsed, and its counters and gauges move
//! with attestations and an operator quarantine; without a token it is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};

/// Parses the exposition text into `series → value`, checking each family has HELP and TYPE
/// before its samples and that every sample line is `name{labels} value`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let family = typed
            .iter()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len());
        assert!(family.is_some(), "sample {line} has no # TYPE before it");
        out.insert(series.to_owned(), value.parse().unwrap());
    }
    out
}

fn scrape(v: &Verifier) -> BTreeMap<String, f64> {
    let (code, body) = v.http("GET", "/metrics", Some(&v.admin_token()));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# HELP vouch_attestations "), "{body}");
    parse(&body)
}

fn at(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing in {m:#?}"))
}

#[test]
fn metrics_follow_attestations_and_quarantine_and_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);

    let (code, _) = v.http("GET", "/metrics", None);
    assert_eq!(code, 401, "/metrics without a token");
    let m = scrape(&v);
    assert_eq!(at(&m, "vouch_mqtt_connected"), 1.0);
    assert_eq!(at(&m, "vouch_store_ok"), 1.0);
    assert_eq!(at(&m, "vouch_broker_up"), 1.0);
    assert_eq!(
        at(
            &m,
            r#"vouch_http_requests_denied_total{code="unauthorized"}"#
        ),
        1.0,
        "the refused scrape above is counted"
    );
    assert_eq!(at(&m, r#"vouch_terminals{state="trusted"}"#), 0.0);

    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    v.capture("term-1");
    t.attest_expect(0);
    let m = scrape(&v);
    assert_eq!(at(&m, r#"vouch_terminals{state="trusted"}"#), 1.0);
    assert_eq!(at(&m, r#"vouch_terminals{state="pending"}"#), 0.0);
    assert_eq!(
        at(&m, r#"vouch_attestations_total{outcome="affirming"}"#),
        1.0
    );
    let appraised = at(&m, r#"vouch_attestations_total{outcome="warning"}"#)
        + at(&m, r#"vouch_attestations_total{outcome="affirming"}"#)
        + at(&m, r#"vouch_attestations_total{outcome="contraindicated"}"#);
    assert_eq!(at(&m, "vouch_verification_seconds_count"), appraised);
    assert!(at(&m, r#"vouch_messages_accepted_total{kind="evidence"}"#) >= 2.0);

    let out = v.ctl(&["quarantine", "term-1", "--reason", "stolen"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = scrape(&v);
    assert_eq!(at(&m, r#"vouch_terminals{state="trusted"}"#), 0.0);
    assert_eq!(at(&m, r#"vouch_terminals{state="quarantined"}"#), 1.0);

    let (code, body) = v.http("GET", "/api/timeline", Some(&v.admin_token()));
    assert_eq!(code, 200, "{body}");
    let tl: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tl["bucket_secs"], 60);
    let sum = |k: &str| -> u64 {
        tl["minutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("quarantines"), 1, "{tl}");
    assert_eq!(sum("affirming"), 1, "{tl}");
    let (code, _) = v.http("GET", "/api/timeline", None);
    assert_eq!(code, 401, "/api/timeline without a token");
}

/// The gauges are seeded from the store at start: after a restart the quarantined terminal is
/// counted without any new event.
#[test]
fn terminal_gauges_are_seeded_from_the_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let mut v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    let out = v.ctl(&["quarantine", "term-1", "--reason", "stolen"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    v.restart();
    let m = scrape(&v);
    assert_eq!(at(&m, r#"vouch_terminals{state="quarantined"}"#), 1.0);
    assert_eq!(at(&m, r#"vouch_terminals{state="pending"}"#), 0.0);
}
