//! Verdict expiry through the engine (issue 6, case 7): the sweep reads only due entries of the
//! expiry index, in bounded batches, and writes what the core decides. The bench's clock is
//! moved to each sweep's time, so an expiry takes milliseconds, not a verdict lifetime.

use super::*;
use vouch_verifier::engine::ExpirySweep;

impl Bench {
    /// A moment after every verdict issued so far (at most now + TTL) has expired.
    fn after_expiry(&self) -> u64 {
        self.now() + TTL + 2
    }

    /// Moves the clock to `now` and runs the sweep there.
    fn sweep(&mut self, now: u64) -> ExpirySweep {
        self.set_now(now);
        self.engine.sweep_expired_verdicts(now).unwrap()
    }

    /// [`Bench::sweep`] with `batch` entries per transaction and at most `limit`.
    fn sweep_in(&mut self, now: u64, batch: usize, limit: usize) -> ExpirySweep {
        self.set_now(now);
        self.engine
            .sweep_expired_verdicts_in(now, batch, limit)
            .unwrap()
    }
}

#[test]
fn trusted_device_without_fresh_evidence_becomes_unresponsive() {
    let (mut b, _t) = setup();
    b.drain();
    let measured_at = b.engine.device("t1").unwrap().measured_at.unwrap();
    // Within its lifetime the verdict stands.
    let s = b.sweep(b.now());
    assert_eq!(s.examined, 0);
    assert_eq!(b.state(), DeviceState::Trusted);

    let now = b.after_expiry();
    let s = b.sweep(now);
    assert_eq!((s.examined, s.renewed), (1, 1));
    let reason = format!("no fresh evidence since {measured_at}");
    let d = b.engine.device("t1").unwrap();
    assert_eq!(d.state, DeviceState::Unresponsive);
    assert_eq!(serde_json::to_value(&d).unwrap()["state"], "unresponsive");
    assert_eq!(d.reason_codes, ["no_fresh_evidence"]);
    // The rendered text, checked once here; elsewhere tests match codes.
    assert_eq!(d.reasons, vec![reason.clone()]);
    assert_eq!(d.verdict_status, Some(Status::Warning));

    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str(), a.device.as_deref()),
        ("unresponsive", "verifier", Some("t1"))
    );
    assert_eq!(a.reason, reason);

    let (verdicts, others) = b.verdicts("t1");
    assert!(others.is_empty(), "no command or challenge: {others:?}");
    let [(v, retained)] = verdicts.as_slice() else {
        panic!("expected one new verdict, got {verdicts:?}")
    };
    assert!(retained, "the new verdict replaces the retained one");
    assert_eq!(v.status, Status::Warning);
    assert_eq!(v.state, DeviceState::Unresponsive);
    assert_eq!(v.reasons, vec![reason]);
    assert_eq!(
        v.trust,
        TrustVector::default(),
        "no claims without evidence"
    );
    assert_eq!(v.nonce, None);
    assert_eq!((v.iat, v.exp), (now, now + TTL));
    assert!(v.policy_id.as_deref().unwrap().starts_with("device:t1@"));
    // The renewed verdict took the expired one's place in the index.
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    assert_eq!(b.sweep(now).examined, 0);
}

#[test]
fn fresh_evidence_after_unresponsive_is_trusted_again() {
    let (mut b, mut t) = setup();
    b.sweep(b.after_expiry());
    assert_eq!(b.state(), DeviceState::Unresponsive);
    b.drain();

    b.attest(&mut t);
    let d = b.engine.device("t1").unwrap();
    assert_eq!(d.state, DeviceState::Trusted);
    assert_eq!(d.verdict_status, Some(Status::Affirming));
    assert!(d.reasons.is_empty(), "{:?}", d.reasons);
    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str()),
        ("trusted", "verifier")
    );
    assert!(
        a.reason
            .starts_with("attestation passed after no fresh evidence since "),
        "{}",
        a.reason
    );
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    assert_eq!(b.sweep(b.now()).examined, 0);
}

