//! One attestation: open the TPM, bring the firmware measurements up to date, quote PCRs 0-7
//! and the firmware PCR over the verifier's nonce, and assemble the evidence message. The TPM is
//! opened per round and closed after, so other TPM clients (and swtpm, which serves one client
//! at a time) are not locked out between rounds.
//!
//! The event log goes out as a delta only while the file still begins with what was last sent
//! in this TPM boot (its length and SHA-256 are kept in the state directory); a log rewritten
//! within a boot is sent whole, so the verifier sees the rewrite and names it.
//!
//! Every round also reads the hardware inventory (`inventory`) and measures its digest as the
//! list's `vouch:inventory` entry before quoting, so the quote covers the inventory sent. A
//! round whose inventory cannot be read logs the failing file and sends none (the verifier
//! says `inventory_missing`) rather than failing the attestation.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use vouch_protocol::appraisal::{self, SentDigest};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::eventlog;
use vouch_protocol::messages::{Challenge, Evidence, PcrValue};

use crate::config::{DeviceReport, EventLogSource};
use crate::state::{StateDir, StoredIdentity};
use crate::tpm::TpmConnector;
use crate::{inventory, measure};

/// PCRs every quote covers: the boot chain (0-7: firmware, configuration, boot manager, Secure
/// Boot policy) and the boot loader's (8-9: its commands, kernel command line, files).
pub const QUOTED_PCRS: std::ops::RangeInclusive<u8> = 0..=9;

/// Largest event log the agent reads (real firmware logs are tens of KiB).
const MAX_EVENTLOG: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct Attester {
    /// The terminal's TPM: `tpm::Tcti` in `vouch-agent`, a simulated TPM in the demo.
    pub tpm: Arc<dyn TpmConnector>,
    pub state: StateDir,
    pub identity: StoredIdentity,
    pub firmware: Vec<PathBuf>,
    /// Where relative `firmware` paths are read from; `None` (what `vouch-agent` uses): the
    /// working directory. The demo runs several terminals in one process, each with its own.
    pub firmware_dir: Option<PathBuf>,
    pub firmware_pcr: u8,
    pub eventlog: EventLogSource,
    /// Where the inventory is read from and the firmware version the evidence reports.
    pub report: DeviceReport,
}

impl Attester {
    /// The firmware event log, if there is one to send.
    fn read_eventlog(&self) -> Result<Option<Vec<u8>>> {
        let path = &self.eventlog.path;
        match vouch_common::fs::read_optional(path, MAX_EVENTLOG)? {
            Some(bytes) => Ok(Some(bytes)),
            None if self.eventlog.required => {
                anyhow::bail!("event log {} does not exist", path.display())
            }
            None => Ok(None),
        }
    }

    /// Produces evidence answering `challenge`. Blocking: call from a blocking thread.
    pub fn evidence(&self, challenge: &Challenge) -> Result<Evidence> {
        let nonce = &challenge.nonce;
        let log = self.read_eventlog()?;
        // What the boot chain left in the firmware PCR (shim measures MokList into PCR 14): the
        // agent's measurements sit on top of it. A log that does not parse is still sent: the
        // verifier contraindicates it with the parser's reason.
        let start = log
            .as_deref()
            .and_then(|b| eventlog::parse(b).ok())
            .and_then(|l| appraisal::log_pcr_value(&l, self.firmware_pcr))
            .unwrap_or(Sha256Digest::ZERO);
        let _lock = self.state.lock()?;
        let mut tpm = self.tpm.open()?;
        let clock = tpm.clock_info().context("reading the TPM clock")?;
        let inventory = match inventory::collect(&self.report.sysfs_root, tpm.as_mut()) {
            Ok(inventory) => Some(inventory),
            Err(e) => {
                tracing::warn!(
                    sysfs_root = %self.report.sysfs_root.display(),
                    error = %format!("{:#}", anyhow::Error::from(e)),
                    "cannot read the hardware inventory; sending evidence without it"
                );
                None
            }
        };
        let reserved: Vec<_> = inventory.iter().map(|i| i.measurement()).collect();
        let firmware = measure::measure(
            tpm.as_mut(),
            &self.state,
            self.firmware_pcr,
            &start,
            clock.reset_count,
            (&self.firmware, self.firmware_dir.as_deref()),
            &reserved,
        )?;
        let pcrs: Vec<u8> = QUOTED_PCRS.chain([self.firmware_pcr]).collect();
        let quote = tpm
            .quote(&self.identity.ak_blobs(), nonce.as_bytes(), &pcrs)
            .context("quoting PCRs")?;
        let eventlog = match log {
            Some(bytes) => {
                let boot = clock.reset_count;
                let sent = self.state.sent_eventlog();
                let held = challenge.eventlog_held.as_ref();
                let part = SentDigest::part_for(&bytes, boot, held, sent.as_ref());
                if part.offset == 0 && held.is_some_and(|h| h.boot == boot) {
                    tracing::info!(
                        boot,
                        "event log changed since it was last sent in this boot, or was never recorded: sending it whole"
                    );
                }
                // Recorded before sending: if the send is lost, the verifier holds less than
                // recorded, the record does not match its `held`, and the next round sends whole.
                let now_sent = SentDigest::of(&bytes, boot);
                if sent != Some(now_sent) {
                    self.state.save_sent_eventlog(&now_sent)?;
                }
                Some(part)
            }
            None => None,
        };
        Ok(Evidence {
            nonce: *nonce,
            attest: quote.attest.into(),
            signature: quote.signature.into(),
            pcrs: PcrValue::from_pairs(quote.pcrs),
            firmware_pcr: self.firmware_pcr,
            firmware: firmware.entries,
            eventlog,
            firmware_version: self.report.firmware_version.clone(),
            inventory,
        })
    }
}
