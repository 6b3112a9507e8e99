//! Cost per byte of refusing hostile, unauthenticated CBOR at `wire::decode`, the first thing
//! the verifier does with every MQTT payload: a 1 MB array of zeros (as the whole message and
//! as the signed body's `msg`), a body flooded with arrays that each stay within the
//! per-container limit, and deep nesting. For comparison, what building coset's value tree of
//! the same bytes (the decoder before the pre-scan) costs.
//!
//! Run: `cargo bench -p vouch-protocol --bench wire_reject -- --warm-up-time 1 --measurement-time 3`.
//! Throughput is reported in bytes per second of input; its inverse is the per-byte cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vouch_protocol::ids::{Kind, Topic};
use vouch_protocol::wire;

const MB: u32 = 1 << 20;

fn array_of_zeros(n: u32) -> Vec<u8> {
    let mut v = vec![0x9a];
    v.extend_from_slice(&n.to_be_bytes());
    v.resize(5 + n as usize, 0);
    v
}

/// A COSE_Sign1 (bogus signature: decoding never checks it) around the body
/// `{v: 1, device: "t1", kind: "hello", msg: <msg>}`.
fn sealed_with_msg(msg: &[u8]) -> Vec<u8> {
    let mut body = vec![0xa4];
    for (k, v) in [("v", None), ("device", Some("t1")), ("kind", Some("hello"))] {
        body.extend_from_slice(&wire::to_cbor(&k));
        match v {
            Some(v) => body.extend_from_slice(&wire::to_cbor(&v)),
            None => body.push(0x01),
        }
    }
    body.extend_from_slice(&wire::to_cbor(&"msg"));
    body.extend_from_slice(msg);
    CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(coset::iana::Algorithm::EdDSA)
                .build(),
        )
        .payload(body)
        .signature(vec![0; 64])
        .build()
        .to_tagged_vec()
        .unwrap()
}

fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let zeros = array_of_zeros(MB);
    let mut flood = vec![0x99, 0x01, 0x00];
    for _ in 0..256 {
        flood.extend_from_slice(&array_of_zeros(4096));
    }
    let mut deep = vec![0x81; MB as usize];
    deep.push(0);
    vec![
        ("1MB-array-of-zeros", zeros.clone()),
        ("body-msg-1MB-array-of-zeros", sealed_with_msg(&zeros)),
        ("body-msg-256-arrays-of-4096-zeros", sealed_with_msg(&flood)),
        ("body-msg-1MB-deep-nesting", sealed_with_msg(&deep)),
    ]
}

fn reject(c: &mut Criterion) {
    let topic = Topic::new("t1".parse().unwrap(), Kind::Hello);
    let max = 2 * MB as usize;
    let mut group = c.benchmark_group("wire::decode refuses");
    for (name, bytes) in hostile_inputs() {
        assert!(
            wire::decode(&topic, &bytes, max).is_err(),
            "{name} must be refused"
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(wire::decode(&topic, black_box(&bytes), max)).is_err())
        });
    }
    group.finish();

    // The old decoder's first step on the same bytes: coset builds a ciborium value tree of
    // the whole message (the body is a byte string to it, so only the outer array counts).
    let mut group = c.benchmark_group("coset value tree (before the pre-scan)");
    group.sample_size(10);
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&array_of_zeros(MB));
    group.throughput(Throughput::Bytes(tagged.len() as u64));
    group.bench_function("tagged-1MB-array-of-zeros", |b| {
        b.iter(|| coset::CoseSign1::from_tagged_slice(black_box(&tagged)).is_err())
    });
    group.finish();
}

criterion_group!(benches, reject);
criterion_main!(benches);
