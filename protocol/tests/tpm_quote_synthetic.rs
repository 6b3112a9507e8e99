//! Quote verification with a software P-256 key standing in for the TPM, for cases a real TPM
//! produces only by chance (an ECDSA r or AK coordinate with a leading zero byte, a high s) and
//! for a second, valid attestation key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use vouch_protocol::digest::{HashAlg, sha256};
use vouch_protocol::tpm::{
    PcrBank, PcrSelection, PcrValues, QuoteError, TpmError, TpmPublic, verify_quote,
};

/// An ECDSA/SHA-256 P-256 AK public area with tpm2_createak's attributes; with `strip`, leading
/// zero bytes of x and y are dropped as a TPM would.
fn synthetic_ak(key: &SigningKey, strip: bool) -> TpmPublic {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    let trim = |c: &[u8]| -> Vec<u8> {
        if strip {
            c.iter().copied().skip_while(|b| *b == 0).collect()
        } else {
            c.to_vec()
        }
    };
    let mut b = hex::decode("0023000b00050072000000100018000b00030010").unwrap();
    for c in [trim(&bytes[1..33]), trim(&bytes[33..65])] {
        b.extend_from_slice(&(c.len() as u16).to_be_bytes());
        b.extend_from_slice(&c);
    }
    TpmPublic::parse(&b).unwrap()
}

/// A TPMS_ATTEST quote over sha256:0 (all zeros) with the given nonce and clock.
fn synthetic_attest(nonce: &[u8], clock: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xff54_4347u32.to_be_bytes());
    b.extend_from_slice(&0x8018u16.to_be_bytes());
    b.extend_from_slice(&[0, 0]); // qualifiedSigner: empty
    b.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    b.extend_from_slice(nonce);
    b.extend_from_slice(&clock.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1]); // resetCount 1, restartCount 0, safe
    b.extend_from_slice(&0u64.to_be_bytes());
    let sel = PcrSelection::new(vec![PcrBank::new(HashAlg::Sha256, [0]).unwrap()]).unwrap();
    b.extend_from_slice(&sel.to_bytes());
    b.extend_from_slice(&[0, 32]);
    b.extend_from_slice(&sha256(&[0; 32]));
    b
}

fn tpmt_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 0x18, 0x00, 0x0b];
    for c in [r, s] {
        b.extend_from_slice(&(c.len() as u16).to_be_bytes());
        b.extend_from_slice(c);
    }
    b
}

fn zero_pcr0() -> PcrValues {
    let mut pcrs = PcrValues::new();
    pcrs.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
    pcrs
}

#[test]
fn short_r_is_left_padded_before_verifying() {
    let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let ak = synthetic_ak(&key, true);
    let nonce = [0xab; 32];
    // RFC 6979 signatures are deterministic: vary the clock until r has a leading zero byte.
    let (attest, sig) = (0u64..4096)
        .map(|clock| {
            let attest = synthetic_attest(&nonce, clock);
            let sig: p256::ecdsa::Signature = key.sign_prehash(&sha256(&attest)).unwrap();
            (attest, sig)
        })
        .find(|(_, sig)| sig.split_bytes().0[0] == 0)
        .expect("a signature with r < 2^248 within 4096 tries");
    let (r, s) = sig.split_bytes();
    // As a TPM sends it: 31 bytes of r.
    let short = tpmt_ecdsa(&r[1..], &s);
    verify_quote(&ak, &attest, &short, &nonce, &zero_pcr0()).unwrap();
    // The full-width form verifies too.
    verify_quote(&ak, &attest, &tpmt_ecdsa(&r, &s), &nonce, &zero_pcr0()).unwrap();
    // A 33-byte r is not a P-256 scalar.
    let mut long_r = vec![0];
    long_r.extend_from_slice(&r);
    assert_eq!(
        verify_quote(&ak, &attest, &tpmt_ecdsa(&long_r, &s), &nonce, &zero_pcr0()),
        Err(QuoteError::SignatureMalformed(
            TpmError::EcdsaScalarTooLong {
                scalar: "r",
                len: 33,
                max: 32
            }
        ))
    );
}

#[test]
fn high_s_signature_verifies() {
    // TPMs do not normalize s; (r, n - s) is as valid as (r, s) and must be accepted.
    let key = SigningKey::from_slice(&[0x22; 32]).unwrap();
    let ak = synthetic_ak(&key, true);
    let nonce = [0xcd; 32];
    let attest = synthetic_attest(&nonce, 1000);
    let sig: p256::ecdsa::Signature = key.sign_prehash(&sha256(&attest)).unwrap();
    let low = sig.normalize_s();
    let high = p256::ecdsa::Signature::from_scalars(low.r(), -*low.s()).unwrap();
    for sig in [low, high] {
        let (r, s) = sig.split_bytes();
        verify_quote(&ak, &attest, &tpmt_ecdsa(&r, &s), &nonce, &zero_pcr0()).unwrap();
    }
}

#[test]
fn real_quote_does_not_verify_with_another_valid_ak() {
    // Same template as the real AK, different point: only the signature check can tell.
    let other = synthetic_ak(&SigningKey::from_slice(&[0x42; 32]).unwrap(), false);
    other.check_attestation_key().unwrap();
    let nonce = hex::decode(include_str!("vectors/tpm/nonce1.hex").trim()).unwrap();
    let mut pcrs = PcrValues::new();
    for line in include_str!("vectors/tpm/quote.pcrs.txt").lines() {
        let (pcr, value) = line.split_once(' ').unwrap();
        let (bank, index) = pcr.split_once(':').unwrap();
        pcrs.insert(
            HashAlg::from_name(bank).unwrap(),
            index.parse().unwrap(),
            hex::decode(value).unwrap(),
        )
        .unwrap();
    }
    let msg = include_bytes!("vectors/tpm/quote.msg");
    let sig = include_bytes!("vectors/tpm/quote.sig");
    assert_eq!(
        verify_quote(&other, msg, sig, &nonce, &pcrs),
        Err(QuoteError::SignatureInvalid)
    );
}
