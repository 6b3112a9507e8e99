//! Operator actions (HTTP API) through the engine: enrollment, quarantine and release, policy
//! changes and the re-evaluation they cause, and the read views. The verifier core decides what
//! an action does to a device (`VerifierCore::on_operator_action`), whether reference values
//! may be stored and how the change is audited (`on_policy_set`, `capture_policy`), and which
//! devices a change re-evaluates and how (`on_policy_change`); each action commits in its own
//! write transaction and publishes after the commit.

use vouch_protocol::device::{Actor, AuditAction, TransitionError};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};
use vouch_protocol::verifier::{OperatorAction, OperatorError, PolicyOrigin, PolicyRefusal};

use super::{ApiError, Engine};
use crate::api::{AuditPage, DevicePage, DeviceView, EnrolledView, PolicyView};
use crate::mqtt::Outgoing;
use crate::store::{DeviceRecord, PunchHead, Writer};

/// Most device records one device-list request reads (`GET /api/devices?state=...`).
pub const DEVICE_SCAN_BUDGET: usize = 5000;

/// What the device list keeps: one state and/or an id prefix (`?state=` and `?q=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub state: Option<vouch_protocol::verdict::DeviceState>,
    pub prefix: Option<String>,
}

/// An operator action that does not fit the device's state: a missing reason is a bad request,
/// anything else a conflict with the current state.
fn transition_error(id: &DeviceId, e: TransitionError) -> ApiError {
    match e {
        TransitionError::EmptyReason => ApiError::BadRequest(e.to_string()),
        _ => ApiError::Conflict(format!("device {id}: {e}")),
    }
}

/// Reference values the core refused to store: a bad scope is a bad request, nothing to capture
/// a conflict with the device's state.
fn policy_refusal(e: PolicyRefusal) -> ApiError {
    if e.is_bad_request() {
        ApiError::BadRequest(e.to_string())
    } else {
        ApiError::Conflict(e.to_string())
    }
}

/// The EK certificate's anchor, or why there is none, as an enrollment stored it.
type EkCert = (Option<String>, Option<String>);

pub(super) fn parse_id(id: &str) -> Result<DeviceId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::BadRequest(format!("device id: {e}")))
}

impl Engine {
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

    /// Validates one request, checks its EK certificate against the TPM roots, and records it
    /// in `w`. Returns the device id, whether it was created (false when the same request is
    /// already enrolled: enrollment is idempotent) and the EK certificate's anchor or problem
    /// as stored.
    fn enroll_into(
        &self,
        w: &mut Writer,
        request: &[u8],
        actor: &Actor,
        now: u64,
    ) -> Result<(DeviceId, bool, EkCert), ApiError> {
        let mut e = Enrollment::from_request(request, now)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let problem = self.anchor_enrollment(&mut e, now);
        let id = e.id.clone();
        let note = match (&e.ek_cert_anchor, &problem) {
            (Some(a), _) => format!("EK certificate chains to {a}"),
            (None, Some(p)) => p.clone(),
            (None, None) => "no EK certificate".into(),
        };
        let fresh = (e.ek_cert_anchor.clone(), problem);
        let existing = w.device(&id)?;
        let created = self.enroll_checked(w, existing.as_ref(), e, actor, now, &note)?;
        let ek = match existing {
            Some(x) if !created => (
                x.enrollment.ek_cert_anchor.clone(),
                self.ek_cert_problem(&x),
            ),
            _ => fresh,
        };
        Ok((id, created, ek))
    }

    /// Enrolls `e` (validated, its EK certificate checked) into `w` as the core decides it;
    /// `note` (provenance, EK certificate) is added to the enrollment's audit entry. Returns
    /// whether the device was created.
    pub(super) fn enroll_checked(
        &self,
        w: &mut Writer,
        existing: Option<&DeviceRecord>,
        e: Enrollment,
        actor: &Actor,
        now: u64,
        note: &str,
    ) -> Result<bool, ApiError> {
        let id = e.id.clone();
        match self.core.on_enroll(existing, e, actor, now) {
            Ok(None) => Ok(false),
            Ok(Some(mut effects)) => {
                for a in &mut effects.audit {
                    if a.action == AuditAction::Enrolled {
                        a.reason = format!("{}; {note}", a.reason);
                    }
                }
                self.write_effects(w, &id, effects)?;
                Ok(true)
            }
            Err(conflict) => Err(ApiError::Conflict(conflict.to_string())),
        }
    }

