//! Fuzz target: arbitrary bytes as a punch batch on a device's `punches` topic, as one punch
//! record, and as an ack; and the same bytes as edits to a valid signed batch, so the chain check
//! and the mirror's decision are reached with almost-valid chains (the signature is checked with
//! the signing key, then the body is interpreted either way). None of it may panic, and the mirror
//! may only ever append a batch that continues its head.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::ids::{DeviceId, Kind, Topic};
use vouch_protocol::punch::{
    self, BootId, ChainHash, MirrorDecision, MirrorHead, PunchAck, PunchBatch, PunchInput,
    PunchRecord, UploadRules, Uploader,
};
use vouch_protocol::wire;

const KEY: [u8; 32] = [9; 32];

fn device() -> DeviceId {
    "fuzz".parse().unwrap_or_else(|_| unreachable!())
}

/// A genuine chain of `n` records on the fuzz device.
fn chain(n: u64) -> Vec<(PunchRecord, ChainHash)> {
    let d = device();
    let mut out: Vec<(PunchRecord, ChainHash)> = Vec::new();
    for i in 1..=n {
        let Ok(input) = PunchInput::parse("E1", "in", Some("card"), i) else {
            unreachable!()
        };
        let r = input.chain_after(out.last().map(|(r, h)| (r.seq, *h)), BootId([1; 16]));
        let h = r.hash(&d);
        out.push((r, h));
    }
    out
}

/// Runs a decoded batch through the check and the mirror's decision against a few heads.
fn mirror(batch: PunchBatch, held: &[(PunchRecord, ChainHash)]) {
    let d = device();
    let Ok(Ok(checked)) = punch::check_batch(&d, batch) else {
        return;
    };
    for seq in [0u64, 1, 2, 4] {
        let head = match seq.checked_sub(1).and_then(|i| held.get(i as usize)) {
            Some((_, h)) => MirrorHead { seq, hash: *h },
            None => MirrorHead::EMPTY,
        };
        let lookup = |s: u64| -> Result<Option<ChainHash>, ()> {
            Ok(s.checked_sub(1)
                .and_then(|i| held.get(i as usize))
                .map(|(_, h)| *h))
        };
        if let Ok(MirrorDecision::Append { skip, head: new }) =
            punch::decide(head, &checked, lookup)
        {
            // What is appended continues the head and ends at the signed head.
            let first = &checked.entries[skip];
            assert_eq!(first.0.seq, head.seq + 1);
            assert_eq!(first.0.prev_hash, head.hash);
            assert_eq!(new.hash, checked.head);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&KEY);
    let d = device();
    let held = chain(4);
    let topic = Topic::new(d.clone(), Kind::Punches);
    if let Ok(m) = wire::decode(&topic, data, wire::DEFAULT_MAX_PAYLOAD) {
        if let Ok(b) = m.peek_unverified::<PunchBatch>() {
            mirror(b, &held);
        }
        let _ = m.verify(&key.verifying_key());
    }
    let _ = PunchRecord::from_cbor(data);

    // Edits to a genuine signed batch: the bytes say where to write what.
    let records: Vec<PunchRecord> = held.iter().map(|(r, _)| r.clone()).collect();
    let Some(batch) = PunchBatch::new(&d, records, 4, 10) else {
        unreachable!()
    };
    let mut sealed = wire::seal(&d, &batch, &key);
    for pair in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % sealed.len();
        sealed[at] = pair[2];
    }
    if let Ok(m) = wire::decode(&topic, &sealed, wire::DEFAULT_MAX_PAYLOAD)
        && let Ok(b) = m.peek_unverified::<PunchBatch>()
    {
        mirror(b, &held);
    }

    // An ack from arbitrary bytes never makes the uploader delete past what it holds.
    let ack_topic = Topic::new(d, Kind::Ack);
    if let Ok(m) = wire::decode(&ack_topic, data, wire::DEFAULT_MAX_PAYLOAD)
        && let Ok(ack) = m.peek_unverified::<PunchAck>()
    {
        let rules = UploadRules {
            batch: 2,
            window: 4,
            linger_ms: 0,
            resend_after_ms: 10,
        };
        let mut u = Uploader::new(rules, 0, ChainHash::GENESIS, 4, 0);
        let own = |s: u64| {
            s.checked_sub(1)
                .and_then(|i| held.get(i as usize))
                .map(|(_, h)| *h)
        };
        let _ = u.on_ack(&ack, 1, own);
        assert!(u.acked() <= 4);
    }
});
