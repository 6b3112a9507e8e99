//! Store records as the operator API shows them (RFC 3339 times, hex names).

use vouch_common::time::rfc3339;
use vouch_protocol::reason;
use vouch_protocol::vendor::trust::{BundleRecord, Revocation, VendorRecord};

use vouch_protocol::punch::buffer_pressure;

use crate::api::{
    AuditView, DeviceView, ProvenanceView, PunchesView, QuarantineView, ReferenceView,
    RevocationView, VendorView,
};
use crate::store::{AuditRecord, DeviceRecord, PunchHead};

/// What the device view needs from outside its record, looked up by the engine: why its EK
/// certificate does not count (`None` when it chained), and whether the firmware it runs was
/// revoked.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub ek_cert_problem: Option<String>,
    pub firmware_revoked: bool,
}

/// The firmware version a device runs as far as the verifier knows: the one its last verified
/// evidence reported, else the one its manifest was provisioned with.
pub fn running_firmware(r: &DeviceRecord) -> Option<&str> {
    r.measurements
        .as_ref()
        .and_then(|m| m.firmware_version.as_deref())
        .or_else(|| {
            r.enrollment
                .provenance
                .as_ref()
                .map(|p| p.firmware_version.as_str())
        })
}

/// `now` is the engine's clock, against which the last verdict is `stale`; `head` the device's
/// punch mirror head (`Ok(None)`: nothing mirrored yet; `Err`: unreadable, shown as zeros with
/// `punches.error`), under pressure above `pressure_percent`.
pub fn device(
    r: &DeviceRecord,
    head: Result<Option<PunchHead>, String>,
    pressure_percent: u8,
    trust: Trust,
    now: u64,
) -> DeviceView {
    let verdict = r.last_verdict();
    let (head, error) = match head {
        Ok(h) => (h.unwrap_or(PunchHead::EMPTY), None),
        Err(e) => (PunchHead::EMPTY, Some(e)),
    };
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
        stale: verdict.as_ref().is_some_and(|v| v.exp < now),
        policy_id: verdict.and_then(|v| v.policy_id),
        quarantine: r.status.quarantine_in_force().map(|q| QuarantineView {
            reason: q.text(),
            reason_codes: vouch_protocol::reason::codes(&q.reasons)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            actor: q.actor.to_string(),
            at: rfc3339(q.at),
        }),
        release_pending: r.status.release_pending(),
        enrolled_at: rfc3339(r.enrollment.enrolled_at),
        measured_at: r.measured_at.map(rfc3339),
        ak_name: hex::encode(r.enrollment.ak_name.as_slice()),
        punches: PunchesView {
            head_seq: head.seq,
            head_hash: head.hash.to_hex(),
            held: head.held,
            held_unreviewed: head.unreviewed,
            pending_on_device: head.pending_on_device(),
            capacity: head.capacity,
            error,
        },
        buffer_pressure: buffer_pressure(head.pending_on_device(), head.capacity, pressure_percent),
        provenance: r.enrollment.provenance.as_ref().map(|p| ProvenanceView {
            vendor: p.vendor.to_string(),
            simulated: p.simulated,
            credential_activated: p.credential_activated,
            firmware_version: p.firmware_version.clone(),
            issued_at: rfc3339(p.issued_at),
        }),
        ek_cert_anchor: r.enrollment.ek_cert_anchor.clone(),
        ek_cert_problem: trust.ek_cert_problem,
        firmware_version: r
            .measurements
            .as_ref()
            .and_then(|m| m.firmware_version.clone()),
        firmware_revoked: trust.firmware_revoked,
        simulated: r
            .enrollment
            .provenance
            .as_ref()
            .is_some_and(|p| p.simulated),
    }
}

pub fn revocation(r: &Revocation) -> RevocationView {
    RevocationView {
        at: rfc3339(r.at),
        by: r.by.to_string(),
        reason: r.reason.clone(),
    }
}

pub fn vendor(v: &VendorRecord) -> VendorView {
    let fingerprint = ed25519_dalek::VerifyingKey::from_bytes(&v.key)
        .map(|k| vouch_protocol::vendor::fingerprint(&k))
        // A stored key was a valid point when it was trusted; say so if it no longer is.
        .unwrap_or_else(|_| "(invalid key)".into());
    VendorView {
        name: v.name.to_string(),
        key: hex::encode(v.key),
        fingerprint,
        trusted_at: rfc3339(v.trusted_at),
        trusted_by: v.trusted_by.to_string(),
        revoked: v.revoked.as_ref().map(revocation),
    }
}