    pub fn enroll(&self, request: &[u8], actor: &Actor) -> Result<EnrolledView, ApiError> {
        let mut w = self.store.write()?;
        let (id, created, (ek_cert_anchor, ek_cert_problem)) =
            self.enroll_into(&mut w, request, actor, self.now())?;
        self.commit(w, Vec::new())?;
        Ok(EnrolledView {
            id: id.to_string(),
            created,
            ek_cert_anchor,
            ek_cert_problem,
        })
    }

    /// Enrolls many devices in one transaction (factory batches, benchmarks). Requests already
    /// enrolled with the same keys are skipped; the first invalid or conflicting request fails
    /// the whole batch, naming it, and nothing is written.
    pub fn enroll_batch(&self, requests: &[Vec<u8>], actor: &Actor) -> Result<usize, ApiError> {
        let now = self.now();
        let mut w = self.store.write()?;
        let mut created = 0;
        for (i, request) in requests.iter().enumerate() {
            let (_, new, _) =
                self.enroll_into(&mut w, request, actor, now)
                    .map_err(|e| match e {
                        ApiError::BadRequest(m) => {
                            ApiError::BadRequest(format!("request {i}: {m}"))
                        }
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
        let r = self.store.read()?;
        let rec = r
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        let head = r.punch_head(&id);
        let trust = self.trust_of(&rec, |m, v| r.bundle(m, v))?;
        Ok(self.view(&rec, head, trust))
    }

    pub fn devices(&self, after: Option<&str>, limit: usize) -> Result<DevicePage, ApiError> {
        self.devices_matching(&DeviceFilter::default(), after, limit)
    }

    /// Up to `limit` devices after `after` that match `filter`, in id order. The scan is
    /// bounded: it reads at most [`DEVICE_SCAN_BUDGET`] records, so a rare state among 100,000
    /// terminals may come back as a short (even empty) page whose `next` continues the scan.
    /// An id prefix starts the scan at the prefix and stops at the first id past it.
    pub fn devices_matching(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, ApiError> {
        let limit = limit.clamp(1, 1000);
        let r = self.store.read()?;
        let prefix = filter.prefix.as_deref().filter(|p| !p.is_empty());
        // Resume after the cursor, or start at the prefix itself (inclusive).
        let mut cursor: Option<String> = after.map(str::to_owned);
        let mut start_at_prefix = match (prefix, after) {
            (Some(p), None) => Some(p.to_owned()),
            (Some(p), Some(a)) if a < p => Some(p.to_owned()),
            _ => None,
        };
        if start_at_prefix.is_some() {
            cursor = None;
        }
        let mut devices = Vec::new();
        let mut scanned = 0usize;
        loop {
            let chunk = (DEVICE_SCAN_BUDGET - scanned).min(256);
            let (recs, next) = match start_at_prefix.take() {
                Some(p) => r.devices_from(&p, chunk)?,
                None => r.devices(cursor.as_deref(), chunk)?,
            };
            scanned += recs.len();
            for (i, rec) in recs.iter().enumerate() {
                let id = rec.id().as_str();
                if prefix.is_some_and(|p| !id.starts_with(p)) {
                    return Ok(DevicePage {
                        devices,
                        next: None,
                    });
                }
                cursor = Some(id.to_owned());
                if filter.state.is_some_and(|s| s != rec.status.state()) {
                    continue;
                }
                let trust = self.trust_of(rec, |m, v| r.bundle(m, v))?;
                devices.push(self.view(rec, r.punch_head(rec.id()), trust));
                if devices.len() == limit {
                    let more = next.is_some() || i + 1 < recs.len();
                    return Ok(DevicePage {
                        devices,
                        next: if more { cursor } else { None },
                    });
                }
            }
            if next.is_none() {
                return Ok(DevicePage {
                    devices,
                    next: None,
                });
            }
            if scanned >= DEVICE_SCAN_BUDGET {
                return Ok(DevicePage {
                    devices,
                    next: cursor,
                });
            }
        }
    }

    pub fn quarantine(&self, id: &str, reason: &str, actor: Actor) -> Result<DeviceView, ApiError> {
        self.operator_action(id, OperatorAction::Quarantine { reason, actor })
    }

    pub fn release(&self, id: &str, reason: &str, actor: Actor) -> Result<DeviceView, ApiError> {
        self.operator_action(id, OperatorAction::Release { reason, actor })
    }

    /// An operator action on one device, as the core decides it (open challenges withdrawn, a
    /// quarantine's verdict published at once), in its own transaction.
    fn operator_action(
        &self,
        id: &str,
        action: OperatorAction<'_>,
    ) -> Result<DeviceView, ApiError> {
        let id = parse_id(id)?;
        let now = self.now();
        let mut w = self.store.write()?;
        let rec = self.load(&w, &id)?;
        let effects = self
            .core
            .on_operator_action(rec, action, now, &mut **self.nonces())
            .map_err(|e| match e {
                OperatorError::Transition(e) => transition_error(&id, e),
                OperatorError::NoNonce(e) => ApiError::Internal(e.into()),
            })?;
        let (out, rec) = self.write_effects(&mut w, &id, effects)?;
        let head = w.punch_head(&id);
        // An operator action always stores the record it changed.
        let rec = rec.ok_or_else(|| anyhow::anyhow!("operator action on {id} stored no record"))?;
        let trust = self.trust_of(&rec, |m, v| w.bundle(m, v))?;
        self.commit(w, out)?;
        Ok(self.view(&rec, head, trust))
    }

    /// The operator's view of `rec` with its punch mirror `head`, at the engine's clock. A
    /// head that cannot be read is logged and shown as an error of the device's punches, so
    /// one corrupt row does not fail a whole page of devices.
    fn view(
        &self,
        rec: &DeviceRecord,
        head: anyhow::Result<Option<PunchHead>>,
        trust: super::views::Trust,
    ) -> DeviceView {
        let head = head.map_err(|e| {
            tracing::error!(device = %rec.id(), error = %format!("{e:#}"), "punch mirror head unreadable");
            format!("punch mirror head unreadable: {e:#}")
        });
        super::views::device(rec, head, self.punch_pressure_percent, trust, self.now())
    }

    pub fn capture_policy(&self, id: &str, actor: Actor) -> Result<PolicyView, ApiError> {
        let id = parse_id(id)?;
        let rec = self
            .store
            .read()?
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        let rv = self.core.capture_policy(&rec).map_err(policy_refusal)?;
        self.store_policy(
            PolicyScope::Device(id.to_string()),
            rv,
            actor,
            PolicyOrigin::Captured,
        )
    }

    pub fn set_policy(
        &self,
        scope: PolicyScope,
        rv: ReferenceValues,
        actor: Actor,
    ) -> Result<PolicyView, ApiError> {
        self.store_policy(scope, rv, actor, PolicyOrigin::SetByOperator)
    }

    /// Stores reference values and audits the change as the core decides it (one
    /// transaction), then lets the core re-evaluate the devices they may govern (that device,
    /// or the model's devices) in chunks (`Engine::reevaluate`), publishing after each, so a
    /// model-wide change neither holds the store for long nor floods the broker. The core
    /// skips devices the values do not govern (those with their own policy).
    fn store_policy(
        &self,
        scope: PolicyScope,
        rv: ReferenceValues,
        actor: Actor,
        origin: PolicyOrigin,
    ) -> Result<PolicyView, ApiError> {
        let now = self.now();
        let set = self
            .core
            .on_policy_set(&scope, &rv, origin, actor, now)
            .map_err(policy_refusal)?;
        let mut w = self.store.write()?;
        w.put_policy(&scope, &rv)?;
        let candidates: Vec<DeviceId> = match &scope {
            PolicyScope::Device(_) => set.audit.device.iter().cloned().collect(),
            PolicyScope::Model(m) | PolicyScope::Firmware { model: m, .. } => {
                w.devices_of_model(m)?
            }
        };
        w.append_audit(&set.audit)?;
        self.commit(w, Vec::new())?;
        let reevaluated = self.reevaluate(&scope, &candidates, now)?;
        Ok(PolicyView {
            policy_id: set.policy_id,
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
