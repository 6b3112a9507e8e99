//! Store records as the operator API shows them (RFC 3339 times, hex names).

use vouch_common::time::rfc3339;
use vouch_protocol::reason;

use crate::api::{AuditView, DeviceView, QuarantineView};
use crate::store::{AuditRecord, DeviceRecord};

pub fn device(r: &DeviceRecord) -> DeviceView {
    let verdict = r.last_verdict();
    DeviceView {
        id: r.id().to_string(),
        model: r.enrollment.model.clone(),
        state: r.status.state(),
        reasons: reason::texts(r.status.reasons()),
        reason_codes: reason::codes(r.status.reasons())
            .into_iter()
            .map(str::to_owned)
            .collect(),
        last_verdict_at: r.status.last_verdict_at.map(rfc3339),
        verdict_status: verdict.as_ref().map(|v| v.status),
        verdict_expires_at: verdict.as_ref().map(|v| rfc3339(v.exp)),
        stale: verdict
            .as_ref()
            .is_some_and(|v| v.exp < vouch_common::time::now_unix()),
        policy_id: verdict.and_then(|v| v.policy_id),
        quarantine: r.status.quarantine_in_force().map(|q| QuarantineView {
            reason: q.text(),
            actor: q.actor.to_string(),
            at: rfc3339(q.at),
        }),
        release_pending: r.status.release_pending(),
        enrolled_at: rfc3339(r.enrollment.enrolled_at),
        measured_at: r.measured_at.map(rfc3339),
        ak_name: hex::encode(r.enrollment.ak_name.as_slice()),
    }
}

pub fn audit(seq: u64, r: &AuditRecord) -> AuditView {
    AuditView {
        seq,
        at: rfc3339(r.at),
        device: r.device.as_ref().map(ToString::to_string),
        action: r.action.as_str().to_owned(),
        actor: r.actor.to_string(),
        reason: r.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_protocol::bytes::Bytes;
    use vouch_protocol::device::Actor;
    use vouch_protocol::enrollment::Enrollment;

    fn record() -> DeviceRecord {
        DeviceRecord::new(Enrollment {
            id: "term-1".parse().unwrap(),
            model: "T-100".into(),
            ek_public: Bytes(vec![1]),
            ek_certificate: None,
            ak_public: Bytes(vec![2]),
            ak_name: Bytes(vec![0, 0x0b]),
            device_key: Bytes(vec![3]),
            enrolled_at: 0,
            mqtt_password_hash: None,
        })
    }

    #[test]
    fn the_device_view_gives_each_reason_its_code_in_the_same_order() {
        let mut r = record();
        r.status
            .quarantine("tamper report", Actor::Operator("admin".into()), 60)
            .unwrap();
        r.status.expire(None, 120, 0, None).unwrap();
        let v = device(&r);
        assert_eq!(v.reasons, ["quarantined by operator:admin: tamper report"]);
        assert_eq!(v.reason_codes, ["quarantined"]);
        let q = v.quarantine.unwrap();
        assert_eq!(
            (q.reason.as_str(), q.actor.as_str()),
            ("tamper report", "operator:admin")
        );
        let json = serde_json::to_value(device(&record())).unwrap();
        assert_eq!(json["reasons"], serde_json::json!([]));
        assert_eq!(json["reason_codes"], serde_json::json!([]));
    }
}
