//! Core decisions on hello/status and evidence: counter freshness before the rate limiter, open
//! nonces bounded per device, nonce consumption (also by superseded quotes), in-flight copies,
//! and which policy governs an appraisal.

use super::*;
use crate::appraisal::{Defect, FailedClaim};
use crate::error::RejectionLabel;
use crate::nonce::NonceRejection;
use crate::verdict::Status;
use crate::verifier::{InFlight, MAX_OUTSTANDING, Rejection};

#[test]
fn issuing_past_max_outstanding_retires_the_oldest_open_nonce() {
    let mut w = World::new();
    let issued: Vec<Nonce> = (0..MAX_OUTSTANDING).map(|_| w.challenge()).collect();
    assert_eq!(w.outstanding(), issued);
    let d = w.hello();
    let newest = d.effects.challenges().next().unwrap().nonce;
    assert!(
        d.effects.nonces.contains(&NonceWrite::Remove(issued[0])),
        "the oldest nonce's record is removed: {:?}",
        d.effects.nonces
    );
    let mut expected = issued[1..].to_vec();
    expected.push(newest);
    assert_eq!(w.outstanding(), expected);
    // Evidence for the retired nonce is now unknown.
    let gov = no_policy(&w.rec);
    let r = w.evidence(issued[0], &verified(1, 100), &gov);
    assert_eq!(r.rejected, Some(Rejection::Nonce(NonceRejection::Unknown)));
}

#[test]
fn expired_open_nonces_do_not_count_against_the_bound() {
    let mut w = World::new();
    for _ in 0..MAX_OUTSTANDING {
        w.challenge();
    }
    w.now += NONCE_TTL + 1;
    let d = w.hello();
    assert!(
        !d.effects
            .nonces
            .iter()
            .any(|n| matches!(n, NonceWrite::Remove(_))),
        "nothing to retire: the open ones expired"
    );
    assert_eq!(w.outstanding().len(), 1);
}

#[test]
fn a_replayed_counter_is_refused_before_the_rate_limiter() {
    // A budget of one challenge: a replay must not spend it.
    let mut w = World::with(0, 1);
    let req = ChallengeRequest {
        kind: Kind::Status,
        request: 1,
        counter: Some(0),
    };
    let d = w.request(req);
    assert_eq!(
        d.rejected.as_ref().map(Rejection::label),
        Some(RejectionLabel::Replay)
    );
    assert!(
        d.effects.is_empty(),
        "a replay writes nothing: {:?}",
        d.effects
    );
    assert_eq!(w.hello().rejected, None, "the budget is still there");
}

#[test]
fn a_fresh_rate_limited_request_still_records_its_counter() {
    let mut w = World::with(0, 1);
    w.challenge();
    let d = w.hello();
    assert_eq!(d.rejected, Some(Rejection::RateLimited(w.rec.id().clone())));
    assert_eq!(kinds(&d.effects), Vec::<&str>::new(), "no challenge");
    let stored = d.effects.device.expect("the counter is recorded");
    assert_eq!(stored.last_counter, w.counter);
    // So a copy of it next minute is a replay, not a claim on the new budget.
    w.now += 60;
    let copy = ChallengeRequest {
        kind: Kind::Hello,
        request: 5,
        counter: Some(w.counter),
    };
    assert_eq!(
        w.request(copy).rejected.map(|r| r.label()),
        Some(RejectionLabel::Replay)
    );
}

#[test]
fn the_rate_limit_renews_at_the_minute_boundary() {
    let mut w = World::with(0, 2);
    w.now = T0 - T0 % 60;
    w.challenge();
    w.challenge();
    assert!(w.hello().rejected.is_some(), "third in the minute");
    w.now += 60;
    assert_eq!(w.hello().rejected, None);
}

#[test]
fn a_verifier_initiated_challenge_leaves_the_counter_alone() {
    // After an event log gap the engine asks for a challenge itself (no counter).
    let mut w = World::new();
    w.challenge();
    let before = w.rec.last_counter;
    let d = w.request(ChallengeRequest {
        kind: Kind::Evidence,
        request: 0,
        counter: None,
    });
    assert_eq!(d.rejected, None);
    assert_eq!(d.effects.challenges().next().unwrap().request, 0);
    assert_eq!(w.rec.last_counter, before);
}

#[test]
fn a_rate_limited_verifier_initiated_challenge_writes_nothing() {
    let mut w = World::with(0, 0);
    let d = w.request(ChallengeRequest {
        kind: Kind::Evidence,
        request: 0,
        counter: None,
    });
    assert!(matches!(d.rejected, Some(Rejection::RateLimited(_))));
    assert!(d.effects.is_empty());
}

