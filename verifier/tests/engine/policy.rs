//! Policy changes through the engine: the core's selection of the devices a change re-evaluates
//! reaches the store (a model's values skip a device with its own), the change is audited as
//! the core words it, and the core's refusals become the API's bad request or conflict.

use super::*;
use vouch_verifier::engine::ApiError;

#[test]
fn a_model_policy_change_reevaluates_only_the_devices_it_governs() {
    let (mut b, _t1) = setup();
    // t2 attests but has no policy of its own: the model's will govern it.
    let mut t2 = terminal("t2", 8);
    b.engine.enroll(&enrollment_request(&t2), &op()).unwrap();
    b.attest(&mut t2);
    assert_eq!(b.state_of("t2"), DeviceState::Pending);
    let reference = b.engine.policy(&PolicyScope::Device("t1".into())).unwrap();
    let view = b
        .engine
        .set_policy(PolicyScope::Model("T".into()), reference, op())
        .unwrap();
    let ids: Vec<&str> = view.reevaluated.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["t2"], "t1 is governed by its own policy");
    assert_eq!(b.state_of("t2"), DeviceState::Trusted, "re-evaluated");
    let entries = b.engine.audit(None, 1000).unwrap().entries;
    let audit = entries
        .iter()
        .rev()
        .find(|a| a.action == "policy_changed")
        .unwrap();
    assert_eq!(audit.device, None);
    assert_eq!(audit.reason, format!("{} set by operator", view.policy_id));
}

#[test]
fn policy_requests_the_core_refuses_are_bad_requests_or_conflicts() {
    let (b, t1) = setup();
    let reference = b
        .engine
        .policy(&PolicyScope::Device(t1.id.to_string()))
        .unwrap();
    let e = b
        .engine
        .set_policy(PolicyScope::Model(String::new()), reference.clone(), op())
        .unwrap_err();
    assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
    let e = b
        .engine
        .set_policy(PolicyScope::Device("a/b".into()), reference, op())
        .unwrap_err();
    assert!(
        matches!(e, ApiError::BadRequest(ref m) if m.starts_with("device id: ")),
        "{e:?}"
    );
    let t2 = terminal("t2", 8);
    b.engine.enroll(&enrollment_request(&t2), &op()).unwrap();
    let e = b.engine.capture_policy("t2", op()).unwrap_err();
    assert!(
        matches!(e, ApiError::Conflict(ref m) if m.contains("no verified measurements yet")),
        "{e:?}"
    );
}