#[test]
fn quarantined_device_stays_quarantined_when_its_verdict_expires() {
    // Even with the most eager setting, an expiry leaves a quarantine as it is.
    let mut b = bench_with(1, |_| {});
    let mut t = b.trusted_terminal("t1", 7);
    b.engine.quarantine("t1", "tamper report", op()).unwrap();
    b.engine.release("t1", "inspected", op()).unwrap();
    let before = b.engine.device("t1").unwrap();
    let audited = b.audit_len();
    b.drain();

    let mut now = b.after_expiry();
    for _ in 0..3 {
        let s = b.sweep(now);
        assert_eq!(s.renewed, 1);
        let d = b.engine.device("t1").unwrap();
        assert_eq!(d.state, DeviceState::Quarantined);
        assert_eq!(
            d.quarantine, before.quarantine,
            "the quarantine is untouched"
        );
        assert!(
            d.release_pending,
            "the release still waits for fresh evidence"
        );
        assert_eq!(b.audit_len(), audited, "an expiry is no state change");
        let (verdicts, others) = b.verdicts("t1");
        assert!(others.is_empty(), "{others:?}");
        let [(v, true)] = verdicts.as_slice() else {
            panic!("expected one retained verdict, got {verdicts:?}")
        };
        // The retained verdict stays a current contraindicated one naming the quarantine.
        assert_eq!(v.status, Status::Contraindicated);
        assert_eq!(v.state, DeviceState::Quarantined);
        assert_eq!(v.reasons[0], "quarantined by operator:test: tamper report");
        assert_eq!(b.engine.device("t1").unwrap().reason_codes, ["quarantined"]);
        assert_eq!(v.exp, now + TTL);
        now += TTL + 1;
    }
    // The release is still satisfied by fresh passing evidence.
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Trusted);
}

#[test]
fn quarantine_after_n_expiries_quarantines_an_unresponsive_device() {
    let mut b = bench_with(3, |_| {});
    let mut t = b.trusted_terminal("t1", 7);
    b.drain();
    let mut now = b.after_expiry();
    for expiry in 1..=2 {
        b.sweep(now);
        assert_eq!(
            b.state(),
            DeviceState::Unresponsive,
            "after expiry {expiry}"
        );
        // Each renewed warning verdict expires a verdict period later: the next expiry.
        let (verdicts, _) = b.verdicts("t1");
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].0.status, Status::Warning);
        now = verdicts[0].0.exp + 1;
    }
    b.sweep(now);
    let d = b.engine.device("t1").unwrap();
    let reason = "unresponsive: 3 verdict periods without fresh evidence";
    assert_eq!(d.state, DeviceState::Quarantined);
    let q = d.quarantine.unwrap();
    assert_eq!((q.actor.as_str(), q.reason.as_str()), ("verifier", reason));
    let a = b.last_audit();
    assert_eq!(
        (a.action.as_str(), a.actor.as_str(), a.reason.as_str()),
        ("quarantined", "verifier", reason)
    );
    let (verdicts, others) = b.verdicts("t1");
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].0.status, Status::Contraindicated);
    assert!(
        others.iter().any(|m| m.topic == "vouch/v1/t1/cmd"),
        "the agent is told: {others:?}"
    );
    // Fresh passing evidence alone does not lift it.
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Quarantined);
}

#[test]
fn a_pending_device_stays_pending_when_its_verdict_expires() {
    let mut b = bench_with(1, |_| {});
    let mut t = terminal("t1", 7);
    b.engine.enroll(&enrollment_request(&t), &op()).unwrap();
    b.attest(&mut t);
    assert_eq!(b.state(), DeviceState::Pending, "no reference values yet");
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
    let audited = b.audit_len();
    b.drain();
    let s = b.sweep(b.after_expiry());
    assert_eq!((s.examined, s.renewed), (1, 0));
    assert_eq!(b.state(), DeviceState::Pending);
    assert_eq!(b.audit_len(), audited);
    assert!(b.drain().is_empty(), "nothing to publish");
    assert_eq!(
        b.engine.verdict_expiry_index_len().unwrap(),
        0,
        "its next verdict comes with its next evidence"
    );
}

