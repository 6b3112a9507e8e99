//! End-to-end tests of the agent's TPM layer against a private swtpm per
//! test (see `common`). The quote bytes are checked by hand-parsing
//! TPMS_ATTEST and TPMT_SIGNATURE and by tpm2-tools' `tpm2_checkquote`, which
//! verifies the ECDSA signature with the AK public and the nonce without
//! involving the TPM.

mod common;

use std::process::Command;
use std::time::Instant;

use vouch_agent::tpm::{AkBlobs, Tpm, TpmError};

use common::{Reader, Swtpm, ecc_public_point, parse_quote_attest, sha256, timed};
use vouch_test_kit::process::assert_success;

const QUOTE_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 14];

#[test]
fn open_reports_bad_tcti_and_absent_tpm() {
    let e = Tpm::open("nonsense:whatever").expect_err("bad TCTI");
    assert!(matches!(e, TpmError::Tcti { .. }), "{e:?}");
    // Port 1 on loopback: nothing listens there.
    let e = Tpm::open("swtpm:host=127.0.0.1,port=1").expect_err("no TPM");
    assert!(matches!(e, TpmError::Open(_)), "{e:?}");
}

#[test]
fn tpm_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Tpm>();
}

#[test]
fn identity_is_stable_across_calls_and_reopen() {
    let swtpm = Swtpm::start();
    let mut tpm = swtpm.open();
    let ((created, blobs), t_create) = timed(|| tpm.load_or_create_identity(None).expect("create"));
    let ((loaded, blobs_again), t_load) =
        timed(|| tpm.load_or_create_identity(Some(&blobs)).expect("load"));
    eprintln!("identity: create EK+AK {t_create:?}, re-derive EK + load AK {t_load:?}");
    assert_eq!(created, loaded);
    assert_eq!(blobs, blobs_again);

    // Formats: TPMT_PUBLIC without size prefix, SHA-256 name algorithm.
    assert_eq!(&created.ak_public[..4], &[0x00, 0x23, 0x00, 0x0b]);
    assert_eq!(&created.ek_public[..4], &[0x00, 0x23, 0x00, 0x0b]);
    assert_eq!(blobs.public, created.ak_public);
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&sha256(&created.ak_public));
    assert_eq!(created.ak_name, name);
    let (x, y) = ecc_public_point(&created.ek_public);
    assert_eq!((x.len(), y.len()), (32, 32), "ECC P-256 EK");
    assert_eq!(
        created.ek_certificate, None,
        "plain swtpm has no EK certificate"
    );

    // A second AK differs, the EK does not.
    let (other, other_blobs) = tpm.load_or_create_identity(None).expect("create second");
    assert_eq!(other.ek_public, created.ek_public);
    assert_ne!(other.ak_public, created.ak_public);
    assert_ne!(other_blobs.private, blobs.private);

    // Same TPM state and blobs after closing and reopening: same identity.
    drop(tpm);
    let mut tpm = swtpm.open();
    let (reopened, _) = tpm.load_or_create_identity(Some(&blobs)).expect("reload");
    assert_eq!(reopened, created);
    // And after a TPM reset.
    drop(tpm);
    swtpm.reboot();
    let (rebooted, _) = swtpm
        .open()
        .load_or_create_identity(Some(&blobs))
        .expect("reload after reboot");
    assert_eq!(rebooted, created);
}

