//! Operator actions (HTTP API) and the shared tail of every appraisal: apply it to the device's
//! state machine, sign and store the verdict, append the audit trail, and queue the verdict,
//! commands and challenges for publication after the commit.

use anyhow::Result;
use vouch_common::time::now_unix;
use vouch_protocol::appraisal::{self, Appraisal};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::device::{
    Actor, AuditAction, Basis, DeviceStatus, Effect, Transition, TransitionError,
};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::messages::Cmd;
use vouch_protocol::policy::{PolicyScope, ReferenceValues, policy_id};
use vouch_protocol::verdict::{DeviceState, PROFILE, Verdict};

use super::{ApiError, Engine};
use crate::api::{AuditPage, DevicePage, DeviceStateView, DeviceView, EnrolledView, PolicyView};
use crate::mqtt::Outgoing;
use crate::store::{AuditRecord, DeviceRecord, Writer};

/// An operator action that does not fit the device's state: a missing reason is a bad request,
/// anything else a conflict with the current state.
fn transition_error(id: &DeviceId, e: TransitionError) -> ApiError {
    match e {
        TransitionError::EmptyReason => ApiError::BadRequest(e.to_string()),
        _ => ApiError::Conflict(format!("device {id}: {e}")),
    }
}

/// Devices re-evaluated per transaction after a policy change.
const REEVALUATION_CHUNK: usize = 500;

fn parse_id(id: &str) -> Result<DeviceId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::BadRequest(format!("device id: {e}")))
}

impl Engine {
    /// Applies `a` to `rec`, publishes the verdict and carries out the transition's effects.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &self,
        w: &mut Writer,
        rec: &mut DeviceRecord,
        a: Appraisal,
        basis: Basis,
        nonce: Option<Nonce>,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<()> {
        let (t, verdict) = rec.status.apply_appraisal(a, basis, now);
        // A verdict is worth no more than the quote behind it; one saying there is no fresh
        // evidence covers a verdict period from now, like the sweep's renewals.
        let exp = match (basis, rec.measured_at) {
            _ if rec.status.state() == DeviceState::Unresponsive => now + self.cfg.verdict_ttl,
            (Basis::Stored { .. }, Some(m)) => {
                (m + self.cfg.verdict_ttl).min(now + self.cfg.verdict_ttl)
            }
            _ => now + self.cfg.verdict_ttl,
        };
        self.publish_verdict(w, rec, verdict, nonce, now, exp, out)?;
        self.carry_out(w, rec, t, now, out)
    }

    /// Signs and stores `a` as `rec`'s current verdict (queued for publication, retained), and
    /// moves its entry in the verdict expiry index to `exp` in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish_verdict(
        &self,
        w: &mut Writer,
        rec: &mut DeviceRecord,
        a: Appraisal,
        nonce: Option<Nonce>,
        now: u64,
        exp: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<()> {
        let verdict = Verdict {
            profile: PROFILE.into(),
            iat: now,
            exp,
            verifier_id: self.cfg.verifier_id.clone(),
            status: a.status,
            trust: a.trust,
            policy_id: a.policy_id.clone(),
            device: rec.id().clone(),
            state: rec.status.state(),
            reasons: vouch_protocol::reason::texts(&a.reasons),
            nonce,
            seq: w.next_seq()?,
        };
        let msg = self.outgoing(rec.id(), &verdict, true);
        let previous_exp = rec.last_verdict().map(|v| v.exp);
        w.index_verdict_expiry(rec.id(), previous_exp, exp)?;
        rec.status.last_verdict_at = Some(now);
        rec.last_verdict = Some(Bytes(msg.payload.clone()));
        out.push(msg);
        Ok(())
    }

