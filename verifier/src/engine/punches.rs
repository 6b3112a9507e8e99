//! The punch mirror in the engine. `prepare` (worker thread) checks a batch on its own
//! (`punch::check_batch`) and seals each record for the store, so the applier does no crypto;
//! `apply` (applier, inside the batch's write transaction) loads the device's mirror head, lets
//! `punch::decide` compare the batch with what is held (one point lookup per overlapping seq),
//! writes what it decides and queues a verifier-signed, retained ack of the resulting head for
//! publication after the commit. The mirror never acks before its durable commit and never
//! past a gap.
//!
//! A batch that is tamper evidence (a signature that fails with the enrolled key, a chain that
//! does not hold together, a record that differs from the one held) is rejected and the device
//! quarantined through `VerifierCore::on_punch_tamper`. A device that is not trusted keeps
//! mirroring: its records are marked held, and a release never unmarks them.

use anyhow::Result;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{
    self, CheckedBatch, MirrorDecision, PunchAck, PunchBatch, buffer_pressure, held_in,
};
use vouch_protocol::reason::Reason;
use vouch_protocol::verdict::DeviceState;
use vouch_protocol::verifier::Rejection;
use vouch_protocol::wire::Authenticated;

use super::{Engine, Job, Refusal};
use crate::mqtt::Outgoing;
use crate::store::{PunchHead, Sealed, StoredPunch, TamperMark, Writer};
use crate::webhook::EventKind;

/// A punch message that passed the worker stage.
#[derive(Debug)]
pub struct PunchJob {
    pub device: DeviceId,
    pub work: PunchWork,
}

#[derive(Debug)]
pub enum PunchWork {
    /// A batch whose chain holds together, each record sealed for the store (same order).
    Batch {
        batch: CheckedBatch,
        sealed: Vec<Sealed>,
    },
    /// Tamper evidence found before the mirror was consulted: quarantine with `reason`.
    /// `buffer`: what the batch said of the terminal's buffer, when its signature verified.
    Tamper {
        reason: Reason,
        buffer: Option<Buffer>,
    },
}

/// What a signed batch says of the terminal's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub device_last: u64,
    pub capacity: u64,
}

impl Buffer {
    fn of(b: &CheckedBatch) -> Self {
        Self {
            device_last: b.device_last,
            capacity: b.capacity,
        }
    }
}

/// `head` updated with what a signed batch said of the buffer: the newest seq the terminal
/// holds only grows (batches may arrive out of order), the capacity is the latest said.
fn with_buffer(head: &PunchHead, buffer: Option<Buffer>) -> PunchHead {
    match buffer {
        Some(b) => PunchHead {
            device_last: head.device_last.max(b.device_last),
            capacity: b.capacity,
            ..head.clone()
        },
        None => head.clone(),
    }
}

