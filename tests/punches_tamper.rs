//! Punch batches an attacker sends (issue 8, §4 e), over raw MQTT with the terminal's own broker
//! credentials while its agent is stopped (client id = user name): a genuine batch replayed
//! byte for byte is idempotent (acknowledged again, nothing stored, no quarantine); a batch
//! with one record altered at a mirrored seq, signed with the real device key, is a fork; a
//! batch signed with another key is forged. The last two are rejected under their stats labels
//! (`tamper`, `bad_signature`), quarantine the device with their reason codes (`punch_fork`,
//! `punch_forged`) and are audited; the mirror keeps exactly the agent's chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::Duration;

use vouch_e2e::agent::{PunchFlags, Terminal};
use vouch_e2e::mirror::{Mirrored, assert_mirror_matches_agent, export, mirror_view};
use vouch_e2e::procs::{BrokerKind, Verifier};
use vouch_e2e::punch::{Ledger, Punch};
use vouch_e2e::punch_fleet::{CATCH_UP, PunchFleet};
use vouch_e2e::spy::Spy;
use vouch_e2e::wait_for;
use vouch_e2e::webhook_sink::{Sink, webhook_config};
use vouch_protocol::ids::{DeviceId, Kind, Topic};
use vouch_protocol::punch::{EmployeeId, PunchAck, PunchBatch, PunchInput};
use vouch_protocol::reason::Reason;
use vouch_protocol::wire;

const MIRRORED: u64 = 300;

fn topic(id: &str, kind: Kind) -> Topic {
    Topic::new(id.parse().unwrap(), kind)
}

/// Connects with the terminal's own broker credentials (its agent must be stopped).
fn as_terminal(v: &Verifier, t: &Terminal) -> Spy {
    let pw = fs::read_to_string(t.state.join("mqtt.password")).unwrap();
    Spy::connect_as(v.mqtt_port, &t.id, Some(pw.trim())).unwrap()
}

/// A fleet whose terminal mirrored `MIRRORED` punches in batches of 50, with a spy that
/// captured every batch the agent published; the agent is then stopped. Returns the fleet,
/// the ledger and the captured batches.
fn mirrored_then_stopped(extra_config: &str) -> (PunchFleet, Ledger, Vec<Vec<u8>>) {
    let mut f = PunchFleet::start_with(
        BrokerKind::Managed,
        "term-1",
        PunchFlags {
            batch: Some(50),
            ..PunchFlags::default()
        },
        extra_config,
    );
    let spy = Spy::connect(f.v.mqtt_port, "capture");
    let punches_topic = topic(&f.t.id, Kind::Punches).to_string();
    spy.subscribe(&punches_topic);
    let mut client = f.client();
    let mut ledger = Ledger::default();
    ledger.submit(&mut client, &Punch::range(0, MIRRORED), 100);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    drop(client);
    f.stop_daemon();
    let captured = spy.on(&punches_topic);
    assert!(!captured.is_empty(), "the spy saw no batch");
    (f, ledger, captured)
}

/// The punch audit entries of `id` with `action`, as their reasons.
fn audit_reasons(v: &Verifier, id: &str, action: &str) -> Vec<String> {
    let audit = v.ctl_json(&["audit", "--json"]);
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device"] == id && e["action"] == action)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The device is quarantined for `reason`: its held verdict's `reason_codes` say
/// `quarantined`, its text names the inner reason, and the quarantine's own `reason_codes`
/// carry the inner reason's stable code (`punch_fork`, `punch_forged`).
fn assert_quarantined_for(v: &Verifier, id: &str, reason: &Reason) {
    let codes = v.reason_codes(id);
    let texts = v.reasons(id);
    assert_eq!(codes, ["quarantined"], "{texts:?}");
    let want = reason.to_string();
    assert!(
        texts.iter().any(|t| t.contains(&want)),
        "the quarantine does not name {want}: {texts:?}"
    );
    let device = v.device(id);
    assert_eq!(
        device["quarantine"]["reason_codes"],
        serde_json::json!([reason.code()]),
        "{device}"
    );
}

/// Restarts the agent and checks it still mirrors (quarantined or not), ending with the
/// whole-chain comparison.
fn agent_still_mirrors(f: &mut PunchFleet, mut ledger: Ledger) -> Vec<Mirrored> {
    f.start_daemon();
    let mut client = f.client();
    ledger.submit(&mut client, &Punch::range(MIRRORED, MIRRORED + 100), 100);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP).1
}

