//! MQTT messages through the engine: `prepare` on worker threads, `apply` in batches on the
//! applier thread. A message failing any envelope or freshness check is rejected (counted and
//! logged, no state change); evidence failing a later check becomes a contraindicated verdict —
//! including evidence that is wrong inside (garbage `attest`, an event log that does not parse,
//! is rewritten within a boot or continues a boot the verifier holds no log of). Of the event
//! log, only a delta that does not fit the held log (challenged again) and an oversized log are
//! rejections.
//!
//! A hello or status costs the verifier a challenge, so it must be fresh before it may cost
//! anything: its counter must exceed the device's highest accepted one, checked before the rate
//! limiter (a replay spends no budget, issues nothing, retires no open nonce). Only the device's
//! own key can sign a fresh counter, so only the terminal itself can spend its rate limit.

use anyhow::Result;
use vouch_common::time::now_unix;
use vouch_protocol::appraisal::{self, Failure, Policy, SentLog, Verified, log_part};
use vouch_protocol::device::Basis;
use vouch_protocol::error::{IdError, WireError};
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Sender, Topic};
use vouch_protocol::messages::{
    Challenge, EventLogHeld, Evidence, Hello, ReassembleError, StatusReport,
};
use vouch_protocol::nonce::{self, IssuedNonce, NonceRejection, StaleCounter};
use vouch_protocol::policy::{PolicyScope, ReferenceValues, policy_id};
use vouch_protocol::wire;

use super::{Engine, MAX_OUTSTANDING};
use crate::mqtt::{Inbound, Outgoing};
use crate::store::{DeviceRecord, StoredLog, Writer};

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Topic(IdError),
    #[error("{0} messages are sent by the verifier, not to it")]
    Direction(Kind),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("device {0} is not enrolled")]
    NotEnrolled(DeviceId),
    #[error(transparent)]
    Nonce(#[from] NonceRejection),
    #[error(transparent)]
    Counter(#[from] StaleCounter),
    #[error("device {0} asked for too many challenges this minute")]
    RateLimited(DeviceId),
    #[error(
        "event log part at offset {offset} does not continue the log held for this boot; asking for the whole log"
    )]
    EventLogGap { offset: u64 },
    #[error("event log of {len} bytes exceeds the {max}-byte limit")]
    EventLogTooLarge { len: usize, max: usize },
    #[error("evidence is genuine but older than the last quote accepted in this TPM boot")]
    Stale,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Rejection {
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Topic(IdError::UnknownKind { .. }) => "unknown_kind",
            Rejection::Topic(_) | Rejection::Direction(_) => "wrong_topic",
            Rejection::Wire(w) => w.label(),
            Rejection::NotEnrolled(_) => "not_enrolled",
            Rejection::Nonce(n) => n.label(),
            Rejection::Counter(c) => c.label(),
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::EventLogGap { .. } => "eventlog_gap",
            Rejection::EventLogTooLarge { .. } => "oversized",
            Rejection::Stale => "stale",
            Rejection::Internal(_) => "internal",
        }
    }
}

/// The reference values governing a device, resolved for appraisal.
#[derive(Debug)]
pub(super) struct Governing {
    /// Where they were looked for, for the "no reference values" reason.
    pub subject: String,
    pub found: Option<GoverningValues>,
}

#[derive(Debug)]
pub(super) struct GoverningValues {
    pub values: ReferenceValues,
    pub id: String,
    pub label: String,
}

impl Governing {
    pub fn policy(&self) -> Option<Policy<'_>> {
        self.found.as_ref().map(|f| Policy {
            values: &f.values,
            id: &f.id,
            label: &f.label,
        })
    }
}

/// A message that passed the worker stage, waiting for the applier.
#[derive(Debug)]
pub enum Job {
    /// A hello or status (`kind`): issue a challenge carrying `request`. `counter` is the
    /// message's freshness counter; `None` for a challenge the verifier asks for itself.
    Challenge {
        device: DeviceId,
        kind: Kind,
        request: u64,
        counter: Option<u64>,
    },
    /// Evidence whose stateless checks ran; `outcome` says how they went.
    Evidence {
        device: DeviceId,
        topic: String,
        evidence: Box<Evidence>,
        outcome: Box<Result<Verified, Failure>>,
        /// The whole event log of this boot, reassembled, to store if the quote is accepted.
        eventlog: Option<Vec<u8>>,
    },
}

