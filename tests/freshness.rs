//! End-to-end freshness (issue 6, case 8), on Mosquitto with the real binaries: copies of a
//! terminal's own signed messages, re-published by someone on the broker, cost neither the
//! verifier nor the agent anything. A replayed hello cannot rate-limit the genuine agent out,
//! and a replayed challenge is not answered again by a restarted daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tempfile::TempDir;
use vouch_common::time::now_unix;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::spy::Spy;
use vouch_e2e::wait_for;
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::wire;

/// A verifier on Mosquitto, a swtpm and one terminal trusted under a captured policy.
struct Fleet {
    _dir: TempDir,
    _tpm: Swtpm,
    v: Verifier,
    t: Terminal,
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    t.attest_expect(4);
    v.capture("term-1");
    t.attest_expect(0);
    Fleet {
        _dir: dir,
        _tpm: tpm,
        v,
        t,
    }
}

fn topic(kind: &str) -> String {
    format!("vouch/v1/term-1/{kind}")
}

fn ctl_ok(v: &Verifier, args: &[&str]) {
    let out = v.ctl(args);
    assert!(
        out.status.success(),
        "vouchctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The genuine agent's hello, replayed 40 times within a minute (the verifier allows 30
/// challenges per device and minute), does not lock the agent out: `attest --once` still
/// gets its challenge and the terminal stays trusted.
#[test]
fn replayed_hello_does_not_lock_out_the_genuine_agent() {
    let f = fleet();
    let spy = Spy::connect(f.v.mqtt_port, "hello-replay");
    spy.subscribe(&topic("hello"));
    f.t.attest_expect(0);
    let captured = spy.wait_on(&topic("hello"));
    let hello: Hello = wire::decode_detached(&captured, wire::DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .verify(&f.t.device_key().verifying_key())
        .unwrap()
        .open()
        .unwrap();
    assert!(hello.counter > 0, "the genuine hello carries its counter");

    for _ in 0..40 {
        spy.publish(&topic("hello"), captured.clone());
    }
    wait_for(Duration::from_secs(60), "40 replay rejections", || {
        (f.v.rejected("replay") >= 40).then_some(())
    });
    let out = f.t.attest_expect(0);
    assert!(out.contains("trusted"), "{out}");
    assert_eq!(f.v.device("term-1")["state"], "trusted");
    assert_eq!(f.v.rejected("rate_limited"), 0);
}

/// A challenge the daemon answered, replayed to it after a restart while still unexpired, is
/// not answered again: the daemon remembers answered nonces in its state directory.
#[test]
fn restarted_daemon_does_not_answer_a_replayed_challenge() {
    let f = fleet();
    let spy = Spy::connect(f.v.mqtt_port, "challenge-replay");
    spy.subscribe(&topic("challenge"));
    let mut daemon = f.t.spawn_daemon(300);
    let evidence_sent = |d: &vouch_e2e::procs::Proc| d.log().matches("sent evidence").count();
    wait_for(
        Duration::from_secs(60),
        "the daemon's first evidence",
        || (evidence_sent(&daemon) >= 1).then_some(()),
    );

    // A release makes the verifier challenge on its own (request 0): only a daemon answers.
    ctl_ok(&f.v, &["quarantine", "term-1", "--reason", "inspection"]);
    ctl_ok(&f.v, &["release", "term-1", "--reason", "inspected"]);
    wait_for(
        Duration::from_secs(60),
        "re-attestation after release",
        || (f.v.device("term-1")["state"] == "trusted").then_some(()),
    );
    let unsolicited = |spy: &Spy| -> Vec<(Vec<u8>, Challenge)> {
        spy.on(&topic("challenge"))
            .into_iter()
            .filter_map(|bytes| {
                let c: Challenge = wire::decode_detached(&bytes, wire::DEFAULT_MAX_PAYLOAD)
                    .ok()?
                    .peek_unverified()
                    .ok()?;
                (c.request == 0).then_some((bytes, c))
            })
            .collect()
    };
    let (replay, challenge) = unsolicited(&spy).pop().expect("the release's challenge");
    assert!(daemon.stop(), "daemon did not exit on SIGTERM");
    // Both daemons write to the same log file.
    let before = evidence_sent(&daemon);

    let mut restarted = f.t.spawn_daemon(300);
    wait_for(
        Duration::from_secs(60),
        "the restarted daemon's evidence",
        || (evidence_sent(&restarted) > before).then_some(()),
    );
    assert!(
        now_unix() < challenge.expires_at,
        "the replayed challenge must still be unexpired for this test to mean anything"
    );
    spy.publish(&topic("challenge"), replay);

    // A marker after the replay: another release, answered with fresh evidence.
    ctl_ok(&f.v, &["quarantine", "term-1", "--reason", "inspection 2"]);
    ctl_ok(&f.v, &["release", "term-1", "--reason", "inspected again"]);
    wait_for(
        Duration::from_secs(60),
        "re-attestation after release",
        || (f.v.device("term-1")["state"] == "trusted").then_some(()),
    );
    assert_eq!(
        evidence_sent(&restarted),
        before + 2,
        "evidence for the restart's hello and the second release only"
    );
    assert_eq!(f.v.rejected("replay"), 0, "no evidence answered the replay");
    assert!(restarted.stop(), "daemon did not exit on SIGTERM");
}
