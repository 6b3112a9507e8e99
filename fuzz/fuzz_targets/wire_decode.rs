//! Fuzz target: arbitrary bytes as an MQTT payload on every agent-to-verifier topic, and as an
//! enrollment request. Exercises the size bound, COSE_Sign1 decoding, header rules, body
//! decoding, topic binding, signature verification and every message body's decoding, plus
//! enrollment validation (TPM public-area parsing). None of it may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::ids::{Kind, Topic};
use vouch_protocol::messages::{Challenge, Cmd, Evidence, Hello, StatusReport};
use vouch_protocol::punch::{PunchAck, PunchBatch};
use vouch_protocol::verdict::Verdict;
use vouch_protocol::wire;

/// A fixed key: signatures will not verify, but `open` is still reached through
/// `peek_unverified`, and `verify` is exercised on every structurally valid input.
const KEY: [u8; 32] = [9; 32];

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&KEY).verifying_key();
    for kind in Kind::MQTT {
        let topic = Topic::new("fuzz".parse().unwrap_or_else(|_| unreachable!()), kind);
        if let Ok(m) = wire::decode(&topic, data, wire::DEFAULT_MAX_PAYLOAD) {
            let _ = m.peek_unverified::<Hello>();
            let _ = m.peek_unverified::<StatusReport>();
            let _ = m.peek_unverified::<Evidence>();
            let _ = m.peek_unverified::<Challenge>();
            let _ = m.peek_unverified::<Verdict>();
            let _ = m.peek_unverified::<Cmd>();
            let _ = m.peek_unverified::<PunchBatch>();
            let _ = m.peek_unverified::<PunchAck>();
            let _ = m.verify(&key);
        }
    }
    let _ = Enrollment::from_request(data, 0);
});