#[test]
fn replayed_batch_is_idempotent_and_an_altered_record_is_a_fork() {
    let (mut f, ledger, captured) = mirrored_then_stopped("");
    let id = f.t.id.clone();
    let device: DeviceId = id.parse().unwrap();
    let before = export(&f.v, &id, None);
    let attacker = as_terminal(&f.v, &f.t);
    let ack_topic = topic(&id, Kind::Ack);
    attacker.subscribe(&ack_topic.to_string());
    let verifier_key = vouch_common::keys::read_public(&f.v.verifier_pub()).unwrap();
    let acks = || {
        attacker
            .on(&ack_topic.to_string())
            .iter()
            .map(|b| {
                wire::decode(&ack_topic, b, wire::DEFAULT_MAX_PAYLOAD)
                    .unwrap()
                    .verify(&verifier_key)
                    .expect("an ack the verifier did not sign")
                    .open::<PunchAck>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    // The retained ack tells a reconnecting terminal the mirror's head.
    let retained = wait_for(Duration::from_secs(30), "the retained ack", || acks().pop());
    assert_eq!((retained.seq, retained.head), (MIRRORED, before[299].hash));

    // Replay: the oldest genuine batch, re-sealed from its content with the device key, is
    // byte-identical to what the agent sent (Ed25519 is deterministic).
    let old = &captured[0];
    let batch: PunchBatch =
        wire::decode(&topic(&id, Kind::Punches), old, wire::DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .peek_unverified()
            .unwrap();
    assert_eq!(batch.first, 1, "the first captured batch starts the chain");
    let resealed = wire::seal(&device, &batch, &f.t.device_key());
    assert_eq!(
        &resealed, old,
        "re-sealing genuine content gives the same bytes"
    );
    let tamper_before = f.v.rejected("tamper");
    let acks_before = acks().len();
    attacker.publish_acked(&topic(&id, Kind::Punches).to_string(), resealed);
    let again = wait_for(
        Duration::from_secs(30),
        "the replay to be acknowledged",
        || {
            let a = acks();
            (a.len() > acks_before).then(|| a[a.len() - 1].clone())
        },
    );
    assert_eq!(
        (again.seq, again.head, again.resend),
        (MIRRORED, before[299].hash, false),
        "a replay is answered with the unchanged head"
    );
    assert_eq!(export(&f.v, &id, None), before, "a replay stored something");
    assert_eq!(f.v.device(&id)["state"], "trusted", "a replay quarantined");
    assert_eq!(f.v.rejected("tamper"), tamper_before);
    assert!(audit_reasons(&f.v, &id, "punches_rejected").is_empty());

    // Fork: record 150 altered (another employee), signed with the real device key.
    let mut altered = before[149].record.clone();
    altered.employee = "MALLORY".parse::<EmployeeId>().unwrap();
    let fork = PunchBatch::new(&device, vec![altered], MIRRORED, 1_000_000).unwrap();
    attacker.publish_acked(
        &topic(&id, Kind::Punches).to_string(),
        wire::seal(&device, &fork, &f.t.device_key()),
    );
    wait_for(
        Duration::from_secs(30),
        "the fork to be rejected as tamper",
        || (f.v.rejected("tamper") > tamper_before).then_some(()),
    );
    let d = f.v.device(&id);
    assert_eq!(d["state"], "quarantined", "{d}");
    assert_quarantined_for(&f.v, &id, &Reason::PunchFork { seq: 150 });
    assert_eq!(d["quarantine"]["actor"], "verifier", "{d}");
    let audited = audit_reasons(&f.v, &id, "punches_rejected");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(
        audited[0].contains("150"),
        "the audit names the seq: {audited:?}"
    );
    assert_eq!(export(&f.v, &id, None), before, "the fork was stored");
    assert_eq!(mirror_view(&f.v, &id).head_seq, MIRRORED);
    drop(attacker);

    // The quarantined terminal keeps mirroring; what it sends now is held.
    let records = agent_still_mirrors(&mut f, ledger);
    assert!(records[..MIRRORED as usize].iter().all(|m| !m.held));
    assert!(records[MIRRORED as usize..].iter().all(|m| m.held));
}

#[test]
fn forged_batch_is_rejected_and_quarantines_the_device() {
    // The operator's alert sink hears of it as `tamper` (and as the quarantine it caused).
    let secrets = tempfile::tempdir().unwrap();
    let port = vouch_e2e::free_port();
    let sink = Sink::start(port, vec![200]);
    let (mut f, ledger, _) = mirrored_then_stopped(&webhook_config(
        secrets.path(),
        port,
        &["tamper", "quarantine"],
    ));
    let id = f.t.id.clone();
    let device: DeviceId = id.parse().unwrap();
    let before = export(&f.v, &id, None);
    let head = before.last().unwrap();
    // The next ten records, well-formed and linking to the mirror's head, but signed with a
    // key that is not the device's.
    let mut records = Vec::new();
    let mut prev = (head.record.seq, head.hash);
    for i in 0..10 {
        let r = PunchInput::parse("E-forged", "in", Some("card"), head.record.time + 1 + i)
            .unwrap()
            .chain_after(Some(prev), head.record.boot);
        prev = (r.seq, r.hash(&device));
        records.push(r);
    }
    let batch = PunchBatch::new(&device, records, MIRRORED + 10, 1_000_000).unwrap();
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let bad_sig_before = f.v.rejected("bad_signature");
    let attacker = as_terminal(&f.v, &f.t);
    attacker.publish_acked(
        &topic(&id, Kind::Punches).to_string(),
        wire::seal(&device, &batch, &other_key),
    );
    wait_for(
        Duration::from_secs(30),
        "the forged batch to be rejected",
        || (f.v.rejected("bad_signature") > bad_sig_before).then_some(()),
    );
    wait_for(
        Duration::from_secs(30),
        "the device to be quarantined",
        || (f.v.device(&id)["state"] == "quarantined").then_some(()),
    );
    assert_quarantined_for(&f.v, &id, &Reason::PunchForged);
    assert_eq!(
        audit_reasons(&f.v, &id, "punches_rejected").len(),
        1,
        "the forged batch is audited once"
    );
    assert_eq!(
        export(&f.v, &id, None),
        before,
        "the forged batch was stored"
    );
    drop(attacker);
    let (_, tamper) = sink.wait_event("tamper");
    assert_eq!(tamper["device"], id.as_str(), "{tamper}");
    assert!(
        tamper["reason_codes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "punch_forged")),
        "{tamper}"
    );
    let (_, quarantine) = sink.wait_event("quarantine");
    assert_eq!(quarantine["device"], id.as_str(), "{quarantine}");

    let records = agent_still_mirrors(&mut f, ledger);
    assert!(
        records
            .iter()
            .all(|m| m.record.employee.as_str() != "E-forged")
    );
}
