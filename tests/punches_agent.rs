//! The terminal side of punch mirroring (issue 8, §4 c and g): the agent killed with SIGKILL
//! mid-stream and started again — every punch it confirmed survives and is mirrored, none
//! twice — and invalid punch input refused with a clear error, storing nothing. Each scenario
//! ends by comparing the agent's whole chain with the mirror's export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vouch_e2e::agent::PunchFlags;
use vouch_e2e::mirror::{assert_mirror_matches_agent, assert_same_punch, export};
use vouch_e2e::procs::BrokerKind;
use vouch_e2e::punch::{Ledger, Punch, PunchClient, Submitter};
use vouch_e2e::punch_fleet::{CATCH_UP, PunchFleet};

const WINDOW: usize = 250;

/// (c): SIGKILL while punches stream in and batches are in flight. What the agent confirmed
/// was durable before the answer, so it is all there after the restart; punches sent but not
/// answered may or may not have been stored, but if stored they are the next records, in
/// order, unaltered. The restarted agent resumes from the mirror's head and the mirror ends
/// equal to the agent's chain.
#[test]
fn agent_kill9_mid_stream_loses_no_confirmed_punch() {
    const KILL_AT: u64 = 6_000;
    let mut f = PunchFleet::start(
        BrokerKind::Managed,
        "term-1",
        PunchFlags {
            // Small batches and a longer linger: several batches are always in flight.
            batch: Some(100),
            linger_ms: Some(200),
            ..PunchFlags::default()
        },
    );
    let submitter = Submitter::spawn(f.t.punch_socket(), 0, 1_000_000, WINDOW, true);
    submitter.wait_confirmed(KILL_AT, Duration::from_secs(300));
    f.wait_head_at_least(1, Duration::from_secs(120));
    f.kill9_daemon();
    let got = submitter.join();
    assert!(got.broken.is_some(), "the socket outlived the agent");
    let confirmed = got.ledger.last_seq();
    assert!(confirmed >= KILL_AT);

    // Read from the buffer with no daemon running: a chain at least as long as what was
    // confirmed, at most that plus the unanswered punches, and not all acknowledged.
    let dead = f.t.status();
    let last = dead["punches"]["last_seq"].as_u64().unwrap();
    let acked = dead["punches"]["acked_seq"].as_u64().unwrap();
    assert!(
        (confirmed..=confirmed + got.unanswered.len() as u64).contains(&last),
        "after the kill the buffer holds {last} records; {confirmed} were confirmed and {} \
         more were sent unanswered",
        got.unanswered.len()
    );
    assert!(
        acked < last,
        "every record was acknowledged before the kill ({acked} of {last}): nothing was in flight"
    );

    f.start_daemon();
    let mut ledger = got.ledger;
    let mut client = f.client();
    assert_eq!(
        client.status().last_seq,
        last,
        "the restarted agent's chain"
    );
    ledger.submit(&mut client, &Punch::range(2_000_000, 2_001_000), WINDOW);
    assert_eq!(
        ledger.last_seq(),
        last + 1_000,
        "seqs continue after the restart"
    );
    let (_, records) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    // The stored-but-unanswered punches are the ones sent, in order.
    for (r, p) in records[confirmed as usize..last as usize]
        .iter()
        .zip(&got.unanswered)
    {
        assert_same_punch(p, &r.record);
    }
    f.assert_no_tamper();
}

/// The agent's answer to one bad `vouch-agent punch`: exit 1, nothing on stdout, an error on
/// stderr that contains one of `names` (what was wrong).
fn assert_cli_refuses(f: &PunchFleet, args: &[&str], names: &[&str]) {
    let out = f.t.punch_cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "vouch-agent punch {args:?}: stdout {:?}, stderr {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "a refused punch {args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        names_one_of(&err, names),
        "the error for {args:?} does not name {names:?}: {err}"
    );
}

fn names_one_of(err: &str, names: &[&str]) -> bool {
    let err = err.to_lowercase();
    names.iter().any(|n| err.contains(n))
}

