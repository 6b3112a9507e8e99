//! Verdict expiry: the sweep that finds devices whose current verdict expired without fresh
//! evidence and writes what the verifier core decides for them (`VerifierCore::on_verdict_expired`:
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
        let rec = match w.device(&device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(false),
            Err(e) => {
                // One unreadable record must not stall every later expiry behind it.
                tracing::warn!(device = %device, error = %format!("{e:#}"), "verdict expiry skipped");
                return Ok(false);
            }
        };
        let effects = self
            .core
            .on_verdict_expired(rec, exp, now, &mut **self.nonces())?;
        let Some(v) = effects.verdict() else {
            return Ok(false);
        };
        // State changes are logged (and audited) as the effects are written; renewals only at
        // debug level.
        tracing::debug!(device = %device, state = %v.state, status = %v.status, reasons = ?vouch_protocol::reason::codes(&v.reasons), "verdict expired without fresh evidence");
        let (msgs, _) = self.write_effects(w, &device, effects)?;
        out.extend(msgs);
        Ok(true)
    }

    /// Entries in the verdict expiry index (one per device holding a verdict).
    pub fn verdict_expiry_index_len(&self) -> Result<u64> {
        self.store.read()?.verdict_expiry_len()
    }
}
