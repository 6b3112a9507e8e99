//! What the version-1 store fixture (`tests/data/store-v1.redb`) holds: a few devices in
//! varied states (pending with an open challenge, trusted with an event log, quarantined by
//! the verifier, quarantined by an operator with a release pending, unresponsive), nonces,
//! audit entries, model and device policies, and the sequence counters. Everything is built
//! from fixed bytes and times, so the fixture is reproducible and the tests compare what a
//! store reads back against exactly these values.

use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet};
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::device::{
    Actor, AuditAction, DeviceStatus, Quarantine, ReleaseRequest, Silence, StatusParts,
};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::messages::EventLogHeld;
use vouch_protocol::nonce::IssuedNonce;
use vouch_protocol::policy::events::{EventKind, EventReference, LogMeasurements, MeasuredEvent};
use vouch_protocol::policy::{Measurements, PolicyScope, ReferenceValues};
use vouch_protocol::reason::Reason;
use vouch_protocol::tpm::ClockInfo;
use vouch_protocol::verdict::{DeviceState, PROFILE, Status, TrustVector, Verdict, claim};
use vouch_protocol::wire;
use vouch_verifier::store::{AuditRecord, DeviceRecord, StoredLog};

/// The fixture's clock: every time in it is this plus a few seconds.
pub const T0: u64 = 1_800_000_000;
/// Lifetime of the fixture's verdicts.
pub const TTL: u64 = 900;

/// Everything the fixture holds, as the domain types the store reads back.
pub struct Fixture {
    pub devices: Vec<DeviceRecord>,
    pub logs: Vec<(DeviceId, StoredLog)>,
    pub nonces: Vec<(Nonce, IssuedNonce)>,
    pub audit: Vec<AuditRecord>,
    pub policies: Vec<(PolicyScope, ReferenceValues)>,
    /// (expires at, device) of every device holding a verdict.
    pub verdict_expiry: Vec<(u64, String)>,
    /// How many verdict sequence numbers were drawn.
    pub seq: u64,
}

fn id(s: &str) -> DeviceId {
    s.parse().expect("fixture ids are valid")
}

fn digest(b: u8) -> Sha256Digest {
    Sha256Digest([b; 32])
}

fn operator(name: &str) -> Actor {
    Actor::Operator(name.into())
}

fn enrollment(name: &str, model: &str, n: u8) -> Enrollment {
    Enrollment {
        id: id(name),
        model: model.into(),
        ek_public: Bytes(vec![0xE0, n, 1, 2, 3]),
        ek_certificate: n.is_multiple_of(2).then(|| Bytes(vec![0x30, 0x82, n])),
        ak_public: Bytes(vec![0xA0, n, 4, 5, 6]),
        ak_name: Bytes(vec![0x00, 0x0b, n]),
        device_key: Bytes(
            SigningKey::from_bytes(&[n; 32])
                .verifying_key()
                .to_bytes()
                .to_vec(),
        ),
        enrolled_at: T0 + u64::from(n),
        mqtt_password_hash: Some(format!("$7$101$c2FsdHNhbHQ{n}$aGFzaA==")),
        provenance: None,
        ek_cert_anchor: None,
    }
}

fn measurements() -> Measurements {
    Measurements {
        pcrs: BTreeMap::from([(0, digest(0x10)), (7, digest(0x17)), (14, digest(0x1e))]),
        firmware_pcr: 14,
        firmware: vec![
            FirmwareEntry {
                path: "/opt/terminal/reader.bin".into(),
                sha256: Some(digest(0xf1)),
            },
            FirmwareEntry {
                path: "/opt/terminal/missing.bin".into(),
                sha256: None,
            },
        ],
        eventlog: Some(LogMeasurements {
            events: vec![MeasuredEvent {
                pcr: 4,
                event_type: "EV_EFI_BOOT_SERVICES_APPLICATION".into(),
                kind: EventKind::BootApplication,
                subject: "\\EFI\\BOOT\\BOOTX64.EFI".into(),
                digest: digest(0x44),
            }],
            secure_boot: Some(true),
            dbx_entries: Some(3),
            unverified_pcrs: vec![9],
            explained_pcrs: Some(BTreeSet::from([0, 4, 7])),
            event_types: BTreeMap::from([(
                4,
                BTreeSet::from(["EV_EFI_BOOT_SERVICES_APPLICATION".to_string()]),
            )]),
        }),
        firmware_version: None,
        inventory: None,
    }
}

