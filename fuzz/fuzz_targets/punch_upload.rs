//! Fuzz target: the terminal's upload state machine under arbitrary sequences of events — new
//! records, sends, time passing, reconnects, refused queueing, and acks (genuine, stale, forged,
//! resend requests, a mirror that went back). Invariants checked after every step: the acked
//! head never passes the newest record and only moves to a head whose hash is the terminal's
//! own; every range handed out is non-empty, within what is held and above the acked head; a
//! wake time is never in the past while nothing can be sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{
    AckOutcome, BootId, ChainHash, PunchAck, PunchInput, UploadRules, Uploader,
};

const N: u64 = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(device) = "fuzz".parse::<DeviceId>() else {
        unreachable!()
    };
    // The terminal's chain; `held_from` is the oldest record it still holds.
    let mut hashes: Vec<ChainHash> = Vec::new();
    let mut prev = None;
    for i in 1..=N {
        let Ok(input) = PunchInput::parse("E1", "out", None, i) else {
            unreachable!()
        };
        let r = input.chain_after(prev, BootId([2; 16]));
        let h = r.hash(&device);
        prev = Some((r.seq, h));
        hashes.push(h);
    }
    let own_at = |seq: u64| match seq {
        0 => Some(ChainHash::GENESIS),
        s => hashes.get((s - 1) as usize).copied(),
    };
    let rules = UploadRules {
        batch: 1 + u64::from(data.first().copied().unwrap_or(0) % 8),
        window: 1 + u64::from(data.get(1).copied().unwrap_or(0) % 24),
        linger_ms: 5,
        resend_after_ms: 20,
    };
    let mut now = 0u64;
    let mut last = 0u64;
    let mut held_from = 1u64;
    let mut u = Uploader::new(rules, 0, ChainHash::GENESIS, 0, now);
    for op in data.iter().skip(2) {
        let arg = u64::from(op >> 3);
        match op & 7 {
            0 if last < N => {
                last += 1;
                u.appended(last, now);
            }
            1 => {
                if let Some((from, to)) = u.next_batch(now) {
                    assert!(from <= to && to <= last, "range {from}..={to} past {last}");
                    assert!(from > u.acked(), "range {from} at or below the acked head");
                    assert!(to - from < rules.batch, "batch larger than the rule");
                }
            }
            2 => now += arg,
            3 => {
                u.poll(now);
            }
            4 => u.connected(now),
            5 => u.not_sent(arg.max(1), now),
            _ => {
                let seq = arg.min(last + 1);
                let genuine = *op & 1 == 0;
                let head = match (genuine, own_at(seq)) {
                    (true, Some(h)) => h,
                    (true, None) => ChainHash([1; 32]),
                    (false, _) => ChainHash([*op; 32]),
                };
                let ack = PunchAck {
                    seq,
                    head,
                    resend: *op & 2 == 0,
                };
                let before = u.acked();
                let outcome =
                    u.on_ack(&ack, now, |s| (s >= held_from).then(|| own_at(s)).flatten());
                match outcome {
                    AckOutcome::Advanced { seq, head } | AckOutcome::Regressed { seq, head } => {
                        assert_eq!(Some(head), own_at(seq), "acked a head that is not ours");
                    }
                    AckOutcome::Disagrees { .. } => assert_eq!(u.acked(), before),
                    AckOutcome::Unchanged | AckOutcome::Resend { .. } => {}
                }
                // What the terminal holds follows its durable acked head (pruning, retention 0).
                held_from = held_from.max(u.acked().saturating_sub(4).max(1));
            }
        }
        assert!(
            u.acked() <= last,
            "acked {} past the newest record {last}",
            u.acked()
        );
        assert_eq!(Some(u.acked_hash()), own_at(u.acked()));
        if let Some(at) = u.wake_at()
            && at < now
        {
            let mut probe = u.clone();
            assert!(
                probe.next_batch(now).is_some() || probe.poll(now),
                "a wake in the past ({at} < {now}) with nothing to do"
            );
        }
    }
});
