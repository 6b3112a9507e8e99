//! Review finding: a verdict the verifier itself produces must be decodable by the bounded
//! pre-scan (`cbor_scan`) and fit the payload limit, or the agent, relying parties and the
//! verifier's own store (`DeviceRecord::last_verdict`) cannot read it back. Evidence within the
//! limits (a firmware list of up to 4096 entries) must not produce a verdict beyond them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use vouch_protocol::appraisal::{self, Policy};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::firmware::{FirmwareEntry, MAX_ENTRIES};
use vouch_protocol::ids::DeviceId;
use vouch_protocol::policy::{Measurements, ReferenceValues};
use vouch_protocol::verdict::{DeviceState, PROFILE, Status, Verdict};
use vouch_protocol::wire;

/// A device whose 4096 firmware files all changed (an update not yet in the policy): every
/// file is a reason, plus one more for a listed path no longer measured.
fn appraisal_with_path_len(path_len: usize) -> appraisal::Appraisal {
    let path = |i: usize| format!("/opt/terminal/{i:05}/{}", "f".repeat(path_len));
    let firmware: Vec<FirmwareEntry> = (0..MAX_ENTRIES)
        .map(|i| FirmwareEntry {
            path: path(i),
            sha256: Some(Sha256Digest([1; 32])),
        })
        .collect();
    let m = Measurements {
        pcrs: BTreeMap::new(),
        firmware_pcr: 14,
        firmware,
        eventlog: None,
        firmware_version: None,
        inventory: None,
    };
    let mut approved: BTreeMap<String, BTreeSet<Sha256Digest>> = (0..MAX_ENTRIES)
        .map(|i| (path(i), BTreeSet::from([Sha256Digest([2; 32])])))
        .collect();
    approved.insert(
        "/opt/terminal/retired.bin".into(),
        [Sha256Digest([3; 32])].into(),
    );
    let rv = ReferenceValues {
        firmware: approved,
        ..ReferenceValues::default()
    };
    let policy = Policy {
        values: &rv,
        id: "p",
        label: "model T-100",
    };
    appraisal::reevaluate(&m, Some(policy), "model T-100")
}

fn sealed(a: &appraisal::Appraisal) -> Vec<u8> {
    let device: DeviceId = "term-1".parse().unwrap();
    let v = Verdict {
        profile: PROFILE.into(),
        iat: 1,
        exp: 2,
        verifier_id: "verifier".into(),
        status: a.status,
        trust: a.trust,
        policy_id: a.policy_id.clone(),
        device: device.clone(),
        state: DeviceState::Quarantined,
        reasons: vouch_protocol::reason::texts(&a.reasons),
        nonce: None,
        seq: 1,
    };
    wire::seal(&device, &v, &SigningKey::from_bytes(&[9; 32]))
}

#[test]
fn a_verdict_on_a_4096_entry_firmware_list_decodes_within_the_limits() {
    let a = appraisal_with_path_len(8);
    assert_eq!(a.status, Status::Contraindicated);
    // 4097 findings: the first 63 and a count of the rest.
    assert_eq!(a.reasons.len(), appraisal::MAX_REASONS);
    assert_eq!(
        a.reasons.last(),
        Some(&vouch_protocol::reason::Reason::MoreReasons { count: 4034 })
    );
    let bytes = sealed(&a);
    let msg = wire::decode_detached(&bytes, wire::DEFAULT_MAX_PAYLOAD)
        .expect("the verifier's own verdict must pass the pre-scan");
    let v: Verdict = msg.peek_unverified().unwrap();
    assert_eq!(v.status, Status::Contraindicated);
    assert!(!v.reasons.is_empty());
}

#[test]
fn a_verdict_on_evidence_near_the_payload_limit_fits_the_payload_limit() {
    // 4096 entries of ~200-byte paths: the evidence stays under 1 MiB, the verdict must too.
    let a = appraisal_with_path_len(180);
    let bytes = sealed(&a);
    assert!(
        bytes.len() <= wire::DEFAULT_MAX_PAYLOAD,
        "verdict of {} bytes exceeds the {}-byte payload limit",
        bytes.len(),
        wire::DEFAULT_MAX_PAYLOAD
    );
}

#[test]
fn evidence_near_the_payload_limit_with_4096_firmware_entries_decodes() {
    use vouch_protocol::bytes::Bytes;
    use vouch_protocol::ids::Nonce;
    use vouch_protocol::messages::{Evidence, PcrValue};
    let device: DeviceId = "term-1".parse().unwrap();
    let ev = Evidence {
        nonce: Nonce::from_bytes([1; 32]),
        attest: Bytes(vec![0; 145]),
        signature: Bytes(vec![0; 72]),
        pcrs: (0..=9)
            .chain([14])
            .map(|index| PcrValue {
                index,
                value: Sha256Digest([0; 32]),
            })
            .collect(),
        firmware_pcr: 14,
        firmware: (0..MAX_ENTRIES)
            .map(|i| FirmwareEntry {
                path: format!("/opt/terminal/{i:05}/{}", "f".repeat(180)),
                sha256: if i % 2 == 0 {
                    Some(Sha256Digest([1; 32]))
                } else {
                    None
                },
            })
            .collect(),
        eventlog: None,
        firmware_version: None,
        inventory: None,
    };
    let bytes = wire::seal(&device, &ev, &SigningKey::from_bytes(&[9; 32]));
    assert!(bytes.len() <= wire::DEFAULT_MAX_PAYLOAD, "{}", bytes.len());
    let back: Evidence = wire::decode_detached(&bytes, wire::DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .peek_unverified()
        .unwrap();
    assert_eq!(back, ev);
}