#[test]
fn quote_parses_and_verifies_with_tpm2_checkquote() {
    let swtpm = Swtpm::start();
    let mut tpm = swtpm.open();
    let (identity, blobs) = tpm.load_or_create_identity(None).expect("identity");
    tpm.pcr_extend(14, &sha256(b"firmware manifest"))
        .expect("extend 14");
    tpm.pcr_extend(3, &sha256(b"something else"))
        .expect("extend 3");
    let nonce = sha256(b"verifier challenge");

    // Unsorted, duplicated input is normalised.
    let (quote, t_quote) = timed(|| {
        tpm.quote(&blobs, &nonce, &[14, 7, 6, 5, 4, 3, 2, 1, 0, 14])
            .expect("quote")
    });
    eprintln!(
        "quote (EK derive + AK load + PCR read + TPM2_Quote): {t_quote:?}; attest {} bytes, signature {} bytes",
        quote.attest.len(),
        quote.signature.len()
    );
    assert_eq!(
        quote.pcrs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        QUOTE_PCRS
    );
    assert_eq!(quote.pcrs, tpm.pcr_read(&QUOTE_PCRS).expect("pcr_read"));
    assert_ne!(quote.pcrs[3].1, [0; 32]);

    let parsed = parse_quote_attest(&quote.attest);
    assert_eq!(parsed.extra_data, nonce);
    // sha256 bank, sizeofSelect 3, PCRs 0-7 and 14.
    assert_eq!(parsed.selections, vec![(0x000b, vec![0xff, 0x40, 0x00])]);
    let concatenated: Vec<u8> = quote.pcrs.iter().flat_map(|(_, v)| *v).collect();
    assert_eq!(parsed.pcr_digest, sha256(&concatenated));
    // The AK is in the endorsement hierarchy, so clockInfo is not obfuscated.
    assert_eq!(
        parsed.reset_count,
        tpm.clock_info().expect("clock").reset_count
    );

    // TPMT_SIGNATURE: ECDSA, SHA-256, r and s of 32 bytes.
    let mut sig = Reader(&quote.signature);
    assert_eq!((sig.u16(), sig.u16()), (0x0018, 0x000b));
    assert_eq!((sig.tpm2b().len(), sig.tpm2b().len()), (32, 32));
    assert!(sig.0.is_empty());

    // Independent verification: tpm2_checkquote wants the AK as a TSS
    // TPM2B_PUBLIC (size-prefixed), the TPMS_ATTEST and the TPMT_SIGNATURE.
    drop(tpm);
    let mut ak_pub = (identity.ak_public.len() as u16).to_be_bytes().to_vec();
    ak_pub.extend_from_slice(&identity.ak_public);
    let files = [
        ("ak.pub", &ak_pub),
        ("quote.msg", &quote.attest),
        ("quote.sig", &quote.signature),
    ];
    for (name, bytes) in files {
        std::fs::write(swtpm.path(name), bytes).expect("write");
    }
    let check = |nonce_hex: &str| {
        Command::new("tpm2_checkquote")
            .arg("-u")
            .arg(swtpm.path("ak.pub"))
            .arg("-m")
            .arg(swtpm.path("quote.msg"))
            .arg("-s")
            .arg(swtpm.path("quote.sig"))
            .args(["-g", "sha256", "-q", nonce_hex])
            .output()
            .expect("run tpm2_checkquote")
    };
    assert_success("tpm2_checkquote", &check(&hex::encode(nonce)));
    assert!(
        !check(&hex::encode(sha256(b"other nonce"))).status.success(),
        "tpm2_checkquote must reject a wrong nonce"
    );
    let mut tampered = quote.attest.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(swtpm.path("quote.msg"), &tampered).expect("write");
    assert!(
        !check(&hex::encode(nonce)).status.success(),
        "tpm2_checkquote must reject a tampered attest"
    );
}

#[test]
fn pcr_extend_changes_pcr_read() {
    let swtpm = Swtpm::start();
    let mut tpm = swtpm.open();
    let digest = sha256(b"event");
    let before = tpm.pcr_read(&[16, 14]).expect("read");
    assert_eq!(before.len(), 2);
    tpm.pcr_extend(14, &digest).expect("extend");
    let after = tpm.pcr_read(&[14, 16]).expect("read");
    let mut expected = before[0].1.to_vec();
    expected.extend_from_slice(&digest);
    assert_eq!(after[0], (14, sha256(&expected)));
    assert_eq!(after[1], before[1], "PCR 16 untouched");

    // More than eight PCRs take several TPM2_PCR_Read calls.
    let all: Vec<u8> = (0..24).collect();
    let values = tpm.pcr_read(&all).expect("read all");
    assert_eq!(values.iter().map(|(i, _)| *i).collect::<Vec<_>>(), all);
    assert_eq!(values[14], after[0]);
    assert!(tpm.pcr_read(&[]).expect("empty").is_empty());
}

