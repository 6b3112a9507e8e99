//! Punch mirroring across broker failures (issue 8, §4 b and d): the broker killed with SIGKILL
//! mid-stream — the verifier's managed Mosquitto (its supervisor starts a new one) and an
//! external Mosquitto the test runs — and a terminal cut off from any broker for a stretch while
//! its punches accumulate, up to its buffer's capacity, then reconnected. Each scenario ends by
//! comparing the agent's whole chain with the mirror's export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vouch_e2e::agent::PunchFlags;
use vouch_e2e::mirror::{assert_mirror_matches_agent, mirror_view, wait_mirrored};
use vouch_e2e::procs::BrokerKind;
use vouch_e2e::punch::{Ledger, Punch, Submitter};
use vouch_e2e::punch_fleet::{CATCH_UP, PunchFleet};
use vouch_e2e::wait_for;

const TOTAL: u64 = 20_000;
const WINDOW: usize = 250;
const STREAM: Duration = Duration::from_secs(300);

/// Streams `TOTAL` punches through the socket, lets `outage` kill the broker once a quarter
/// is confirmed (and bring one back), and ends with the whole-chain comparison: nothing
/// confirmed is lost or doubled.
fn stream_across_a_broker_outage(
    kind: BrokerKind,
    outage: impl FnOnce(&mut PunchFleet, &Submitter),
) {
    let mut f = PunchFleet::start(kind, "term-1", PunchFlags::default());
    let submitter = Submitter::spawn(f.t.punch_socket(), 0, TOTAL, WINDOW, false);
    submitter.wait_confirmed(TOTAL / 4, STREAM);
    f.wait_head_at_least(1, Duration::from_secs(120));
    outage(&mut f, &submitter);
    f.v.wait_ready();
    let ledger = submitter.join().ledger;
    assert_eq!(ledger.len() as u64, TOTAL);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    f.assert_no_tamper();
}

/// The broker is killed now, with punches still to come; returns how many were confirmed.
fn kill_broker_mid_stream(f: &mut PunchFleet, submitter: &Submitter) -> u64 {
    f.v.kill9_broker();
    let killed_at = submitter.confirmed();
    assert!(
        killed_at < TOTAL,
        "the stream ended before the broker was killed"
    );
    killed_at
}

/// (b), managed: the verifier's own broker is killed mid-stream; its supervisor starts a new
/// one, the agent and the verifier reconnect.
#[test]
fn managed_broker_kill9_mid_stream_loses_no_punch() {
    stream_across_a_broker_outage(BrokerKind::Managed, |f, submitter| {
        let old = f.v.broker_pid().unwrap();
        kill_broker_mid_stream(f, submitter);
        wait_for(
            Duration::from_secs(60),
            "the supervisor to start a new broker",
            || f.v.broker_pid().filter(|p| *p != old).map(|_| ()),
        );
    });
}

/// (b), external: the Mosquitto the test runs is killed mid-stream (its sessions and queued
/// messages die with it: persistence is off) and started again while punches keep coming;
/// punches are confirmed with no broker at all in between.
#[test]
fn external_broker_kill9_mid_stream_loses_no_punch() {
    stream_across_a_broker_outage(BrokerKind::Mosquitto, |f, submitter| {
        let killed_at = kill_broker_mid_stream(f, submitter);
        submitter.wait_confirmed((killed_at + 2_000).min(TOTAL), STREAM);
        f.v.start_broker_again();
    });
}

/// (d): the terminal is offline (the external broker is down) while punches accumulate in its
/// buffer. They are confirmed all the same, up to the buffer's capacity of unacknowledged
/// records; the next one is refused with a clear error and nothing is overwritten. Once the
/// broker is back, everything reaches the mirror and the buffer takes punches again.
#[test]
fn offline_terminal_buffers_punches_up_to_capacity_then_mirrors_them_all() {
    const ONLINE: u64 = 1_000;
    const CAPACITY: u64 = 4_000;
    let mut f = PunchFleet::start(
        BrokerKind::Mosquitto,
        "term-1",
        PunchFlags {
            capacity: Some(CAPACITY),
            ..PunchFlags::default()
        },
    );
    let mut client = f.client();
    let mut ledger = Ledger::default();
    ledger.submit(&mut client, &Punch::range(0, ONLINE), WINDOW);
    wait_mirrored(&f.v, &f.t, ONLINE, CATCH_UP);

    f.v.kill9_broker();
    // A full buffer of unacknowledged punches, each confirmed while offline.
    ledger.submit(
        &mut client,
        &Punch::range(ONLINE, ONLINE + CAPACITY),
        WINDOW,
    );
    let s = client.status();
    assert_eq!(
        (s.last_seq, s.acked_seq, s.unacked, s.capacity),
        (ONLINE + CAPACITY, ONLINE, CAPACITY, CAPACITY),
        "the offline terminal's buffer"
    );
    let w = client.submit_window(&Punch::range(ONLINE + CAPACITY, ONLINE + CAPACITY + 1));
    let refused = w.answers[0]
        .as_ref()
        .expect_err("a punch beyond the buffer's capacity was accepted");
    assert!(
        refused.contains("full") || refused.contains("capacity"),
        "the refusal does not say the buffer is full: {refused}"
    );
    assert_eq!(
        client.status().last_seq,
        ONLINE + CAPACITY,
        "the refused punch was stored"
    );
    // The command-line client says so too, on stderr, with exit 1.
    let out =
        f.t.punch_cli(&["--employee", "E-full", "--kind", "in", "--method", "card"]);
    assert_eq!(out.status.code(), Some(1), "punch into a full buffer");
    assert!(out.stdout.is_empty(), "a refused punch printed a seq");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("full") || err.contains("capacity"),
        "vouch-agent punch's error does not say the buffer is full: {err}"
    );
    let status = f.t.status();
    assert_eq!(
        (
            &status["punches"]["last_seq"],
            &status["punches"]["acked_seq"],
            &status["punches"]["unacked"],
            &status["punches"]["capacity"],
        ),
        (
            &(ONLINE + CAPACITY).into(),
            &ONLINE.into(),
            &CAPACITY.into(),
            &CAPACITY.into()
        ),
        "vouch-agent status --json while offline: {status}"
    );

    f.v.start_broker_again();
    f.v.wait_ready();
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    let view = mirror_view(&f.v, &f.t.id);
    assert_eq!(view.pending_on_device, 0, "{view:?}");
    assert!(!view.buffer_pressure, "a drained buffer is no pressure");

    // Acknowledged records free the buffer: punches are taken again.
    let more = ONLINE + CAPACITY;
    ledger.submit(&mut client, &Punch::range(more, more + 100), WINDOW);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    f.assert_no_tamper();
    drop(client);
    f.stop_daemon();
}