impl Engine {
    /// Worker stage of a `punches` message whose signature verified.
    pub(super) fn prepare_punches(
        &self,
        device: DeviceId,
        verified: Authenticated,
    ) -> Result<Job, Refusal> {
        let batch: PunchBatch = verified.open()?;
        let (batch_last, batch_capacity) = (batch.device_last, batch.capacity);
        let checked = match punch::check_batch(&device, batch) {
            Err(e) => return Err(Rejection::PunchMalformed(e).into()),
            Ok(Err(chain)) => {
                let buffer = Buffer {
                    device_last: batch_last,
                    capacity: batch_capacity,
                };
                return Ok(Self::punch_tamper_job(device, chain.reason(), Some(buffer)));
            }
            Ok(Ok(c)) => c,
        };
        let key = self.store.punch_key();
        let sealed = checked
            .entries
            .iter()
            .map(|(r, _)| key.seal(&device, r.seq, &r.to_cbor()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Job::Punches(Box::new(PunchJob {
            device,
            work: PunchWork::Batch {
                batch: checked,
                sealed,
            },
        })))
    }

    /// The job for a batch that is tamper evidence on its own (forged, or a broken chain);
    /// `buffer` only from a batch whose signature verified.
    pub(super) fn punch_tamper_job(
        device: DeviceId,
        reason: Reason,
        buffer: Option<Buffer>,
    ) -> Job {
        Job::Punches(Box::new(PunchJob {
            device,
            work: PunchWork::Tamper { reason, buffer },
        }))
    }

    /// Applier stage. Outer error: a store failure once this job began writing (the whole
    /// applier batch is dropped, and nothing is acked). Inner error: the batch's refusal,
    /// counted by the caller — including a device, head or held record that cannot be read,
    /// which refuses this job alone (nothing of it is written yet), not every device's job in
    /// the applier batch.
    pub(super) fn apply_punches(
        &self,
        w: &mut Writer,
        job: PunchJob,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let PunchJob { device, work } = job;
        let rec = match w.device(&device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Err(Rejection::NotEnrolled(device).into())),
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        let head = match w.punch_head(&device) {
            Ok(h) => h.unwrap_or(PunchHead::EMPTY),
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        let (batch, sealed) = match work {
            PunchWork::Tamper { reason, buffer } => {
                let seen = with_buffer(&head, buffer);
                return self.punch_tamper(w, rec, &device, (&head, seen), reason, now, out);
            }
            PunchWork::Batch { batch, sealed } => (batch, sealed),
        };
        let decision = match punch::decide(head.mirror(), &batch, |seq| w.punch_hash(&device, seq))
        {
            Ok(d) => d,
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        // Signed by the terminal: what it says of its buffer counts whatever the mirror
        // decides, so a terminal whose chain is stuck (gaps, a fork resent) still shows its
        // pressure.
        let seen = with_buffer(&head, Some(Buffer::of(&batch)));
        match decision {
            MirrorDecision::Append { skip, head: new } => {
                let held = held_in(rec.status.state());
                let fresh = batch.entries.len().saturating_sub(skip) as u64;
                for ((r, hash), sealed) in batch.entries.iter().zip(sealed).skip(skip) {
                    let p = StoredPunch {
                        hash: *hash,
                        held,
                        reviewed: false,
                        sealed,
                    };
                    w.put_punch(&device, r.seq, &p)?;
                }
                let held_n = if held { fresh } else { 0 };
                let times = batch.entries.iter().skip(skip).map(|(r, _)| r.time);
                self.observe_mirrored(w, times.collect(), now);
                let next = PunchHead {
                    seq: new.seq,
                    hash: new.hash,
                    held: head.held.saturating_add(held_n),
                    unreviewed: head.unreviewed.saturating_add(held_n),
                    // The batch reaches `new.seq`: the terminal holds at least that much.
                    device_last: seen.device_last.max(new.seq),
                    ..seen
                };
                self.put_head(w, &device, &head, &next)?;
                self.stats.accept("punches");
                out.push(self.ack(&device, &next, false));
                Ok(Ok(()))
            }
            MirrorDecision::Duplicate => {
                // Idempotent: the copy is acknowledged again and no record is stored.
                self.put_head(w, &device, &head, &seen)?;
                self.stats.accept("punches_duplicate");
                out.push(self.ack(&device, &seen, false));
                Ok(Ok(()))
            }
            MirrorDecision::Gap => {
                self.put_head(w, &device, &head, &seen)?;
                out.push(self.ack(&device, &seen, true));
                Ok(Err(Rejection::PunchGap {
                    head: seen.seq,
                    first: batch.first,
                }
                .into()))
            }
            MirrorDecision::Tamper(e) => {
                self.punch_tamper(w, rec, &device, (&head, seen), e.reason(), now, out)
            }
        }
    }

    /// Stores `next` as `device`'s head when it differs from `before`, warning when the
    /// terminal came under buffer pressure.
    fn put_head(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        before: &PunchHead,
        next: &PunchHead,
    ) -> Result<()> {
        if next == before {
            return Ok(());
        }
        w.put_punch_head(device, next)?;
        self.observe_head(w, before, next);
        if self.under_pressure(next) && !self.under_pressure(before) {
            tracing::warn!(device = %device, pending = next.pending_on_device(), capacity = next.capacity, "terminal's punch buffer under pressure");
            let why = format!(
                "{} of {} punch records not mirrored yet",
                next.pending_on_device(),
                next.capacity
            );
            self.stage_punch_alert(w, device, EventKind::BufferPressure, why, None, self.now())?;
        }
        Ok(())
    }

    /// Quarantines the device for a tamper batch (or only audits it when already
    /// quarantined) and acks the unchanged chain head, so a genuine agent resumes from it.
    /// `(before, head)`: the stored head, and it with what the batch said of the terminal's
    /// buffer, when it was signed.
    ///
    /// A device already quarantined that sends tamper of the same reason code again within
    /// the same verdict period (its `last_verdict_at` unchanged since the last tamper audited)
    /// is not audited again: a terminal resending one forged or forked batch would otherwise
    /// grow the audit trail by a row per copy. The mark lives on the head row, a point lookup
    /// already made. The batch is still refused and counted under `tamper`.
    #[allow(clippy::too_many_arguments)]
    fn punch_tamper(
        &self,
        w: &mut Writer,
        rec: crate::store::DeviceRecord,
        device: &DeviceId,
        (before, head): (&PunchHead, PunchHead),
        reason: Reason,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let quarantined = rec.status.state() == DeviceState::Quarantined;
        let mark = |verdict_at| TamperMark {
            code: reason.code().to_owned(),
            verdict_at,
        };
        let repeated =
            quarantined && head.last_tamper.as_ref() == Some(&mark(rec.status.last_verdict_at));
        let next = if repeated {
            tracing::debug!(device = %device, code = reason.code(), "tamper batch repeated; already audited in this verdict period");
            head
        } else {
            tracing::warn!(device = %device, code = reason.code(), reason = %reason, "punch batch is tamper evidence");
            self.stage_punch_alert(
                w,
                device,
                EventKind::Tamper,
                reason.to_string(),
                Some(&reason),
                now,
            )?;
            let effects = self.core.on_punch_tamper(
                rec.clone(),
                reason.clone(),
                now,
                &mut **self.nonces(),
            )?;
            let (msgs, stored) = self.write_effects(w, device, effects)?;
            out.extend(msgs);
            let verdict_at =
                stored.map_or(rec.status.last_verdict_at, |r| r.status.last_verdict_at);
            PunchHead {
                last_tamper: Some(mark(verdict_at)),
                ..head
            }
        };
        self.put_head(w, device, before, &next)?;
        out.push(self.ack(device, &next, false));
        Ok(Err(Rejection::PunchTamper(reason).into()))
    }

    /// Whether the terminal behind `head` is under buffer pressure, by its last batch.
    fn under_pressure(&self, head: &PunchHead) -> bool {
        buffer_pressure(
            head.pending_on_device(),
            head.capacity,
            self.punch_pressure_percent,
        )
    }

    /// The signed, retained ack of `head` for `device`.
    fn ack(&self, device: &DeviceId, head: &PunchHead, resend: bool) -> Outgoing {
        let ack = PunchAck {
            seq: head.seq,
            head: head.hash,
            resend,
        };
        self.outgoing(device, &ack, true)
    }
}