/// The agent's answer to one bad socket line: `ok: false` with an error containing one of
/// `names`.
fn assert_socket_refuses(f: &PunchFleet, line: &str, names: &[&str]) {
    let mut c = PunchClient::connect(&f.t.punch_socket()).unwrap();
    let (answers, broken) = c.raw_lines(&[line.to_owned()]);
    assert!(broken.is_none(), "no answer to {line:?}: {broken:?}");
    let a = &answers[0];
    assert_eq!(a["ok"], false, "{line:?} was accepted: {a}");
    let err = a["error"].as_str().unwrap_or_default();
    assert!(
        names_one_of(err, names),
        "the error for {line:?} does not name {names:?}: {a}"
    );
}

/// (g): empty, oversized, spaced and formula-like employee ids, an unknown kind or method, an
/// unreadable time, an unknown field, an unknown op and a line that is not JSON are each
/// refused with an error naming what was wrong; no seq is used up and nothing reaches the
/// mirror. A good punch afterwards takes the next seq, and the `vouch-agent punch` command
/// prints just that number.
#[test]
fn invalid_punch_input_is_refused_clearly_and_stores_nothing() {
    let f = PunchFleet::start(BrokerKind::Managed, "term-1", PunchFlags::default());
    let mut client = f.client();
    let mut ledger = Ledger::default();
    ledger.submit(&mut client, &Punch::range(0, 10), WINDOW);
    let (before, _) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);

    let long = "E".repeat(65);
    assert_cli_refuses(&f, &["--employee", "", "--kind", "in"], &["employee"]);
    assert_cli_refuses(&f, &["--employee", &long, "--kind", "in"], &["employee"]);
    assert_cli_refuses(
        &f,
        &["--employee", "Jane Doe", "--kind", "in"],
        &["employee"],
    );
    assert_cli_refuses(
        &f,
        &["--employee", "=HYPERLINK(1)", "--kind", "in"],
        &["employee"],
    );
    assert_cli_refuses(&f, &["--employee", "E1", "--kind", "sideways"], &["kind"]);
    assert_cli_refuses(
        &f,
        &["--employee", "E1", "--kind", "in", "--method", "retina"],
        &["method"],
    );
    assert_cli_refuses(
        &f,
        &["--employee", "E1", "--kind", "in", "--at", "yesterday"],
        &["--at", "`at`", "\"at\"", "rfc 3339", "rfc3339", "yesterday"],
    );
    assert_socket_refuses(
        &f,
        r#"{"op":"punch","employee":"E1","kind":"in","template":"AAAA"}"#,
        &["template"],
    );
    assert_socket_refuses(
        &f,
        r#"{"op":"punch","employee":"","kind":"in"}"#,
        &["employee"],
    );
    assert_socket_refuses(&f, r#"{"op":"punch","kind":"in"}"#, &["employee"]);
    assert_socket_refuses(&f, r#"{"op":"erase","through":10}"#, &["op", "erase"]);
    assert_socket_refuses(&f, "this is not json", &["json", "expected"]);
    // A good request on a connection after a bad one is still served.
    let (answers, broken) = client.raw_lines(&[
        r#"{"op":"punch","employee":"E1","kind":"in","fingerprint":"AAAA"}"#.to_owned(),
        serde_json::json!({"op": "status"}).to_string(),
    ]);
    assert!(broken.is_none(), "{broken:?}");
    assert_eq!(answers[0]["ok"], false, "{}", answers[0]);
    assert_eq!(answers[1]["ok"], true, "{}", answers[1]);
    assert_eq!(
        answers[1]["last_seq"], before.last_seq,
        "a refused punch took a seq"
    );

    // Nothing was stored: the agent's chain and the mirror are what they were.
    assert_eq!(
        client.status(),
        before,
        "the agent's status after the refusals"
    );
    let (after, _) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    assert_eq!(after, before);

    // The next good punch takes the next seq; the command prints just that number.
    let out = f.t.punch_cli(&[
        "--employee",
        "E00042",
        "--kind",
        "out",
        "--method",
        "pin",
        "--at",
        "2026-12-02T08:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "a good punch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "11");
    let status = client.status();
    assert_eq!(status.last_seq, 11);
    ledger.confirmed.insert(
        11,
        (
            Punch {
                employee: "E00042".into(),
                kind: "out",
                method: Some("pin"),
                time: 1_796_198_400,
            },
            status.last_hash,
        ),
    );
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    // `--since` exports only what follows.
    let since = export(&f.v, &f.t.id, Some(9));
    assert_eq!(
        since.iter().map(|m| m.record.seq).collect::<Vec<_>>(),
        [10, 11]
    );
}
