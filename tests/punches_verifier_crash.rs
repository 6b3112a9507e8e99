//! Punch mirroring across verifier crashes (issue 8, §4 a): 100,000 punches submitted through
//! the real agent's socket, pipelined, while the verifier is killed with SIGKILL and started
//! again twice mid-stream. Every confirmed punch must reach the mirror exactly once, unaltered:
//! the scenario ends by comparing the agent's whole chain with the mirror's export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vouch_e2e::agent::PunchFlags;
use vouch_e2e::mirror::{assert_mirror_matches_agent, mirror_view};
use vouch_e2e::procs::BrokerKind;
use vouch_e2e::punch::Submitter;
use vouch_e2e::punch_fleet::{CATCH_UP, PunchFleet};

const TOTAL: u64 = 100_000;
const WINDOW: usize = 500;
/// How long a stretch of the stream may take (debug builds on 2 shared cores).
const STREAM: Duration = Duration::from_secs(600);

#[test]
fn a_hundred_thousand_punches_survive_two_verifier_kill9s_mid_stream() {
    let mut f = PunchFleet::start(BrokerKind::Managed, "term-1", PunchFlags::default());
    let submitter = Submitter::spawn(f.t.punch_socket(), 0, TOTAL, WINDOW, false);
    for kill_at in [TOTAL / 4, TOTAL * 5 / 8] {
        submitter.wait_confirmed(kill_at, STREAM);
        // The mirror is receiving: something is mirrored already.
        f.wait_head_at_least(1, Duration::from_secs(120));
        f.v.kill9();
        let killed_at = submitter.confirmed();
        assert!(
            killed_at < TOTAL,
            "the stream ended before the verifier was killed"
        );
        // Punches keep being confirmed while the verifier is down.
        submitter.wait_confirmed((killed_at + 5_000).min(TOTAL), STREAM);
        f.v.start_again();
        let head = mirror_view(&f.v, &f.t.id).head_seq;
        let agent_last = f.client().status().last_seq;
        assert!(
            head <= agent_last,
            "the mirror's head {head} is past the agent's last seq {agent_last}"
        );
    }
    let ledger = submitter.join().ledger;
    assert_eq!(ledger.len() as u64, TOTAL, "every punch was confirmed");
    assert_eq!(ledger.last_seq(), TOTAL, "seqs 1..=TOTAL were assigned");
    let (status, records) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    assert_eq!(status.last_seq, TOTAL);
    assert_eq!(records.len() as u64, TOTAL);
    assert!(
        records.iter().all(|m| !m.held),
        "a trusted device's punches are not held"
    );
    f.assert_no_tamper();
}