#[test]
fn many_quotes_and_error_paths_do_not_leak_slots() {
    let swtpm = Swtpm::start();
    let mut tpm = swtpm.open();
    let (identity, blobs) = tpm.load_or_create_identity(None).expect("identity");
    let (_, other) = tpm.load_or_create_identity(None).expect("second AK");
    let nonce = [7u8; 32];

    let mut corrupted = blobs.clone();
    let mid = corrupted.private.len() / 2;
    corrupted.private[mid] ^= 0x55;
    let mismatched = AkBlobs {
        private: other.private.clone(),
        public: blobs.public.clone(),
    };
    let garbage = AkBlobs {
        private: blobs.private.clone(),
        public: vec![0x00, 0x23, 0x00],
    };
    let mut trailing = blobs.clone();
    trailing.public.push(0);

    // swtpm has three transient slots: leaking on any of these, repeated
    // five times, would make the quotes below fail with 0x902.
    for _ in 0..5 {
        let e = tpm.quote(&blobs, &nonce, &[0, 30]).expect_err("pcr 30");
        assert!(
            matches!(e, TpmError::InvalidPcr { pcr: 30, count: 24 }),
            "{e:?}"
        );
        let e = tpm
            .quote(&corrupted, &nonce, &QUOTE_PCRS)
            .expect_err("corrupted");
        assert!(matches!(e, TpmError::LoadAk(_)), "{e:?}");
        let e = tpm
            .quote(&mismatched, &nonce, &QUOTE_PCRS)
            .expect_err("mismatched");
        assert!(matches!(e, TpmError::LoadAk(_)), "{e:?}");
        let e = tpm
            .load_or_create_identity(Some(&corrupted))
            .expect_err("id");
        assert!(matches!(e, TpmError::LoadAk(_)), "{e:?}");
        let e = tpm
            .quote(&garbage, &nonce, &QUOTE_PCRS)
            .expect_err("garbage");
        assert!(matches!(e, TpmError::InvalidAkBlobs(_)), "{e:?}");
        let e = tpm
            .quote(&trailing, &nonce, &QUOTE_PCRS)
            .expect_err("trailing");
        assert!(matches!(e, TpmError::InvalidAkBlobs(_)), "{e:?}");
        let ek_as_ak = AkBlobs {
            private: blobs.private.clone(),
            public: identity.ek_public.clone(),
        };
        let e = tpm
            .quote(&ek_as_ak, &nonce, &QUOTE_PCRS)
            .expect_err("EK as AK");
        assert!(matches!(e, TpmError::UnexpectedAk(_)), "{e:?}");
        let e = tpm.quote(&blobs, &[0; 65], &QUOTE_PCRS).expect_err("nonce");
        assert!(
            matches!(e, TpmError::NonceTooLong { len: 65, max: 64 }),
            "{e:?}"
        );
        let e = tpm.pcr_read(&[30]).expect_err("read 30");
        assert!(matches!(e, TpmError::InvalidPcr { pcr: 30, .. }), "{e:?}");
        let e = tpm.pcr_extend(24, &[0; 32]).expect_err("extend 24");
        assert!(matches!(e, TpmError::InvalidPcr { pcr: 24, .. }), "{e:?}");
    }
    // A TPM-side rejection with no object loaded: PCR 17 is locality 4 only.
    let e = tpm.pcr_extend(17, &[0; 32]).expect_err("extend 17");
    assert!(matches!(e, TpmError::PcrExtend { pcr: 17, .. }), "{e:?}");

    let start = Instant::now();
    for i in 0..50u8 {
        tpm.pcr_extend(23, &[i; 32]).expect("extend");
        let quote = tpm.quote(&blobs, &[i; 16], &QUOTE_PCRS).expect("quote");
        assert_eq!(parse_quote_attest(&quote.attest).extra_data, [i; 16]);
    }
    let per_quote = start.elapsed() / 50;
    eprintln!("50 x (PCR extend + quote): {per_quote:?} per iteration");

    // Still healthy: identity reload and 64-byte nonce.
    let (again, _) = tpm.load_or_create_identity(Some(&blobs)).expect("reload");
    assert_eq!(again, identity);
    tpm.quote(&blobs, &[1; 64], &[])
        .expect("64-byte nonce, no PCRs");
}

