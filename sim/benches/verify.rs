//! Per-evidence CPU cost of the verifier, measured on evidence from the *simulated* TPM (`vouch-sim`, a
//! stand-in for demos and benchmarks that emits byte-exact TPM structures from a software key).
//! It exists to size a deployment: how many evidence messages one core appraises per second,
//! against the 333/s that 100,000 terminals attesting every 300 s produce.
//!
//! Figures, simulator side (the cost of driving many simulated terminals): (a0) creating one
//! simulated TPM, (a) one quote, (a2) one sealed evidence message. Verifier side: (b)
//! `tpm::verify_quote` alone, (c) `appraisal::verify_evidence` on realistic evidence (9 PCRs,
//! 3 firmware entries), (d) what the engine does before that for each message: `wire::decode`,
//! the enrolled Ed25519 key, `Unverified::verify` and `open::<Evidence>()`, and (e) (d) + (c).
//!
//! Run: `cargo bench -p vouch-sim --bench verify -- --warm-up-time 1 --measurement-time 3`.

#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey as DeviceKey;
use vouch_protocol::appraisal;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Topic};
use vouch_protocol::messages::Evidence;
use vouch_protocol::tpm::{self, PcrValues, TpmPublic};
use vouch_protocol::wire;
use vouch_sim::SimTpm;

const NONCE: [u8; 32] = [0x5a; 32];
const FIRMWARE_PCR: u8 = 14;
const QUOTED: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, FIRMWARE_PCR];

/// One enrolled simulated terminal and a sealed evidence message from it.
struct Fixture {
    sim: SimTpm,
    enrollment: Enrollment,
    evidence: Evidence,
    sealed: Vec<u8>,
    topic: Topic,
    device_key: DeviceKey,
}

fn fixture() -> Fixture {
    let firmware: Vec<FirmwareEntry> = ["/fw/boot.bin", "/fw/app.bin", "/etc/terminal.conf"]
        .iter()
        .zip(1u8..)
        .map(|(path, b)| FirmwareEntry {
            path: (*path).into(),
            sha256: Some(Sha256Digest([b; 32])),
        })
        .collect();
    let mut sim = SimTpm::from_seed([1; 32]);
    for pcr in 0..=7 {
        sim.pcr_extend(pcr, &[pcr; 32]).unwrap();
    }
    sim.measure_firmware(FIRMWARE_PCR, &firmware).unwrap();

    let device: DeviceId = "terminal-00001".parse().unwrap();
    let key = DeviceKey::from_bytes(&[2; 32]);
    let request = sim.enrollment_request("T-100", &key.verifying_key());
    let enrollment = Enrollment::from_request(&wire::seal(&device, &request, &key), 0).unwrap();
    let evidence = sim
        .evidence(&Nonce::from_bytes(NONCE), &QUOTED, FIRMWARE_PCR, firmware)
        .unwrap();
    appraisal::verify_evidence(&enrollment, &evidence, None).unwrap();
    let sealed = wire::seal(&device, &evidence, &key);
    Fixture {
        sim,
        enrollment,
        evidence,
        sealed,
        topic: Topic::new(device, Kind::Evidence),
        device_key: key,
    }
}

/// (d): the engine's envelope stage for one evidence message.
fn open_envelope(f: &Fixture) -> Evidence {
    let unverified = wire::decode(&f.topic, &f.sealed, wire::DEFAULT_MAX_PAYLOAD).unwrap();
    let key = f.enrollment.device_key().unwrap();
    unverified.verify(&key).unwrap().open::<Evidence>().unwrap()
}

fn bench(c: &mut Criterion) {
    let mut f = fixture();

    c.bench_function("a0_sim_from_seed", |b| {
        b.iter(|| SimTpm::from_seed(black_box([3; 32])))
    });

    c.bench_function("a_sim_quote", |b| {
        b.iter(|| f.sim.quote(black_box(&NONCE), black_box(&QUOTED)).unwrap())
    });

    let nonce = Nonce::from_bytes(NONCE);
    c.bench_function("a2_sim_evidence_sealed", |b| {
        b.iter(|| {
            let evidence = f
                .sim
                .evidence(&nonce, &QUOTED, FIRMWARE_PCR, f.evidence.firmware.clone())
                .unwrap();
            wire::seal(&f.topic.device, &evidence, &f.device_key)
        })
    });

    let ak = TpmPublic::parse(f.enrollment.ak_public.as_slice()).unwrap();
    let mut values = PcrValues::new();
    for p in &f.evidence.pcrs {
        values
            .insert(HashAlg::Sha256, p.index, p.value.0.to_vec())
            .unwrap();
    }
    c.bench_function("b_verify_quote", |b| {
        b.iter(|| {
            tpm::verify_quote(
                black_box(&ak),
                black_box(f.evidence.attest.as_slice()),
                black_box(f.evidence.signature.as_slice()),
                black_box(&NONCE),
                black_box(&values),
            )
            .unwrap()
        })
    });

    c.bench_function("c_verify_evidence", |b| {
        b.iter(|| {
            appraisal::verify_evidence(black_box(&f.enrollment), black_box(&f.evidence), None)
                .unwrap()
        })
    });

    c.bench_function("d_envelope_decode_verify_open", |b| {
        b.iter(|| open_envelope(black_box(&f)))
    });

    c.bench_function("e_total_per_evidence", |b| {
        b.iter(|| {
            let evidence = open_envelope(black_box(&f));
            appraisal::verify_evidence(&f.enrollment, &evidence, None).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
