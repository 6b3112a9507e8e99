//! Decisions on messages from devices, after the shell's stateless checks (envelope, signature,
//! quote crypto) passed.
//!
//! A hello or status asks for a challenge. It costs the verifier one, so it must be fresh before
//! it may cost anything: its counter must exceed the device's highest accepted one, checked
//! before the rate limiter (a replay spends no budget, issues nothing, retires no open nonce). A
//! fresh counter is recorded even when the rate limit refuses the message, so no message of the
//! device's can be replayed into a later minute's budget.
//!
//! Evidence is checked against the record of its nonce (issued to this device, unused,
//! unexpired), which it then consumes; genuine evidence older than the last accepted quote of the
//! same boot is refused as `stale` (its nonce stays consumed); everything else is appraised
//! under the governing policy and becomes a verdict. The policy is looked up only for evidence
//! that is appraised, so replayed, expired or stale evidence costs no policy read (and a failing
//! read cannot drop evidence that is refused anyway).
//!
//! The event log evidence carries is reassembled under [`super::Rules::max_eventlog`]; only a
//! delta that does not fit the held log and an oversized log are rejections (see
//! [`VerifierCore::assemble_eventlog`]).

use std::collections::HashSet;

use crate::appraisal::{self, Failure, SentLog, Verified, log_part};
use crate::device::Basis;
use crate::ids::{Kind, Nonce};
use crate::messages::{EventLogHeld, Evidence};
use crate::nonce::{self, IssuedNonce, NonceRejection};

use super::core::{Governing, NonceUnavailable, VerifierCore};
use super::effects::{Decision, Effects, NonceWrite};
use super::rate::RateLimiter;
use super::record::{DeviceRecord, StoredLog};
use super::rejection::Rejection;

/// A hello or status (`kind`) asking for a challenge that carries `request`. `counter` is the
/// message's freshness counter; `None` for a challenge the verifier asks for itself (after an
/// event log gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeRequest {
    pub kind: Kind,
    pub request: u64,
    pub counter: Option<u64>,
}

/// Evidence whose stateless checks ran, with what the shell read for it.
#[derive(Debug)]
pub struct EvidenceInput<'a> {
    /// The nonce the evidence answers.
    pub nonce: Nonce,
    /// The store's record of that nonce.
    pub issued: Option<IssuedNonce>,
    /// How the stateless checks went.
    pub outcome: &'a Result<Verified, Failure>,
    /// The whole event log of this boot, reassembled, to store if the quote is accepted.
    pub eventlog: Option<Vec<u8>>,
}

impl VerifierCore {
    /// A hello or status from `rec`'s device at `now`: a challenge, or a rejection.
    pub fn on_challenge_request(
        &self,
        rec: DeviceRecord,
        req: ChallengeRequest,
        now: u64,
        rate: &mut RateLimiter,
        nonces: &mut dyn super::NonceSource,
    ) -> Result<Decision, NonceUnavailable> {
        let mut step = self.step(rec, now, nonces);
        if let Some(counter) = req.counter {
            if let Err(stale) = nonce::check_counter(req.kind, step.rec.last_counter, counter) {
                return Ok(Decision::rejected(stale, Effects::default()));
            }
            step.rec.last_counter = counter;
        }
        if !rate.allow(step.rec.id(), now) {
            let id = step.rec.id().clone();
            let effects = match req.counter {
                Some(_) => step.into_effects(),
                None => Effects::default(),
            };
            return Ok(Decision::rejected(Rejection::RateLimited(id), effects));
        }
        step.issue_challenge(req.request)?;
        Ok(Decision::accepted(step.into_effects()))
    }

    /// Reassembles and parses the event log `ev` carries, given the log held for the device
    /// (its boot and bytes), under [`super::Rules::max_eventlog`]. A delta that does not fit
    /// the held log and an oversized log are rejections; anything else wrong with the log is a
    /// defect of the evidence, in the [`SentLog`].
    pub fn assemble_eventlog(
        &self,
        ev: &Evidence,
        held: Option<(u32, &[u8])>,
    ) -> Result<SentLog, Rejection> {
        log_part::assemble(ev, held, self.rules.max_eventlog).map_err(Rejection::from)
    }

    /// Evidence from `rec`'s device at `now`: a verdict, or a rejection. `governing` looks up
    /// what governs the device (the shell's store reads, usually through
    /// [`super::governing_with`]) given the firmware version the evidence reports (for
    /// evidence that failed its checks, the one stored with the last accepted measurements);
    /// it is called only for evidence that is appraised (its nonce accepted, not stale). Its
    /// error, and the nonce source's, are the caller's `E`.
    pub fn on_evidence<E: From<NonceUnavailable>>(
        &self,
        rec: DeviceRecord,
        input: EvidenceInput<'_>,
        governing: impl FnOnce(&DeviceRecord, Option<&str>) -> Result<Governing, E>,
        now: u64,
        nonces: &mut dyn super::NonceSource,
    ) -> Result<Decision, E> {
        let EvidenceInput {
            nonce,
            issued,
            outcome,
            eventlog,
        } = input;
        if let Err(r) = nonce::check(issued.as_ref(), rec.id(), now) {
            return Ok(Decision::rejected(r, Effects::default()));
        }
        let mut step = self.step(rec, now, nonces);
        // From here on the nonce is consumed, whatever follows.
        if let Some(mut n) = issued {
            n.used_at = Some(now);
            step.effects.nonces.push(NonceWrite::Put(nonce, n));
        }
        step.rec.outstanding.retain(|(n, _)| n != &nonce);
        if appraisal::superseded(step.rec.last_clock.as_ref(), outcome) {
            return Ok(Decision::rejected(Rejection::Stale, step.into_effects()));
        }
        let reported = match outcome {
            Ok(v) => v.measurements.firmware_version.as_deref(),
            Err(_) => step
                .rec
                .measurements
                .as_ref()
                .and_then(|m| m.firmware_version.as_deref()),
        };
        let governing = governing(&step.rec, reported)?;
        let a = appraisal::appraise(
            outcome,
            step.rec.last_clock.as_ref(),
            governing.policy(),
            &governing.subject,
        );
        let a = match outcome {
            Ok(v) => self.rules.vetted(a, &v.measurements, &step.rec, &governing),
            Err(_) => a,
        };
        if a.quote_accepted
            && let Ok(v) = outcome
        {
            let rec = &mut step.rec;
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
                    step.effects.eventlog = Some(StoredLog {
                        boot: held.boot,
                        bytes: bytes.into(),
                    });
                }
                rec.eventlog_held = Some(held);
            }
        }
        step.finish(a, Basis::Fresh, Some(nonce))?;
        Ok(Decision::accepted(step.into_effects()))
    }
}

/// The nonces of evidence between the shell's worker stage and its applier. The store marks a
/// nonce used only when the applier commits, so a second copy of evidence already on its way
/// would pass the worker's check: it is a replay.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    nonces: HashSet<Nonce>,
}

impl InFlight {
    /// Marks evidence for `nonce` as on its way; a second copy is a replay.
    pub fn claim(&mut self, nonce: Nonce) -> Result<(), Rejection> {
        if self.nonces.insert(nonce) {
            Ok(())
        } else {
            Err(NonceRejection::Replay.into())
        }
    }

    /// Forgets nonces the applier has handled (committed or not).
    pub fn release<'a>(&mut self, nonces: impl IntoIterator<Item = &'a Nonce>) {
        for n in nonces {
            self.nonces.remove(n);
        }
    }

    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }
}