#[test]
fn expiry_sweep_reads_only_due_devices() {
    const ENROLLED: usize = 10_000;
    const DUE: usize = 3;
    let hours_away = T0 + 10 * TTL;
    let template = Enrollment::from_request(&enrollment_request(&terminal("x", 9)), 0).unwrap();
    // Devices whose verdicts are valid for hours yet, written straight to the store.
    let mut b = bench_with(0, |store| {
        let mut w = store.write().unwrap();
        for i in 0..ENROLLED - DUE {
            let id: DeviceId = format!("f{i:05}").parse().unwrap();
            w.put_device(&DeviceRecord::new(Enrollment {
                id: id.clone(),
                ..template.clone()
            }))
            .unwrap();
            w.index_verdict_expiry(&id, None, hours_away + i as u64)
                .unwrap();
        }
        w.commit().unwrap();
    });
    let ids = ["t1", "t2", "t3"];
    for (seed, id) in (20u8..).zip(ids) {
        b.trusted_terminal(id, seed);
    }
    assert_eq!(b.engine.devices(None, 1000).unwrap().devices.len(), 1000);
    let index = b.engine.verdict_expiry_index_len().unwrap();
    assert_eq!(index, ENROLLED as u64);
    b.drain();

    let later = b.after_expiry();
    assert!(later < hours_away);
    let s = b.sweep_in(later, 2, 1000);
    assert_eq!(s.examined, DUE, "only the due entries are read");
    assert_eq!(s.renewed, DUE);
    assert_eq!(s.batches, 2, "bounded batches of 2 entries");
    assert!(!s.more);
    for id in ids {
        assert_eq!(b.state_of(id), DeviceState::Unresponsive);
    }
    assert_eq!(b.state_of("f00000"), DeviceState::Pending);
    assert_eq!(
        b.drain().len(),
        DUE,
        "one verdict per due device, nothing for the others"
    );
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), index);
    assert_eq!(b.sweep(later).examined, 0);
}

#[test]
fn a_policy_change_does_not_make_an_unresponsive_device_trusted() {
    let (mut b, _t) = setup();
    b.sweep(b.after_expiry());
    b.drain();
    let reevaluated = b.engine.capture_policy("t1", op()).unwrap();
    assert_eq!(reevaluated.reevaluated[0].state, DeviceState::Unresponsive);
    let (verdicts, _) = b.verdicts("t1");
    let [(v, true)] = verdicts.as_slice() else {
        panic!("expected one retained verdict, got {verdicts:?}")
    };
    assert_eq!(
        v.status,
        Status::Warning,
        "stored measurements are not fresh"
    );
    assert_eq!(
        b.engine.device("t1").unwrap().reason_codes[0],
        "no_fresh_evidence",
        "{:?}",
        v.reasons
    );
    assert!(v.exp > b.now(), "a current verdict, not one born expired");
    assert_eq!(b.engine.verdict_expiry_index_len().unwrap(), 1);
}

#[test]
fn a_mass_expiry_is_spread_over_sweeps() {
    let mut b = bench_with(0, |_| {});
    for (seed, id) in (20u8..).zip(["t1", "t2", "t3"]) {
        b.trusted_terminal(id, seed);
    }
    let later = b.after_expiry();
    let first = b.sweep_in(later, 1, 2);
    assert_eq!((first.examined, first.batches, first.more), (2, 2, true));
    let second = b.sweep_in(later, 1, 2);
    assert_eq!((second.examined, second.more), (1, false));
    for id in ["t1", "t2", "t3"] {
        assert_eq!(b.state_of(id), DeviceState::Unresponsive);
    }
}