fn verdict_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5e; 32])
}

/// A verdict as the engine signs and stores it.
fn verdict(
    device: &str,
    status: Status,
    state: DeviceState,
    reasons: &[&str],
    iat: u64,
    seq: u64,
) -> Bytes {
    let trust = TrustVector {
        instance_identity: if status == Status::Affirming {
            claim::TRUSTWORTHY_INSTANCE
        } else {
            claim::UNTRUSTWORTHY_INSTANCE
        },
        ..TrustVector::default()
    };
    let v = Verdict {
        profile: PROFILE.into(),
        iat,
        exp: iat + TTL,
        verifier_id: "fixture".into(),
        status,
        trust,
        policy_id: Some("model:T-100@0123456789ab".into()),
        device: id(device),
        state,
        reasons: reasons.iter().map(|r| (*r).to_string()).collect(),
        nonce: (status != Status::Warning).then(|| Nonce::from_bytes([seq as u8; 32])),
        seq,
    };
    Bytes(wire::seal(&id(device), &v, &verdict_key()))
}

/// Schema 1 stored reasons as text: they read back as legacy reasons.
fn legacy(reasons: &[&str]) -> Vec<Reason> {
    reasons
        .iter()
        .map(|r| Reason::Legacy((*r).into()))
        .collect()
}

fn parts(state: DeviceState, reasons: &[&str], last_verdict_at: Option<u64>) -> StatusParts {
    StatusParts {
        state,
        quarantine: None,
        release: None,
        reasons: legacy(reasons),
        last_verdict_at,
        silence: None,
    }
}

fn status(state: DeviceState, reasons: &[&str], last_verdict_at: Option<u64>) -> DeviceStatus {
    built(parts(state, reasons, last_verdict_at))
}

fn built(p: StatusParts) -> DeviceStatus {
    DeviceStatus::from_parts(p).expect("the fixture's statuses are legal states")
}

fn audit(
    at: u64,
    device: Option<&str>,
    action: AuditAction,
    actor: Actor,
    reason: &str,
) -> AuditRecord {
    AuditRecord {
        at,
        device: device.map(id),
        action,
        actor,
        reason: reason.into(),
    }
}

