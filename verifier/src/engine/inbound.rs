//! MQTT messages through the engine: `prepare` on worker threads, `apply` in batches on the
//! applier thread. `prepare` runs the stateless checks (topic, envelope, enrollment, signature,
//! counter and nonce pre-checks against a snapshot, event log reassembly, quote crypto); `apply`
//! loads each job's records in the batch's write transaction and lets the verifier core decide
//! (`VerifierCore::on_challenge_request`, `on_evidence`), then writes what it returns.
//!
//! A message failing any envelope or freshness check is rejected (counted and logged, no state
//! change); evidence failing a later check becomes a contraindicated verdict — including evidence
//! that is wrong inside (garbage `attest`, an event log that does not parse, is rewritten within
//! a boot or continues a boot the verifier holds no log of). Which event-log failures are
//! rejections (a delta that does not fit the held log, challenged again; an oversized log) is
//! the core's call (`VerifierCore::assemble_eventlog`, `Rejection::rechallenge`).

use anyhow::Result;
use vouch_protocol::appraisal::{self, Failure, SentLog, Verified};
use vouch_protocol::error::{RejectionLabel, WireError};
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Sender, Topic};
use vouch_protocol::messages::{Evidence, Hello, StatusReport};
use vouch_protocol::nonce::{self, NonceRejection, StaleCounter};
use vouch_protocol::reason::Reason;
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::verifier::{
    ChallengeRequest, Decision, EvidenceInput, Rejection, governing_with,
};
use vouch_protocol::wire;

use super::Engine;
use super::governing::StoreLookup;
use crate::mqtt::{Inbound, Outgoing};
use crate::store::Writer;

/// Why a message was not accepted: refused by a check ([`Rejection`]), or the verifier could
/// not do the work.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Refusal {
    pub fn label(&self) -> RejectionLabel {
        match self {
            Refusal::Rejected(r) => r.label(),
            Refusal::Internal(_) => RejectionLabel::Internal,
        }
    }
}

impl From<WireError> for Refusal {
    fn from(e: WireError) -> Self {
        Refusal::Rejected(e.into())
    }
}

impl From<NonceRejection> for Refusal {
    fn from(e: NonceRejection) -> Self {
        Refusal::Rejected(e.into())
    }
}

impl From<StaleCounter> for Refusal {
    fn from(e: StaleCounter) -> Self {
        Refusal::Rejected(e.into())
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
        /// When the worker took the message (`vouch_verification_seconds` starts here).
        received: std::time::Instant,
    },
    /// A punch batch checked on its own, or tamper evidence (see `punches`).
    Punches(Box<super::punches::PunchJob>),
}

/// One evidence job as the applier takes it.
struct EvidenceJob<'a> {
    device: &'a DeviceId,
    ev: &'a Evidence,
    outcome: &'a Result<Verified, Failure>,
    eventlog: Option<Vec<u8>>,
    received: std::time::Instant,
}

impl Engine {
    /// Worker stage. Returns the job for the applier, or `None` after counting a rejection.
    pub fn prepare(&self, msg: Inbound) -> Option<Job> {
        match self.try_prepare(&msg) {
            Ok(job) => Some(job),
            Err(r) => {
                self.stats
                    .reject(&msg.topic, r.label(), &r.to_string(), self.now());
                let Refusal::Rejected(r) = r else {
                    return None;
                };
                let req = r.rechallenge()?;
                let device = msg.topic.parse::<Topic>().ok()?.device;
                Some(Job::Challenge {
                    device,
                    kind: req.kind,
                    request: req.request,
                    counter: req.counter,
                })
            }
        }
    }

