//! The verifier's per-device state machine: pending → trusted ⇄ quarantined, trusted ⇄
//! unresponsive, driven by appraisals, verdict expiry and operator actions. Each transition
//! returns the audit entries to append and the effects (commands, challenges) for the shell to
//! carry out; nothing here touches storage or reads a clock (`now` comes in).
//!
//! Invariants: a quarantine, automatic or manual, is lifted only by an operator release followed
//! by an attestation that passes; an attestation passing on its own never un-quarantines. A
//! trusted device whose verdict expires without fresh evidence is `unresponsive` until fresh
//! evidence passes; quarantine outranks it (an expiry never changes a quarantined device).
//!
//! States are types: [`Lifecycle`] gives each state exactly its data (a quarantine and a pending
//! release only while quarantined, a silence only while unresponsive), and reasons are
//! [`Reason`] values, compared as values. Storage takes a status apart into [`StatusParts`] and
//! rebuilds it from them, rejecting combinations no transition produces.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::appraisal::Appraisal;
use crate::messages::CmdAction;
use crate::reason::{self, Reason};
use crate::verdict::{DeviceState, Status, TrustVector, claim};

mod parts;

pub use parts::{StatusError, StatusParts};

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
    Unresponsive,
    /// A punch batch was refused as tamper (forged, forked, or a broken chain).
    PunchesRejected,
    /// An operator exported punch records (personal data).
    PunchesExported,
    /// An operator marked held punch records as reviewed.
    PunchesReviewed,
    /// An operator trusted a vendor's key (`vouchctl vendor trust`).
    VendorTrusted,
    /// An operator revoked a vendor (`vouchctl vendor revoke`).
    VendorRevoked,
    /// An operator imported a vendor's reference bundle.
    ReferenceImported,
    /// An operator revoked a firmware version's reference values.
    ReferenceRevoked,
    /// An operator set the supply-chain policy.
    SupplyChainSet,
    /// An administrator created an API token (target = token name, reason = role).
    TokenCreated,
    /// An administrator revoked an API token.
    TokenRevoked,
    /// An authenticated request was refused 403 (reason names the missing permission).
    AccessDenied,
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
            AuditAction::Unresponsive => "unresponsive",
            AuditAction::PunchesRejected => "punches_rejected",
            AuditAction::PunchesExported => "punches_exported",
            AuditAction::PunchesReviewed => "punches_reviewed",
            AuditAction::VendorTrusted => "vendor_trusted",
            AuditAction::VendorRevoked => "vendor_revoked",
            AuditAction::ReferenceImported => "reference_imported",
            AuditAction::ReferenceRevoked => "reference_revoked",
            AuditAction::SupplyChainSet => "supply_chain_set",
            AuditAction::TokenCreated => "token_created",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::AccessDenied => "access_denied",
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

/// Why a quarantine is in force: the failed appraisal's reasons (actor `verifier`), an
/// operator's words ([`Reason::Operator`]), or the verdict periods that passed without fresh
/// evidence ([`Reason::Unresponsive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub reasons: Vec<Reason>,
    pub actor: Actor,
    pub at: u64,
}

impl Quarantine {
    /// The reasons as one line, as audit entries, commands and the API show them.
    pub fn text(&self) -> String {
        reason::join(&self.reasons)
    }

    /// The reason a held device's verdicts carry: `quarantined by <actor>: <reasons>`.
    pub fn held(&self) -> Reason {
        Reason::Quarantined {
            actor: self.actor.clone(),
            reasons: self.reasons.clone(),
        }
    }
}

/// An operator's release, waiting for a passing attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub reason: String,
    pub actor: Actor,
    pub at: u64,
}

/// Why a device is `unresponsive`: the time of the last fresh evidence, and how many verdict
/// periods in a row have expired since without any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub since: u64,
    pub expiries: u32,
}

impl Silence {
    /// The reason carried by the audit entry and the verdicts while it lasts.
    pub fn reason(&self) -> Reason {
        Reason::NoFreshEvidence { since: self.since }
    }
}

/// Where a device stands, with exactly the data that state has: only a quarantined device has
/// a quarantine and perhaps a release waiting, only an unresponsive one a silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Enrolled; no reference values yet, or not yet attested against them.
    Pending,
    /// Its last attestation passed.
    Trusted,
    /// Was trusted; its verdicts expired without fresh evidence.
    Unresponsive { silence: Silence },
    /// Cut off, until an operator's release is followed by a passing attestation.
    Quarantined {
        why: Quarantine,
        release: Option<ReleaseRequest>,
    },
}