pub fn reference(b: &BundleRecord) -> ReferenceView {
    ReferenceView {
        vendor: b.vendor.to_string(),
        model: b.model.clone(),
        firmware_version: b.firmware_version.clone(),
        issued_at: rfc3339(b.issued_at),
        imported_at: rfc3339(b.imported_at),
        content_id: b.reference.content_id(),
        revoked: b.revoked.as_ref().map(revocation),
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
    use vouch_protocol::device::{Actor, DeviceStatus};
    use vouch_protocol::enrollment::Enrollment;
    use vouch_protocol::reason::Reason;

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
            provenance: None,
            ek_cert_anchor: None,
        })
    }

    #[test]
    fn the_device_view_gives_each_reason_its_code_in_the_same_order() {
        let mut r = record();
        r.status
            .quarantine("tamper report", Actor::Operator("admin".into()), 60)
            .unwrap();
        let mut parts = r.status.clone().into_parts();
        parts.reasons.push(Reason::PcrNotQuoted { index: 7 });
        parts.reasons.push(Reason::FirmwareMissing {
            path: "/opt/fw.bin".into(),
        });
        r.status = DeviceStatus::from_parts(parts).unwrap();
        let v = device(&r, Ok(None), 80, Trust::default(), 120);
        assert_eq!(
            v.reason_codes,
            ["quarantined", "pcr_not_quoted", "firmware_missing"]
        );
        assert_eq!(v.reasons.len(), 3);
        assert_eq!(v.reasons[0], "quarantined by operator:admin: tamper report");
        let q = v.quarantine.unwrap();
        assert_eq!(
            (q.reason.as_str(), q.actor.as_str()),
            ("tamper report", "operator:admin")
        );
        let json =
            serde_json::to_value(device(&record(), Ok(None), 80, Trust::default(), 120)).unwrap();
        assert_eq!(json["reasons"], serde_json::json!([]));
        assert_eq!(json["reason_codes"], serde_json::json!([]));
    }

    #[test]
    fn the_running_firmware_is_the_reported_one_else_the_provisioned_one() {
        let mut r = record();
        assert_eq!(running_firmware(&r), None);
        let v = device(&r, Ok(None), 80, Trust::default(), 0);
        assert!(v.provenance.is_none() && !v.simulated && v.firmware_version.is_none());
        r.enrollment.provenance = Some(vouch_protocol::enrollment::Provenance {
            vendor: "acme".parse().unwrap(),
            firmware_version: "2.1.0".into(),
            inventory: Default::default(),
            issued_at: 0,
            credential_activated: false,
            simulated: true,
            ek_certificates: vec![],
        });
        assert_eq!(running_firmware(&r), Some("2.1.0"));
        r.measurements = Some(vouch_protocol::policy::Measurements {
            pcrs: Default::default(),
            firmware_pcr: 14,
            firmware: vec![],
            eventlog: None,
            firmware_version: Some("2.2.0".into()),
            inventory: None,
        });
        assert_eq!(running_firmware(&r), Some("2.2.0"));
        let trust = Trust {
            ek_cert_problem: Some("no EK certificate".into()),
            firmware_revoked: true,
        };
        let v = device(&r, Ok(None), 80, trust, 0);
        let p = v.provenance.unwrap();
        assert_eq!(
            (p.vendor.as_str(), p.firmware_version.as_str()),
            ("acme", "2.1.0")
        );
        assert_eq!(v.firmware_version.as_deref(), Some("2.2.0"));
        assert!(v.simulated && v.firmware_revoked);
        assert_eq!(v.ek_cert_problem.as_deref(), Some("no EK certificate"));
    }

    #[test]
    fn a_verdict_is_stale_by_the_engines_clock() {
        let mut r = record();
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let v = vouch_protocol::verdict::Verdict {
            profile: vouch_protocol::verdict::PROFILE.into(),
            iat: 100,
            exp: 200,
            verifier_id: "v".into(),
            status: vouch_protocol::verdict::Status::Affirming,
            trust: Default::default(),
            policy_id: None,
            device: r.id().clone(),
            state: vouch_protocol::verdict::DeviceState::Trusted,
            reasons: vec![],
            nonce: None,
            seq: 1,
        };
        r.last_verdict = Some(Bytes(vouch_protocol::wire::seal(r.id(), &v, &key)));
        assert!(
            !device(&r, Ok(None), 80, Trust::default(), 200).stale,
            "valid up to its exp"
        );
        assert!(
            device(&r, Ok(None), 80, Trust::default(), 201).stale,
            "stale after it"
        );
    }
}
