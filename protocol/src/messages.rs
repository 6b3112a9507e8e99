//! The body of every v1 message kind. Field names are the CBOR map keys; unknown fields are
//! rejected so a message cannot smuggle data past a verifier that does not understand it.
//! Times are Unix seconds; `seq` numbers order verifier messages for the agent.

use serde::{Deserialize, Serialize};

use crate::bytes::{Bytes, Sha256Digest};
use crate::firmware::FirmwareEntry;
use crate::ids::{Kind, Nonce};
use crate::inventory::Inventory;
use crate::verdict::Verdict;
use crate::wire::Message;

/// Agent → verifier at every (re)connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub agent_version: String,
    pub model: String,
    /// The TPM's resetCount as the agent last read it (informational; the quote carries the
    /// authoritative value).
    pub reset_count: u32,
    /// Random id the verifier echoes in the challenge it sends back, so that only the agent
    /// process that asked answers it (not, say, a restarted agent answering its predecessor's).
    pub request: u64,
    /// The device's freshness counter: strictly greater than that of every hello or status
    /// the device sent before (see [`crate::nonce::next_counter`]). The verifier ignores a
    /// hello or status whose counter is not greater than the highest it accepted, so a copy
    /// costs it no challenge and no rate limit.
    pub counter: u64,
}

impl Message for Hello {
    const KIND: Kind = Kind::Hello;
}

/// Agent → verifier every `--interval`: the agent's view, and a request for a fresh challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub quarantined: bool,
    /// `seq` of the newest verdict the agent accepted, if any.
    pub last_verdict_seq: Option<u64>,
    /// As in [`Hello::request`].
    pub request: u64,
    /// As in [`Hello::counter`]; hello and status share the one counter.
    pub counter: u64,
}

impl Message for StatusReport {
    const KIND: Kind = Kind::Status;
}

/// Verifier → agent: quote over this nonce before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub nonce: Nonce,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The `request` of the hello/status this answers; 0 when the verifier challenges on its own
    /// (after a release or a policy change), which only a daemon answers.
    pub request: u64,
    /// The firmware event log the verifier already holds for this device, if any: the agent
    /// sends only what follows it when it is of the same TPM boot, and the whole log otherwise.
    /// `None` asks for the whole log.
    pub eventlog_held: Option<EventLogHeld>,
}

/// How much of a device's event log the verifier holds, and of which TPM boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogHeld {
    /// TPM resetCount of the boot the log belongs to.
    pub boot: u32,
    /// Bytes of the log held.
    pub len: u64,
}

/// The firmware event log, or the part of it the verifier does not hold yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogPart {
    /// Where `bytes` start in the log: 0 for the whole log, otherwise the `len` of the
    /// challenge's `eventlog_held`.
    pub offset: u64,
    pub bytes: Bytes,
}

/// Why an event-log part cannot be turned back into the whole log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassembleError {
    #[error("event log part at offset {offset} does not continue the log held for this boot")]
    Gap { offset: u64 },
    #[error("event log of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
}

impl EventLogPart {
    /// The whole log: this part alone at offset 0; otherwise `held` (the log the verifier
    /// stored, with its boot) followed by this part, provided `held` is of `boot` (the quote's)
    /// and exactly `offset` bytes long.
    pub fn reassemble(
        &self,
        held: Option<(u32, &[u8])>,
        boot: u32,
        max: usize,
    ) -> Result<Vec<u8>, ReassembleError> {
        let gap = ReassembleError::Gap {
            offset: self.offset,
        };
        let prefix: &[u8] = match (self.offset, held) {
            (0, _) => &[],
            (offset, Some((held_boot, bytes)))
                if held_boot == boot && bytes.len() as u64 == offset =>
            {
                bytes
            }
            _ => return Err(gap),
        };
        let len = prefix.len().saturating_add(self.bytes.0.len());
        if len > max {
            return Err(ReassembleError::TooLarge { len, max });
        }
        let mut full = Vec::with_capacity(len);
        full.extend_from_slice(prefix);
        full.extend_from_slice(&self.bytes.0);
        Ok(full)
    }