impl Lifecycle {
    /// The state as verdicts and the operator API name it.
    pub fn state(&self) -> DeviceState {
        match self {
            Lifecycle::Pending => DeviceState::Pending,
            Lifecycle::Trusted => DeviceState::Trusted,
            Lifecycle::Unresponsive { .. } => DeviceState::Unresponsive,
            Lifecycle::Quarantined { .. } => DeviceState::Quarantined,
        }
    }
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

/// The verifier's view of one device. Stored through its [`StatusParts`] (see there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    lifecycle: Lifecycle,
    /// Reasons of the last verdict.
    reasons: Vec<Reason>,
    /// When the last verdict was issued (the engine stamps it when it publishes one).
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
            lifecycle: Lifecycle::Pending,
            reasons: Vec::new(),
            last_verdict_at: None,
        }
    }

    /// The state with its data.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The state as verdicts and the operator API name it.
    pub fn state(&self) -> DeviceState {
        self.lifecycle.state()
    }

    /// The quarantine in force, if any.
    pub fn quarantine_in_force(&self) -> Option<&Quarantine> {
        match &self.lifecycle {
            Lifecycle::Quarantined { why, .. } => Some(why),
            _ => None,
        }
    }

    /// The operator's release waiting for a passing attestation, if any.
    pub fn release_request(&self) -> Option<&ReleaseRequest> {
        match &self.lifecycle {
            Lifecycle::Quarantined { release, .. } => release.as_ref(),
            _ => None,
        }
    }

    /// Whether an operator's release waits for a passing attestation.
    pub fn release_pending(&self) -> bool {
        self.release_request().is_some()
    }

    /// Since when, and for how many verdict periods, an unresponsive device has been silent.
    pub fn silence(&self) -> Option<&Silence> {
        match &self.lifecycle {
            Lifecycle::Unresponsive { silence } => Some(silence),
            _ => None,
        }
    }

    /// Reasons of the last verdict.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
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
        if self.state() == DeviceState::Quarantined && a.status != Status::Contraindicated {
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
        reasons: &[Reason],
        basis: Basis,
        now: u64,
    ) -> (Transition, Status, Vec<Reason>) {
        let mut t = Transition::default();
        let joined = || reason::join(reasons);
        let verifier = |action, reason| Change {
            action,
            actor: Actor::Verifier,
            reason,
        };
        let before = std::mem::replace(&mut self.lifecycle, Lifecycle::Pending);
        self.lifecycle = match (before, status) {
            (Lifecycle::Quarantined { why, release }, Status::Contraindicated) => {
                if let Some(rel) = release {
                    t.changes.push(verifier(
                        AuditAction::ReleaseFailed,
                        format!(
                            "attestation after release ({}) failed: {}",
                            rel.reason,
                            joined()
                        ),
                    ));
                    t.effects
                        .push(Effect::SendCmd(CmdAction::Quarantine { reason: joined() }));
                }
                Lifecycle::Quarantined { why, release: None }
            }
            (_, Status::Contraindicated) => {
                t.changes.push(verifier(AuditAction::Quarantined, joined()));
                t.effects
                    .push(Effect::SendCmd(CmdAction::Quarantine { reason: joined() }));
                Lifecycle::Quarantined {
                    why: Quarantine {
                        reasons: reasons.to_vec(),
                        actor: Actor::Verifier,
                        at: now,
                    },
                    release: None,
                }
            }
            (
                Lifecycle::Quarantined {
                    release: Some(rel), ..
                },
                Status::Affirming,
            ) if basis == Basis::Fresh => {
                t.changes.push(verifier(
                    AuditAction::Trusted,
                    format!("attestation after release ({}) passed", rel.reason),
                ));
                Lifecycle::Trusted
            }
            (Lifecycle::Unresponsive { silence }, Status::Affirming) if basis == Basis::Fresh => {
                t.changes.push(verifier(
                    AuditAction::Trusted,
                    format!("attestation passed after {}", silence.reason()),
                ));
                Lifecycle::Trusted
            }
            (Lifecycle::Pending, Status::Affirming) if basis.may_trust() => {
                t.changes
                    .push(verifier(AuditAction::Trusted, "attestation passed".into()));
                Lifecycle::Trusted
            }
            (
                Lifecycle::Trusted | Lifecycle::Unresponsive { .. },
                Status::Warning | Status::None,
            ) => {
                t.changes.push(verifier(AuditAction::Pending, joined()));
                Lifecycle::Pending
            }
            // Nothing changes: already trusted, still without reference values, or an affirming
            // appraisal whose basis cannot lift a quarantine, vouch for a pending device or
            // stand in for the fresh evidence an unresponsive device owes.
            (unchanged, _) => unchanged,
        };
        self.last_verdict_at = Some(now);
        let (status, reasons) = match &self.lifecycle {
            Lifecycle::Unresponsive { silence } => {
                // Stored measurements re-appraised: still no fresh evidence, so no affirmation.
                let mut r = vec![silence.reason()];
                r.extend_from_slice(reasons);
                (Status::Warning, r)
            }
            Lifecycle::Quarantined { why, .. } => {
                // Name the quarantine unless this very appraisal is what it says.
                let mut r = Vec::new();
                if !Reason::same(&why.reasons, reasons) {
                    r.push(why.held());
                }
                r.extend_from_slice(reasons);
                (Status::Contraindicated, r)
            }
            Lifecycle::Pending | Lifecycle::Trusted => (status, reasons.to_vec()),
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
        if let Some(q) = self.quarantine_in_force() {
            return Err(TransitionError::AlreadyQuarantined { reason: q.text() });
        }
        let why = vec![Reason::Operator {
            text: reason.to_owned(),
        }];
        Ok(self.enter_quarantine(why, actor, now))
    }

    /// The verifier cuts the device off for tamper evidence outside an appraisal (a forged or
    /// forked punch batch). A device already quarantined stays so: with a release pending, the
    /// release fails as it would on contraindicated evidence (audited, the quarantine command
    /// sent again), so a passing attestation afterwards cannot lift the quarantine; without
    /// one, the tamper is only audited (the caller records it) and `None` is returned.
    pub fn quarantine_for(&mut self, reason: Reason, now: u64) -> Option<Transition> {
        if let Lifecycle::Quarantined { release, .. } = &mut self.lifecycle {
            let rel = release.take()?;
            let text = reason.to_string();
            return Some(Transition {
                changes: vec![Change {
                    action: AuditAction::ReleaseFailed,
                    actor: Actor::Verifier,
                    reason: format!("release ({}) cancelled: {text}", rel.reason),
                }],
                effects: vec![Effect::SendCmd(CmdAction::Quarantine { reason: text })],
            });
        }
        Some(self.enter_quarantine(vec![reason], Actor::Verifier, now))
    }

    /// Quarantines the device (the caller checked it is not already).
    fn enter_quarantine(&mut self, reasons: Vec<Reason>, actor: Actor, now: u64) -> Transition {
        let why = Quarantine {
            reasons,
            actor: actor.clone(),
            at: now,
        };
        let text = why.text();
        self.reasons = vec![why.held()];
        self.lifecycle = Lifecycle::Quarantined { why, release: None };
        Transition {
            changes: vec![Change {
                action: AuditAction::Quarantined,
                actor,
                reason: text.clone(),
            }],
            effects: vec![Effect::SendCmd(CmdAction::Quarantine { reason: text })],
        }
    }

    /// The device's verdict expired at or before `now` and no fresh evidence came in its period.
    /// `last_evidence` is when the last accepted quote was appraised; `quarantine_after` is the
    /// operator's `quarantine_after_expiries` (0 = never); `policy_id` goes into the new verdict.
    ///
    /// Returns the transition and the verdict to publish in place of the expired one, or `None`
    /// when there is nothing to say:
    /// - trusted → `unresponsive` (audited), verdict `warning` "no fresh evidence since …";
    /// - unresponsive: one more expiry counted, the `warning` verdict renewed;
    /// - either, at `quarantine_after` consecutive expiries: quarantined (audited, command sent),
    ///   verdict `contraindicated`;
    /// - quarantined: nothing changes, the contraindicated verdict is renewed (the retained
    ///   verdict of a quarantined device always names the quarantine and is current);
    /// - pending: nothing (its verdict never affirmed anything; it waits for evidence).
    ///
    /// The warning verdict makes no trustworthiness claims: AR4SI has no claim for freshness, and
    /// every claim the last verdict made was about evidence that is no longer fresh.
    pub fn expire(
        &mut self,
        last_evidence: Option<u64>,
        now: u64,
        quarantine_after: u32,
        policy_id: Option<String>,
    ) -> Option<(Transition, Appraisal)> {
        let mut t = Transition::default();
        let silence = match &self.lifecycle {
            Lifecycle::Pending => return None,
            Lifecycle::Quarantined { .. } => return Some((t, self.held_appraisal(policy_id))),
            Lifecycle::Unresponsive { silence } => Silence {
                expiries: silence.expiries.saturating_add(1),
                ..*silence
            },
            Lifecycle::Trusted => {
                let s = Silence {
                    since: last_evidence.or(self.last_verdict_at).unwrap_or(now),
                    expiries: 1,
                };
                t.changes.push(Change {
                    action: AuditAction::Unresponsive,
                    actor: Actor::Verifier,
                    reason: s.reason().to_string(),
                });
                s
            }
        };
        if quarantine_after > 0 && silence.expiries >= quarantine_after {
            let why = vec![Reason::Unresponsive {
                expiries: silence.expiries,
            }];
            let q = self.enter_quarantine(why, Actor::Verifier, now);
            t.changes.extend(q.changes);
            t.effects.extend(q.effects);
            self.reasons.push(silence.reason());
            return Some((t, self.held_appraisal(policy_id)));
        }
        self.lifecycle = Lifecycle::Unresponsive { silence };
        self.reasons = vec![silence.reason()];
        let verdict = Appraisal {
            status: Status::Warning,
            trust: TrustVector::default(),
            reasons: self.reasons.clone(),
            policy_id,
            quote_accepted: false,
        };
        Some((t, verdict))
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
        let Lifecycle::Quarantined { release, .. } = &mut self.lifecycle else {
            return Err(TransitionError::NotQuarantined {
                state: self.state(),
            });
        };
        *release = Some(ReleaseRequest {
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

/// RFC 3339 in UTC (`1970-01-01T00:00:00Z`) for reasons; the core has no time library, and
/// this is the proleptic Gregorian calendar of Howard Hinnant's `civil_from_days`.
pub(crate) fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests;
