//! One attestation: open the TPM, bring the firmware measurements up to date, quote PCRs 0-7
//! and the firmware PCR over the verifier's nonce, and assemble the evidence message. The TPM is
//! opened per round and closed after, so other TPM clients (and swtpm, which serves one client
//! at a time) are not locked out between rounds.

use anyhow::{Context, Result};
use std::path::PathBuf;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::ids::Nonce;
use vouch_protocol::messages::{Evidence, PcrValue};

use crate::measure;
use crate::state::{StateDir, StoredIdentity};
use crate::tpm::Tpm;

/// Boot-chain PCRs every quote covers (TCG PC Client: firmware, configuration, boot manager,
/// Secure Boot policy).
pub const BOOT_PCRS: std::ops::RangeInclusive<u8> = 0..=7;

#[derive(Debug, Clone)]
pub struct Attester {
    pub tcti: String,
    pub state: StateDir,
    pub identity: StoredIdentity,
    pub firmware: Vec<PathBuf>,
    pub firmware_pcr: u8,
}

impl Attester {
    /// The TPM's current resetCount (for `hello`).
    pub fn reset_count(&self) -> Result<u32> {
        let mut tpm = Tpm::open(&self.tcti)?;
        Ok(tpm.clock_info()?.reset_count)
    }

    /// Produces evidence answering `nonce`. Blocking: call from a blocking thread.
    pub fn evidence(&self, nonce: &Nonce) -> Result<Evidence> {
        let mut tpm = Tpm::open(&self.tcti)?;
        let clock = tpm.clock_info().context("reading the TPM clock")?;
        let log = measure::measure(
            &mut tpm,
            &self.state,
            self.firmware_pcr,
            clock.reset_count,
            &self.firmware,
        )?;
        let pcrs: Vec<u8> = BOOT_PCRS.chain([self.firmware_pcr]).collect();
        let quote = tpm
            .quote(&self.identity.ak_blobs(), nonce.as_bytes(), &pcrs)
            .context("quoting PCRs")?;
        Ok(Evidence {
            nonce: *nonce,
            attest: quote.attest.into(),
            signature: quote.signature.into(),
            pcrs: quote
                .pcrs
                .into_iter()
                .map(|(index, v)| PcrValue {
                    index,
                    value: Sha256Digest(v),
                })
                .collect(),
            firmware_pcr: self.firmware_pcr,
            firmware: log.entries,
        })
    }
}
