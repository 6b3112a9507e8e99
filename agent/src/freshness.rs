//! The agent's freshness state on disk: the counter every hello and status carries, and the
//! challenge nonces it answered. Both live in the state directory so they hold across restarts:
//! the counter only ever increases (it is persisted *before* the message carrying it is
//! published, so a crash after publishing cannot reuse a value), and a challenge answered before
//! a restart is not answered again after it.
//!
//! `run` and `attest` hold the state directory's session lock (`agent.lock`, see `commands`),
//! so one agent process at a time uses these files. The exclusive lock on `freshness.lock`
//! around each read-modify-write is a second line of defence should that ever change (and the
//! merge of answered nonces keeps a concurrent writer's entries); it is a lock of its own, not
//! the measuring lock, so drawing a counter never waits for a TPM quote.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use vouch_common::fs;
use vouch_protocol::nonce::{self, AnsweredNonces};
use vouch_protocol::wire::to_cbor;

use crate::state::StateDir;

const COUNTER_FILE: &str = "counter.cbor";
const ANSWERED_FILE: &str = "answered.cbor";
const LOCK_FILE: &str = "freshness.lock";

/// `counter.cbor`: the last counter the agent drew.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCounter {
    last: u64,
}

/// Microseconds since the Unix epoch (0 before it; the counter then still increases by one).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn lock(state: &StateDir) -> Result<std::fs::File> {
    state.lock_file(LOCK_FILE)
}

/// Draws the counter for the next hello or status at wall-clock `now_micros` and persists it;
/// returns it only once it is durable. Callers publish nothing when this fails.
pub fn next_counter(state: &StateDir, now_micros: u64) -> Result<u64> {
    let _lock = lock(state)?;
    let stored: StoredCounter = state.read_cbor(COUNTER_FILE)?.unwrap_or_default();
    let next = nonce::next_counter(stored.last, now_micros);
    let path = state.path(COUNTER_FILE);
    fs::write_atomic(&path, &to_cbor(&StoredCounter { last: next }), 0o600)
        .with_context(|| format!("cannot persist the message counter to {}", path.display()))?;
    Ok(next)
}

/// The answered nonces a previous process left, without those expired at `now`.
pub fn load_answered(state: &StateDir, now: u64) -> Result<AnsweredNonces> {
    let _lock = lock(state)?;
    let mut answered: AnsweredNonces = state.read_cbor(ANSWERED_FILE)?.unwrap_or_default();
    answered.prune(now);
    Ok(answered)
}

/// Persists `answered` together with what another process sharing the directory recorded.
pub fn save_answered(state: &StateDir, answered: &AnsweredNonces, now: u64) -> Result<()> {
    let _lock = lock(state)?;
    let mut merged: AnsweredNonces = state.read_cbor(ANSWERED_FILE)?.unwrap_or_default();
    merged.merge(answered, now);
    let path = state.path(ANSWERED_FILE);
    fs::write_atomic(&path, &to_cbor(&merged), 0o600)
        .with_context(|| format!("cannot persist answered challenges to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use vouch_protocol::agent::{AgentAction, AgentCore, AgentView};
    use vouch_protocol::ids::{DeviceId, Nonce};
    use vouch_protocol::messages::Challenge;
    use vouch_protocol::wire;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn the_counter_survives_restarts_and_a_clock_set_back() {
        let (dir, s) = state();
        let first = next_counter(&s, 7_200_000_000).unwrap();
        assert_eq!(first, 7_200_000_000, "the clock, when it is ahead");
        // A later process, after the clock was set back by an hour.
        let restarted = StateDir::open(dir.path()).unwrap();
        let second = next_counter(&restarted, 3_600_000_000).unwrap();
        assert_eq!(second, first + 1);
        assert!(next_counter(&restarted, 0).unwrap() > second);
    }

    #[test]
    fn a_corrupt_counter_file_is_named_not_reset() {
        let (dir, s) = state();
        std::fs::write(dir.path().join(COUNTER_FILE), b"\xff junk").unwrap();
        let e = format!("{:#}", next_counter(&s, 5).unwrap_err());
        assert!(e.contains(COUNTER_FILE), "{e}");
    }

    /// Agent-level: the daemon answers an unsolicited challenge, is restarted (a new core fed
    /// from the state directory), and refuses the same signed challenge replayed to it.
    #[test]
    fn agent_remembers_answered_nonces_across_restarts() {
        let (_dir, s) = state();
        let verifier = SigningKey::from_bytes(&[9; 32]);
        let device: DeviceId = "t1".parse().unwrap();
        let challenge = Challenge {
            nonce: Nonce::from_bytes([4; 32]),
            issued_at: 1_000,
            expires_at: 1_060,
            request: 0,
            eventlog_held: None,
        };
        let bytes = wire::seal(&device, &challenge, &verifier);
        let topic = "vouch/v1/t1/challenge";
        let daemon = |now| {
            AgentCore::new(
                device.clone(),
                verifier.verifying_key(),
                AgentView::default(),
                true,
            )
            .with_answered(load_answered(&s, now).unwrap())
        };

        let mut first = daemon(1_001);
        let actions = first.on_message(topic, &bytes, 1_001).unwrap();
        assert_eq!(actions[0], AgentAction::AnsweredChanged);
        assert!(matches!(actions[1], AgentAction::Attest(_)));
        save_answered(&s, first.answered(), 1_001).unwrap();
        drop(first);

        let mut restarted = daemon(1_010);
        let actions = restarted.on_message(topic, &bytes, 1_010).unwrap();
        assert_eq!(
            actions,
            vec![AgentAction::Ignored("challenge already answered")]
        );
    }

    #[test]
    fn two_processes_keep_each_others_answers() {
        let (_dir, s) = state();
        let mut a = AnsweredNonces::default();
        a.insert(Nonce::from_bytes([1; 32]), 100, 0);
        let mut b = AnsweredNonces::default();
        b.insert(Nonce::from_bytes([2; 32]), 100, 0);
        save_answered(&s, &a, 10).unwrap();
        save_answered(&s, &b, 10).unwrap();
        let both = load_answered(&s, 10).unwrap();
        assert!(both.contains(&Nonce::from_bytes([1; 32])));
        assert!(both.contains(&Nonce::from_bytes([2; 32])));
        assert!(load_answered(&s, 1_000).unwrap().is_empty(), "expired");
    }
}
