//! The verifier's per-device state machine: pending → trusted ⇄ quarantined, driven by
//! appraisals and operator actions. Each transition returns the audit entries to append and the
//! effects (commands, challenges) for the shell to carry out; nothing here touches storage.
//!
//! Invariant: a quarantine, automatic or manual, is lifted only by an operator release followed
//! by an attestation that passes. An attestation passing on its own never un-quarantines.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::appraisal::Appraisal;
use crate::messages::CmdAction;
use crate::verdict::{DeviceState, Status, TrustVector, claim};

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Actor {
    /// The verifier itself (appraisal outcome).
    Verifier,
    /// An operator, named by the credential they used.
    Operator(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Verifier => f.write_str("verifier"),
            Actor::Operator(n) => write!(f, "operator:{n}"),
        }
    }
}

/// Kinds of audited change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Enrolled,
    Trusted,
    Pending,
    Quarantined,
    Released,
    ReleaseFailed,
    PolicyChanged,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Enrolled => "enrolled",
            AuditAction::Trusted => "trusted",
            AuditAction::Pending => "pending",
            AuditAction::Quarantined => "quarantined",
            AuditAction::Released => "released",
            AuditAction::ReleaseFailed => "release_failed",
            AuditAction::PolicyChanged => "policy_changed",
        }
    }
}

/// One audited change, before the shell stamps it with device and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: AuditAction,
    pub actor: Actor,
    pub reason: String,
}

/// What an appraisal is based on. Only fresh evidence can lift a quarantine; stored
/// measurements re-appraised after a policy change can make a pending device trusted only while
/// they are recent, and can always make a device worse off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Evidence answering a challenge, appraised just now.
    Fresh,
    /// Measurements verified earlier; `recent` when younger than a verdict's lifetime.
    Stored { recent: bool },
}

impl Basis {
    fn may_trust(self) -> bool {
        matches!(self, Basis::Fresh | Basis::Stored { recent: true })
    }
}

/// Something the shell must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Publish a signed command to the device.
    SendCmd(CmdAction),
    /// Issue a fresh challenge to the device.
    SendChallenge,
}

/// Why a quarantine is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    pub reason: String,
    pub actor: Actor,
    pub at: u64,
}

/// An operator's release, waiting for a passing attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub reason: String,
    pub actor: Actor,
    pub at: u64,
}

/// An operator action that does not apply to the device's current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    #[error("device is already quarantined ({reason})")]
    AlreadyQuarantined { reason: String },
    #[error("device is not quarantined (state {state})")]
    NotQuarantined { state: DeviceState },
    #[error("a reason is required")]
    EmptyReason,
}

/// The verifier's view of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStatus {
    pub state: DeviceState,
    pub quarantine: Option<Quarantine>,
    pub release: Option<ReleaseRequest>,
    /// Reasons of the last verdict.
    pub reasons: Vec<String>,
    pub last_verdict_at: Option<u64>,
}

/// The outcome of one transition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    pub changes: Vec<Change>,
    pub effects: Vec<Effect>,
}

impl Default for DeviceStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceStatus {
    /// A freshly enrolled device.
    pub fn new() -> Self {
        Self {
            state: DeviceState::Pending,
            quarantine: None,
            release: None,
            reasons: Vec::new(),
            last_verdict_at: None,
        }
    }

    /// Applies an appraisal (of fresh evidence, or a re-evaluation after a policy change).
    /// Returns the transition and what the published verdict must say: a quarantined device's
    /// verdict is contraindicated whatever the appraisal said, names the quarantine, and marks
    /// the instance untrustworthy even when the evidence itself passed.
    pub fn apply_appraisal(
        &mut self,
        a: Appraisal,
        basis: Basis,
        now: u64,
    ) -> (Transition, Appraisal) {
        let (t, status, reasons) = self.transition(a.status, &a.reasons, basis, now);
        let mut trust = a.trust;
        if self.state == DeviceState::Quarantined && a.status != Status::Contraindicated {
            trust.instance_identity = claim::UNTRUSTWORTHY_INSTANCE;
        }
        let verdict = Appraisal {
            status,
            trust,
            reasons,
            ..a
        };
        (t, verdict)
    }

