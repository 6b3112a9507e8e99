//! Fuzz target: arbitrary bytes as each TPM structure the verifier parses by hand (TPMS_ATTEST,
//! TPMT_PUBLIC, TPM2B_PUBLIC, TPMT_SIGNATURE, TPML_PCR_SELECTION), plus the checks and
//! conversions run on a successful parse. None of it may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::tpm::{Attest, PcrSelection, Signature, TpmPublic};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Attest::parse(data) {
        let _ = a.clock_info();
        let _ = a.quote_info();
    }
    for public in [TpmPublic::parse(data), TpmPublic::from_tpm2b(data)]
        .into_iter()
        .flatten()
    {
        let _ = public.name();
        let _ = public.check_vouch_attestation_key();
        let _ = public.p256_verifying_key();
        let _ = public.to_tpm2b_bytes();
    }
    if let Ok(s) = Signature::parse(data) {
        let _ = s.to_p256();
    }
    if let Ok(sel) = PcrSelection::parse(data) {
        let _ = sel.to_bytes();
        let _ = sel.pcrs().count();
    }
});