/// Largest reassembled event log accepted (real firmware logs are tens of KiB).
pub const MAX_EVENTLOG: usize = 4 << 20;

impl Engine {
    /// Worker stage. Returns the job for the applier, or `None` after counting a rejection.
    pub fn prepare(&self, msg: Inbound) -> Option<Job> {
        match self.try_prepare(&msg) {
            Ok(job) => Some(job),
            Err(r) => {
                self.stats.reject(&msg.topic, r.label(), &r.to_string());
                // A delta that does not fit what the store holds: challenge again, and the new
                // challenge says what is held now.
                match (r, msg.topic.parse::<Topic>()) {
                    (Rejection::EventLogGap { .. }, Ok(t)) => Some(Job::Challenge {
                        device: t.device,
                        kind: t.kind,
                        request: 0,
                        counter: None,
                    }),
                    _ => None,
                }
            }
        }
    }

    fn try_prepare(&self, msg: &Inbound) -> Result<Job, Rejection> {
        let topic: Topic = msg.topic.parse().map_err(Rejection::Topic)?;
        if topic.kind.sender() != Sender::Agent {
            return Err(Rejection::Direction(topic.kind));
        }
        let unverified = wire::decode(&topic, &msg.payload, self.cfg.max_payload)?;
        let rec = self
            .store
            .read()?
            .device(&topic.device)?
            .ok_or_else(|| Rejection::NotEnrolled(topic.device.clone()))?;
        let key = rec
            .enrollment
            .device_key()
            .map_err(|e| anyhow::anyhow!("enrolled key of {}: {e}", topic.device))?;
        let verified = unverified.verify(&key)?;
        let device = topic.device;
        let kind = topic.kind;
        match kind {
            // The counter pre-check refuses most replays on the worker; `apply` re-checks it
            // authoritatively in its write transaction (the snapshot may be behind).
            Kind::Hello => {
                let h: Hello = verified.open()?;
                nonce::check_counter(kind, rec.last_counter, h.counter)?;
                self.stats.accept("hello");
                Ok(Job::Challenge {
                    device,
                    kind,
                    request: h.request,
                    counter: Some(h.counter),
                })
            }
            Kind::Status => {
                let s: StatusReport = verified.open()?;
                nonce::check_counter(kind, rec.last_counter, s.counter)?;
                self.stats.accept("status");
                Ok(Job::Challenge {
                    device,
                    kind,
                    request: s.request,
                    counter: Some(s.counter),
                })
            }
            Kind::Evidence => {
                let ev: Evidence = verified.open()?;
                // Cheap early refusal of replays before the quote crypto; `apply` re-checks
                // authoritatively inside its write transaction. The snapshot is short-lived.
                let (issued, held) = {
                    let reader = self.store.read()?;
                    // A delta is appended to the held log, and a whole log must extend it.
                    let held = match (&ev.eventlog, rec.eventlog_held) {
                        (Some(_), Some(_)) => reader.eventlog(&device)?,
                        _ => None,
                    };
                    (reader.nonce(&ev.nonce)?, held)
                };
                nonce::check(issued.as_ref(), &device, now_unix())?;
                // Signed by the device and fresh: from here on, anything wrong inside the
                // evidence is a defect in its outcome, and the applier quarantines.
                let held = held.as_ref().map(|h| (h.boot, h.bytes.as_slice()));
                let log = log_part::assemble(&ev, held, MAX_EVENTLOG).map_err(|e| match e {
                    ReassembleError::Gap { offset } => Rejection::EventLogGap { offset },
                    ReassembleError::TooLarge { len, max } => {
                        Rejection::EventLogTooLarge { len, max }
                    }
                })?;
                let outcome = appraisal::verify_evidence_with_log(&rec.enrollment, &ev, &log);
                // A second copy of evidence already on its way to the applier is a replay, even
                // though the store has not marked its nonce used yet.
                self.claim_in_flight(ev.nonce)?;
                let eventlog = match log {
                    SentLog::Parsed { bytes, .. } => Some(bytes),
                    SentLog::Absent | SentLog::Defective(_) => None,
                };
                Ok(Job::Evidence {
                    device,
                    topic: msg.topic.clone(),
                    evidence: Box::new(ev),
                    outcome: Box::new(outcome),
                    eventlog,
                })
            }
            // Sender::Agent above leaves only the three kinds handled.
            other => Err(Rejection::Direction(other)),
        }
    }