    /// What to send for `log` (the terminal's whole log, of TPM boot `boot`) given what the
    /// verifier says it holds.
    pub fn for_challenge(log: &[u8], boot: u32, held: Option<&EventLogHeld>) -> Self {
        let offset = match held {
            Some(h) if h.boot == boot && usize::try_from(h.len).is_ok_and(|n| n <= log.len()) => {
                h.len
            }
            _ => 0,
        };
        let start = usize::try_from(offset).unwrap_or(0);
        Self {
            offset,
            bytes: Bytes(log.get(start..).unwrap_or_default().to_vec()),
        }
    }
}

impl Message for Challenge {
    const KIND: Kind = Kind::Challenge;
}

/// One sha256 PCR value covered by a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrValue {
    pub index: u8,
    pub value: Sha256Digest,
}

impl PcrValue {
    /// PCR values in the form TPM layers return them: (index, sha256 value) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u8, [u8; 32])>) -> Vec<PcrValue> {
        pairs
            .into_iter()
            .map(|(index, v)| PcrValue {
                index,
                value: Sha256Digest(v),
            })
            .collect()
    }
}

/// Agent → verifier: the answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The challenge nonce this evidence answers; the quote's extraData must equal it.
    pub nonce: Nonce,
    /// TPMS_ATTEST exactly as the TPM produced it (the signed bytes).
    pub attest: Bytes,
    /// TPMT_SIGNATURE over `attest` by the attestation key.
    pub signature: Bytes,
    /// The sha256-bank PCR values the quote covers, ascending by index.
    pub pcrs: Vec<PcrValue>,
    /// The PCR the agent extends its firmware measurements into (default 14).
    pub firmware_pcr: u8,
    /// The firmware measurement list of this TPM boot, in extend order.
    pub firmware: Vec<FirmwareEntry>,
    /// The firmware's TCG event log (`None` when the terminal has none to send).
    pub eventlog: Option<EventLogPart>,
    /// The firmware version the terminal reports (its config): which vendor reference bundle
    /// governs it. Absent from agents older than vendor provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// The hardware inventory now, whose digest the agent measured into `firmware_pcr` as the
    /// newest `vouch:inventory` entry of `firmware` (see [`crate::inventory`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

impl Message for Evidence {
    const KIND: Kind = Kind::Evidence;
}

impl Message for Verdict {
    const KIND: Kind = Kind::Verdict;
}

/// What a verifier command asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CmdAction {
    /// The terminal is cut off; the agent records it and reports it in `status`.
    Quarantine { reason: String },
    /// An operator released the terminal; the agent must re-attest, and is trusted only when
    /// that attestation passes.
    Release { reason: String },
    /// Attest now (ask for a challenge).
    Attest,
}

/// Verifier → agent: a command, ordered by `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cmd {
    pub seq: u64,
    pub issued_at: u64,
    pub action: CmdAction,
}

impl Message for Cmd {
    const KIND: Kind = Kind::Cmd;
}

/// Agent → operator → verifier (HTTP API, not MQTT): what the verifier needs to enroll a
/// terminal. Signed by the device key it carries, which proves possession of that key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    pub model: String,
    /// TPMT_PUBLIC of the endorsement key.
    pub ek_public: Bytes,
    /// DER EK certificate from the TPM's NV storage, when it has one.
    pub ek_certificate: Option<Bytes>,
    /// TPMT_PUBLIC of the attestation key.
    pub ak_public: Bytes,
    /// TPM Name of the AK (nameAlg || H(TPMT_PUBLIC)).
    pub ak_name: Bytes,
    /// Ed25519 public key that signs the agent's messages.
    pub device_key: Bytes,
    /// Mosquitto password-file hash (`$7$` PBKDF2-SHA512) of the terminal's MQTT password: the
    /// verifier adds `device_id:hash` to its broker's password file. Only the hash is carried;
    /// the password stays on the terminal.
    pub mqtt_password_hash: String,
    /// The firmware version the terminal reports (its config), for the vendor's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// The hardware inventory at enrollment, for the vendor's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

