//! The TCG measured-boot event log: a parser for the legacy SHA-1 (`TCG_PCR_EVENT`) and the
//! crypto-agile (`TCG_PCR_EVENT2`, "Spec ID Event03") formats, a replayer that recomputes the
//! PCR values the log implies, typed decoding of the event data firmware and boot loaders
//! record, a classifier for policy, and a report for humans.
//!
//! Everything here is pure: bytes in, values out, no I/O.
//!
//! # Parsing rules
//!
//! * The format is decided by the first record: a legacy-format `EV_NO_ACTION` record whose data
//!   starts with `"Spec ID Event03\0"` makes a crypto-agile log (and must be in PCR 0); anything
//!   else is read as a legacy SHA-1 log.
//! * Every length is checked against the bytes left before anything is sliced or allocated; a
//!   failure is an [`EventLogError`] naming the event index, byte offset and the check.
//! * A crypto-agile event may carry digests for a subset of the declared algorithms (the spec
//!   says it carries all of them, but firmware and tools in the wild omit some); digests for an
//!   undeclared algorithm, two digests for one algorithm or more digests than declared
//!   algorithms are errors. [`Replay`] refuses to compute a PCR that an event left without a
//!   digest for its bank (see [`Replay::unreplayable`]).
//! * An algorithm the Spec ID event declares but [`HashAlg`] does not know is framed with the
//!   declared digest size and kept as [`DigestAlg::Unknown`]; it is not replayed.
//! * Trailing bytes that are all zero after the last complete event are padding (some firmware
//!   hands over its whole log buffer) and are counted in [`EventLog::padding`]; any other
//!   trailing bytes are parsed as a next event and so fail as a truncated or malformed one.
//!   Consequently an all-zero record at the very end of a log (PCR 0, `EV_PREBOOT_CERT`, zero
//!   digest, no data), which no firmware writes, is taken for padding.
//! * Event data never makes parsing fail: [`EventData`] holds the decoded form when vouch knows
//!   it, and the raw bytes stay in [`Event::data`].

#[cfg(any(test, feature = "eventlog-builder"))]
pub mod build;
mod class;
mod data;
mod devicepath;
mod efi;
mod error;
mod event_type;
mod guid;
mod parse;
mod reader;
mod replay;
mod report;
mod summary;
mod text;

#[cfg(test)]
mod testlog;

use std::fmt;

pub use class::{EventClass, ImageKind};
pub use data::{EventData, PostCode};
pub use devicepath::{DevicePath, DevicePathNode, PartitionSignature};
pub use efi::{
    FirmwareBlob, GptEvent, GptPartition, HandoffTables, ImageLoad, LoadOption, SignatureList,
    SignatureType, UefiVariable, VariableValue,
};
pub use error::EventLogError;
pub use event_type::EventType;
pub use guid::Guid;
pub use parse::parse;
pub use replay::Replay;
pub use report::{Report, ReportEvent, render_text};

use crate::digest::HashAlg;

/// The two on-disk formats of a TCG event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// TPM 1.2 style: `TCG_PCR_EVENT` records with one SHA-1 digest each.
    LegacySha1,
    /// TPM 2.0 style: a Spec ID header, then `TCG_PCR_EVENT2` records with a digest per bank.
    CryptoAgile,
}

impl LogFormat {
    /// `"legacy-sha1"` or `"crypto-agile"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LegacySha1 => "legacy-sha1",
            Self::CryptoAgile => "crypto-agile",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The algorithm of a digest in the log: one vouch can hash with, or another TCG algorithm id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DigestAlg {
    Known(HashAlg),
    Unknown(u16),
}

impl DigestAlg {
    pub const fn from_tcg_id(id: u16) -> Self {
        match HashAlg::from_tcg_id(id) {
            Some(alg) => Self::Known(alg),
            None => Self::Unknown(id),
        }
    }