    /// What the verdict published right after an operator's quarantine says.
    pub fn held_appraisal(&self, policy_id: Option<String>) -> Appraisal {
        Appraisal {
            status: Status::Contraindicated,
            trust: TrustVector {
                instance_identity: claim::UNTRUSTWORTHY_INSTANCE,
                ..TrustVector::default()
            },
            reasons: self.reasons.clone(),
            policy_id,
            quote_accepted: false,
        }
    }

    /// The state transition for an appraisal's status and reasons, and the status and reasons
    /// the verdict carries.
    fn transition(
        &mut self,
        status: Status,
        reasons: &[String],
        basis: Basis,
        now: u64,
    ) -> (Transition, Status, Vec<String>) {
        let mut t = Transition::default();
        let joined = || reasons.join("; ");
        match (self.state, status) {
            (DeviceState::Quarantined, Status::Contraindicated) => {
                if let Some(rel) = self.release.take() {
                    t.changes.push(Change {
                        action: AuditAction::ReleaseFailed,
                        actor: Actor::Verifier,
                        reason: format!(
                            "attestation after release ({}) failed: {}",
                            rel.reason,
                            joined()
                        ),
                    });
                    t.effects
                        .push(Effect::SendCmd(CmdAction::Quarantine { reason: joined() }));
                }
            }
            (_, Status::Contraindicated) => {
                self.state = DeviceState::Quarantined;
                self.quarantine = Some(Quarantine {
                    reason: joined(),
                    actor: Actor::Verifier,
                    at: now,
                });
                t.changes.push(Change {
                    action: AuditAction::Quarantined,
                    actor: Actor::Verifier,
                    reason: joined(),
                });
                t.effects
                    .push(Effect::SendCmd(CmdAction::Quarantine { reason: joined() }));
            }
            (DeviceState::Quarantined, Status::Affirming) if basis == Basis::Fresh => {
                if let Some(rel) = self.release.take() {
                    self.state = DeviceState::Trusted;
                    self.quarantine = None;
                    t.changes.push(Change {
                        action: AuditAction::Trusted,
                        actor: Actor::Verifier,
                        reason: format!("attestation after release ({}) passed", rel.reason),
                    });
                }
            }
            (DeviceState::Pending, Status::Affirming) if basis.may_trust() => {
                self.state = DeviceState::Trusted;
                t.changes.push(Change {
                    action: AuditAction::Trusted,
                    actor: Actor::Verifier,
                    reason: "attestation passed".into(),
                });
            }
            (DeviceState::Trusted, Status::Warning | Status::None) => {
                self.state = DeviceState::Pending;
                t.changes.push(Change {
                    action: AuditAction::Pending,
                    actor: Actor::Verifier,
                    reason: joined(),
                });
            }
            // Nothing changes: already trusted, still without reference values, or an affirming
            // appraisal whose basis cannot lift a quarantine or vouch for a pending device.
            (DeviceState::Trusted, Status::Affirming)
            | (DeviceState::Pending | DeviceState::Quarantined, _) => {}
        }
        self.last_verdict_at = Some(now);
        let (status, reasons) = match (&self.state, &self.quarantine) {
            (DeviceState::Quarantined, Some(q)) => {
                // Name the quarantine unless this very appraisal is what it says.
                let mut r = Vec::new();
                if q.reason != reasons.join("; ") {
                    r.push(format!("quarantined by {}: {}", q.actor, q.reason));
                }
                r.extend(reasons.iter().cloned());
                (Status::Contraindicated, r)
            }
            _ => (status, reasons.to_vec()),
        };
        self.reasons = reasons.clone();
        (t, status, reasons)
    }