/// The fixture's content.
pub fn fixture() -> Fixture {
    let log = StoredLog {
        boot: 3,
        bytes: Bytes((0u8..=200).collect()),
    };

    // Pending: enrolled, one challenge open, nothing attested yet.
    let mut pending = DeviceRecord::new(enrollment("p1", "T-100", 1));
    let open_nonce = Nonce::from_bytes([0x01; 32]);
    pending.outstanding = vec![(open_nonce, T0 + 60)];
    pending.last_counter = 1_799_999_999_000_001;

    // Trusted: attested, with a held event log and a clock.
    let mut trusted = DeviceRecord::new(enrollment("t1", "T-100", 2));
    trusted.status = status(DeviceState::Trusted, &[], Some(T0 + 10));
    trusted.last_clock = Some(ClockInfo {
        clock: 123_456,
        reset_count: 3,
        restart_count: 0,
        safe: true,
    });
    trusted.measurements = Some(measurements());
    trusted.measured_at = Some(T0 + 10);
    trusted.last_verdict = Some(verdict(
        "t1",
        Status::Affirming,
        DeviceState::Trusted,
        &[],
        T0 + 10,
        1,
    ));
    trusted.eventlog_held = Some(EventLogHeld {
        boot: log.boot,
        len: log.bytes.0.len() as u64,
    });
    trusted.last_counter = 1_800_000_010_000_000;

    // Quarantined by the verifier after a failed appraisal.
    let mismatch = "PCR 7 (sha256) does not match model T-100";
    let mut auto = DeviceRecord::new(enrollment("q1", "T-100", 3));
    auto.status = built(StatusParts {
        quarantine: Some(Quarantine {
            reasons: legacy(&[mismatch]),
            actor: Actor::Verifier,
            at: T0 + 20,
        }),
        ..parts(DeviceState::Quarantined, &[mismatch], Some(T0 + 20))
    });
    auto.last_clock = Some(ClockInfo {
        clock: 99,
        reset_count: 1,
        restart_count: 2,
        safe: false,
    });
    auto.measured_at = Some(T0 + 20);
    auto.last_verdict = Some(verdict(
        "q1",
        Status::Contraindicated,
        DeviceState::Quarantined,
        &[mismatch],
        T0 + 20,
        2,
    ));

    // Quarantined by an operator, and released since: waiting for a passing attestation.
    let seal = "quarantined by operator:alice: tamper seal broken";
    let mut held = DeviceRecord::new(enrollment("q2-lobby", "T-200", 4));
    held.status = built(StatusParts {
        quarantine: Some(Quarantine {
            reasons: legacy(&["tamper seal broken"]),
            actor: operator("alice"),
            at: T0 + 30,
        }),
        release: Some(ReleaseRequest {
            reason: "seal replaced".into(),
            actor: operator("bob"),
            at: T0 + 40,
        }),
        ..parts(DeviceState::Quarantined, &[seal], Some(T0 + 30))
    });
    held.last_verdict = Some(verdict(
        "q2-lobby",
        Status::Contraindicated,
        DeviceState::Quarantined,
        &[seal],
        T0 + 30,
        3,
    ));
    held.outstanding = vec![(Nonce::from_bytes([0x02; 32]), T0 + 100)];
    held.last_counter = 7;

    // Unresponsive: was trusted, its verdict expired twice without fresh evidence.
    let silent = "no fresh evidence since 2027-01-15T08:00:05Z";
    let mut gone = DeviceRecord::new(enrollment("u1", "T-100", 5));
    gone.status = built(StatusParts {
        silence: Some(Silence {
            since: T0 + 5,
            expiries: 2,
        }),
        ..parts(DeviceState::Unresponsive, &[silent], Some(T0 + 1805))
    });
    gone.measurements = Some(measurements());
    gone.measured_at = Some(T0 + 5);
    gone.last_verdict = Some(verdict(
        "u1",
        Status::Warning,
        DeviceState::Unresponsive,
        &[silent],
        T0 + 1805,
        5,
    ));

    let devices = vec![pending, trusted, auto, held, gone];
    let verdict_expiry = {
        let mut v: Vec<(u64, String)> = devices
            .iter()
            .filter_map(|d| Some((d.last_verdict()?.exp, d.id().to_string())))
            .collect();
        v.sort();
        v
    };

    let model_policy = ReferenceValues {
        pcrs: BTreeMap::from([(0, digest(0x10)), (7, digest(0x17))]),
        firmware: BTreeMap::from([(
            "/opt/terminal/reader.bin".to_string(),
            BTreeSet::from([digest(0xf1), digest(0xf2)]),
        )]),
        events: Some(EventReference {
            digests: BTreeMap::from([(
                EventKind::BootApplication,
                BTreeMap::from([(
                    "\\EFI\\BOOT\\BOOTX64.EFI".to_string(),
                    BTreeSet::from([digest(0x44)]),
                )]),
            )]),
            secure_boot_required: true,
            dbx_min_entries: Some(2),
            event_types: BTreeMap::from([(
                4,
                BTreeSet::from(["EV_EFI_BOOT_SERVICES_APPLICATION".to_string()]),
            )]),
        }),
        firmware_pcr: Some(14),
    };
    let device_policy = ReferenceValues {
        pcrs: BTreeMap::from([(0, digest(0x20))]),
        ..ReferenceValues::default()
    };

    Fixture {
        devices,
        logs: vec![(id("t1"), log)],
        nonces: vec![
            (
                open_nonce,
                IssuedNonce {
                    device: id("p1"),
                    issued_at: T0,
                    expires_at: T0 + 60,
                    used_at: None,
                },
            ),
            (
                Nonce::from_bytes([0x02; 32]),
                IssuedNonce {
                    device: id("q2-lobby"),
                    issued_at: T0 + 40,
                    expires_at: T0 + 100,
                    used_at: None,
                },
            ),
            (
                Nonce::from_bytes([0x03; 32]),
                IssuedNonce {
                    device: id("t1"),
                    issued_at: T0 + 9,
                    expires_at: T0 + 69,
                    used_at: Some(T0 + 10),
                },
            ),
        ],
        audit: vec![
            audit(
                T0 + 1,
                Some("p1"),
                AuditAction::Enrolled,
                operator("alice"),
                "enrolled model T-100",
            ),
            audit(
                T0 + 2,
                None,
                AuditAction::PolicyChanged,
                operator("alice"),
                "policy model:T-100 set",
            ),
            audit(
                T0 + 10,
                Some("t1"),
                AuditAction::Trusted,
                Actor::Verifier,
                "attestation passed",
            ),
            audit(
                T0 + 20,
                Some("q1"),
                AuditAction::Quarantined,
                Actor::Verifier,
                mismatch,
            ),
            audit(
                T0 + 30,
                Some("q2-lobby"),
                AuditAction::Quarantined,
                operator("alice"),
                "tamper seal broken",
            ),
            audit(
                T0 + 40,
                Some("q2-lobby"),
                AuditAction::Released,
                operator("bob"),
                "seal replaced",
            ),
            audit(
                T0 + 905,
                Some("u1"),
                AuditAction::Unresponsive,
                Actor::Verifier,
                silent,
            ),
        ],
        policies: vec![
            (PolicyScope::Model("T-100".into()), model_policy),
            (PolicyScope::Device("q2-lobby".into()), device_policy),
        ],
        verdict_expiry,
        seq: 5,
    }
}