    pub const fn tcg_id(self) -> u16 {
        match self {
            Self::Known(alg) => alg.tcg_id(),
            Self::Unknown(id) => id,
        }
    }
}

impl fmt::Display for DigestAlg {
    /// `sha256`, or the TCG id in hex (`0x0012`) for an unknown algorithm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(alg) => f.write_str(alg.name()),
            Self::Unknown(id) => write!(f, "{id:#06x}"),
        }
    }
}

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    pub alg: DigestAlg,
    pub digest: Vec<u8>,
}

/// One `{algorithmId, digestSize}` entry of the Spec ID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSize {
    pub alg: DigestAlg,
    pub digest_size: u16,
}

/// The `TCG_EfiSpecIDEvent` that heads a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecIdEvent {
    pub platform_class: u32,
    pub spec_version_minor: u8,
    pub spec_version_major: u8,
    pub spec_errata: u8,
    /// Size of `UINTN`: 1 for 32-bit firmware, 2 for 64-bit.
    pub uintn_size: u8,
    /// The declared algorithms, in log order; no algorithm appears twice.
    pub algorithms: Vec<AlgorithmSize>,
    pub vendor_info: Vec<u8>,
}

impl SpecIdEvent {
    /// The declared digest size of the algorithm with TCG id `id`.
    pub fn digest_size(&self, id: u16) -> Option<u16> {
        self.algorithms
            .iter()
            .find(|a| a.alg.tcg_id() == id)
            .map(|a| a.digest_size)
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Position in the log, 0-based; the Spec ID header of a crypto-agile log is event 0.
    pub index: usize,
    /// Byte offset of the record in the log.
    pub offset: usize,
    pub pcr: u32,
    pub event_type: EventType,
    /// The digests in log order (one SHA-1 digest in a legacy log).
    pub digests: Vec<EventDigest>,
    /// The event data as logged.
    pub data: Vec<u8>,
    /// The event data decoded by type, or [`EventData::Raw`] / [`EventData::Malformed`].
    pub decoded: EventData,
}

impl Event {
    /// The digest for bank `alg`, if the event has one.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == DigestAlg::Known(alg))
            .map(|d| d.digest.as_slice())
    }

    /// Whether the event has at least one digest of a known algorithm and every such digest is
    /// the hash of [`Event::data`].
    ///
    /// The PC Client spec measures the event data itself for, among others, `EV_SEPARATOR`,
    /// `EV_S_CRTM_VERSION`, `EV_EFI_ACTION`, `EV_EFI_GPT_EVENT`, `EV_EFI_VARIABLE_DRIVER_CONFIG`,
    /// `EV_EFI_VARIABLE_AUTHORITY` and `EV_EFI_VARIABLE_BOOT2`; for those, a `true` here is what
    /// ties the decoded data to the replayed PCRs. It is `false` where something else is
    /// measured: `EV_EFI_VARIABLE_BOOT` (the variable data alone), GRUB's `EV_IPL` (the command
    /// without its `grub_cmd: ` prefix), images and firmware blobs (their contents).
    pub fn digests_match_data(&self) -> bool {
        let mut known = self
            .digests
            .iter()
            .filter_map(|d| match d.alg {
                DigestAlg::Known(alg) => Some((alg, d.digest.as_slice())),
                DigestAlg::Unknown(_) => None,
            })
            .peekable();
        known.peek().is_some() && known.all(|(alg, digest)| alg.hash(&[&self.data]) == digest)
    }

    /// A one-line human description of the event, e.g. `\EFI\BOOT\BOOTX64.EFI`,
    /// `SecureBoot = enabled`, `dbx: 371 sha256 hashes`, `grub_cmd: linux /vmlinuz ...`.
    pub fn summary(&self) -> String {
        summary::summary(self)
    }

    /// What the event is, for policy; `None` for events a policy has no subject for
    /// (`EV_NO_ACTION`, unknown types, undecodable variables, ...).
    pub fn class(&self) -> Option<EventClass> {
        class::classify(self)
    }

