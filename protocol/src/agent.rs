//! The agent's state machine: it takes raw MQTT messages from the verifier, checks them against
//! the pinned verifier key, and returns what the shell should do (answer a challenge, persist its
//! view, ask for a challenge). Verdicts and commands share the verifier's one `seq` counter, and
//! a verdict or command not newer than the newest of either that the agent holds is ignored, so
//! an old quarantine command or verdict re-published by someone else cannot roll the agent back.
//!
//! Challenges are answered at most once and only while fresh: the core ignores a challenge that
//! has expired by the clock the shell passes in, whose nonce it answered before (remembered
//! across restarts through [`AnsweredNonces`], which the shell persists), or that answers no
//! open request of this process. While one attestation runs, the core holds one pending
//! challenge, which only a strictly newer valid challenge replaces: a flood of replayed,
//! expired or foreign challenges cannot drop it.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use thiserror::Error;

use crate::error::WireError;
use crate::ids::{DeviceId, Kind, Topic};
use crate::messages::{Challenge, Cmd, CmdAction, StatusReport};
use crate::nonce::{AnsweredNonces, challenge_expired};
use crate::verdict::{DeviceState, Verdict};
use crate::wire;

/// How many open request ids (hello/status sent, no challenge back yet) the agent remembers. Only
/// the agent itself opens requests, so nobody else can roll them.
const OPEN_REQUESTS: usize = 16;

/// What the agent last heard from the verifier; persisted in its state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub last_verdict: Option<Verdict>,
    /// Set while the verifier says the terminal is quarantined, with its reason.
    pub quarantined: Option<String>,
    pub last_cmd_seq: u64,
}

impl AgentView {
    /// The device state as the agent last heard it (`None` before any verdict or command).
    pub fn state(&self) -> Option<DeviceState> {
        if self.quarantined.is_some() {
            return Some(DeviceState::Quarantined);
        }
        self.last_verdict.as_ref().map(|v| v.state)
    }
}

/// What the shell should do after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    /// The answered-nonce memory changed: persist [`AgentCore::answered`] before acting on the
    /// `Attest` that follows, so a crash after answering cannot answer the same challenge again.
    AnsweredChanged,
    /// Quote over this challenge's nonce and publish evidence, then call
    /// [`AgentCore::attestation_finished`].
    Attest(Challenge),
    /// Publish `status`, which asks the verifier for a challenge.
    RequestChallenge,
    /// The view changed: persist it.
    ViewChanged,
    /// A new verdict arrived (for `attest --once` to match against its nonce).
    VerdictReceived(Verdict),
    /// The verifier acknowledged the punch mirror's head (signature checked): hand it to the
    /// uploader ([`crate::punch::Uploader::on_ack`]).
    PunchAck(crate::punch::PunchAck),
    /// Nothing to do; the text says why (for a debug log line).
    Ignored(&'static str),
}

/// A message the agent refuses: not for it, not from the verifier, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AgentReject {
    #[error("topic \"{topic}\" is not one of this device's verifier topics")]
    Topic { topic: String },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("verdict names device {found}")]
    VerdictDevice { found: DeviceId },
}

/// The agent core for one device and one pinned verifier key.
#[derive(Debug)]
pub struct AgentCore {
    device: DeviceId,
    verifier_key: VerifyingKey,
    max_payload: usize,
    view: AgentView,
    answered: AnsweredNonces,
    /// Request ids of hello/status messages sent and not yet answered by a challenge.
    open_requests: VecDeque<u64>,
    /// Whether to answer challenges the verifier sends on its own (request 0): a daemon does,
    /// a one-shot `attest --once` does not.
    answer_unsolicited: bool,
    /// Between an `Attest` action and [`AgentCore::attestation_finished`].
    attesting: bool,
    /// The newest valid challenge that arrived while attesting, answered next.
    pending: Option<Challenge>,
}

impl AgentCore {
    pub fn new(
        device: DeviceId,
        verifier_key: VerifyingKey,
        view: AgentView,
        answer_unsolicited: bool,
    ) -> Self {
        Self {
            device,
            verifier_key,
            max_payload: wire::DEFAULT_MAX_PAYLOAD,
            view,
            answered: AnsweredNonces::default(),
            open_requests: VecDeque::new(),
            answer_unsolicited,
            attesting: false,
            pending: None,
        }
    }

