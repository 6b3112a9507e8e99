//! Cost of parsing and replaying event logs, against one ECDSA P-256 signature verification
//! (what checking the TPM quote that a log is replayed against costs).
//!
//! Run: `cargo bench --bench eventlog -- --warm-up-time 1 --measurement-time 3`.
//! Throughput is reported in events per second (one "element" per log event; one per
//! verification for P-256).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use vouch_protocol::digest::HashAlg;
use vouch_protocol::eventlog::parse;

/// The largest log of the conformance corpus (a GCE VM with shim and GRUB, 112 events).
const LARGEST_CORPUS_LOG: &[u8] =
    include_bytes!("../tests/data/eventlogs/event-gce-ubuntu-2104-log.bin");

/// A synthetic crypto-agile log (sha1 + sha256) of exactly `events` events, header included.
fn synthetic_log(events: usize) -> Vec<u8> {
    // `typical_boot` has 24 events besides its GRUB commands.
    let log = common::typical_boot(&[HashAlg::Sha1, HashAlg::Sha256], events - 24);
    assert_eq!(log.len(), events);
    log.bytes()
}

fn parse_and_replay(c: &mut Criterion) {
    let logs = [
        ("typical-60-events", synthetic_log(60)),
        ("corpus-gce-ubuntu-112-events", LARGEST_CORPUS_LOG.to_vec()),
        ("synthetic-2000-events", synthetic_log(2000)),
    ];
    let mut group = c.benchmark_group("eventlog parse+replay");
    for (name, bytes) in &logs {
        let events = parse(bytes).unwrap().events.len();
        group.throughput(Throughput::Elements(u64::try_from(events).unwrap()));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let log = parse(black_box(bytes)).unwrap();
                black_box(log.replay())
            });
        });
    }
    group.finish();
}

fn p256_verify(c: &mut Criterion) {
    // A fixed private scalar: the benchmark needs no randomness.
    let signing_key = SigningKey::from_slice(&[0x5a; 32]).unwrap();
    let verifying_key = VerifyingKey::from(&signing_key);
    let message = b"TPMS_ATTEST of a quote over PCRs 0-9";
    let signature: Signature = signing_key.sign(message);
    let mut group = c.benchmark_group("p256");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ecdsa-verify", |b| {
        b.iter(|| {
            verifying_key
                .verify(black_box(message), black_box(&signature))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, parse_and_replay, p256_verify);
criterion_main!(benches);