#[test]
fn accepted_evidence_consumes_its_nonce_and_records_the_quote() {
    let mut w = World::new();
    let n = w.challenge();
    w.now += 5;
    let gov = device_policy(&w.rec, 1);
    let d = w.evidence(n, &verified(1, 100), &gov);
    assert_eq!(d.rejected, None);
    assert_eq!(w.table[&n].used_at, Some(w.now));
    assert!(w.outstanding().is_empty());
    assert_eq!(w.rec.measured_at, Some(w.now));
    assert_eq!(w.rec.last_clock.unwrap().clock, 100);
    let v = d.effects.verdict().unwrap();
    assert_eq!(
        (v.status, v.nonce, v.iat, v.exp),
        (Status::Affirming, Some(n), w.now, w.now + TTL)
    );
    // The same evidence again is a replay, and writes nothing.
    let again = w.evidence(n, &verified(1, 100), &gov);
    assert_eq!(
        again.rejected,
        Some(Rejection::Nonce(NonceRejection::Replay))
    );
    assert!(again.effects.is_empty());
}

#[test]
fn evidence_past_its_nonce_expiry_is_refused_and_writes_nothing() {
    let mut w = World::new();
    let n = w.challenge();
    w.now += NONCE_TTL + 1;
    let d = w.evidence(n, &verified(1, 100), &no_policy(&w.rec));
    assert_eq!(d.rejected, Some(Rejection::Nonce(NonceRejection::Expired)));
    assert!(d.effects.is_empty());
    assert_eq!(w.table[&n].used_at, None);
}

#[test]
fn evidence_for_a_nonce_of_another_device_is_refused() {
    let mut w = World::new();
    let n = w.challenge();
    w.table.get_mut(&n).unwrap().device = "t2".parse().unwrap();
    let d = w.evidence(n, &verified(1, 100), &no_policy(&w.rec));
    assert_eq!(
        d.rejected,
        Some(Rejection::Nonce(NonceRejection::WrongDevice))
    );
}

#[test]
fn superseded_evidence_is_stale_and_consumes_its_nonce() {
    let mut w = World::trusted();
    let older = w.challenge();
    let newer = w.challenge();
    let gov = device_policy(&w.rec, 1);
    // The newer quote (TPM clock 300) arrives first; the older one (200) after it.
    assert_eq!(w.evidence(newer, &verified(1, 300), &gov).rejected, None);
    let verdicts_before = w.seq;
    let d = w.evidence(older, &verified(1, 200), &gov);
    assert_eq!(d.rejected, Some(Rejection::Stale));
    assert_eq!(d.rejected.unwrap().label().as_str(), "stale");
    assert_eq!(
        w.table[&older].used_at,
        Some(w.now),
        "its nonce is consumed"
    );
    assert!(!w.outstanding().contains(&older));
    assert_eq!(w.seq, verdicts_before, "no verdict");
    assert!(d.effects.audit.is_empty());
    assert_eq!(
        w.rec.last_clock.unwrap().clock,
        300,
        "the newer quote stands"
    );
    assert_eq!(w.rec.status.state(), DeviceState::Trusted);
}

#[test]
fn a_genuine_quote_whose_later_check_failed_is_judged_by_its_clock() {
    let mut w = World::trusted();
    let n = w.challenge();
    let failed: Result<Verified, Failure> = Err(Failure {
        claim: FailedClaim::Executables,
        reason: Defect::EventLogChanged { boot: 1, held: 10 },
        genuine_clock: Some(ClockInfo {
            clock: 50,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        }),
    });
    let d = w.evidence(n, &failed, &device_policy(&w.rec, 1));
    assert_eq!(
        d.rejected,
        Some(Rejection::Stale),
        "older than the accepted quote"
    );
    assert_eq!(w.rec.status.state(), DeviceState::Trusted);
}

#[test]
fn evidence_that_does_not_hold_up_quarantines() {
    let mut w = World::trusted();
    let measured_at = w.rec.measured_at;
    w.now += 10;
    let n = w.challenge();
    let failed: Result<Verified, Failure> = Err(Failure {
        claim: FailedClaim::Executables,
        reason: Defect::EventLogChanged { boot: 1, held: 10 },
        genuine_clock: None,
    });
    let d = w.evidence(n, &failed, &device_policy(&w.rec, 1));
    assert_eq!(d.rejected, None);
    assert_eq!(w.rec.status.state(), DeviceState::Quarantined);
    assert_eq!(kinds(&d.effects), ["verdict", "cmd"]);
    assert_eq!(d.effects.verdict().unwrap().status, Status::Contraindicated);
    assert_eq!(d.effects.audit.len(), 1);
    assert_eq!(
        w.rec.measured_at, measured_at,
        "the failed quote is not recorded"
    );
}

#[test]
fn device_policy_takes_precedence_over_model_policy() {
    let rec = record("t1");
    let own = measurements(1).capture();
    let model = measurements(2).capture();
    let mut asked = Vec::new();
    let g = governing(&rec, |s| {
        asked.push(s.clone());
        Ok::<_, ()>(Some(match s {
            PolicyScope::Device(_) => own.clone(),
            PolicyScope::Model(_) | PolicyScope::Firmware { .. } => model.clone(),
        }))
    })
    .unwrap();
    let found = g.found.unwrap();
    assert_eq!(found.values, own);
    assert_eq!(found.label, "device t1");
    assert!(found.id.starts_with("device:t1@"), "{}", found.id);
    assert_eq!(
        asked,
        [PolicyScope::Device("t1".into())],
        "the model is not looked up"
    );
}