    /// The stable key a reference database uses together with the PCR and the event type name:
    /// [`EventClass::subject`] of [`Event::class`], or `""` for unclassified events.
    pub fn subject(&self) -> String {
        self.class()
            .map(|c| c.subject().to_owned())
            .unwrap_or_default()
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventLog {
    pub format: LogFormat,
    /// The Spec ID header of a crypto-agile log (also `events[0]`).
    pub spec_id: Option<SpecIdEvent>,
    /// Every record, the Spec ID header included.
    pub events: Vec<Event>,
    /// Number of zero bytes after the last event that were taken as padding.
    pub padding: usize,
}

impl EventLog {
    /// The banks [`EventLog::replay`] computes: the declared algorithms vouch can hash with
    /// (crypto-agile), or SHA-1 (legacy), in [`HashAlg`] order.
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec_id {
            None => vec![HashAlg::Sha1],
            Some(spec) => {
                let mut banks: Vec<HashAlg> = spec
                    .algorithms
                    .iter()
                    .filter_map(|a| match a.alg {
                        DigestAlg::Known(alg) => Some(alg),
                        DigestAlg::Unknown(_) => None,
                    })
                    .collect();
                banks.sort();
                banks
            }
        }
    }

    /// Replays the log into PCR values; see [`Replay`].
    pub fn replay(&self) -> Replay {
        Replay::new(self)
    }

    /// Whether Secure Boot was on, from the `SecureBoot` variable measured into PCR 7
    /// (`EV_EFI_VARIABLE_DRIVER_CONFIG`). A variable measured without data (it does not exist)
    /// means disabled.
    ///
    /// `None` if the log has no such event, if one does not decode, if its digests do not match
    /// its data ([`Event::digests_match_data`]) or if two of them disagree; so a `Some` is as
    /// trustworthy as the PCR 7 value the log has been checked against.
    pub fn secure_boot_enabled(&self) -> Option<bool> {
        self.unique_pcr7_variable(Guid::GLOBAL_VARIABLE, "SecureBoot", |value| match value {
            VariableValue::Boolean(enabled) => Some(*enabled),
            VariableValue::Empty => Some(false),
            _ => None,
        })
    }

    /// The number of entries (hashes and certificates, over all signature lists) of the `dbx`
    /// forbidden-signature database measured into PCR 7; `Some(0)` if it was measured empty.
    ///
    /// `None` under the same conditions as [`EventLog::secure_boot_enabled`].
    pub fn dbx_entry_count(&self) -> Option<usize> {
        self.unique_pcr7_variable(Guid::IMAGE_SECURITY_DATABASE, "dbx", |value| match value {
            VariableValue::SignatureDatabase(lists) => Some(lists.iter().map(|l| l.count).sum()),
            VariableValue::Empty => Some(0),
            _ => None,
        })
    }

    /// Reads a value out of every PCR 7 `EV_EFI_VARIABLE_DRIVER_CONFIG` event for the variable,
    /// requiring at least one, all trustworthy and all agreeing.
    fn unique_pcr7_variable<T: PartialEq>(
        &self,
        vendor: Guid,
        name: &str,
        read: impl Fn(&VariableValue) -> Option<T>,
    ) -> Option<T> {
        let mut answer = None;
        for event in &self.events {
            if event.pcr != 7 || event.event_type != EventType::EFI_VARIABLE_DRIVER_CONFIG {
                continue;
            }
            let EventData::Variable(var) = &event.decoded else {
                continue;
            };
            if var.vendor != vendor || var.name != name {
                continue;
            }
            if !event.digests_match_data() {
                return None;
            }
            let value = read(&var.value)?;
            if answer.as_ref().is_some_and(|a| *a != value) {
                return None;
            }
            answer = Some(value);
        }
        answer
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::testlog::*;
    use super::*;

    const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    fn log_with(events: &[Vec<u8>]) -> EventLog {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32)]);
        for e in events {
            bytes.extend_from_slice(e);
        }
        parse(&bytes).unwrap()
    }

    fn config(pcr: u32, vendor: Guid, name: &str, data: &[u8]) -> Vec<u8> {
        measured(pcr, 0x8000_0001, &BANKS, &variable(vendor, name, data))
    }

    #[test]
    fn secure_boot_state_comes_from_a_trustworthy_pcr7_event() {
        let on = config(7, Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]);
        let off = config(7, Guid::GLOBAL_VARIABLE, "SecureBoot", &[0]);
        assert_eq!(
            log_with(std::slice::from_ref(&on)).secure_boot_enabled(),
            Some(true)
        );
        assert_eq!(
            log_with(std::slice::from_ref(&off)).secure_boot_enabled(),
            Some(false)
        );
        let absent = config(7, Guid::GLOBAL_VARIABLE, "SecureBoot", &[]);
        assert_eq!(log_with(&[absent]).secure_boot_enabled(), Some(false));
        assert_eq!(log_with(&[]).secure_boot_enabled(), None);
        assert_eq!(
            log_with(&[on.clone(), off]).secure_boot_enabled(),
            None,
            "disagreeing events"
        );
        assert_eq!(
            log_with(&[on.clone(), on.clone()]).secure_boot_enabled(),
            Some(true)
        );
        // Not PCR 7, or not the global vendor: ignored.
        let pcr1 = config(1, Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]);
        let vendor = config(7, Guid::SHIM_LOCK, "SecureBoot", &[1]);
        assert_eq!(log_with(&[pcr1, vendor]).secure_boot_enabled(), None);
        // Data that does not match the measured digests is not believed.
        let lie = event2(
            7,
            0x8000_0001,
            &[(SHA1, vec![1; 20]), (SHA256, vec![1; 32])],
            &variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]),
        );
        assert_eq!(log_with(&[lie]).secure_boot_enabled(), None);
        let malformed = config(7, Guid::GLOBAL_VARIABLE, "SecureBoot", &[7]);
        assert_eq!(log_with(&[malformed]).secure_boot_enabled(), None);
    }

    #[test]
    fn dbx_entry_count_sums_every_list() {
        let dbx = [
            signature_list(Guid::CERT_SHA256, 32, 370),
            signature_list(Guid::CERT_X509, 100, 1),
        ]
        .concat();
        let event = config(7, Guid::IMAGE_SECURITY_DATABASE, "dbx", &dbx);
        assert_eq!(log_with(&[event]).dbx_entry_count(), Some(371));
        let empty = config(7, Guid::IMAGE_SECURITY_DATABASE, "dbx", &[]);
        assert_eq!(log_with(&[empty]).dbx_entry_count(), Some(0));
        assert_eq!(log_with(&[]).dbx_entry_count(), None);
        let truncated = config(7, Guid::IMAGE_SECURITY_DATABASE, "dbx", &dbx[..100]);
        assert_eq!(log_with(&[truncated]).dbx_entry_count(), None);
    }

    #[test]
    fn event_accessors() {
        let log = log_with(&[measured(4, 0xd, &BANKS, b"x")]);
        let event = &log.events[1];
        assert_eq!(
            event.digest(HashAlg::Sha1).unwrap(),
            HashAlg::Sha1.hash(&[b"x"])
        );
        assert_eq!(event.digest(HashAlg::Sha384), None);
        assert_eq!(event.subject(), "x");
        assert_eq!(log.events[0].subject(), "");
        assert_eq!(log.format.to_string(), "crypto-agile");
        assert_eq!(
            DigestAlg::from_tcg_id(0x000B),
            DigestAlg::Known(HashAlg::Sha256)
        );
        assert_eq!(DigestAlg::Unknown(0x12).tcg_id(), 0x12);
        assert_eq!(log.spec_id.as_ref().unwrap().digest_size(SHA256), Some(32));
        // A digest that is not the hash of the data.
        let lie = log_with(&[event2(4, 0xd, &[(SHA256, vec![0; 32])], b"x")]);
        assert!(!lie.events[1].digests_match_data());
    }
}
