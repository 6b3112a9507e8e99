//! The engine's side of the metrics and the timeline: what a write changes (a device's state, a
//! quarantine, a release, a punch head, an appraisal) is staged on the write transaction and
//! applied to the in-memory [`Metrics`](crate::metrics::Metrics) only once it committed
//! ([`Writer::after_commit`]), so the gauges never count what a failed commit dropped. The only
//! store reads are a point lookup of the previous record, made only when the write carries an
//! audit entry (every state change is audited), and the counting pass at start.

use std::sync::Arc;
use std::time::Instant;
use vouch_protocol::device::AuditAction;
use vouch_protocol::verdict::{DeviceState, Status};
use vouch_protocol::verifier::AuditRecord;

use vouch_protocol::device::Lifecycle;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::reason::Reason;

use super::Engine;
use crate::metrics::Metrics;
use crate::store::{DeviceRecord, PunchHead, Writer};
use crate::webhook::{self, EventKind};

/// Devices read per page by the counting pass at start.
const SEED_PAGE: usize = 1000;

impl Engine {
    /// Stages the metric changes of storing `rec` with `audit` in `w`: the state gauge move (the
    /// previous state is read only when something was audited) and the timeline's quarantines
    /// and releases.
    pub(super) fn observe_change(
        &self,
        w: &mut Writer,
        rec: &DeviceRecord,
        audit: &[AuditRecord],
    ) -> anyhow::Result<()> {
        if audit.is_empty() {
            return Ok(());
        }
        let before = w.device(rec.id())?.map(|r| r.status.state());
        let after = rec.status.state();
        let marks: Vec<(AuditAction, u64)> = audit
            .iter()
            .filter(|a| matches!(a.action, AuditAction::Quarantined | AuditAction::Released))
            .map(|a| (a.action, a.at))
            .collect();
        if before == Some(after) && marks.is_empty() {
            return Ok(());
        }
        let m = Arc::clone(self.metrics());
        w.after_commit(move || {
            m.state_changed(before, Some(after));
            for (action, at) in marks {
                if action == AuditAction::Quarantined {
                    m.quarantined(at);
                } else {
                    m.released(at);
                }
            }
        });
        Ok(())
    }

    /// Stages an appraisal's outcome: counted, and its latency since `received` observed, at
    /// the commit.
    pub(super) fn observe_verdict(
        &self,
        w: &mut Writer,
        status: Status,
        received: Instant,
        now: u64,
    ) {
        let m = Arc::clone(self.metrics());
        w.after_commit(move || m.attested(status, received.elapsed().as_secs_f64(), now));
    }

    /// Stages the fleet-wide punch count changes of replacing head `before` by `next`.
    pub(super) fn observe_head(&self, w: &mut Writer, before: &PunchHead, next: &PunchHead) {
        let delta = |a: u64, b: u64| {
            i64::try_from(a)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(b).unwrap_or(i64::MAX))
        };
        let held = delta(next.held, before.held);
        let pending = delta(next.pending_on_device(), before.pending_on_device());
        if held == 0 && pending == 0 {
            return;
        }
        let m = Arc::clone(self.metrics());
        w.after_commit(move || m.punches(held, pending));
    }

    /// Stages the mirror lag of records with their own times `times`, mirrored at `now`.
    pub(super) fn observe_mirrored(&self, w: &mut Writer, times: Vec<u64>, now: u64) {
        if times.is_empty() {
            return;
        }
        let m = Arc::clone(self.metrics());
        w.after_commit(move || {
            for t in times {
                m.mirrored(now.saturating_sub(t) as f64);
            }
        });
    }

    /// Stages the `quarantine` and `release` alerts of `audit` (written with `rec`) in `w`.
    pub(super) fn stage_alerts(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        rec: Option<&DeviceRecord>,
        audit: &[AuditRecord],
    ) -> anyhow::Result<()> {
        if self.webhooks.is_empty() {
            return Ok(());
        }
        for a in audit {
            let kind = match a.action {
                AuditAction::Quarantined => EventKind::Quarantine,
                AuditAction::Released => EventKind::Release,
                _ => continue,
            };
            // The quarantine's own reasons when the record has them, else the audit's words.
            let codes = match rec.map(|r| r.status.lifecycle()) {
                Some(Lifecycle::Quarantined { why, .. }) if kind == EventKind::Quarantine => {
                    vouch_protocol::reason::codes(&why.reasons)
                }
                _ => Vec::new(),
            };
            let event = webhook::Event {
                kind,
                at: a.at,
                device: device.as_str(),
                reason: a.reason.clone(),
                reason_codes: codes,
                actor: webhook::actor_name(&a.actor),
            };
            webhook::stage(w, &self.webhooks, event)?;
        }
        Ok(())
    }

    /// Stages a `tamper` or `buffer_pressure` alert for `device` in `w`.
    pub(super) fn stage_punch_alert(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        kind: EventKind,
        reason: String,
        code: Option<&Reason>,
        now: u64,
    ) -> anyhow::Result<()> {
        if self.webhooks.is_empty() {
            return Ok(());
        }
        let event = webhook::Event {
            kind,
            at: now,
            device: device.as_str(),
            reason,
            reason_codes: code.map(|r| vec![r.code()]).unwrap_or_default(),
            actor: "system".to_owned(),
        };
        webhook::stage(w, &self.webhooks, event)
    }

    /// Sets the terminal and punch gauges from one pass over the devices (read in pages of one
    /// snapshot each); run once at start, never per scrape.
    pub fn seed_metrics(&self) -> anyhow::Result<()> {
        let mut by_state = [0u64; 4];
        let (mut held, mut pending) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let r = self.store.read()?;
            let (page, next) = r.devices(after.as_deref(), SEED_PAGE)?;
            for d in &page {
                if let Some(n) = by_state.get_mut(Metrics::seed_slot(d.status.state())) {
                    *n += 1;
                }
                if let Some(h) = r.punch_head(d.id())? {
                    held = held.saturating_add(h.held);
                    pending = pending.saturating_add(h.pending_on_device());
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        self.metrics().seed(by_state, held, pending);
        tracing::info!(
            trusted = by_state[Metrics::seed_slot(DeviceState::Trusted)],
            pending = by_state[Metrics::seed_slot(DeviceState::Pending)],
            unresponsive = by_state[Metrics::seed_slot(DeviceState::Unresponsive)],
            quarantined = by_state[Metrics::seed_slot(DeviceState::Quarantined)],
            "metrics seeded from the store"
        );
        Ok(())
    }
}