    /// The core with the answered-nonce memory a previous process persisted.
    pub fn with_answered(mut self, answered: AnsweredNonces) -> Self {
        self.answered = answered;
        self
    }

    /// The nonces answered and not yet expired, for the shell to persist (see
    /// [`AgentAction::AnsweredChanged`]).
    pub fn answered(&self) -> &AnsweredNonces {
        &self.answered
    }

    /// Records a request id (random, non-zero, drawn by the shell) about to be sent in a hello or
    /// status, so the challenge answering it will be accepted.
    pub fn open_request(&mut self, id: u64) {
        if self.open_requests.len() == OPEN_REQUESTS {
            self.open_requests.pop_front();
        }
        self.open_requests.push_back(id);
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn view(&self) -> &AgentView {
        &self.view
    }

    /// The newest `seq` of any verdict or command the agent accepted.
    fn newest_seq(&self) -> u64 {
        self.view
            .last_verdict
            .as_ref()
            .map_or(0, |v| v.seq)
            .max(self.view.last_cmd_seq)
    }

    /// The MQTT topics the agent subscribes to.
    pub fn subscriptions(&self) -> Vec<String> {
        [Kind::Challenge, Kind::Verdict, Kind::Cmd, Kind::Ack]
            .into_iter()
            .map(|k| Topic::new(self.device.clone(), k).to_string())
            .collect()
    }

    /// The periodic status message, carrying request id `request` (see [`Self::open_request`])
    /// and the freshness counter the shell drew and persisted for it.
    pub fn status(&self, request: u64, counter: u64) -> StatusReport {
        StatusReport {
            quarantined: self.view.quarantined.is_some(),
            last_verdict_seq: self.view.last_verdict.as_ref().map(|v| v.seq),
            request,
            counter,
        }
    }

    /// Handles one message received on `topic` at `now` (Unix seconds, the terminal's clock).
    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<AgentAction>, AgentReject> {
        let bad_topic = || AgentReject::Topic {
            topic: crate::ids::truncate_for_display(topic),
        };
        let t: Topic = topic.parse().map_err(|_| bad_topic())?;
        if t.device != self.device || t.kind.sender() != crate::ids::Sender::Verifier {
            return Err(bad_topic());
        }
        let msg = wire::decode(&t, payload, self.max_payload)?.verify(&self.verifier_key)?;
        Ok(match t.kind {
            Kind::Challenge => self.on_challenge(msg.open()?, now),
            Kind::Verdict => self.on_verdict(msg.open()?)?,
            Kind::Cmd => self.on_cmd(msg.open()?),
            Kind::Ack => vec![AgentAction::PunchAck(msg.open()?)],
            // Sender::Verifier above leaves only these four kinds.
            _ => return Err(bad_topic()),
        })
    }

    /// A verifier-signed challenge. Signature-valid is not enough: a copy of an old one is
    /// refused by its nonce (answered) or its expiry, one for another process by its request.
    fn on_challenge(&mut self, c: Challenge, now: u64) -> Vec<AgentAction> {
        if self.answered.contains(&c.nonce) {
            return vec![AgentAction::Ignored("challenge already answered")];
        }
        if challenge_expired(c.expires_at, now) {
            return vec![AgentAction::Ignored("challenge expired")];
        }
        if self.pending.as_ref().is_some_and(|p| p.nonce == c.nonce) {
            return vec![AgentAction::Ignored("challenge already pending")];
        }
        let open = if c.request == 0 {
            if !self.answer_unsolicited {
                return vec![AgentAction::Ignored(
                    "unsolicited challenge; only the daemon answers",
                )];
            }
            None
        } else if let Some(pos) = self.open_requests.iter().position(|r| *r == c.request) {
            Some(pos)
        } else {
            return vec![AgentAction::Ignored(
                "challenge answers no open request of this process",
            )];
        };
        if self.attesting
            && let Some(p) = &self.pending
            && !challenge_expired(p.expires_at, now)
            && p.issued_at >= c.issued_at
        {
            return vec![AgentAction::Ignored(
                "a challenge at least as new is already pending",
            )];
        }
        if let Some(pos) = open {
            self.open_requests.remove(pos);
        }
        if self.attesting {
            // Answered when the current attestation finishes.
            self.pending = Some(c);
            return Vec::new();
        }
        self.start(c, now)
    }

    fn start(&mut self, c: Challenge, now: u64) -> Vec<AgentAction> {
        self.answered.insert(c.nonce, c.expires_at, now);
        self.attesting = true;
        vec![AgentAction::AnsweredChanged, AgentAction::Attest(c)]
    }

    /// The shell finished (or failed) the attestation of the last `Attest`; returns the actions
    /// for the pending challenge, if one is still fresh.
    pub fn attestation_finished(&mut self, now: u64) -> Vec<AgentAction> {
        self.attesting = false;
        match self.pending.take() {
            Some(c) if challenge_expired(c.expires_at, now) => {
                vec![AgentAction::Ignored(
                    "pending challenge expired while waiting",
                )]
            }
            Some(c) if self.answered.contains(&c.nonce) => {
                vec![AgentAction::Ignored("pending challenge already answered")]
            }
            Some(c) => self.start(c, now),
            None => Vec::new(),
        }
    }

    fn on_verdict(&mut self, v: Verdict) -> Result<Vec<AgentAction>, AgentReject> {
        if v.device != self.device {
            return Err(AgentReject::VerdictDevice { found: v.device });
        }
        if v.seq <= self.newest_seq() {
            return Ok(vec![AgentAction::Ignored(
                "verdict is not newer than the one held",
            )]);
        }
        self.view.quarantined = match v.state {
            DeviceState::Quarantined => Some(v.reasons.first().cloned().unwrap_or_default()),
            DeviceState::Trusted | DeviceState::Pending | DeviceState::Unresponsive => None,
        };
        self.view.last_verdict = Some(v.clone());
        Ok(vec![
            AgentAction::ViewChanged,
            AgentAction::VerdictReceived(v),
        ])
    }

    fn on_cmd(&mut self, c: Cmd) -> Vec<AgentAction> {
        if c.seq <= self.newest_seq() {
            return vec![AgentAction::Ignored(
                "command is not newer than the last one obeyed",
            )];
        }
        self.view.last_cmd_seq = c.seq;
        match c.action {
            CmdAction::Quarantine { reason } => {
                self.view.quarantined = Some(reason);
                vec![AgentAction::ViewChanged]
            }
            // The verifier challenges on its own after a release: one attestation, not two.
            CmdAction::Release { .. } => vec![AgentAction::ViewChanged],
            CmdAction::Attest => vec![AgentAction::ViewChanged, AgentAction::RequestChallenge],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Nonce;
    use crate::verdict::{PROFILE, Status as EarStatus, TrustVector};
    use crate::wire::{from_cbor_exact, to_cbor};
    use ed25519_dalek::SigningKey;

    /// The terminal's clock in these tests: inside the lifetime of [`challenge`]'s challenges.
    const NOW: u64 = 10;
    const TOPIC: &str = "vouch/v1/t1/challenge";

    fn vkey() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    fn dev() -> DeviceId {
        "t1".parse().unwrap()
    }

    fn core() -> AgentCore {
        AgentCore::new(dev(), vkey().verifying_key(), AgentView::default(), true)
    }

    fn verdict(seq: u64, state: DeviceState) -> Verdict {
        Verdict {
            profile: PROFILE.into(),
            iat: 1,
            exp: 2,
            verifier_id: "test".into(),
            status: EarStatus::Affirming,
            trust: TrustVector::default(),
            policy_id: None,
            device: dev(),
            state,
            reasons: vec!["r".into()],
            nonce: None,
            seq,
        }
    }

    fn cmd(seq: u64, action: CmdAction) -> Vec<u8> {
        wire::seal(
            &dev(),
            &Cmd {
                seq,
                issued_at: 1,
                action,
            },
            &vkey(),
        )
    }

    fn challenge(nonce: u8, request: u64) -> Challenge {
        issued(nonce, request, 1)
    }

    /// A challenge issued at `at`, living the default 60 s.
    fn issued(nonce: u8, request: u64, at: u64) -> Challenge {
        Challenge {
            nonce: Nonce::from_bytes([nonce; 32]),
            issued_at: at,
            expires_at: at + 60,
            request,
            eventlog_held: None,
        }
    }

    fn sealed(c: &Challenge) -> Vec<u8> {
        wire::seal(&dev(), c, &vkey())
    }

    /// The challenge the actions say to attest, if any.
    fn attested(actions: &[AgentAction]) -> Option<&Challenge> {
        actions.iter().find_map(|a| match a {
            AgentAction::Attest(c) => Some(c),
            _ => None,
        })
    }

    #[test]
    fn only_own_requests_and_unsolicited_challenges_are_answered() {
        let mut daemon = core();
        let mut once = AgentCore::new(dev(), vkey().verifying_key(), AgentView::default(), false);
        daemon.open_request(5);
        once.open_request(6);
        let for_once = wire::seal(&dev(), &challenge(1, 6), &vkey());
        let unsolicited = wire::seal(&dev(), &challenge(2, 0), &vkey());
        let t = "vouch/v1/t1/challenge";
        assert!(matches!(
            daemon.on_message(t, &for_once, NOW).unwrap()[0],
            AgentAction::Ignored(_)
        ));
        assert!(attested(&once.on_message(t, &for_once, NOW).unwrap()).is_some());
        assert!(attested(&daemon.on_message(t, &unsolicited, NOW).unwrap()).is_some());
        assert!(matches!(
            once.on_message(t, &unsolicited, NOW).unwrap()[0],
            AgentAction::Ignored(_)
        ));
    }

    #[test]
    fn challenge_is_answered_once() {
        let mut c = core();
        let ch = challenge(1, 0);
        let bytes = wire::seal(&dev(), &ch, &vkey());
        let a = c.on_message("vouch/v1/t1/challenge", &bytes, NOW).unwrap();
        assert_eq!(
            a,
            vec![AgentAction::AnsweredChanged, AgentAction::Attest(ch)],
            "the answer is persisted before the attestation starts"
        );
        let a = c.on_message("vouch/v1/t1/challenge", &bytes, NOW).unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
    }

    #[test]
    fn messages_not_signed_by_the_pinned_key_are_refused() {
        let mut c = core();
        let forged = wire::seal(
            &dev(),
            &Cmd {
                seq: 9,
                issued_at: 1,
                action: CmdAction::Attest,
            },
            &SigningKey::from_bytes(&[7; 32]),
        );
        assert!(matches!(
            c.on_message("vouch/v1/t1/cmd", &forged, NOW),
            Err(AgentReject::Wire(WireError::BadSignature))
        ));
        assert_eq!(c.view().last_cmd_seq, 0);
    }

    #[test]
    fn other_devices_and_agent_topics_are_refused() {
        let mut c = core();
        let bytes = cmd(1, CmdAction::Attest);
        assert!(c.on_message("vouch/v1/t2/cmd", &bytes, NOW).is_err());
        assert!(c.on_message("vouch/v1/t1/evidence", &bytes, NOW).is_err());
    }

    #[test]
    fn stale_commands_are_ignored() {
        let mut c = core();
        c.on_message(
            "vouch/v1/t1/cmd",
            &cmd(5, CmdAction::Quarantine { reason: "x".into() }),
            NOW,
        )
        .unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Quarantined));
        let a = c
            .on_message(
                "vouch/v1/t1/cmd",
                &cmd(4, CmdAction::Release { reason: "y".into() }),
                NOW,
            )
            .unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
    }

    #[test]
    fn an_old_quarantine_command_cannot_undo_a_newer_verdict() {
        let mut c = core();
        let v = wire::seal(&dev(), &verdict(12, DeviceState::Trusted), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v, NOW).unwrap();
        let old = cmd(
            11,
            CmdAction::Quarantine {
                reason: "old".into(),
            },
        );
        let a = c.on_message("vouch/v1/t1/cmd", &old, NOW).unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
    }

    #[test]
    fn verdicts_set_state_and_old_ones_are_ignored() {
        let mut c = core();
        let v = wire::seal(&dev(), &verdict(10, DeviceState::Quarantined), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v, NOW).unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Quarantined));
        let v = wire::seal(&dev(), &verdict(11, DeviceState::Trusted), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v, NOW).unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
        let old = wire::seal(&dev(), &verdict(3, DeviceState::Quarantined), &vkey());
        let a = c.on_message("vouch/v1/t1/verdict", &old, NOW).unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
        assert_eq!(c.status(1, 2).last_verdict_seq, Some(11));
    }

    #[test]
    fn agent_ignores_expired_challenges() {
        let mut c = core();
        let old = issued(1, 0, 1_000);
        let past = old.expires_at + crate::nonce::CLOCK_SKEW_SECS + 1;
        let a = c.on_message(TOPIC, &sealed(&old), past).unwrap();
        assert_eq!(a, vec![AgentAction::Ignored("challenge expired")]);
        // The same challenge inside its lifetime is answered: only the clock made the difference.
        let a = c.on_message(TOPIC, &sealed(&old), old.expires_at).unwrap();
        assert_eq!(attested(&a), Some(&old));
    }

    #[test]
    fn agent_remembers_answered_nonces_across_restarts() {
        let ch = issued(3, 0, 1_000);
        let bytes = sealed(&ch);
        let mut before = core();
        assert!(attested(&before.on_message(TOPIC, &bytes, 1_010).unwrap()).is_some());
        // What the shell writes to the state directory, and reads back after a restart.
        let persisted = to_cbor(before.answered());
        let mut after = core().with_answered(from_cbor_exact(&persisted).unwrap());
        let a = after.on_message(TOPIC, &bytes, 1_020).unwrap();
        assert_eq!(a, vec![AgentAction::Ignored("challenge already answered")]);
        // Without the memory, the replay would have been answered.
        assert!(attested(&core().on_message(TOPIC, &bytes, 1_020).unwrap()).is_some());
    }

    #[test]
    fn challenge_flood_does_not_drop_the_genuine_pending_challenge() {
        let mut c = core();
        c.open_request(5);
        // An unsolicited challenge starts an attestation; the genuine answer to request 5
        // arrives while it runs and is held.
        let first = issued(1, 0, 100);
        assert!(attested(&c.on_message(TOPIC, &sealed(&first), 101).unwrap()).is_some());
        let genuine = issued(2, 5, 110);
        assert_eq!(c.on_message(TOPIC, &sealed(&genuine), 111).unwrap(), vec![]);
        // The flood: signature-valid copies of what the verifier once sent, all refused.
        let flood = [
            sealed(&first),              // answered already
            sealed(&genuine),            // already pending
            sealed(&issued(3, 0, 10)),   // expired long ago
            sealed(&issued(4, 77, 112)), // another process's request
            sealed(&issued(5, 5, 112)),  // request 5 is answered by the pending one
            sealed(&issued(6, 0, 105)),  // fresh but older than the pending one
        ];
        for _ in 0..100 {
            for m in &flood {
                let a = c.on_message(TOPIC, m, 112).unwrap();
                assert!(matches!(a[..], [AgentAction::Ignored(_)]), "{a:?}");
            }
        }
        let next = c.attestation_finished(113);
        assert_eq!(attested(&next), Some(&genuine));
        assert_eq!(next[0], AgentAction::AnsweredChanged);
        assert_eq!(c.attestation_finished(114), vec![]);
    }

    /// Puts `c` in the middle of an attestation, answering a first challenge.
    fn attesting(c: &mut AgentCore) {
        let first = c
            .on_message(TOPIC, &sealed(&issued(1, 0, 100)), 100)
            .unwrap();
        assert!(attested(&first).is_some());
    }

    #[test]
    fn a_newer_valid_challenge_replaces_the_pending_one() {
        let mut c = core();
        attesting(&mut c);
        let older = issued(2, 0, 101);
        let newer = issued(3, 0, 102);
        assert_eq!(c.on_message(TOPIC, &sealed(&older), 102).unwrap(), vec![]);
        assert_eq!(c.on_message(TOPIC, &sealed(&newer), 102).unwrap(), vec![]);
        assert_eq!(attested(&c.attestation_finished(103)), Some(&newer));
    }

    #[test]
    fn a_pending_challenge_that_expired_while_waiting_is_dropped() {
        let mut c = core();
        attesting(&mut c);
        let waiting = issued(2, 0, 101);
        assert_eq!(c.on_message(TOPIC, &sealed(&waiting), 101).unwrap(), vec![]);
        let late = waiting.expires_at + crate::nonce::CLOCK_SKEW_SECS + 1;
        let a = c.attestation_finished(late);
        assert!(matches!(a[..], [AgentAction::Ignored(_)]), "{a:?}");
        // Nothing runs now, so the next valid challenge starts at once.
        let fresh = issued(3, 0, late);
        assert_eq!(
            attested(&c.on_message(TOPIC, &sealed(&fresh), late).unwrap()),
            Some(&fresh)
        );
    }
}
