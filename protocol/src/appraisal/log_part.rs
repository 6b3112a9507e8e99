//! The firmware event log as it crosses the wire: the verifier holds the log it accepted for a
//! device's current TPM boot, and the agent sends only what follows it — unless the log the
//! agent holds no longer begins with what it sent, in which case it sends the log whole.
//!
//! * Agent side, [`SentDigest`] and [`SentDigest::part_for`]: the agent remembers the length and
//!   SHA-256 of the log it last sent for a boot, and sends a delta only when the verifier holds
//!   exactly that log and the file still begins with it.
//! * Verifier side, [`assemble`]: after the envelope and nonce checks, turns the evidence's part
//!   back into the whole log and parses it. Only two outcomes are transport problems: a delta that
//!   does not fit the held log of the same boot (a race between two rounds; the verifier
//!   challenges again) and a log over the size limit. Everything else that is wrong — an
//!   unparsable `attest`, a log that does not parse, a whole log of a held boot that does not
//!   extend the held one ("log changed within a boot"), a delta for a boot the verifier holds no
//!   log of — is a [`Defect`] that makes the verdict contraindicated.

use serde::{Deserialize, Serialize};

use super::Defect;
use crate::bytes::{Bytes, Sha256Digest};
use crate::eventlog::{self, EventLog};
use crate::messages::{EventLogHeld, EventLogPart, Evidence, ReassembleError};
use crate::tpm::Attest;

/// What the agent last sent of its event log: enough to tell whether the log the verifier
/// holds is still a prefix of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentDigest {
    /// TPM resetCount of the boot the log was sent in.
    pub boot: u32,
    /// Bytes of the log sent (offset plus part).
    pub len: u64,
    /// SHA-256 of those bytes.
    pub sha256: Sha256Digest,
}

impl SentDigest {
    /// The digest of `log`, the whole log sent in TPM boot `boot`.
    pub fn of(log: &[u8], boot: u32) -> Self {
        Self {
            boot,
            len: log.len() as u64,
            sha256: Sha256Digest(crate::digest::sha256(log)),
        }
    }

    /// What to send of `log` (the terminal's whole log, in TPM boot `boot`) when the verifier
    /// says it holds `held` and the agent last sent `sent`: only the new part when the verifier
    /// holds exactly what was sent in this boot and `log` still begins with it, otherwise the
    /// whole log (offset 0), so a log rewritten within a boot reaches the verifier whole.
    pub fn part_for(
        log: &[u8],
        boot: u32,
        held: Option<&EventLogHeld>,
        sent: Option<&SentDigest>,
    ) -> EventLogPart {
        let prefix_unchanged = |h: &EventLogHeld| {
            let Some(s) = sent.filter(|s| s.boot == h.boot && s.len == h.len) else {
                return false;
            };
            usize::try_from(h.len)
                .ok()
                .and_then(|n| log.get(..n))
                .is_some_and(|p| crate::digest::sha256(p) == s.sha256.0)
        };
        match held {
            Some(h) if h.boot == boot && prefix_unchanged(h) => {
                EventLogPart::for_challenge(log, boot, Some(h))
            }
            _ => EventLogPart {
                offset: 0,
                bytes: Bytes(log.to_vec()),
            },
        }
    }
}

/// The event log of evidence, as the verifier understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentLog {
    /// The evidence carries no log.
    Absent,
    /// The whole log of this boot, and its parse.
    Parsed { bytes: Vec<u8>, log: Box<EventLog> },
    /// The log (or the structure naming its boot) is wrong.
    Defective(Defect),
}