#[test]
fn reboot_increments_reset_count_and_clears_pcrs() {
    let swtpm = Swtpm::start();
    let mut tpm = swtpm.open();
    let (before, t_clock) = timed(|| tpm.clock_info().expect("clock"));
    eprintln!("clock_info: {t_clock:?} -> {before:?}");
    tpm.pcr_extend(14, &sha256(b"boot 1")).expect("extend");
    assert_ne!(tpm.pcr_read(&[14]).expect("read")[0].1, [0; 32]);
    drop(tpm);

    // Matches TPM2_ReadClock as tpm2-tools reports it.
    let out = swtpm.tpm2("tpm2_readclock", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("reset_count: {}", before.reset_count)),
        "{text}"
    );

    swtpm.reboot();
    let mut tpm = swtpm.open();
    let after = tpm.clock_info().expect("clock");
    assert_eq!(
        after.reset_count,
        before.reset_count + 1,
        "{before:?} {after:?}"
    );
    assert_eq!(after.restart_count, 0);
    assert_eq!(tpm.pcr_read(&[14]).expect("read")[0].1, [0; 32]);
    // Same connection, no reboot: stays put.
    assert_eq!(
        tpm.clock_info().expect("clock").reset_count,
        after.reset_count
    );
}

#[test]
fn ek_certificate_found_when_provisioned() {
    let swtpm = Swtpm::start_provisioned();
    let mut tpm = swtpm.open();
    let ((identity, blobs), t_create) =
        timed(|| tpm.load_or_create_identity(None).expect("identity"));
    eprintln!("identity with P-384 EK + certificate: {t_create:?}");
    let cert = identity.ek_certificate.as_ref().expect("EK certificate");
    assert_eq!(cert[0], 0x30, "DER SEQUENCE");

    // swtpm_setup certifies a P-384 EK; the agent derived exactly that key.
    let (x, y) = ecc_public_point(&identity.ek_public);
    assert_eq!((x.len(), y.len()), (48, 48), "ECC P-384 EK");
    let mut point = vec![0x04];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    assert!(
        cert.windows(point.len()).any(|w| w == point.as_slice()),
        "certificate does not contain the EK public key"
    );

    // The AK under the P-384 EK works and reloads.
    let quote = tpm.quote(&blobs, b"nonce", &QUOTE_PCRS).expect("quote");
    assert_eq!(parse_quote_attest(&quote.attest).extra_data, b"nonce");
    drop(tpm);
    let (reloaded, _) = swtpm
        .open()
        .load_or_create_identity(Some(&blobs))
        .expect("reload");
    assert_eq!(reloaded, identity);
}

#[test]
fn ek_certificate_prefers_p256_index() {
    // Add a P-256 EK "certificate" (any bytes, longer than one NV read
    // chunk) next to swtpm_setup's P-384 one: the agent must switch to the
    // P-256 EK and return exactly those bytes.
    let swtpm = Swtpm::start_provisioned();
    let fake: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(swtpm.path("fake.der"), &fake).expect("write");
    let size = fake.len().to_string();
    swtpm.tpm2(
        "tpm2_nvdefine",
        &[
            "0x01c0000a",
            "-C",
            "o",
            "-s",
            &size,
            "-a",
            "ownerwrite|ownerread|authread|authwrite|no_da",
        ],
    );
    let fake_path = swtpm.path("fake.der");
    let fake_path = fake_path.to_str().expect("utf-8 path");
    swtpm.tpm2("tpm2_nvwrite", &["0x01c0000a", "-C", "o", "-i", fake_path]);

    let mut tpm = swtpm.open();
    let (identity, blobs) = tpm.load_or_create_identity(None).expect("identity");
    assert_eq!(identity.ek_certificate.as_deref(), Some(fake.as_slice()));
    let (x, y) = ecc_public_point(&identity.ek_public);
    assert_eq!((x.len(), y.len()), (32, 32), "ECC P-256 EK");
    tpm.quote(&blobs, b"nonce", &QUOTE_PCRS).expect("quote");
}