    fn try_prepare(&self, msg: &Inbound) -> Result<Job, Refusal> {
        let received = std::time::Instant::now();
        let topic: Topic = msg.topic.parse().map_err(Rejection::Topic)?;
        if topic.kind.sender() != Sender::Agent {
            return Err(Rejection::Direction(topic.kind).into());
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
        let device = topic.device;
        let kind = topic.kind;
        let verified = match unverified.verify(&key) {
            Ok(v) => v,
            // A punch batch on the device's own topic (the broker lets only the terminal write
            // there) that its key did not sign is forged: tamper, not just noise.
            Err(WireError::BadSignature) if kind == Kind::Punches => {
                return Ok(Self::punch_tamper_job(device, Reason::PunchForged, None));
            }
            Err(e) => return Err(e.into()),
        };
        match kind {
            // The counter pre-check refuses most replays on the worker; the core re-checks it
            // authoritatively in the write transaction (the snapshot may be behind).
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
                // Cheap early refusal of replays before the quote crypto; the core re-checks
                // authoritatively inside the write transaction. The snapshot is short-lived.
                let (issued, held) = {
                    let reader = self.store.read()?;
                    // A delta is appended to the held log, and a whole log must extend it.
                    let held = match (&ev.eventlog, rec.eventlog_held) {
                        (Some(_), Some(_)) => reader.eventlog(&device)?,
                        _ => None,
                    };
                    (reader.nonce(&ev.nonce)?, held)
                };
                nonce::check(issued.as_ref(), &device, self.now())?;
                // Signed by the device and fresh: from here on, anything wrong inside the
                // evidence is a defect in its outcome, and the applier quarantines.
                let held = held.as_ref().map(|h| (h.boot, h.bytes.as_slice()));
                let log = self.core.assemble_eventlog(&ev, held)?;
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
                    received,
                })
            }
            Kind::Punches => self.prepare_punches(device, verified),
            // Sender::Agent above leaves only the four kinds handled.
            other => Err(Rejection::Direction(other).into()),
        }
    }

    /// Applier stage: one write transaction for the whole batch, then publication. A job that is
    /// rejected writes nothing (but what the core records for it); a store failure once a job
    /// has started writing drops the whole batch uncommitted.
    pub fn apply(&self, jobs: Vec<Job>) -> Result<()> {
        let in_flight: Vec<Nonce> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Evidence { evidence, .. } => Some(evidence.nonce),
                Job::Challenge { .. } | Job::Punches(_) => None,
            })
            .collect();
        let result = self.apply_batch(jobs);
        self.release_in_flight(&in_flight);
        result
    }

    fn apply_batch(&self, jobs: Vec<Job>) -> Result<()> {
        let now = self.now();
        let mut out = Vec::new();
        let mut w = self.store.write()?;
        // The supply-chain policy, once read for this transaction.
        let mut supply_chain = None;
        for job in jobs {
            let (topic, outcome) = match job {
                Job::Challenge {
                    device,
                    kind,
                    request,
                    counter,
                } => {
                    let req = ChallengeRequest {
                        kind,
                        request,
                        counter,
                    };
                    let outcome = self.apply_challenge(&mut w, &device, req, now, &mut out)?;
                    (Topic::new(device, kind).to_string(), outcome)
                }
                Job::Evidence {
                    device,
                    topic,
                    evidence,
                    outcome,
                    eventlog,
                    received,
                } => {
                    let job = EvidenceJob {
                        device: &device,
                        ev: &evidence,
                        outcome: &outcome,
                        eventlog,
                        received,
                    };
                    let outcome =
                        self.apply_evidence(&mut w, job, &mut supply_chain, now, &mut out)?;
                    (topic, outcome)
                }
                Job::Punches(p) => {
                    let topic = Topic::new(p.device.clone(), Kind::Punches).to_string();
                    (topic, self.apply_punches(&mut w, *p, now, &mut out)?)
                }
            };
            if let Err(r) = outcome {
                self.stats.reject(&topic, r.label(), &r.to_string(), now);
            }
        }
        w.commit()?;
        self.publish(out);
        Ok(())
    }

    /// Outer error: a store failure after writing began. Inner error: the job's refusal.
    fn apply_challenge(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        req: ChallengeRequest,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let rec = match w.device(device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Err(Rejection::NotEnrolled(device.clone()).into())),
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        let decision = {
            // The limiter holds only per-minute counters: after a panic elsewhere under this
            // lock they are still meaningful, so a poisoned lock is recovered, not turned into
            // a permanent refusal of every device.
            let mut rate = self
                .rate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.core
                .on_challenge_request(rec, req, now, &mut rate, &mut **self.nonces())?
        };
        self.write_decision(w, device, decision, out)
    }

    /// Outer error: a store failure after writing began. Inner error: the job's refusal.
    /// `supply_chain` keeps the policy once read in this transaction.
    fn apply_evidence(
        &self,
        w: &mut Writer,
        job: EvidenceJob<'_>,
        supply_chain: &mut Option<Option<SupplyChainPolicy>>,
        now: u64,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let EvidenceJob {
            device,
            ev,
            outcome,
            eventlog,
            received,
        } = job;
        let rec = match w.device(device) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Err(Rejection::NotEnrolled(device.clone()).into())),
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        let issued = match w.nonce(&ev.nonce) {
            Ok(n) => n,
            Err(e) => return Ok(Err(Refusal::Internal(e))),
        };
        let input = EvidenceInput {
            nonce: ev.nonce,
            issued,
            outcome,
            eventlog,
        };
        // What governs the device is read only for evidence the core appraises; a failing read
        // drops the batch (like any store failure once writing began).
        let policy = |rec: &_, reported: Option<&str>| {
            governing_with(rec, reported, &mut StoreLookup::new(w, supply_chain))
        };
        let decision = self
            .core
            .on_evidence(rec, input, policy, now, &mut **self.nonces())?;
        if decision.rejected.is_none() {
            self.stats.accept("evidence");
            if let Err(f) = outcome {
                tracing::warn!(device = %device, code = f.reason.code(), reason = %f.reason, "evidence does not hold up");
            }
            if let Some(v) = decision.effects.verdict() {
                tracing::info!(device = %device, status = %v.status, reasons = ?vouch_protocol::reason::codes(&v.reasons), "appraised evidence");
                self.observe_verdict(w, v.status, received, now);
            }
        }
        self.write_decision(w, device, decision, out)
    }

    /// Writes what the core decided for one job; its refusal, if any, is the inner result.
    fn write_decision(
        &self,
        w: &mut Writer,
        device: &DeviceId,
        d: Decision,
        out: &mut Vec<Outgoing>,
    ) -> Result<Result<(), Refusal>> {
        let (msgs, _) = self.write_effects(w, device, d.effects)?;
        out.extend(msgs);
        Ok(match d.rejected {
            Some(r) => Err(r.into()),
            None => Ok(()),
        })
    }
}
