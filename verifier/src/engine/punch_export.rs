//! The operator's side of the punch mirror: exports (a bounded page per request, per device
//! after a seq or across all devices after a (device, seq) cursor), each page decrypted here
//! and recorded in the audit trail before it is returned, and reviews of held records.

use vouch_common::time::rfc3339;
use vouch_protocol::device::{Actor, AuditAction};
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::PunchRecord;

use super::operator::parse_id;
use super::{ApiError, Engine};
use crate::api::{PunchCursor, PunchPage, PunchView, ReviewView};
use crate::store::{AuditRecord, PunchEntry};

/// Most records one export page carries.
pub const MAX_PUNCH_PAGE: usize = 5000;

/// Most held records one review call marks, in one write transaction (which holds the
/// store's single writer, and so the applier, while it runs). The answer says whether more
/// remain; `vouchctl review-punches` calls again until none do.
pub const MAX_REVIEW: usize = 10_000;

impl Engine {
    /// Up to `limit` records of device `id` with seq above `since`. Audited.
    pub fn punches_of(
        &self,
        id: &str,
        since: u64,
        limit: usize,
        actor: &Actor,
    ) -> Result<PunchPage, ApiError> {
        let id = parse_id(id)?;
        let limit = limit.clamp(1, MAX_PUNCH_PAGE);
        let entries = {
            let r = self.store.read()?;
            if r.device(&id)?.is_none() {
                return Err(ApiError::NotFound(format!("device {id} is not enrolled")));
            }
            r.punches(&id, since, limit)?
        };
        let page = self.export_page(entries, limit)?;
        let what = match (page.punches.first(), page.punches.last()) {
            (Some(f), Some(l)) => format!(
                "exported {} punch records of {id}, seqs {}..={}",
                page.punches.len(),
                f.seq,
                l.seq
            ),
            _ => format!("exported no punch records of {id} (after seq {since})"),
        };
        self.audit_export(Some(id), actor, what)?;
        Ok(page)
    }

    /// Up to `limit` records of every device after the cursor `after`. Audited.
    pub fn punches_all(
        &self,
        after: Option<(&str, u64)>,
        limit: usize,
        actor: &Actor,
    ) -> Result<PunchPage, ApiError> {
        let after = after
            .map(|(d, s)| parse_id(d).map(|d| (d, s)))
            .transpose()?;
        let limit = limit.clamp(1, MAX_PUNCH_PAGE);
        let entries = self
            .store
            .read()?
            .punches_all(after.as_ref().map(|(d, s)| (d, *s)), limit)?;
        let page = self.export_page(entries, limit)?;
        let what = match (page.punches.first(), page.punches.last()) {
            (Some(f), Some(l)) => format!(
                "exported {} punch records of all devices, from {}/{} to {}/{}",
                page.punches.len(),
                f.device,
                f.seq,
                l.device,
                l.seq
            ),
            _ => "exported no punch records of all devices (end of the mirror)".to_owned(),
        };
        self.audit_export(None, actor, what)?;
        Ok(page)
    }

    /// Marks device `id`'s held records up to `through` reviewed, at most [`MAX_REVIEW`] per
    /// call (`more` in the answer: call again). Audited per call; a release never unmarks
    /// held, and a review never does either (it only adds the mark).
    pub fn review_punches(
        &self,
        id: &str,
        through: u64,
        reason: &str,
        actor: &Actor,
    ) -> Result<ReviewView, ApiError> {
        let id = parse_id(id)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ApiError::BadRequest(
                "a review needs a reason (who checked the held punches, and how)".into(),
            ));
        }
        let now = self.now();
        let mut w = self.store.write()?;
        if w.device(&id)?.is_none() {
            return Err(ApiError::NotFound(format!("device {id} is not enrolled")));
        }
        let marked = w.review_punches(&id, through, MAX_REVIEW)?;
        let reviewed = marked.map_or(0, |m| m.count);
        let more = marked.is_some_and(|m| m.more);
        if let Some(m) = marked {
            let (first, last, n) = (m.first, m.last, m.count);
            w.append_audit(&AuditRecord {
                at: now,
                device: Some(id.clone()),
                action: AuditAction::PunchesReviewed,
                actor: actor.clone(),
                reason: format!("reviewed {n} held punch records, seqs {first}..={last}: {reason}"),
            })?;
        }
        let held_unreviewed = w.punch_head(&id)?.map_or(0, |h| h.unreviewed);
        w.commit()?;
        Ok(ReviewView {
            device: id.to_string(),
            reviewed,
            held_unreviewed,
            more,
        })
    }

    /// Decrypts a page read with `limit`; a full page has a cursor to the next.
    fn export_page(&self, entries: Vec<PunchEntry>, limit: usize) -> Result<PunchPage, ApiError> {
        let key = self.store.punch_key();
        let full = entries.len() == limit;
        let mut punches = Vec::with_capacity(entries.len());
        for (device, seq, p) in entries {
            let plain = key.open(&device, seq, &p.sealed)?;
            let rec = PunchRecord::from_cbor(&plain).map_err(|e| {
                anyhow::anyhow!("stored punch {seq} of {device} does not decode: {e}")
            })?;
            if rec.seq != seq {
                return Err(anyhow::anyhow!(
                    "stored punch {seq} of {device} holds record {}",
                    rec.seq
                )
                .into());
            }
            // The clear hash is what the mirror compares resent records with; a sealed record
            // that does not hash to it is a store that no longer holds what it acked.
            if rec.hash(&device) != p.hash {
                return Err(anyhow::anyhow!(
                    "stored punch {seq} of {device} does not hash to its row's chain hash {}",
                    p.hash.to_hex()
                )
                .into());
            }
            punches.push(PunchView {
                device: device.to_string(),
                seq,
                time: rfc3339(rec.time),
                unix_time: rec.time,
                employee: rec.employee.to_string(),
                kind: rec.kind.as_str().to_owned(),
                method: rec.method.map(|m| m.as_str().to_owned()),
                held: p.held,
                reviewed: p.reviewed,
                hash: p.hash.to_hex(),
                prev_hash: rec.prev_hash.to_hex(),
                boot: rec.boot.to_string(),
            });
        }
        let next = if full {
            punches.last().map(|p| PunchCursor {
                device: p.device.clone(),
                seq: p.seq,
            })
        } else {
            None
        };
        Ok(PunchPage { punches, next })
    }

    /// Records an export in the audit trail (committed before the page is returned).
    fn audit_export(
        &self,
        device: Option<DeviceId>,
        actor: &Actor,
        what: String,
    ) -> Result<(), ApiError> {
        let mut w = self.store.write()?;
        w.append_audit(&AuditRecord {
            at: self.now(),
            device,
            action: AuditAction::PunchesExported,
            actor: actor.clone(),
            reason: what,
        })?;
        w.commit()?;
        Ok(())
    }
}