impl SentLog {
    /// The parsed log, if there is one.
    pub fn log(&self) -> Option<&EventLog> {
        match self {
            SentLog::Parsed { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// Reassembles and parses the event log of `ev`, given the log the verifier holds for the
/// device (`held`: its TPM boot and bytes). `Err` only for a delta that does not fit the held
/// log of the same boot, or a log over `max` bytes; see the module documentation.
///
/// The boot is read from the (not yet verified) quote: a lie there only makes the log fail
/// against the quote, whose signature [`super::verify_evidence_with_log`] checks before it
/// reports any defect found here.
pub fn assemble(
    ev: &Evidence,
    held: Option<(u32, &[u8])>,
    max: usize,
) -> Result<SentLog, ReassembleError> {
    let Some(part) = &ev.eventlog else {
        return Ok(SentLog::Absent);
    };
    let boot = match Attest::parse(ev.attest.as_slice()) {
        Ok(a) => a.clock_info().reset_count,
        Err(e) => return Ok(SentLog::Defective(Defect::AttestMalformed(e.to_string()))),
    };
    let held_of_boot = held.filter(|(b, _)| *b == boot).map(|(_, bytes)| bytes);
    let bytes = match (part.offset, held_of_boot) {
        (0, Some(h)) if !part.bytes.0.starts_with(h) => {
            check_size(part.bytes.0.len(), max)?;
            return Ok(SentLog::Defective(Defect::EventLogChanged {
                boot,
                held: h.len() as u64,
            }));
        }
        (0, _) => {
            check_size(part.bytes.0.len(), max)?;
            part.bytes.0.clone()
        }
        (offset, None) => {
            return Ok(SentLog::Defective(Defect::EventLogUnknownBoot {
                boot,
                offset,
            }));
        }
        (_, Some(h)) => part.reassemble(Some((boot, h)), boot, max)?,
    };
    Ok(match eventlog::parse(&bytes) {
        Ok(log) => SentLog::Parsed {
            bytes,
            log: Box::new(log),
        },
        Err(e) => SentLog::Defective(Defect::EventLogMalformed(e.to_string())),
    })
}

fn check_size(len: usize, max: usize) -> Result<(), ReassembleError> {
    if len > max {
        return Err(ReassembleError::TooLarge { len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_is_sent_only_while_the_file_begins_with_what_was_sent() {
        let first = b"0123456789";
        let sent = SentDigest::of(first, 7);
        let held = EventLogHeld { boot: 7, len: 10 };
        let grown = b"0123456789abc";
        let p = SentDigest::part_for(grown, 7, Some(&held), Some(&sent));
        assert_eq!((p.offset, p.bytes.0.as_slice()), (10, &b"abc"[..]));
        // Rewritten within the boot, same length or longer: sent whole.
        for rewritten in [&b"0123456780"[..], b"X123456789abc"] {
            let p = SentDigest::part_for(rewritten, 7, Some(&held), Some(&sent));
            assert_eq!((p.offset, p.bytes.0.as_slice()), (0, rewritten));
        }
        // Nothing remembered, another boot, or the verifier holds something else: whole.
        let whole = |p: EventLogPart| p.offset == 0 && p.bytes.0 == grown;
        assert!(whole(SentDigest::part_for(grown, 7, Some(&held), None)));
        assert!(whole(SentDigest::part_for(
            grown,
            8,
            Some(&held),
            Some(&sent)
        )));
        let other = EventLogHeld { boot: 7, len: 4 };
        assert!(whole(SentDigest::part_for(
            grown,
            7,
            Some(&other),
            Some(&sent)
        )));
        assert!(whole(SentDigest::part_for(grown, 7, None, Some(&sent))));
    }

    /// A TPMS_ATTEST quote (sha256:0) of TPM boot `reset_count`: only its clock is read here.
    fn attest_of_boot(reset_count: u32) -> Vec<u8> {
        use crate::tpm::{PcrBank, PcrSelection};
        let mut b = Vec::new();
        b.extend_from_slice(&0xff54_4347u32.to_be_bytes());
        b.extend_from_slice(&0x8018u16.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&100u64.to_be_bytes());
        b.extend_from_slice(&reset_count.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 1]);
        b.extend_from_slice(&0u64.to_be_bytes());
        let sel = PcrSelection::new(vec![
            PcrBank::new(crate::digest::HashAlg::Sha256, [0]).expect("bank"),
        ])
        .expect("selection");
        b.extend_from_slice(&sel.to_bytes());
        b.extend_from_slice(&[0, 32]);
        b.extend_from_slice(&crate::digest::sha256(&[0; 32]));
        b
    }

    /// Review finding: two genuine rounds of one boot in flight arrive out of order while the
    /// log grew in between. The older one's whole log is a prefix of the held one, which
    /// `assemble` (knowing no clocks) reports as changed within the boot; but its quote verified,
    /// so the failure carries the quote's clock, and the applier drops it as superseded instead
    /// of quarantining a healthy terminal. A genuine quote newer than the last accepted one with
    /// a changed log, and a failure whose quote never verified, are not superseded.
    #[test]
    fn an_older_whole_log_that_the_held_log_extends_is_superseded_not_a_rewrite() {
        use crate::appraisal::{Failure, superseded};
        use crate::eventlog::build::{EV_IPL, TerminalBoot};
        use crate::tpm::ClockInfo;
        let older = TerminalBoot::default().log().bytes();
        let mut grown = TerminalBoot::default().log();
        grown.event(9, EV_IPL, b"grub_cmd: loaded later\0");
        let held = grown.bytes();
        assert!(held.starts_with(&older) && held.len() > older.len());
        let ev = Evidence {
            nonce: crate::ids::Nonce::from_bytes([7; 32]),
            attest: Bytes(attest_of_boot(5)),
            signature: Bytes(Vec::new()),
            pcrs: Vec::new(),
            firmware_pcr: 14,
            firmware: Vec::new(),
            eventlog: Some(EventLogPart {
                offset: 0,
                bytes: Bytes(older.clone()),
            }),
            firmware_version: None,
            inventory: None,
        };
        let Ok(SentLog::Defective(defect @ Defect::EventLogChanged { boot: 5, .. })) =
            assemble(&ev, Some((5, &held)), 1 << 22)
        else {
            panic!("a whole log that is not the held one is reported as changed");
        };
        let clock = |clock| ClockInfo {
            clock,
            reset_count: 5,
            restart_count: 0,
            safe: true,
        };
        let last = clock(2_000);
        let failure = |genuine_clock| {
            Err(Failure {
                claim: defect.claim(),
                reason: defect.clone(),
                genuine_clock,
            })
        };
        assert!(superseded(Some(&last), &failure(Some(clock(1_000)))));
        assert!(!superseded(Some(&last), &failure(Some(clock(3_000)))));
        assert!(!superseded(Some(&last), &failure(None)));
        assert!(!superseded(None, &failure(Some(clock(1_000)))));
    }
}