impl Message for EnrollmentRequest {
    const KIND: Kind = Kind::Enroll;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{from_cbor_exact, to_cbor};

    #[test]
    fn cmd_round_trips_with_a_typed_action() {
        let c = Cmd {
            seq: 7,
            issued_at: 1_700_000_000,
            action: CmdAction::Quarantine {
                reason: "firmware changed".into(),
            },
        };
        let bytes = to_cbor(&c);
        let back: Cmd = from_cbor_exact(&bytes).unwrap();
        assert_eq!(back, c);
        let v: ciborium::Value = from_cbor_exact(&bytes).unwrap();
        let action = v
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("action"))
            .unwrap()
            .1
            .as_map()
            .unwrap();
        assert!(
            action
                .iter()
                .any(|(k, v)| k.as_text() == Some("type") && v.as_text() == Some("quarantine"))
        );
    }

    #[test]
    fn only_the_unheld_part_of_the_same_boots_log_is_sent() {
        let log = b"0123456789";
        let full = EventLogPart::for_challenge(log, 3, None);
        assert_eq!((full.offset, full.bytes.0.len()), (0, 10));
        let held = EventLogHeld { boot: 3, len: 6 };
        let tail = EventLogPart::for_challenge(log, 3, Some(&held));
        assert_eq!((tail.offset, tail.bytes.0.as_slice()), (6, &b"6789"[..]));
        let other_boot = EventLogPart::for_challenge(log, 4, Some(&held));
        assert_eq!(other_boot.offset, 0);
        let longer_than_log = EventLogHeld { boot: 3, len: 11 };
        assert_eq!(
            EventLogPart::for_challenge(log, 3, Some(&longer_than_log)).offset,
            0
        );
    }

    #[test]
    fn parts_reassemble_only_onto_the_same_boots_log() {
        let part = |offset: u64, b: &[u8]| EventLogPart {
            offset,
            bytes: Bytes(b.to_vec()),
        };
        assert_eq!(part(0, b"abc").reassemble(None, 1, 10).unwrap(), b"abc");
        assert_eq!(
            part(3, b"de").reassemble(Some((1, b"abc")), 1, 10).unwrap(),
            b"abcde"
        );
        let gap =
            |r: Result<Vec<u8>, ReassembleError>| matches!(r, Err(ReassembleError::Gap { .. }));
        assert!(
            gap(part(3, b"de").reassemble(Some((2, b"abc")), 1, 10)),
            "other boot"
        );
        assert!(
            gap(part(2, b"de").reassemble(Some((1, b"abc")), 1, 10)),
            "wrong offset"
        );
        assert!(gap(part(3, b"de").reassemble(None, 1, 10)), "nothing held");
        assert!(matches!(
            part(3, b"defghijk").reassemble(Some((1, b"abc")), 1, 10),
            Err(ReassembleError::TooLarge { len: 11, max: 10 })
        ));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        #[derive(Serialize)]
        struct Extra {
            quarantined: bool,
            last_verdict_seq: Option<u64>,
            request: u64,
            counter: u64,
            smuggled: u8,
        }
        let bytes = to_cbor(&Extra {
            quarantined: false,
            last_verdict_seq: None,
            request: 1,
            counter: 1,
            smuggled: 1,
        });
        assert!(from_cbor_exact::<StatusReport>(&bytes).is_err());
    }

    #[test]
    fn hello_and_status_without_a_counter_are_refused() {
        #[derive(Serialize)]
        struct OldStatus {
            quarantined: bool,
            last_verdict_seq: Option<u64>,
            request: u64,
        }
        let bytes = to_cbor(&OldStatus {
            quarantined: false,
            last_verdict_seq: None,
            request: 1,
        });
        assert!(from_cbor_exact::<StatusReport>(&bytes).is_err());
        #[derive(Serialize)]
        struct OldHello {
            agent_version: String,
            model: String,
            reset_count: u32,
            request: u64,
        }
        let bytes = to_cbor(&OldHello {
            agent_version: "0.1.0".into(),
            model: "T".into(),
            reset_count: 0,
            request: 1,
        });
        assert!(from_cbor_exact::<Hello>(&bytes).is_err());
    }
}
