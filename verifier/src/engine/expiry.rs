//! Verdict expiry: the sweep that finds devices whose current verdict expired without fresh
//! evidence and applies what the state machine decides for them (`DeviceStatus::expire`:
//! trusted → unresponsive with a renewed `warning` verdict, quarantine after the operator's
//! number of expiries, a renewed contraindicated verdict for a quarantined device).
//!
//! It never scans devices: the store keeps an index of (verdict expiry, device), changed in the
//! transaction that stores each verdict, and the sweep range-reads the entries due, in bounded
//! batches of one write transaction each, publishing after each commit. `now` is an argument, so
//! tests drive expiry without waiting.

use anyhow::Result;
use vouch_protocol::ids::DeviceId;

use super::Engine;
use crate::mqtt::Outgoing;
use crate::store::Writer;

/// Index entries handled per write transaction.
pub const EXPIRY_BATCH: usize = 500;

/// Index entries handled per sweep at most. A mass expiry (a broker outage, a verifier down for
/// longer than a verdict lifetime) is spread over several sweeps, so the applier gets the store
/// between batches and the outgoing queue is not flooded with renewed verdicts at once.
pub const EXPIRY_PER_SWEEP: usize = 5_000;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpirySweep {
    /// Entries read from the expiry index (every one of them due).
    pub examined: usize,
    /// The per-sweep limit was reached: more entries may be due (the next sweep takes them).
    pub more: bool,
    /// Devices that got a new verdict in place of the expired one.
    pub renewed: usize,
    /// Write transactions committed.
    pub batches: usize,
}

impl Engine {
    /// Handles verdicts that expired before `now`, earliest first: [`EXPIRY_BATCH`] entries per
    /// write transaction, at most [`EXPIRY_PER_SWEEP`] per call.
    pub fn sweep_expired_verdicts(&self, now: u64) -> Result<ExpirySweep> {
        self.sweep_expired_verdicts_in(now, EXPIRY_BATCH, EXPIRY_PER_SWEEP)
    }

    /// [`Engine::sweep_expired_verdicts`] with `batch` entries per write transaction and at most
    /// `limit` per call.
    pub fn sweep_expired_verdicts_in(
        &self,
        now: u64,
        batch: usize,
        limit: usize,
    ) -> Result<ExpirySweep> {
        let batch = batch.max(1);
        let mut sweep = ExpirySweep::default();
        // A read snapshot first, so an idle sweep never takes the applier's write lock.
        if self.store.read()?.verdicts_expired(now, 1)?.is_empty() {
            return Ok(sweep);
        }
        loop {
            let room = limit.saturating_sub(sweep.examined);
            if room == 0 {
                sweep.more = true;
                break;
            }
            let mut w = self.store.write()?;
            // Read inside the write transaction: evidence applied since the peek has moved its
            // device's entry, and is not expired again here.
            let due = w.verdicts_expired(now, batch.min(room))?;
            if due.is_empty() {
                break;
            }
            let mut out = Vec::new();
            for (exp, id) in &due {
                w.unindex_verdict_expiry(*exp, id)?;
                if self.expire_one(&mut w, id, *exp, now, &mut out)? {
                    sweep.renewed += 1;
                }
            }
            w.commit()?;
            self.publish(out);
            sweep.examined += due.len();
            sweep.batches += 1;
            // Renewed verdicts expire after `now` (verdict_ttl >= 1), so the loop ends.
            if due.len() < batch.min(room) {
                break;
            }
        }
        Ok(sweep)
    }

    /// One due entry (already removed from the index). Returns whether a verdict was published.
    fn expire_one(
        &self,
        w: &mut Writer,
        id: &str,
        exp: u64,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<bool> {
        let Ok(device) = id.parse::<DeviceId>() else {
            tracing::warn!(
                device = id,
                "verdict expiry entry for an invalid device id dropped"
            );
            return Ok(false);
        };
        let mut rec = match w.device(&device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(false),
            Err(e) => {
                // One unreadable record must not stall every later expiry behind it.
                tracing::warn!(device = %device, error = %format!("{e:#}"), "verdict expiry skipped");
                return Ok(false);
            }
        };
        let current = rec.last_verdict();
        // The index moves with each verdict in one transaction, so this holds; an entry that
        // disagrees with the stored verdict is stale and only dropped.
        if current.as_ref().map(|v| v.exp) != Some(exp) {
            return Ok(false);
        }
        let policy = current.and_then(|v| v.policy_id);
        let Some((t, a)) = rec.status.expire(
            rec.measured_at,
            now,
            self.cfg.quarantine_after_expiries,
            policy,
        ) else {
            return Ok(false);
        };
        // State changes are logged (and audited) by `carry_out`; renewals only at debug level.
        tracing::debug!(device = %device, state = %rec.status.state(), status = %a.status, reasons = ?a.reasons, "verdict expired without fresh evidence");
        let renewed_until = now + self.cfg.verdict_ttl;
        self.publish_verdict(w, &mut rec, a, None, now, renewed_until, out)?;
        self.carry_out(w, &mut rec, t, now, out)?;
        Ok(true)
    }

    /// Entries in the verdict expiry index (one per device holding a verdict).
    pub fn verdict_expiry_index_len(&self) -> Result<u64> {
        self.store.read()?.verdict_expiry_len()
    }
}