    /// Appends the transition's audit entries, stores `rec`, and queues its effects.
    pub(super) fn carry_out(
        &self,
        w: &mut Writer,
        rec: &mut DeviceRecord,
        t: Transition,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<()> {
        for c in t.changes {
            tracing::info!(device = %rec.id(), action = c.action.as_str(), actor = %c.actor, reason = %c.reason, "state change");
            w.append_audit(&AuditRecord {
                at: now,
                device: Some(rec.id().clone()),
                action: c.action,
                actor: c.actor,
                reason: c.reason,
            })?;
        }
        for e in t.effects {
            match e {
                Effect::SendCmd(action) => {
                    let cmd = Cmd {
                        seq: w.next_seq()?,
                        issued_at: now,
                        action,
                    };
                    out.push(self.outgoing(rec.id(), &cmd, false));
                }
                Effect::SendChallenge => self.issue_challenge(w, rec, 0, now, out)?,
            }
        }
        w.put_device(rec)
    }

    /// Re-appraises `rec`'s stored measurements against its current policy. Measurements older
    /// than a verdict's lifetime can make a device worse off but not trusted; such a device is
    /// challenged for fresh evidence.
    fn reevaluate(
        &self,
        w: &mut Writer,
        rec: &mut DeviceRecord,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<()> {
        // Never attested: nothing to re-evaluate; its first attestation uses the new policy.
        let (Some(m), Some(measured_at)) = (rec.measurements.clone(), rec.measured_at) else {
            return Ok(());
        };
        let recent = now.saturating_sub(measured_at) <= self.cfg.verdict_ttl;
        let governing = self.policy_for(w, rec)?;
        let a = appraisal::reevaluate(&m, governing.policy(), &governing.subject);
        self.finish(w, rec, a, Basis::Stored { recent }, None, now, out)?;
        if !recent {
            self.issue_challenge(w, rec, 0, now, out)?;
        }
        w.put_device(rec)
    }

    /// Commits `w` and publishes `out`.
    fn commit(&self, w: Writer, out: Vec<Outgoing>) -> Result<(), ApiError> {
        w.commit()?;
        self.publish(out);
        Ok(())
    }

    fn load(&self, w: &Writer, id: &DeviceId) -> Result<DeviceRecord, ApiError> {
        w.device(id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))
    }

    /// Validates one request and records it in `w`. Returns the device id and whether it was
    /// created (false when the same request is already enrolled: enrollment is idempotent).
    fn enroll_into(
        &self,
        w: &mut Writer,
        request: &[u8],
        actor: &Actor,
        now: u64,
    ) -> Result<(DeviceId, bool), ApiError> {
        let e = Enrollment::from_request(request, now)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if let Some(existing) = w.device(&e.id)? {
            if existing.enrollment.same_keys(&e) {
                return Ok((e.id, false));
            }
            return Err(ApiError::Conflict(format!(
                "device {} is already enrolled with different keys or model",
                e.id
            )));
        }
        let rec = DeviceRecord::new(e);
        w.append_audit(&AuditRecord {
            at: now,
            device: Some(rec.id().clone()),
            action: AuditAction::Enrolled,
            actor: actor.clone(),
            reason: format!(
                "model {}, AK {}",
                rec.enrollment.model,
                hex::encode(rec.enrollment.ak_name.as_slice())
            ),
        })?;
        w.put_device(&rec)?;
        tracing::info!(device = %rec.id(), model = %rec.enrollment.model, "enrolled");
        Ok((rec.id().clone(), true))
    }

    pub fn enroll(&self, request: &[u8], actor: &Actor) -> Result<EnrolledView, ApiError> {
        let mut w = self.store.write()?;
        let (id, created) = self.enroll_into(&mut w, request, actor, now_unix())?;
        self.commit(w, Vec::new())?;
        Ok(EnrolledView {
            id: id.to_string(),
            created,
        })
    }

    /// Enrolls many devices in one transaction (factory batches, benchmarks). Requests already
    /// enrolled with the same keys are skipped; the first invalid or conflicting request fails
    /// the whole batch, naming it, and nothing is written.
    pub fn enroll_batch(&self, requests: &[Vec<u8>], actor: &Actor) -> Result<usize, ApiError> {
        let now = now_unix();
        let mut w = self.store.write()?;
        let mut created = 0;
        for (i, request) in requests.iter().enumerate() {
            let (_, new) = self
                .enroll_into(&mut w, request, actor, now)
                .map_err(|e| match e {
                    ApiError::BadRequest(m) => ApiError::BadRequest(format!("request {i}: {m}")),
                    ApiError::Conflict(m) => ApiError::Conflict(format!("request {i}: {m}")),
                    other => other,
                })?;
            created += usize::from(new);
        }
        self.commit(w, Vec::new())?;
        Ok(created)
    }

    pub fn device(&self, id: &str) -> Result<DeviceView, ApiError> {
        let id = parse_id(id)?;
        let rec = self
            .store
            .read()?
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        Ok(super::views::device(&rec))
    }

    pub fn devices(&self, after: Option<&str>, limit: usize) -> Result<DevicePage, ApiError> {
        let (recs, next) = self.store.read()?.devices(after, limit.clamp(1, 1000))?;
        Ok(DevicePage {
            devices: recs.iter().map(super::views::device).collect(),
            next,
        })
    }

    pub fn quarantine(&self, id: &str, reason: &str, actor: Actor) -> Result<DeviceView, ApiError> {
        self.operator_action(id, |status, now| status.quarantine(reason, actor, now))
    }

    pub fn release(&self, id: &str, reason: &str, actor: Actor) -> Result<DeviceView, ApiError> {
        self.operator_action(id, |status, now| status.release(reason, actor, now))
    }

    /// An operator action on one device: `act` moves its state machine. Every open challenge is
    /// withdrawn, so evidence quoted before the action cannot count after it (a release is
    /// satisfied only by a challenge it issues itself); a quarantine publishes its verdict at once.
    fn operator_action(
        &self,
        id: &str,
        act: impl FnOnce(&mut DeviceStatus, u64) -> Result<Transition, TransitionError>,
    ) -> Result<DeviceView, ApiError> {
        let id = parse_id(id)?;
        let now = now_unix();
        let mut w = self.store.write()?;
        let mut rec = self.load(&w, &id)?;
        let t = act(&mut rec.status, now).map_err(|e| transition_error(&id, e))?;
        let mut out = Vec::new();
        if t.changes
            .iter()
            .any(|c| c.action == AuditAction::Quarantined)
        {
            let policy = rec.last_verdict().and_then(|v| v.policy_id);
            let held = rec.status.held_appraisal(policy);
            let exp = now + self.cfg.verdict_ttl;
            self.publish_verdict(&mut w, &mut rec, held, None, now, exp, &mut out)?;
        }
        self.retire_challenges(&mut w, &mut rec)?;
        self.carry_out(&mut w, &mut rec, t, now, &mut out)?;
        self.commit(w, out)?;
        Ok(super::views::device(&rec))
    }

    pub fn capture_policy(&self, id: &str, actor: Actor) -> Result<PolicyView, ApiError> {
        let id = parse_id(id)?;
        let rec = self
            .store
            .read()?
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        let m = rec.measurements.as_ref().ok_or_else(|| {
            ApiError::Conflict(format!(
                "device {id} has no verified measurements yet: it must attest once before its policy can be captured"
            ))
        })?;
        let rv = m.capture();
        if rv.is_empty() {
            return Err(ApiError::Conflict(format!(
                "device {id}'s measurements are empty"
            )));
        }
        self.store_policy(
            PolicyScope::Device(id.to_string()),
            rv,
            actor,
            "captured from its last verified measurements",
        )
    }

    pub fn set_policy(
        &self,
        scope: PolicyScope,
        rv: ReferenceValues,
        actor: Actor,
    ) -> Result<PolicyView, ApiError> {
        match &scope {
            PolicyScope::Device(d) => {
                parse_id(d)?;
            }
            PolicyScope::Model(m) if m.is_empty() || m.len() > 128 => {
                return Err(ApiError::BadRequest(
                    "model must be 1 to 128 characters".into(),
                ));
            }
            PolicyScope::Model(_) => {}
        }
        self.store_policy(scope, rv, actor, "set by operator")
    }

    /// Stores reference values and audits the change (one transaction), then re-evaluates the
    /// devices they govern in transactions of [`REEVALUATION_CHUNK`] devices, publishing after
    /// each, so a model-wide change neither holds the store for long nor floods the broker.
    fn store_policy(
        &self,
        scope: PolicyScope,
        rv: ReferenceValues,
        actor: Actor,
        how: &str,
    ) -> Result<PolicyView, ApiError> {
        let now = now_unix();
        let pid = policy_id(&scope, &rv);
        let mut w = self.store.write()?;
        w.put_policy(&scope, &rv)?;
        let affected: Vec<DeviceId> = match &scope {
            PolicyScope::Device(d) => parse_id(d).into_iter().collect(),
            PolicyScope::Model(m) => {
                let mut ids = Vec::new();
                for id in w.devices_of_model(m)? {
                    // Devices with their own policy are not governed by the model's.
                    if w.policy(&PolicyScope::Device(id.to_string()))?.is_none() {
                        ids.push(id);
                    }
                }
                ids
            }
        };
        let device = match &scope {
            PolicyScope::Device(d) => d.parse().ok(),
            PolicyScope::Model(_) => None,
        };
        w.append_audit(&AuditRecord {
            at: now,
            device,
            action: AuditAction::PolicyChanged,
            actor,
            reason: format!("{pid} {how}"),
        })?;
        self.commit(w, Vec::new())?;
        let mut reevaluated = Vec::new();
        for chunk in affected.chunks(REEVALUATION_CHUNK) {
            let mut w = self.store.write()?;
            let mut out = Vec::new();
            for id in chunk {
                let Some(mut rec) = w.device(id)? else {
                    continue;
                };
                self.reevaluate(&mut w, &mut rec, now, &mut out)?;
                reevaluated.push(DeviceStateView {
                    id: id.to_string(),
                    state: rec.status.state(),
                });
            }
            self.commit(w, out)?;
        }
        Ok(PolicyView {
            policy_id: pid,
            reevaluated,
        })
    }

    pub fn policy(&self, scope: &PolicyScope) -> Result<ReferenceValues, ApiError> {
        self.store
            .read()?
            .policy(scope)?
            .ok_or_else(|| ApiError::NotFound(format!("no reference values for {scope}")))
    }

    pub fn audit(&self, after: Option<u64>, limit: usize) -> Result<AuditPage, ApiError> {
        let (entries, next) = self.store.read()?.audit(after, limit.clamp(1, 1000))?;
        Ok(AuditPage {
            entries: entries
                .iter()
                .map(|(seq, r)| super::views::audit(*seq, r))
                .collect(),
            next,
        })
    }
}
