//! The agent's state machine: it takes raw MQTT messages from the verifier, checks them against
//! the pinned verifier key, and returns what the shell should do (answer a challenge, persist its
//! view, ask for a challenge). Verdicts and commands share the verifier's one `seq` counter, and
//! a verdict or command not newer than the newest of either that the agent holds is ignored, so
//! an old quarantine command or verdict re-published by someone else cannot roll the agent back.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use thiserror::Error;

use crate::error::WireError;
use crate::ids::{DeviceId, Kind, Nonce, Topic};
use crate::messages::{Challenge, Cmd, CmdAction, Status};
use crate::verdict::{DeviceState, Verdict};
use crate::wire;

/// How many answered challenge nonces (and open request ids) the agent remembers.
const MEMORY: usize = 16;

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
    /// Quote over this challenge's nonce and publish evidence.
    Attest(Challenge),
    /// Publish `status`, which asks the verifier for a challenge.
    RequestChallenge,
    /// The view changed: persist it.
    ViewChanged,
    /// A new verdict arrived (for `attest --once` to match against its nonce).
    VerdictReceived(Verdict),
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
    answered: VecDeque<Nonce>,
    /// Request ids of hello/status messages sent and not yet answered by a challenge.
    open_requests: VecDeque<u64>,
    /// Whether to answer challenges the verifier sends on its own (request 0): a daemon does,
    /// a one-shot `attest --once` does not.
    answer_unsolicited: bool,
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
            answered: VecDeque::new(),
            open_requests: VecDeque::new(),
            answer_unsolicited,
        }
    }

    /// Records a request id (random, non-zero, drawn by the shell) about to be sent in a hello or
    /// status, so the challenge answering it will be accepted.
    pub fn open_request(&mut self, id: u64) {
        if self.open_requests.len() == MEMORY {
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
        [Kind::Challenge, Kind::Verdict, Kind::Cmd]
            .into_iter()
            .map(|k| Topic::new(self.device.clone(), k).to_string())
            .collect()
    }

    /// The periodic status message, carrying request id `request` (see [`Self::open_request`]).
    pub fn status(&self, request: u64) -> Status {
        Status {
            quarantined: self.view.quarantined.is_some(),
            last_verdict_seq: self.view.last_verdict.as_ref().map(|v| v.seq),
            request,
        }
    }

    /// Handles one message received on `topic`.
    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
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
            Kind::Challenge => self.on_challenge(msg.open()?),
            Kind::Verdict => self.on_verdict(msg.open()?)?,
            Kind::Cmd => self.on_cmd(msg.open()?),
            // Sender::Verifier above leaves only these three kinds.
            _ => return Err(bad_topic()),
        })
    }

    fn on_challenge(&mut self, c: Challenge) -> Vec<AgentAction> {
        if self.answered.contains(&c.nonce) {
            return vec![AgentAction::Ignored("challenge already answered")];
        }
        if c.request == 0 {
            if !self.answer_unsolicited {
                return vec![AgentAction::Ignored(
                    "unsolicited challenge; only the daemon answers",
                )];
            }
        } else if let Some(pos) = self.open_requests.iter().position(|r| *r == c.request) {
            self.open_requests.remove(pos);
        } else {
            return vec![AgentAction::Ignored(
                "challenge answers another process's request",
            )];
        }
        if self.answered.len() == MEMORY {
            self.answered.pop_front();
        }
        self.answered.push_back(c.nonce);
        vec![AgentAction::Attest(c)]
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
    use crate::verdict::{PROFILE, Status as EarStatus, TrustVector};
    use ed25519_dalek::SigningKey;

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
        Challenge {
            nonce: Nonce::from_bytes([nonce; 32]),
            issued_at: 1,
            expires_at: 61,
            request,
            eventlog_held: None,
        }
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
            daemon.on_message(t, &for_once).unwrap()[0],
            AgentAction::Ignored(_)
        ));
        assert!(matches!(
            once.on_message(t, &for_once).unwrap()[0],
            AgentAction::Attest(_)
        ));
        assert!(matches!(
            daemon.on_message(t, &unsolicited).unwrap()[0],
            AgentAction::Attest(_)
        ));
        assert!(matches!(
            once.on_message(t, &unsolicited).unwrap()[0],
            AgentAction::Ignored(_)
        ));
    }

    #[test]
    fn challenge_is_answered_once() {
        let mut c = core();
        let ch = challenge(1, 0);
        let bytes = wire::seal(&dev(), &ch, &vkey());
        let a = c.on_message("vouch/v1/t1/challenge", &bytes).unwrap();
        assert_eq!(a, vec![AgentAction::Attest(ch)]);
        let a = c.on_message("vouch/v1/t1/challenge", &bytes).unwrap();
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
            c.on_message("vouch/v1/t1/cmd", &forged),
            Err(AgentReject::Wire(WireError::BadSignature))
        ));
        assert_eq!(c.view().last_cmd_seq, 0);
    }

    #[test]
    fn other_devices_and_agent_topics_are_refused() {
        let mut c = core();
        let bytes = cmd(1, CmdAction::Attest);
        assert!(c.on_message("vouch/v1/t2/cmd", &bytes).is_err());
        assert!(c.on_message("vouch/v1/t1/evidence", &bytes).is_err());
    }

    #[test]
    fn stale_commands_are_ignored() {
        let mut c = core();
        c.on_message(
            "vouch/v1/t1/cmd",
            &cmd(5, CmdAction::Quarantine { reason: "x".into() }),
        )
        .unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Quarantined));
        let a = c
            .on_message(
                "vouch/v1/t1/cmd",
                &cmd(4, CmdAction::Release { reason: "y".into() }),
            )
            .unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
    }

    #[test]
    fn an_old_quarantine_command_cannot_undo_a_newer_verdict() {
        let mut c = core();
        let v = wire::seal(&dev(), &verdict(12, DeviceState::Trusted), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v).unwrap();
        let old = cmd(
            11,
            CmdAction::Quarantine {
                reason: "old".into(),
            },
        );
        let a = c.on_message("vouch/v1/t1/cmd", &old).unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
    }

    #[test]
    fn verdicts_set_state_and_old_ones_are_ignored() {
        let mut c = core();
        let v = wire::seal(&dev(), &verdict(10, DeviceState::Quarantined), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v).unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Quarantined));
        let v = wire::seal(&dev(), &verdict(11, DeviceState::Trusted), &vkey());
        c.on_message("vouch/v1/t1/verdict", &v).unwrap();
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
        let old = wire::seal(&dev(), &verdict(3, DeviceState::Quarantined), &vkey());
        let a = c.on_message("vouch/v1/t1/verdict", &old).unwrap();
        assert!(matches!(a[0], AgentAction::Ignored(_)));
        assert_eq!(c.view().state(), Some(DeviceState::Trusted));
        assert_eq!(c.status(1).last_verdict_seq, Some(11));
    }
}
