//! The EAR (draft-ietf-rats-ear, as the `ear` crate 0.6 implements it) claims set a relying party
//! gets for one device, built from the device's state and its latest verdict. Pure: no I/O, no
//! signing keys; the verifier signs the result as a JWT.

use serde::Serialize;

use crate::ids::DeviceId;
use crate::verdict::{DeviceState, Status, TrustVector, Verdict};

/// `eat_profile` of an EAR, the value the `ear` crate 0.6 defines.
pub const EAR_PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";

/// Name of the single submodule of a vouch EAR.
pub const SUBMODULE: &str = "terminal";

/// `ear_verifier_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifierId {
    pub developer: String,
    pub build: String,
}

/// The appraisal of the terminal: EAR claims plus vouch's own `vouch_*` private claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appraisal {
    pub ear_status: Status,
    #[serde(skip_serializing_if = "is_empty_vector")]
    pub ear_trustworthiness_vector: TrustVector,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ear_appraisal_policy_ids: Vec<String>,
    pub vouch_device: DeviceId,
    pub vouch_state: DeviceState,
    pub vouch_reason_codes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vouch_verdict_seq: Option<u64>,
}

fn is_empty_vector(v: &TrustVector) -> bool {
    *v == TrustVector::default()
}

/// The EAR claims set (the JWT payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarClaims {
    pub eat_profile: &'static str,
    pub iat: u64,
    pub exp: u64,
    pub ear_verifier_id: VerifierId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eat_nonce: Option<String>,
    pub submods: std::collections::BTreeMap<String, Appraisal>,
}

/// Status reported for a device in `state` whose latest verdict said `last` and is `stale`
/// (expired, or the device is unresponsive):
/// - quarantined: contraindicated, whatever the last verdict said;
/// - no verdict: none (the verifier makes no claim);
/// - stale: affirming is dropped to none (the verifier no longer vouches for it); a warning or
///   contraindication stays, since older bad news is still news;
/// - otherwise the verdict's status.
pub fn status_for(state: DeviceState, last: Option<Status>, stale: bool) -> Status {
    match (state, last) {
        (DeviceState::Quarantined, _) => Status::Contraindicated,
        (_, None) => Status::None,
        (_, Some(Status::Affirming)) if stale || state == DeviceState::Unresponsive => Status::None,
        (_, Some(s)) => s,
    }
}

/// Builds the claims set for `device` in `state` with its latest `verdict` (if any), at `now`
/// (Unix seconds), valid at most `ttl_secs` and never past a live verdict's `exp`.
pub fn claims(
    device: &DeviceId,
    state: DeviceState,
    verdict: Option<&Verdict>,
    now: u64,
    ttl_secs: u64,
    verifier_version: &str,
) -> EarClaims {
    let stale = verdict.is_some_and(|v| v.exp <= now);
    let status = status_for(state, verdict.map(|v| v.status), stale);
    let cap = now.saturating_add(ttl_secs);
    let exp = match verdict {
        Some(v) if !stale => v.exp.min(cap),
        _ => cap,
    };
    let appraisal = Appraisal {
        ear_status: status,
        ear_trustworthiness_vector: verdict.map(|v| v.trust).unwrap_or_default(),
        ear_appraisal_policy_ids: verdict
            .and_then(|v| v.policy_id.clone())
            .into_iter()
            .collect(),
        vouch_device: device.clone(),
        vouch_state: state,
        vouch_reason_codes: verdict.map(|v| v.reasons.clone()).unwrap_or_default(),
        vouch_verdict_seq: verdict.map(|v| v.seq),
    };
    EarClaims {
        eat_profile: EAR_PROFILE,
        iat: now,
        exp,
        ear_verifier_id: VerifierId {
            developer: "vouch".to_owned(),
            build: format!("vouch-verifier {verifier_version}"),
        },
        eat_nonce: None,
        submods: [(SUBMODULE.to_owned(), appraisal)].into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{PROFILE, claim};

    fn dev() -> DeviceId {
        "T1".parse().unwrap()
    }

    fn verdict(status: Status, state: DeviceState, exp: u64) -> Verdict {
        Verdict {
            profile: PROFILE.into(),
            iat: 100,
            exp,
            verifier_id: "v".into(),
            status,
            trust: TrustVector {
                hardware: claim::GENUINE_HARDWARE,
                ..TrustVector::default()
            },
            policy_id: Some("pol-1".into()),
            device: dev(),
            state,
            reasons: vec!["pcr_mismatch:7".into()],
            nonce: None,
            seq: 42,
        }
    }

    #[test]
    fn quarantine_is_contraindicated_whatever_the_verdict_said() {
        let v = verdict(Status::Affirming, DeviceState::Trusted, 1000);
        let c = claims(&dev(), DeviceState::Quarantined, Some(&v), 200, 300, "1.0");
        assert_eq!(c.submods[SUBMODULE].ear_status, Status::Contraindicated);
    }

    #[test]
    fn live_trusted_verdict_is_affirming_and_exp_never_past_it() {
        let v = verdict(Status::Affirming, DeviceState::Trusted, 400);
        let c = claims(&dev(), DeviceState::Trusted, Some(&v), 200, 300, "1.0");
        let a = &c.submods[SUBMODULE];
        assert_eq!(a.ear_status, Status::Affirming);
        assert_eq!(c.exp, 400);
        assert_eq!(a.ear_appraisal_policy_ids, vec!["pol-1".to_owned()]);
        assert_eq!(a.vouch_verdict_seq, Some(42));
        let c = claims(&dev(), DeviceState::Trusted, Some(&v), 200, 60, "1.0");
        assert_eq!(c.exp, 260);
    }

    #[test]
    fn expired_or_unresponsive_is_not_affirming() {
        let v = verdict(Status::Affirming, DeviceState::Trusted, 150);
        let c = claims(&dev(), DeviceState::Trusted, Some(&v), 200, 300, "1.0");
        assert_eq!(c.submods[SUBMODULE].ear_status, Status::None);
        let v = verdict(Status::Affirming, DeviceState::Trusted, 1000);
        let c = claims(&dev(), DeviceState::Unresponsive, Some(&v), 200, 300, "1.0");
        assert_eq!(c.submods[SUBMODULE].ear_status, Status::None);
        assert_eq!(
            status_for(DeviceState::Trusted, Some(Status::Warning), true),
            Status::Warning
        );
    }

    #[test]
    fn never_attested_is_none() {
        let c = claims(&dev(), DeviceState::Pending, None, 200, 300, "1.0");
        assert_eq!(c.submods[SUBMODULE].ear_status, Status::None);
        assert_eq!(c.exp, 500);
    }

    #[test]
    fn wire_names_follow_ear_crate() {
        let v = verdict(Status::Affirming, DeviceState::Trusted, 400);
        let c = claims(&dev(), DeviceState::Trusted, Some(&v), 200, 300, "1.2.3");
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["eat_profile"], EAR_PROFILE);
        assert_eq!(j["ear_verifier_id"]["build"], "vouch-verifier 1.2.3");
        let t = &j["submods"]["terminal"];
        assert_eq!(t["ear_status"], "affirming");
        assert_eq!(t["ear_trustworthiness_vector"]["hardware"], 2);
        assert_eq!(t["vouch_state"], "trusted");
    }
}
