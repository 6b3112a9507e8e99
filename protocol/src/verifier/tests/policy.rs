//! Core decisions on storing reference values: which scopes and captures are admitted, the
//! audit entry a change leaves, and which devices it re-evaluates (the device-over-model rule of
//! `governing`, applied once).

use super::*;
use crate::device::{Actor, AuditAction};
use crate::verifier::{MAX_MODEL_NAME, PolicyOrigin, PolicyRefusal};

fn op() -> Actor {
    Actor::Operator("test".into())
}

/// The policy governing `rec` when its model has values and, if `own`, the device too.
fn model_and_own(rec: &DeviceRecord, own: bool) -> Governing {
    let values = measurements(1).capture();
    governing(rec, |s| {
        Ok::<_, ()>(match s {
            PolicyScope::Device(_) if !own => None,
            _ => Some(values.clone()),
        })
    })
    .unwrap()
}

#[test]
fn a_model_policy_change_skips_devices_with_their_own_policy() {
    let mut w = World::trusted();
    let model = PolicyScope::Model(w.rec.enrollment.model.clone());
    let own = model_and_own(&w.rec, true);
    let r = w
        .core
        .on_policy_change(w.rec.clone(), &model, &own, w.now, &mut w.nonces)
        .unwrap();
    assert_eq!(
        r, None,
        "the device's own policy governs it, not the model's"
    );
    // Its own policy's change does re-evaluate it.
    let dev = PolicyScope::Device(w.rec.id().to_string());
    let r = w
        .core
        .on_policy_change(w.rec.clone(), &dev, &own, w.now, &mut w.nonces)
        .unwrap();
    assert!(r.is_some_and(|e| e.verdict().is_some()));
}

#[test]
fn a_model_policy_change_reevaluates_devices_the_model_governs() {
    let mut w = World::trusted();
    let model = PolicyScope::Model(w.rec.enrollment.model.clone());
    let by_model = model_and_own(&w.rec, false);
    let e = w
        .core
        .on_policy_change(w.rec.clone(), &model, &by_model, w.now, &mut w.nonces)
        .unwrap()
        .expect("re-evaluated");
    let v = e.verdict().unwrap();
    assert_eq!(v.policy_id, Some(by_model.found.unwrap().id));
    // Another model's change does not touch it.
    let other = PolicyScope::Model("other".into());
    let gov = model_and_own(&w.rec, false);
    let r = w
        .core
        .on_policy_change(w.rec.clone(), &other, &gov, w.now, &mut w.nonces)
        .unwrap();
    assert_eq!(r, None);
}

#[test]
fn a_policy_change_is_audited_with_its_policy_id_and_origin() {
    let w = World::new();
    let rv = measurements(1).capture();
    let dev = PolicyScope::Device("t1".into());
    let set = w
        .core
        .on_policy_set(&dev, &rv, PolicyOrigin::Captured, op(), T0)
        .unwrap();
    assert_eq!(set.policy_id, crate::policy::policy_id(&dev, &rv));
    assert_eq!(set.audit.action, AuditAction::PolicyChanged);
    assert_eq!((set.audit.at, &set.audit.actor), (T0, &op()));
    assert_eq!(set.audit.device, Some("t1".parse().unwrap()));
    assert_eq!(
        set.audit.reason,
        format!(
            "{} captured from its last verified measurements",
            set.policy_id
        )
    );
    let model = PolicyScope::Model("T".into());
    let set = w
        .core
        .on_policy_set(&model, &rv, PolicyOrigin::SetByOperator, op(), T0)
        .unwrap();
    assert_eq!(set.audit.device, None, "a model change names no device");
    assert_eq!(
        set.audit.reason,
        format!("{} set by operator", set.policy_id)
    );
}

#[test]
fn a_policy_scope_must_name_a_valid_device_or_a_model_of_1_to_128_bytes() {
    let w = World::new();
    let rv = measurements(1).capture();
    let set = |scope: PolicyScope| {
        w.core
            .on_policy_set(&scope, &rv, PolicyOrigin::SetByOperator, op(), T0)
    };
    for bad in [String::new(), "m".repeat(MAX_MODEL_NAME + 1)] {
        let e = set(PolicyScope::Model(bad.clone())).unwrap_err();
        assert_eq!(e, PolicyRefusal::ModelName { len: bad.len() });
        assert!(e.is_bad_request());
        assert_eq!(e.to_string(), "model must be 1 to 128 characters");
    }
    assert!(set(PolicyScope::Model("m".repeat(MAX_MODEL_NAME))).is_ok());
    let e = set(PolicyScope::Device("a/b".into())).unwrap_err();
    assert!(matches!(e, PolicyRefusal::DeviceId(_)), "{e:?}");
    assert!(e.is_bad_request());
    assert!(e.to_string().starts_with("device id: "), "{e}");
}

#[test]
fn a_capture_needs_verified_nonempty_measurements() {
    let mut w = World::new();
    let e = w.core.capture_policy(&w.rec).unwrap_err();
    assert_eq!(e, PolicyRefusal::NoMeasurements(w.rec.id().clone()));
    assert!(!e.is_bad_request(), "a conflict with the device's state");
    w.rec.measurements = Some(Measurements {
        pcrs: BTreeMap::new(),
        firmware_pcr: 14,
        firmware: Vec::new(),
        eventlog: None,
        firmware_version: None,
        inventory: None,
    });
    let e = w.core.capture_policy(&w.rec).unwrap_err();
    assert_eq!(e, PolicyRefusal::EmptyMeasurements(w.rec.id().clone()));
    assert_eq!(e.to_string(), "device t1's measurements are empty");
    let w = World::trusted();
    assert_eq!(
        w.core.capture_policy(&w.rec),
        Ok(measurements(1).capture()),
        "exactly the last verified measurements"
    );
}
