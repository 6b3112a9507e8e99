//! Alert webhooks end to end (issue 10 §4, §6): a local HTTP sink checks every HMAC and counts
//! deliveries per `X-Vouch-Delivery`. A quarantine raised while the sink is down survives a
//! verifier stop (SIGTERM, and kill -9) in the durable outbox and arrives after the restart with
//! a valid signature; a sink answering 500 is retried until it answers 200; a terminal whose
//! buffer fills during a verifier outage raises one `buffer_pressure` alert. (The `tamper`
//! alert is checked where a forged punch batch is sent: tests/punches_tamper.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use vouch_e2e::agent::{PunchFlags, Terminal};
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};
use vouch_e2e::punch::{Ledger, Punch};
use vouch_e2e::punch_fleet::PunchFleet;
use vouch_e2e::webhook_sink::{Received, Sink, webhook_config};
use vouch_e2e::{free_port, wait_for};

/// The events the quarantine/release scenarios subscribe to.
const OPERATOR_EVENTS: &[&str] = &["quarantine", "release"];

fn quarantine(v: &Verifier) {
    let out = v.ctl(&["quarantine", "term-1", "--reason", "stolen"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for a quarantine delivery; checks it and returns it.
fn delivered_quarantine(sink: &Sink) -> Received {
    let r = wait_for(Duration::from_secs(30), "the quarantine alert", || {
        sink.received()
            .into_iter()
            .find(|r| r.event == "quarantine")
    });
    assert!(r.valid(), "signature of {r:?}");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["event"], "quarantine");
    assert_eq!(body["device"], "term-1");
    assert_eq!(body["reason"], "stolen", "{body}");
    assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["at"].as_str().is_some_and(|s| s.contains('T')));
    assert!(body["reason_codes"].is_array());
    assert!(body["actor"].is_string());
    // The checker is real: a changed body or timestamp fails it.
    let mut forged = r.clone();
    forged.body = forged.body.replace("stolen", "found!");
    assert!(!forged.valid(), "a tampered body must fail the HMAC check");
    let mut late = r.clone();
    late.timestamp.push('0');
    assert!(
        !late.valid(),
        "a changed timestamp must fail the HMAC check"
    );
    r
}

/// Quarantine while the sink is down; stop the verifier (`kill`: SIGKILL, else SIGTERM); start
/// the sink and the verifier: the alert arrives, signed, under one delivery id.
fn alert_survives_restart(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let port = free_port();
    let mut v = Verifier::start_with(
        dir.path(),
        BrokerKind::Mosquitto,
        &webhook_config(dir.path(), port, OPERATOR_EVENTS),
    );
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    quarantine(&v);
    // The worker tries (connection refused) and backs off; the row stays in the outbox.
    std::thread::sleep(Duration::from_secs(2));
    if kill {
        v.kill9();
    } else {
        v.stop();
    }
    let sink = Sink::start(port, vec![200]);
    v.start_again();
    let r = delivered_quarantine(&sink);
    // Nothing else comes for it: the delivered row is gone (give a retry the chance to show).
    std::thread::sleep(Duration::from_secs(3));
    let all = sink.received();
    assert!(all.iter().all(|x| x.delivery == r.delivery), "{all:?}");
    assert!(all.iter().all(Received::valid));
}

#[test]
fn quarantine_alert_survives_a_sigterm_restart_while_the_sink_is_down() {
    alert_survives_restart(false);
}

#[test]
fn quarantine_alert_survives_kill_9_while_the_sink_is_down() {
    alert_survives_restart(true);
}

/// A sink answering 500 gets the same delivery again (backoff 1 s, then 2 s) until it answers
/// 200; then it stops. A release raises its own alert.
#[test]
fn a_failed_delivery_is_retried_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let port = free_port();
    let sink = Sink::start(port, vec![500, 500, 200]);
    let v = Verifier::start_with(
        dir.path(),
        BrokerKind::Mosquitto,
        &webhook_config(dir.path(), port, OPERATOR_EVENTS),
    );
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    quarantine(&v);
    wait_for(Duration::from_secs(30), "three attempts", || {
        (sink.received().len() >= 3).then_some(())
    });
    let r = delivered_quarantine(&sink);
    let got = sink.received();
    assert!(
        got[..3]
            .iter()
            .all(|x| x.delivery == r.delivery && x.valid()),
        "{got:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.received().len(), 3, "no attempt after the 200");

    let out = v.ctl(&["release", "term-1", "--reason", "returned"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rel = wait_for(Duration::from_secs(30), "the release alert", || {
        sink.received().into_iter().find(|r| r.event == "release")
    });
    assert!(rel.valid());
    assert_ne!(rel.delivery, r.delivery);
    let body: serde_json::Value = serde_json::from_str(&rel.body).unwrap();
    assert_eq!(body["reason"], "returned", "{body}");
}

/// A terminal that keeps taking punches while the verifier is down fills its buffer: the first
/// batch after the restart says 85 of its 100 records are not mirrored, which crosses the
/// pressure threshold (80 %) and raises one signed `buffer_pressure` alert naming the device;
/// draining the buffer raises no second one (the alert fires on the crossing, not per batch).
#[test]
fn a_buffer_filling_during_a_verifier_outage_raises_one_buffer_pressure_alert() {
    let secrets = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Sink::start(port, vec![200]);
    let mut f = PunchFleet::start_with(
        BrokerKind::Managed,
        "term-1",
        PunchFlags {
            capacity: Some(100),
            batch: Some(5),
            ..PunchFlags::default()
        },
        &webhook_config(secrets.path(), port, &["buffer_pressure", "tamper"]),
    );
    let mut client = f.client();
    let mut ledger = Ledger::default();
    ledger.submit(&mut client, &Punch::range(0, 5), 5);
    vouch_e2e::mirror::wait_mirrored(&f.v, &f.t, 5, Duration::from_secs(60));
    assert!(
        sink.received().is_empty(),
        "5 of 100 is no pressure: {:?}",
        sink.received()
    );

    f.v.stop();
    // The agent confirms punches from its own durable buffer while the verifier is away.
    ledger.submit(&mut client, &Punch::range(5, 95), 10);
    f.v.start_again();
    let (first, body) = sink.wait_event("buffer_pressure");
    assert_eq!(body["device"], "term-1", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("of 100 punch records"), "{body}");
    vouch_e2e::mirror::assert_mirror_matches_agent(
        &f.v,
        &f.t,
        &ledger,
        vouch_e2e::punch_fleet::CATCH_UP,
    );
    // Give a second (wrong) alert the chance to show.
    std::thread::sleep(Duration::from_secs(3));
    let alerts: Vec<Received> = sink
        .received()
        .into_iter()
        .filter(|r| r.event == "buffer_pressure")
        .collect();
    assert!(
        alerts
            .iter()
            .all(|r| r.delivery == first.delivery && r.valid()),
        "{alerts:?}"
    );
    assert!(
        sink.received().iter().all(|r| r.event != "tamper"),
        "an outage is no tamper"
    );
    f.assert_no_tamper();
}
