//! Tests of the simulated TPM (a demo and benchmark stand-in, see `super`): everything it emits
//! must pass vouch's own verifier exactly as a real TPM's output does, and must have the shape of
//! the swtpm test vectors.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use ed25519_dalek::SigningKey as DeviceKey;
use vouch_protocol::appraisal::{self, Policy};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::tpm::{
    self, Attest, KeyScheme, PcrValues, PublicParameters, QuoteError, SymmetricDef, TpmPublic,
};
use vouch_protocol::verdict::Status;
use vouch_protocol::wire;

use super::*;

/// The real AK and EK from swtpm (see protocol/tests/vectors/tpm/README.md).
const REAL_AK_TPMT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/vectors/tpm/ak.tpmt"
));
const REAL_QUOTE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/vectors/tpm/quote.msg"
));
const REAL_QUOTE_SIG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/vectors/tpm/quote.sig"
));
const REAL_EK_TPM2B: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/vectors/tpm/ek.pub"
));

const SEED: [u8; 32] = [7; 32];
const NONCE: [u8; 32] = [0xa5; 32];
const FIRMWARE_PCR: u8 = 14;
const QUOTED: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, FIRMWARE_PCR];

fn firmware() -> Vec<FirmwareEntry> {
    ["/fw/boot.bin", "/fw/app.bin", "/etc/terminal.conf"]
        .iter()
        .zip(1u8..)
        .map(|(path, b)| FirmwareEntry {
            path: (*path).into(),
            sha256: Some(Sha256Digest([b; 32])),
        })
        .collect()
}

/// A TPM after a simulated boot: something in PCRs 0 and 7, the firmware list in PCR 14.
fn booted(seed: [u8; 32]) -> SimTpm {
    let mut sim = SimTpm::from_seed(seed);
    sim.pcr_extend(0, &[0x11; 32]).unwrap();
    sim.pcr_extend(7, &[0x77; 32]).unwrap();
    sim.measure_firmware(FIRMWARE_PCR, &firmware()).unwrap();
    sim
}

fn pcr_values(quote: &Quote) -> PcrValues {
    let mut values = PcrValues::new();
    for (index, value) in &quote.pcrs {
        values
            .insert(HashAlg::Sha256, *index, value.to_vec())
            .unwrap();
    }
    values
}

fn enroll(sim: &SimTpm) -> Enrollment {
    let device: DeviceId = "sim-1".parse().unwrap();
    let key = DeviceKey::from_bytes(&[9; 32]);
    let request = sim.enrollment_request("SIM-100", &key.verifying_key());
    Enrollment::from_request(&wire::seal(&device, &request, &key), 1_700_000_000).unwrap()
}

#[test]
fn verifier_accepts_a_quote_and_rejects_tampering() {
    let mut sim = booted(SEED);
    let quote = sim.quote(&NONCE, &QUOTED).unwrap();
    let ak = TpmPublic::parse(&sim.ak_public()).unwrap();
    let values = pcr_values(&quote);
    let verified =
        tpm::verify_quote(&ak, &quote.attest, &quote.signature, &NONCE, &values).unwrap();
    assert_eq!(verified.firmware_version(), FIRMWARE_VERSION);
    assert!(verified.safe());

    let verify = |attest: &[u8], signature: &[u8], nonce: &[u8], values: &PcrValues| {
        tpm::verify_quote(&ak, attest, signature, nonce, values).unwrap_err()
    };
    // Any flipped bit of the signed attestation (here: the clock's low byte).
    let mut attest = quote.attest.clone();
    attest[4 + 2 + 36 + 34 + 7] ^= 1;
    assert_eq!(
        verify(&attest, &quote.signature, &NONCE, &values),
        QuoteError::SignatureInvalid
    );
    let mut signature = quote.signature.clone();
    *signature.last_mut().unwrap() ^= 1;
    assert_eq!(
        verify(&quote.attest, &signature, &NONCE, &values),
        QuoteError::SignatureInvalid
    );
    assert_eq!(
        verify(&quote.attest, &quote.signature, &[0; 32], &values),
        QuoteError::NonceMismatch
    );
    let mut other = PcrValues::new();
    for (index, value) in &quote.pcrs {
        let value = if *index == FIRMWARE_PCR {
            [0; 32]
        } else {
            *value
        };
        other
            .insert(HashAlg::Sha256, *index, value.to_vec())
            .unwrap();
    }
    assert!(matches!(
        verify(&quote.attest, &quote.signature, &NONCE, &other),
        QuoteError::PcrDigestMismatch { .. }
    ));
    // Another TPM's AK does not verify this TPM's quote.
    let stranger = TpmPublic::parse(&SimTpm::from_seed([8; 32]).ak_public()).unwrap();
    assert_eq!(
        tpm::verify_quote(&stranger, &quote.attest, &quote.signature, &NONCE, &values),
        Err(QuoteError::SignatureInvalid)
    );
}