    /// Applier stage: one write transaction for the whole batch, then publication. A job that is
    /// rejected writes nothing; a store failure once a job has started writing drops the whole
    /// batch uncommitted.
    pub fn apply(&self, jobs: Vec<Job>) -> Result<()> {
        let in_flight: Vec<Nonce> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Evidence { evidence, .. } => Some(evidence.nonce),
                Job::Challenge { .. } => None,
            })
            .collect();
        let result = self.apply_batch(jobs);
        self.release_in_flight(&in_flight);
        result
    }

    fn apply_batch(&self, jobs: Vec<Job>) -> Result<()> {
        let now = now_unix();
        let mut out = Vec::new();
        let mut w = self.store.write()?;
        for job in jobs {
            let (topic, outcome) = match job {
                Job::Challenge {
                    device,
                    kind,
                    request,
                    counter,
                } => {
                    let outcome = self
                        .apply_challenge(&mut w, &device, kind, request, counter, now, &mut out)?;
                    (Topic::new(device, kind).to_string(), outcome)
                }
                Job::Evidence {
                    device,
                    topic,
                    evidence,
                    outcome,
                    eventlog,
                } => {
                    let outcome = self.apply_evidence(
                        &mut w, &device, &evidence, &outcome, eventlog, now, &mut out,
                    )?;
                    (topic, outcome)
                }
            };
            if let Err(r) = outcome {
                self.stats.reject(&topic, r.label(), &r.to_string());
            }
        }
        w.commit()?;
        self.publish(out);
        Ok(())
    }

    /// Issues a challenge to `rec`'s device (the caller stores `rec`).
    pub(super) fn issue_challenge(
        &self,
        w: &mut Writer,
        rec: &mut DeviceRecord,
        request: u64,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<()> {
        let nonce = Nonce::from_bytes(*vouch_common::keys::random_bytes::<32>()?);
        let expires_at = now + self.cfg.nonce_ttl;
        w.put_nonce(
            &nonce,
            &IssuedNonce {
                device: rec.id().clone(),
                issued_at: now,
                expires_at,
                used_at: None,
            },
        )?;
        rec.outstanding.retain(|(_, exp)| *exp >= now);
        rec.outstanding.push((nonce, expires_at));
        while rec.outstanding.len() > MAX_OUTSTANDING {
            let (old, _) = rec.outstanding.remove(0);
            w.remove_nonce(&old)?;
        }
        let c = Challenge {
            nonce,
            issued_at: now,
            expires_at,
            request,
            eventlog_held: rec.eventlog_held,
        };
        out.push(self.outgoing(rec.id(), &c, false));
        Ok(())
    }

    /// Withdraws every challenge `rec`'s device holds, so evidence quoted before this moment
    /// (a quarantine, a release) can never be counted after it (the caller stores `rec`).
    pub(super) fn retire_challenges(&self, w: &mut Writer, rec: &mut DeviceRecord) -> Result<()> {
        for (nonce, _) in rec.outstanding.drain(..) {
            w.remove_nonce(&nonce)?;
        }
        Ok(())
    }

    /// Outer error: a store failure after writing began. Inner error: a rejection (nothing
    /// written, except that a fresh but rate-limited message still records its counter).
    ///
    /// Order matters: the counter check comes before the rate limiter, so a replay spends no
    /// budget; a fresh counter is recorded even when the rate limit refuses the message, so no
    /// message of the device's can be replayed into a later minute's budget.
    #[allow(clippy::too_many_arguments)]
    fn apply_challenge(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        kind: Kind,
        request: u64,
        counter: Option<u64>,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Rejection>> {
        let mut rec = match w.device(device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Err(Rejection::NotEnrolled(device.clone()))),
            Err(e) => return Ok(Err(Rejection::Internal(e))),
        };
        if let Some(counter) = counter {
            if let Err(stale) = nonce::check_counter(kind, rec.last_counter, counter) {
                return Ok(Err(stale.into()));
            }
            rec.last_counter = counter;
        }
        if !self.allow_challenge(device, now) {
            if counter.is_some() {
                w.put_device(&rec)?;
            }
            return Ok(Err(Rejection::RateLimited(device.clone())));
        }
        self.issue_challenge(w, &mut rec, request, now, out)?;
        w.put_device(&rec)?;
        Ok(Ok(()))
    }

    /// Outer error: a store failure after writing began. Inner error: a rejection (nothing
    /// written but the consumed nonce of superseded evidence).
    #[allow(clippy::too_many_arguments)]
    fn apply_evidence(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        ev: &Evidence,
        outcome: &Result<Verified, Failure>,
        eventlog: Option<Vec<u8>>,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Rejection>> {
        let mut rec = match w.device(device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Err(Rejection::NotEnrolled(device.clone()))),
            Err(e) => return Ok(Err(Rejection::Internal(e))),
        };
        let mut issued = match w.nonce(&ev.nonce) {
            Ok(n) => n,
            Err(e) => return Ok(Err(Rejection::Internal(e))),
        };
        if let Err(r) = nonce::check(issued.as_ref(), device, now) {
            return Ok(Err(r.into()));
        }
        // From here on this job writes.
        if let Some(n) = issued.as_mut() {
            n.used_at = Some(now);
            w.put_nonce(&ev.nonce, n)?;
        }
        rec.outstanding.retain(|(n, _)| n != &ev.nonce);
        if appraisal::superseded(rec.last_clock.as_ref(), outcome) {
            w.put_device(&rec)?;
            return Ok(Err(Rejection::Stale));
        }
        self.stats.accept("evidence");
        if let Err(f) = outcome {
            tracing::warn!(device = %device, code = f.reason.code(), reason = %f.reason, "evidence does not hold up");
        }

        let governing = self.policy_for(w, &rec)?;
        let a = appraisal::appraise(
            outcome,
            rec.last_clock.as_ref(),
            governing.policy(),
            &governing.subject,
        );
        if a.quote_accepted
            && let Ok(v) = outcome
        {
            rec.last_clock = Some(v.clock);
            rec.measurements = Some(v.measurements.clone());
            rec.measured_at = Some(now);
            if let Some(bytes) = eventlog {
                let held = EventLogHeld {
                    boot: v.clock.reset_count,
                    len: bytes.len() as u64,
                };
                // Same boot, same length: the agent sent nothing new; the stored log stands.
                if rec.eventlog_held != Some(held) {
                    w.put_eventlog(
                        device,
                        &StoredLog {
                            boot: held.boot,
                            bytes: bytes.into(),
                        },
                    )?;
                }
                rec.eventlog_held = Some(held);
            }
        }
        tracing::info!(device = %device, status = %a.status, reasons = ?a.reasons, "appraised evidence");
        self.finish(w, &mut rec, a, Basis::Fresh, Some(ev.nonce), now, out)?;
        Ok(Ok(()))
    }

    /// The reference values that govern `rec`: its own, else its model's.
    pub(super) fn policy_for(&self, w: &Writer, rec: &DeviceRecord) -> Result<Governing> {
        let subject = format!("device {} or model {}", rec.id(), rec.enrollment.model);
        let dev = PolicyScope::Device(rec.id().to_string());
        let model = PolicyScope::Model(rec.enrollment.model.clone());
        let found = match w.policy(&dev)? {
            Some(v) => Some((dev, v)),
            None => w.policy(&model)?.map(|v| (model, v)),
        };
        Ok(Governing {
            subject,
            found: found.map(|(scope, values)| GoverningValues {
                id: policy_id(&scope, &values),
                label: scope.label(),
                values,
            }),
        })
    }
}