    /// An operator cuts the device off.
    pub fn quarantine(
        &mut self,
        reason: &str,
        actor: Actor,
        now: u64,
    ) -> Result<Transition, TransitionError> {
        if reason.trim().is_empty() {
            return Err(TransitionError::EmptyReason);
        }
        if let Some(q) = &self.quarantine {
            return Err(TransitionError::AlreadyQuarantined {
                reason: q.reason.clone(),
            });
        }
        self.state = DeviceState::Quarantined;
        self.release = None;
        self.quarantine = Some(Quarantine {
            reason: reason.to_owned(),
            actor: actor.clone(),
            at: now,
        });
        self.reasons = vec![format!("quarantined by {actor}: {reason}")];
        Ok(Transition {
            changes: vec![Change {
                action: AuditAction::Quarantined,
                actor,
                reason: reason.to_owned(),
            }],
            effects: vec![Effect::SendCmd(CmdAction::Quarantine {
                reason: reason.to_owned(),
            })],
        })
    }

    /// An operator asks for the device back: it stays quarantined until it re-attests and passes.
    pub fn release(
        &mut self,
        reason: &str,
        actor: Actor,
        now: u64,
    ) -> Result<Transition, TransitionError> {
        if reason.trim().is_empty() {
            return Err(TransitionError::EmptyReason);
        }
        if self.state != DeviceState::Quarantined {
            return Err(TransitionError::NotQuarantined { state: self.state });
        }
        self.release = Some(ReleaseRequest {
            reason: reason.to_owned(),
            actor: actor.clone(),
            at: now,
        });
        Ok(Transition {
            changes: vec![Change {
                action: AuditAction::Released,
                actor,
                reason: reason.to_owned(),
            }],
            effects: vec![
                Effect::SendCmd(CmdAction::Release {
                    reason: reason.to_owned(),
                }),
                Effect::SendChallenge,
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Actor {
        Actor::Operator("admin".into())
    }

    fn r(s: &str) -> Vec<String> {
        vec![s.to_owned()]
    }

    #[test]
    fn pending_becomes_trusted_on_a_pass_and_stays_pending_without_reference() {
        let mut d = DeviceStatus::new();
        let (t, s, _) = d.transition(Status::Warning, &r("no reference values"), Basis::Fresh, 1);
        assert!(t.changes.is_empty());
        assert_eq!((d.state, s), (DeviceState::Pending, Status::Warning));
        let (t, s, _) = d.transition(Status::Affirming, &[], Basis::Fresh, 2);
        assert_eq!(t.changes[0].action, AuditAction::Trusted);
        assert_eq!((d.state, s), (DeviceState::Trusted, Status::Affirming));
    }

    #[test]
    fn failure_quarantines_and_sends_a_command() {
        let mut d = DeviceStatus::new();
        d.transition(Status::Affirming, &[], Basis::Fresh, 1);
        let (t, s, reasons) = d.transition(
            Status::Contraindicated,
            &r("PCR 4 changed"),
            Basis::Fresh,
            2,
        );
        assert_eq!(d.state, DeviceState::Quarantined);
        assert_eq!(s, Status::Contraindicated);
        assert_eq!(
            reasons,
            r("PCR 4 changed"),
            "the findings, not repeated under a prefix"
        );
        assert_eq!(t.changes[0].action, AuditAction::Quarantined);
        assert!(matches!(
            t.effects[0],
            Effect::SendCmd(CmdAction::Quarantine { .. })
        ));
    }

    #[test]
    fn passing_attestation_alone_never_lifts_a_quarantine() {
        let mut d = DeviceStatus::new();
        d.quarantine("tamper report", op(), 1).unwrap();
        let (t, s, reasons) = d.transition(Status::Affirming, &[], Basis::Fresh, 2);
        assert!(t.changes.is_empty());
        assert_eq!(
            (d.state, s),
            (DeviceState::Quarantined, Status::Contraindicated)
        );
        assert_eq!(
            reasons,
            vec!["quarantined by operator:admin: tamper report".to_string()]
        );
    }

    #[test]
    fn release_then_pass_makes_trusted_and_release_then_fail_stays_quarantined() {
        let mut d = DeviceStatus::new();
        d.quarantine("tamper report", op(), 1).unwrap();
        let t = d.release("inspected", op(), 2).unwrap();
        assert_eq!(t.changes[0].action, AuditAction::Released);
        assert!(t.effects.contains(&Effect::SendChallenge));
        assert_eq!(d.state, DeviceState::Quarantined);
        let (t, _, _) = d.transition(Status::Affirming, &[], Basis::Fresh, 3);
        assert_eq!(t.changes[0].action, AuditAction::Trusted);
        assert_eq!(d.state, DeviceState::Trusted);
        assert!(d.quarantine.is_none());

        d.quarantine("again", op(), 4).unwrap();
        d.release("try", op(), 5).unwrap();
        let (t, s, _) = d.transition(
            Status::Contraindicated,
            &r("PCR 0 changed"),
            Basis::Fresh,
            6,
        );
        assert_eq!(t.changes[0].action, AuditAction::ReleaseFailed);
        assert_eq!(
            (d.state, s),
            (DeviceState::Quarantined, Status::Contraindicated)
        );
        assert!(d.release.is_none());
    }

    #[test]
    fn reappraising_stored_measurements_never_lifts_a_quarantine() {
        let mut d = DeviceStatus::new();
        d.quarantine("tamper report", op(), 1).unwrap();
        d.release("inspected", op(), 2).unwrap();
        for recent in [true, false] {
            let (t, s, _) = d.transition(Status::Affirming, &[], Basis::Stored { recent }, 3);
            assert!(t.changes.is_empty());
            assert_eq!(
                (d.state, s),
                (DeviceState::Quarantined, Status::Contraindicated)
            );
            assert!(
                d.release.is_some(),
                "the release still waits for fresh evidence"
            );
        }
        d.transition(Status::Affirming, &[], Basis::Fresh, 4);
        assert_eq!(d.state, DeviceState::Trusted);
    }

    #[test]
    fn only_recent_stored_measurements_make_a_pending_device_trusted() {
        let mut d = DeviceStatus::new();
        d.transition(Status::Affirming, &[], Basis::Stored { recent: false }, 1);
        assert_eq!(d.state, DeviceState::Pending);
        d.transition(Status::Affirming, &[], Basis::Stored { recent: true }, 2);
        assert_eq!(d.state, DeviceState::Trusted);
        // Stale measurements can still make things worse.
        d.transition(
            Status::Contraindicated,
            &r("PCR 7"),
            Basis::Stored { recent: false },
            3,
        );
        assert_eq!(d.state, DeviceState::Quarantined);
    }

    #[test]
    fn a_held_device_s_verdict_is_contraindicated_and_untrustworthy() {
        let mut d = DeviceStatus::new();
        d.quarantine("tamper report", op(), 1).unwrap();
        let passed = Appraisal {
            status: Status::Affirming,
            trust: TrustVector {
                instance_identity: claim::TRUSTWORTHY_INSTANCE,
                hardware: claim::GENUINE_HARDWARE,
                ..TrustVector::default()
            },
            reasons: vec![],
            policy_id: Some("p".into()),
            quote_accepted: true,
        };
        let (_, v) = d.apply_appraisal(passed, Basis::Fresh, 2);
        assert_eq!(v.status, Status::Contraindicated);
        assert_eq!(v.trust.instance_identity, claim::UNTRUSTWORTHY_INSTANCE);
        assert_eq!(v.trust.hardware, claim::GENUINE_HARDWARE);
        assert_eq!(v.policy_id.as_deref(), Some("p"));
        let held = d.held_appraisal(None);
        assert_eq!(held.status, Status::Contraindicated);
        assert_eq!(
            held.reasons,
            vec!["quarantined by operator:admin: tamper report".to_string()]
        );
    }

    #[test]
    fn operator_actions_check_the_state() {
        let mut d = DeviceStatus::new();
        assert!(matches!(
            d.release("x", op(), 1),
            Err(TransitionError::NotQuarantined { .. })
        ));
        assert_eq!(
            d.quarantine("  ", op(), 1),
            Err(TransitionError::EmptyReason)
        );
        d.quarantine("x", op(), 1).unwrap();
        assert!(matches!(
            d.quarantine("y", op(), 2),
            Err(TransitionError::AlreadyQuarantined { .. })
        ));
    }
}