#[test]
fn quote_fields_are_laid_out_as_a_tpm_does() {
    let mut sim = booted(SEED);
    let quote = sim.quote(&NONCE, &[14, 0, 23, 7, 0, 3]).unwrap();
    assert_eq!(&quote.attest[..6], &[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
    let attest = Attest::parse(&quote.attest).unwrap();
    assert_eq!(attest.extra_data(), &NONCE);
    assert_eq!(attest.clock_info(), sim.clock_info());
    assert_eq!(attest.clock_info().clock, QUOTE_DURATION_MS);
    let info = attest.quote_info().unwrap();
    // The selection is re-encoded identically, and lists PCRs ascending without duplicates.
    assert_eq!(info.pcr_select.to_bytes(), hex(b"00000001000b03894080"));
    let indexes: Vec<u8> = quote.pcrs.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [0, 3, 7, 14, 23]);
    let values: Vec<&[u8]> = quote.pcrs.iter().map(|(_, v)| &v[..]).collect();
    assert_eq!(
        info.pcr_digest,
        tpm::pcr_composite_digest(HashAlg::Sha256, &values)
    );
    // TPMT_SIGNATURE: ECDSA, SHA-256, two 32-byte TPM2Bs.
    assert_eq!(quote.signature.len(), 4 + 2 * (2 + 32));
    assert_eq!(&quote.signature[..6], &[0x00, 0x18, 0x00, 0x0b, 0x00, 0x20]);
}

#[test]
fn quote_matches_the_swtpm_quote_outside_its_values() {
    // quote.msg quotes sha256:0-7,14 over the nonce 00 01 .. 1f.
    let nonce: Vec<u8> = (0..32).collect();
    let quote = booted(SEED).quote(&nonce, &QUOTED).unwrap();
    assert_eq!(quote.attest.len(), REAL_QUOTE.len());
    assert_eq!(quote.signature.len(), REAL_QUOTE_SIG.len());
    assert_eq!(quote.signature[..6], REAL_QUOTE_SIG[..6]);
    // Offsets of what differs between two TPMs' quotes over the same nonce and PCRs: the signer's
    // qualified Name digest, clock/resetCount/restartCount, firmwareVersion and pcrDigest.
    let values = [8..42, 76..92, 93..101, 113..145];
    for (i, (sim, real)) in quote.attest.iter().zip(REAL_QUOTE).enumerate() {
        if !values.iter().any(|r| r.contains(&i)) {
            assert_eq!(sim, real, "byte {i}");
        }
    }
}

#[test]
fn keys_have_the_shape_of_the_swtpm_vectors() {
    let sim = SimTpm::from_seed(SEED);
    let ak = TpmPublic::parse(&sim.ak_public()).unwrap();
    ak.check_attestation_key().unwrap();
    assert_eq!(ak.attributes().0, AK_ATTRIBUTES);
    assert_eq!(ak.name().as_bytes(), sim.ak_name());
    assert_eq!(ak.p256_verifying_key().unwrap(), *sim.ak.verifying_key());

    let ek = TpmPublic::parse(&sim.ek_public()).unwrap();
    assert_eq!(ek.attributes().0, EK_ATTRIBUTES);
    assert_eq!(ek.auth_policy(), EK_POLICY_A_SHA256);
    let PublicParameters::Ecc(ecc) = ek.parameters() else {
        unreachable!("EK is not ECC")
    };
    let aes_128_cfb = SymmetricDef {
        alg: alg::AES,
        key_bits: 128,
        mode: ALG_CFB,
    };
    assert_eq!(ecc.symmetric, Some(aes_128_cfb));
    assert_eq!(ecc.scheme, KeyScheme::Null);
    assert!(ek.check_attestation_key().is_err());
    assert!(ek.p256_verifying_key().is_ok());

    // Byte for byte the real public areas, except for the two 32-byte coordinates at the end.
    let point_len = 2 * (2 + 32);
    for (sim_tpmt, real) in [
        (sim.ak_public(), REAL_AK_TPMT),
        (sim.ek_public(), &REAL_EK_TPM2B[2..]),
    ] {
        assert_eq!(sim_tpmt.len(), real.len());
        let fields = sim_tpmt.len() - point_len;
        assert_eq!(sim_tpmt[..fields], real[..fields]);
        assert_eq!(sim_tpmt[fields..fields + 2], [0, 32]);
        assert_eq!(sim_tpmt[fields + 34..fields + 36], [0, 32]);
    }
}

#[test]
fn enrollment_request_is_accepted_and_names_the_quote_signer() {
    let mut sim = booted(SEED);
    let enrollment = enroll(&sim);
    assert_eq!(enrollment.ak_public.as_slice(), sim.ak_public());
    let quote = sim.quote(&NONCE, &QUOTED).unwrap();
    let attest = Attest::parse(&quote.attest).unwrap();
    assert_eq!(
        Some(attest.qualified_signer().clone()),
        enrollment.expected_signer()
    );
}

#[test]
fn evidence_passes_appraisal_against_its_captured_policy() {
    let mut sim = booted(SEED);
    let enrollment = enroll(&sim);
    let nonce = Nonce::from_bytes(NONCE);
    let evidence = sim
        .evidence(&nonce, &QUOTED, FIRMWARE_PCR, firmware())
        .unwrap();
    let verified = appraisal::verify_evidence(&enrollment, &evidence, None).unwrap();
    assert_eq!(verified.measurements.firmware, firmware());
    let reference = verified.measurements.capture();
    assert_eq!(reference.firmware.len(), 3);
    let policy = Policy {
        values: &reference,
        id: "device:sim-1@test",
        label: "device sim-1",
    };
    let outcome = Ok(verified);
    let appraisal = appraisal::appraise(&outcome, None, Some(policy), "sim-1");
    assert_eq!(
        appraisal.status,
        Status::Affirming,
        "{:?}",
        appraisal.reasons
    );

    // A file extended behind the list's back is caught by the replay.
    sim.measure_firmware(FIRMWARE_PCR, &firmware()[..1])
        .unwrap();
    let nonce = Nonce::from_bytes([1; 32]);
    let evidence = sim
        .evidence(&nonce, &QUOTED, FIRMWARE_PCR, firmware())
        .unwrap();
    let failure = appraisal::verify_evidence(&enrollment, &evidence, None).unwrap_err();
    assert_eq!(failure.claim, appraisal::FailedClaim::Executables);
}

#[test]
fn clock_is_consistent_within_a_boot_and_across_a_reboot() {
    let mut sim = booted(SEED);
    let clock_of = |q: &Quote| Attest::parse(&q.attest).unwrap().clock_info();
    let first = clock_of(&sim.quote(&NONCE, &QUOTED).unwrap());
    let second = clock_of(&sim.quote(&NONCE, &QUOTED).unwrap());
    tpm::clock_consistent(&first, &second).unwrap();
    assert!(tpm::clock_consistent(&second, &first).is_err());

    sim.advance_clock(60_000);
    sim.reboot();
    assert_eq!(sim.pcr(FIRMWARE_PCR).unwrap(), [0; 32]);
    let rebooted = clock_of(&sim.quote(&NONCE, &QUOTED).unwrap());
    assert_eq!(rebooted.reset_count, second.reset_count + 1);
    assert_eq!(rebooted.restart_count, 0);
    assert!(rebooted.safe && rebooted.clock > second.clock + 60_000);
    tpm::clock_consistent(&second, &rebooted).unwrap();
    assert!(tpm::clock_consistent(&rebooted, &second).is_err());
}

#[test]
fn keys_and_quotes_are_deterministic_per_seed() {
    let (mut a, mut b) = (booted(SEED), booted(SEED));
    assert_eq!(a.ek_public(), b.ek_public());
    assert_eq!(a.ak_public(), b.ak_public());
    assert_eq!(a.quote(&NONCE, &QUOTED), b.quote(&NONCE, &QUOTED));

    let c = SimTpm::from_seed([8; 32]);
    assert_ne!(a.ak_name(), c.ak_name());
    assert_ne!(a.ek_public(), c.ek_public());
    // The EK and AK of one seed are unrelated keys.
    assert_ne!(
        a.ek_public()[a.ek_public().len() - 68..],
        a.ak_public()[a.ak_public().len() - 68..]
    );
}

#[test]
fn pcrs_extend_and_reset_like_a_pc_client_tpm() {
    let mut sim = SimTpm::from_seed(SEED);
    assert_eq!(sim.pcr(16).unwrap(), [0; 32]);
    assert_eq!(sim.pcr(17).unwrap(), [0xff; 32]);
    assert_eq!(sim.pcr(22).unwrap(), [0xff; 32]);
    assert_eq!(sim.pcr(23).unwrap(), [0; 32]);
    sim.pcr_extend(23, &[1; 32]).unwrap();
    let mut concat = [0u8; 64];
    concat[32..].fill(1);
    assert_eq!(
        sim.pcr(23).unwrap(),
        <[u8; 32]>::from(Sha256::digest(concat))
    );
    assert_eq!(sim.pcr(24), Err(SimError::InvalidPcr { pcr: 24 }));
    assert_eq!(
        sim.pcr_extend(24, &[0; 32]),
        Err(SimError::InvalidPcr { pcr: 24 })
    );
}

#[test]
fn bad_quote_arguments_are_refused_without_advancing_the_clock() {
    let mut sim = SimTpm::from_seed(SEED);
    assert_eq!(
        sim.quote(&NONCE, &[0, 24]),
        Err(SimError::InvalidPcr { pcr: 24 })
    );
    assert_eq!(
        sim.quote(&[0; 67], &[0]),
        Err(SimError::NonceTooLong { len: 67, max: 66 })
    );
    assert_eq!(sim.clock_info().clock, 0);
    // The largest qualifying data a TPM2B_DATA holds still parses.
    let quote = sim.quote(&[3; 66], &[0]).unwrap();
    assert_eq!(Attest::parse(&quote.attest).unwrap().extra_data(), &[3; 66]);
}

#[test]
fn debug_shows_no_key_material() {
    let sim = SimTpm::from_seed(SEED);
    let shown = format!("{sim:?}");
    let secret = format!(
        "{:?}",
        Hex(&derive_key(&SEED, b"attestation key").to_bytes())
    );
    assert!(!shown.contains(&secret));
    assert!(
        shown.contains(&format!("{:?}", Hex(&sim.ak_name()))),
        "{shown}"
    );
}

fn hex(s: &[u8]) -> Vec<u8> {
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}
