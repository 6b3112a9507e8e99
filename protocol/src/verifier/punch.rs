//! Decisions of the punch mirror that change a device's state: a tamper (forged signature, fork,
//! broken chain) quarantines the device — with the held verdict and the quarantine command, like
//! any quarantine — and is audited even when the device is quarantined already. Which batches
//! are appended, acknowledged again or re-requested is `crate::punch::mirror`.

use crate::device::{Actor, AuditAction};
use crate::reason::Reason;

use super::core::{NonceSource, NonceUnavailable, VerifierCore};
use super::effects::Effects;
use super::record::{AuditRecord, DeviceRecord};

impl VerifierCore {
    /// `rec`'s device sent a punch batch that is tamper evidence (`reason`) at `now`.
    pub fn on_punch_tamper(
        &self,
        rec: DeviceRecord,
        reason: Reason,
        now: u64,
        nonces: &mut dyn NonceSource,
    ) -> Result<Effects, NonceUnavailable> {
        let mut step = self.step(rec, now, nonces);
        step.effects.audit.push(AuditRecord {
            at: now,
            device: Some(step.rec.id().clone()),
            action: AuditAction::PunchesRejected,
            actor: Actor::Verifier,
            reason: reason.to_string(),
        });
        if let Some(t) = step.rec.status.quarantine_for(reason, now) {
            step.issue_held_verdict();
            step.retire_challenges();
            step.carry_out(t)?;
        }
        Ok(step.into_effects())
    }
}