#[test]
fn model_policy_governs_a_device_without_its_own() {
    let rec = record("t1");
    let model = measurements(2).capture();
    let g = governing(&rec, |s| {
        Ok::<_, ()>(matches!(s, PolicyScope::Model(_)).then(|| model.clone()))
    })
    .unwrap();
    let found = g.found.unwrap();
    assert_eq!((found.values, found.label.as_str()), (model, "model T"));
    // And with neither, the reason names both places looked in.
    let none = no_policy(&rec);
    assert_eq!(none.found, None);
    assert_eq!(none.subject, "device t1 or model T");
}

#[test]
fn evidence_is_appraised_under_the_governing_policy() {
    let mut w = World::new();
    let n = w.challenge();
    // The device's own policy expects PCR 0 = 2; the quote has 1: not trusted.
    let d = w.evidence(n, &verified(1, 100), &device_policy(&w.rec, 2));
    let v = d.effects.verdict().unwrap();
    assert_ne!(v.status, Status::Affirming);
    assert!(v.policy_id.as_deref().unwrap().starts_with("device:t1@"));
    assert_ne!(w.rec.status.state(), DeviceState::Trusted);
}

#[test]
fn a_second_copy_in_flight_is_a_replay_until_released() {
    let mut f = InFlight::default();
    let n = Nonce::from_bytes([7; 32]);
    assert_eq!(f.claim(n), Ok(()));
    let copy = f.claim(n).unwrap_err();
    assert_eq!(copy.label(), RejectionLabel::Replay);
    assert_eq!(
        f.claim(Nonce::from_bytes([8; 32])),
        Ok(()),
        "other nonces pass"
    );
    f.release(&[n]);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f.claim(n),
        Ok(()),
        "after the applier handled it, the store decides"
    );
}

impl World {
    /// Evidence for `nonce` whose policy lookup fails and counts its calls: `Err` when the
    /// lookup ran, else the decision, committed.
    fn evidence_counting_lookups(
        &mut self,
        nonce: Nonce,
        outcome: &Result<Verified, Failure>,
        lookups: &mut u32,
    ) -> Result<Decision, ShellError> {
        let input = EvidenceInput {
            nonce,
            issued: self.table.get(&nonce).cloned(),
            outcome,
            eventlog: None,
        };
        let lookup = |_: &DeviceRecord, _: Option<&str>| -> Result<Governing, ShellError> {
            *lookups += 1;
            Err(ShellError::PolicyRead)
        };
        let mut d =
            self.core
                .on_evidence(self.rec.clone(), input, lookup, self.now, &mut Broken)?;
        d.effects = self.commit(d.effects);
        Ok(d)
    }
}

/// The shell's errors in [`World::evidence_counting_lookups`].
#[derive(Debug, PartialEq, Eq)]
enum ShellError {
    PolicyRead,
    NoNonce,
}

impl From<NonceUnavailable> for ShellError {
    fn from(_: NonceUnavailable) -> Self {
        ShellError::NoNonce
    }
}

#[test]
fn refused_evidence_reads_no_policy_and_a_failing_read_cannot_drop_it() {
    let mut w = World::trusted();
    let mut lookups = 0;
    // Unknown nonce.
    let unknown = Nonce::from_bytes([0xee; 32]);
    let d = w
        .evidence_counting_lookups(unknown, &verified(1, 200), &mut lookups)
        .unwrap();
    assert_eq!(d.rejected, Some(Rejection::Nonce(NonceRejection::Unknown)));
    // Expired nonce.
    let late = w.challenge();
    w.now += NONCE_TTL + 1;
    let d = w
        .evidence_counting_lookups(late, &verified(1, 200), &mut lookups)
        .unwrap();
    assert_eq!(d.rejected, Some(Rejection::Nonce(NonceRejection::Expired)));
    // Stale: genuine but older than the accepted quote (TPM clock 100 in `trusted`).
    let n = w.challenge();
    let d = w
        .evidence_counting_lookups(n, &verified(1, 50), &mut lookups)
        .unwrap();
    assert_eq!(d.rejected, Some(Rejection::Stale));
    // Replay of the nonce just consumed.
    let d = w
        .evidence_counting_lookups(n, &verified(1, 300), &mut lookups)
        .unwrap();
    assert_eq!(d.rejected, Some(Rejection::Nonce(NonceRejection::Replay)));
    assert_eq!(lookups, 0, "no refused evidence looked up a policy");
    // Evidence that is appraised does look it up, and its failure is the caller's error.
    let n = w.challenge();
    let e = w
        .evidence_counting_lookups(n, &verified(1, 400), &mut lookups)
        .unwrap_err();
    assert_eq!((e, lookups), (ShellError::PolicyRead, 1));
}