/// Adds `n` schema-1 device rows to the store at `path`, copies of the fixture's row `template`
/// under the ids `{prefix}0000`, `{prefix}0001`, …, each naming its own id (a fleet larger than
/// a migration page). Returns the ids.
pub fn add_v1_devices(
    path: &std::path::Path,
    template: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    use ciborium::Value;
    use redb::ReadableTable;
    const DEVICES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("devices");
    let db = redb::Database::create(path).expect("the copy opens");
    let w = db.begin_write().expect("write");
    let mut ids = Vec::with_capacity(n);
    {
        let mut t = w.open_table(DEVICES).expect("devices");
        let bytes = t
            .get(template)
            .expect("read")
            .expect("template row")
            .value()
            .to_vec();
        let row: Value = ciborium::from_reader(bytes.as_slice()).expect("a CBOR row");
        for i in 0..n {
            let id = format!("{prefix}{i:04}");
            let mut copy = row.clone();
            let Value::Map(fields) = &mut copy else {
                panic!("a device row is a map")
            };
            for (k, v) in fields.iter_mut() {
                if k.as_text() == Some("enrollment") {
                    let Value::Map(e) = v else {
                        panic!("an enrollment is a map")
                    };
                    for (k, v) in e.iter_mut() {
                        if k.as_text() == Some("id") {
                            *v = Value::Text(id.clone());
                        }
                    }
                }
            }
            let mut out = Vec::new();
            ciborium::into_writer(&copy, &mut out).expect("encode");
            t.insert(id.as_str(), out.as_slice()).expect("insert");
            ids.push(id);
        }
    }
    w.commit().expect("commit");
    ids
}
