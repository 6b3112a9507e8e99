//! Decisions on operator actions: enrollment (idempotent for the same keys, a conflict for
//! different ones), quarantine and release (each withdraws every open challenge,
//! so evidence quoted before the action cannot count after it; a quarantine publishes the held
//! contraindicated verdict at once). Policy changes are in `policy`.

use thiserror::Error;

use crate::device::{Actor, AuditAction, TransitionError};
use crate::enrollment::Enrollment;
use crate::ids::DeviceId;

use super::core::{NonceSource, NonceUnavailable, VerifierCore};
use super::effects::Effects;
use super::record::{AuditRecord, DeviceRecord};

/// What an operator asks of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction<'a> {
    Quarantine { reason: &'a str, actor: Actor },
    Release { reason: &'a str, actor: Actor },
}

/// Why an operator action could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OperatorError {
    /// It does not fit the device's state (or lacks a reason).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    NoNonce(#[from] NonceUnavailable),
}

/// An enrollment request for a device already enrolled with other keys or another model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("device {0} is already enrolled with different keys or model")]
pub struct EnrollConflict(pub DeviceId);

impl VerifierCore {
    /// A validated enrollment `e` by `actor` at `now`, with the record already held for its
    /// device id. `None` when the same device is already enrolled with the same keys (enrolling
    /// is idempotent, so a factory can retry a batch); otherwise the new record and its audit
    /// entry.
    pub fn on_enroll(
        &self,
        existing: Option<&DeviceRecord>,
        e: Enrollment,
        actor: &Actor,
        now: u64,
    ) -> Result<Option<Effects>, EnrollConflict> {
        if let Some(existing) = existing {
            if existing.enrollment.same_keys(&e) {
                return Ok(None);
            }
            return Err(EnrollConflict(e.id));
        }
        let rec = DeviceRecord::new(e);
        let audit = AuditRecord {
            at: now,
            device: Some(rec.id().clone()),
            action: AuditAction::Enrolled,
            actor: actor.clone(),
            reason: format!(
                "model {}, AK {}",
                rec.enrollment.model,
                hex::encode(rec.enrollment.ak_name.as_slice())
            ),
        };
        Ok(Some(Effects {
            device: Some(rec),
            audit: vec![audit],
            ..Effects::default()
        }))
    }

    /// An operator action on `rec`'s device at `now`.
    pub fn on_operator_action(
        &self,
        rec: DeviceRecord,
        action: OperatorAction<'_>,
        now: u64,
        nonces: &mut dyn NonceSource,
    ) -> Result<Effects, OperatorError> {
        let mut step = self.step(rec, now, nonces);
        // A quarantine that the state machine accepted has just begun (it refuses a device
        // already quarantined); a release never changes the verdict before fresh evidence.
        let (t, entered_quarantine) = match action {
            OperatorAction::Quarantine { reason, actor } => {
                (step.rec.status.quarantine(reason, actor, now)?, true)
            }
            OperatorAction::Release { reason, actor } => {
                (step.rec.status.release(reason, actor, now)?, false)
            }
        };
        if entered_quarantine {
            step.issue_held_verdict();
        }
        step.retire_challenges();
        step.carry_out(t)?;
        Ok(step.into_effects())
    }
}
