//! Decisions on policy changes: which reference values an operator may store (at a device id
//! that parses or a model name of 1 to [`MAX_MODEL_NAME`] bytes; a capture needs verified,
//! non-empty measurements), the audit entry a change leaves, and which devices it re-evaluates:
//! those the changed values now govern, by the one device-over-model rule of
//! [`super::governing`] (a model's values do not govern a device with its own). Re-evaluation
//! appraises a device's stored measurements again: measurements older than a verdict's lifetime
//! can make a device worse off but not trusted, and such a device is challenged for fresh
//! evidence.

use thiserror::Error;

use crate::appraisal;
use crate::device::{Actor, AuditAction, Basis};
use crate::error::IdError;
use crate::ids::DeviceId;
use crate::policy::{PolicyScope, ReferenceValues, policy_id};

use super::core::{Governing, NonceSource, NonceUnavailable, VerifierCore};
use super::effects::Effects;
use super::record::{AuditRecord, DeviceRecord};

/// Longest model name reference values may be stored under (bytes).
pub const MAX_MODEL_NAME: usize = 128;

/// How reference values came to be stored, as the audit entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// Captured from a device's last verified measurements (`policy capture`).
    Captured,
    /// Given by the operator (`policy set`).
    SetByOperator,
}

impl PolicyOrigin {
    fn text(self) -> &'static str {
        match self {
            PolicyOrigin::Captured => "captured from its last verified measurements",
            PolicyOrigin::SetByOperator => "set by operator",
        }
    }
}

/// Why reference values cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyRefusal {
    /// The device scope does not name a valid device id.
    #[error("device id: {0}")]
    DeviceId(IdError),
    /// The model scope's name is empty or longer than [`MAX_MODEL_NAME`] bytes.
    #[error("model must be 1 to {MAX_MODEL_NAME} characters")]
    ModelName { len: usize },
    /// A firmware scope whose model or version is no valid label (the label check's words).
    #[error("{0}")]
    FirmwareLabel(String),
    /// A capture from a device that has not attested yet.
    #[error(
        "device {0} has no verified measurements yet: it must attest once before its policy can be captured"
    )]
    NoMeasurements(DeviceId),
    /// A capture from measurements that name nothing to hold the device to.
    #[error("device {0}'s measurements are empty")]
    EmptyMeasurements(DeviceId),
}

impl PolicyRefusal {
    /// Whether the request itself is malformed (a bad scope), rather than in conflict with the
    /// device's state (nothing to capture yet).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            PolicyRefusal::DeviceId(_)
                | PolicyRefusal::ModelName { .. }
                | PolicyRefusal::FirmwareLabel(_)
        )
    }
}

/// What storing reference values records: the policy id verdicts will carry, and the audit
/// entry of the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    pub policy_id: String,
    pub audit: AuditRecord,
}

impl VerifierCore {
    /// Reference values `rv` stored at `scope` by `actor` at `now`: refused for a scope that
    /// names no valid device or model, else the policy id and the `PolicyChanged` audit entry
    /// (`<policy id> <how>`, naming the device for a device scope).
    pub fn on_policy_set(
        &self,
        scope: &PolicyScope,
        rv: &ReferenceValues,
        origin: PolicyOrigin,
        actor: Actor,
        now: u64,
    ) -> Result<PolicySet, PolicyRefusal> {
        let device = match scope {
            PolicyScope::Device(d) => Some(d.parse::<DeviceId>().map_err(PolicyRefusal::DeviceId)?),
            PolicyScope::Model(m) if m.is_empty() || m.len() > MAX_MODEL_NAME => {
                return Err(PolicyRefusal::ModelName { len: m.len() });
            }
            PolicyScope::Model(_) => None,
            PolicyScope::Firmware { model, version } => {
                for (what, label) in [("model", model), ("firmware version", version)] {
                    crate::vendor::bundle::check_label(what, label)
                        .map_err(PolicyRefusal::FirmwareLabel)?;
                }
                None
            }
        };
        let pid = policy_id(scope, rv);
        let audit = AuditRecord {
            at: now,
            device,
            action: AuditAction::PolicyChanged,
            actor,
            reason: format!("{pid} {}", origin.text()),
        };
        Ok(PolicySet {
            policy_id: pid,
            audit,
        })
    }

    /// The reference values a capture from `rec`'s device stores: exactly its last verified
    /// measurements. Refused before it has attested, or when they are empty.
    pub fn capture_policy(&self, rec: &DeviceRecord) -> Result<ReferenceValues, PolicyRefusal> {
        let m = rec
            .measurements
            .as_ref()
            .ok_or_else(|| PolicyRefusal::NoMeasurements(rec.id().clone()))?;
        let rv = m.capture();
        if rv.is_empty() {
            return Err(PolicyRefusal::EmptyMeasurements(rec.id().clone()));
        }
        Ok(rv)
    }

    /// Re-appraises `rec`'s stored measurements after the reference values at `changed` were
    /// stored, `governing` being the device's policy as looked up afterwards. `None` when the
    /// changed values do not govern the device (a model's change and a device with its own
    /// values): it is not re-evaluated. A device that never attested has nothing to re-evaluate
    /// (its first attestation uses the new policy): the effects are empty.
    pub fn on_policy_change(
        &self,
        rec: DeviceRecord,
        changed: &PolicyScope,
        governing: &Governing,
        now: u64,
        nonces: &mut dyn NonceSource,
    ) -> Result<Option<Effects>, NonceUnavailable> {
        if !governing.is_governed_by(changed) {
            return Ok(None);
        }
        let (Some(m), Some(measured_at)) = (rec.measurements.clone(), rec.measured_at) else {
            return Ok(Some(Effects::default()));
        };
        let recent = now.saturating_sub(measured_at) <= self.rules.verdict_ttl;
        let mut step = self.step(rec, now, nonces);
        let a = appraisal::reevaluate(&m, governing.policy(), &governing.subject);
        let a = self.rules.vetted(a, &m, &step.rec, governing);
        step.finish(a, Basis::Stored { recent }, None)?;
        if !recent {
            step.issue_challenge(0)?;
        }
        Ok(Some(step.into_effects()))
    }
}
