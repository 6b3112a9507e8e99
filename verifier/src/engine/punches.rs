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
use vouch_protocol::verifier::Rejection;
use vouch_protocol::wire::Authenticated;

use super::{Engine, Job, Refusal};
use crate::mqtt::Outgoing;
use crate::store::{PunchHead, Sealed, StoredPunch, Writer};

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
    Tamper(Reason),
}

impl Engine {
    /// Worker stage of a `punches` message whose signature verified.
    pub(super) fn prepare_punches(
        &self,
        device: DeviceId,
        verified: Authenticated,
    ) -> Result<Job, Refusal> {
        let batch: PunchBatch = verified.open()?;
        let checked = match punch::check_batch(&device, batch) {
            Err(e) => return Err(Rejection::PunchMalformed(e).into()),
            Ok(Err(chain)) => return Ok(Self::punch_tamper_job(device, chain.reason())),
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

    /// The job for a batch that is tamper evidence on its own (forged, or a broken chain).
    pub(super) fn punch_tamper_job(device: DeviceId, reason: Reason) -> Job {
        Job::Punches(Box::new(PunchJob {
            device,
            work: PunchWork::Tamper(reason),
        }))
    }

    /// Applier stage. Outer error: a store failure (the whole applier batch is dropped, and
    /// nothing is acked). Inner error: the batch's refusal, counted by the caller.
    pub(super) fn apply_punches(
        &self,
        w: &mut Writer,
        job: PunchJob,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let PunchJob { device, work } = job;
        let Some(rec) = w.device(&device)? else {
            return Ok(Err(Rejection::NotEnrolled(device).into()));
        };
        let head = w.punch_head(&device)?.unwrap_or(PunchHead::EMPTY);
        let (batch, sealed) = match work {
            PunchWork::Tamper(reason) => {
                return self.punch_tamper(w, rec, &device, head, reason, now, out);
            }
            PunchWork::Batch { batch, sealed } => (batch, sealed),
        };
        let decision = punch::decide(head.mirror(), &batch, |seq| w.punch_hash(&device, seq))?;
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
                let next = PunchHead {
                    seq: new.seq,
                    hash: new.hash,
                    held: head.held.saturating_add(held_n),
                    unreviewed: head.unreviewed.saturating_add(held_n),
                    device_last: batch.device_last,
                    capacity: batch.capacity,
                };
                w.put_punch_head(&device, &next)?;
                self.stats.accept("punches");
                if self.under_pressure(&next) && !self.under_pressure(&head) {
                    tracing::warn!(device = %device, pending = next.pending_on_device(), capacity = next.capacity, "terminal's punch buffer under pressure");
                }
                out.push(self.ack(&device, &next, false));
                Ok(Ok(()))
            }
            MirrorDecision::Duplicate => {
                // Idempotent: the copy is acknowledged again and nothing is stored.
                self.stats.accept("punches_duplicate");
                out.push(self.ack(&device, &head, false));
                Ok(Ok(()))
            }
            MirrorDecision::Gap => {
                out.push(self.ack(&device, &head, true));
                Ok(Err(Rejection::PunchGap {
                    head: head.seq,
                    first: batch.first,
                }
                .into()))
            }
            MirrorDecision::Tamper(e) => {
                self.punch_tamper(w, rec, &device, head, e.reason(), now, out)
            }
        }
    }

    /// Quarantines the device for a tamper batch (or only audits it when already
    /// quarantined) and acks the unchanged head, so a genuine agent resumes from it.
    #[allow(clippy::too_many_arguments)]
    fn punch_tamper(
        &self,
        w: &mut Writer,
        rec: crate::store::DeviceRecord,
        device: &DeviceId,
        head: PunchHead,
        reason: Reason,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        tracing::warn!(device = %device, code = reason.code(), reason = %reason, "punch batch is tamper evidence");
        let effects = self
            .core
            .on_punch_tamper(rec, reason.clone(), now, &mut **self.nonces())?;
        let (msgs, _) = self.write_effects(w, device, effects)?;
        out.extend(msgs);
        out.push(self.ack(device, &head, false));
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
