//! Per-event reference values: what a verified firmware event log may contain, keyed by event
//! class and subject, so a finding names the event that is not approved
//! (`PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION \EFI\BOOT\BOOTX64.EFI digest 3f2a… not in reference
//! for model T-100`), plus the Secure Boot state and the size of the dbx revocation list.
//!
//! JSON (the `events` section of the reference values):
//!
//! ```json
//! {"firmware_blob": {"": ["<hex>"]},
//!  "boot_application": {"\\EFI\\BOOT\\BOOTX64.EFI": ["<hex>"]},
//!  "secure_boot_variable": {"PK": ["<hex>"], "KEK": ["<hex>"], "db": ["<hex>"]},
//!  "ipl": {"kernel_cmdline: /vmlinuz root=/dev/sda2 ro": ["<hex>"]},
//!  "secure_boot_required": true,
//!  "dbx_min_entries": 371}
//! ```
//!
//! A class that is absent is not constrained. Within a present class, every measured event must
//! have its subject listed with its digest among the allowed ones, and a listed class is
//! required: a log that shows no event of it fails. `SecureBoot` and `dbx` are
//! judged by state (`secure_boot_required`, `dbx_min_entries`) rather than by digest, so a dbx
//! update that adds revocations does not quarantine the fleet.
//!
//! Fail closed: an event's type and data are not covered by the PCR extend, so a tampered log can
//! relabel a patched boot loader's event as something vouch does not classify, or garble its
//! device path. Every extending event the quote vouches for is therefore either classified (and
//! judged above), bound to its own data outside the OS PCRs 8-15 (its digest is the hash of the data shown, like a
//! separator or an action string), or kept as `other`, keyed by its type name — and as soon as
//! the `events` section constrains anything, `other` events must be listed too.
//!
//! Closed world: `"event_types": {"4": ["EV_EFI_ACTION", ...], "8": ["EV_IPL"], "9": []}` names
//! the PCRs the section constrains and the event types each may carry; each such PCR must be
//! quoted and fully explained by the log (see [`super::closed_world`]). `policy capture` and
//! `vouch-provision reference` fill it in for every PCR they pin.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::{Area, Finding};
use crate::bytes::Sha256Digest;
use crate::digest::HashAlg;
use crate::error::PolicyError;
use crate::eventlog::{EventClass, EventData, EventLog, EventType};
use crate::policy::MAX_PCR;
use crate::reason::Reason;

/// The event classes reference values can constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    FirmwareBlob,
    BootApplication,
    SecureBootVariable,
    Ipl,
    /// An extending event vouch does not classify and whose digest is not the hash of its data;
    /// the subject is its type name.
    Other,
}

impl EventKind {
    fn of(class: &EventClass) -> Option<EventKind> {
        match class {
            EventClass::FirmwareBlob { .. } => Some(EventKind::FirmwareBlob),
            EventClass::BootApplication { .. } => Some(EventKind::BootApplication),
            EventClass::SecureBootVariable { .. } => Some(EventKind::SecureBootVariable),
            EventClass::Ipl { .. } => Some(EventKind::Ipl),
            _ => None,
        }
    }

    /// The JSON key of the class (`boot_application`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::FirmwareBlob => "firmware_blob",
            EventKind::BootApplication => "boot_application",
            EventKind::SecureBootVariable => "secure_boot_variable",
            EventKind::Ipl => "ipl",
            EventKind::Other => "other",
        }
    }

    fn area(self) -> Area {
        match self {
            EventKind::FirmwareBlob
            | EventKind::BootApplication
            | EventKind::Ipl
            | EventKind::Other => Area::Executables,
            EventKind::SecureBootVariable => Area::Configuration,
        }
    }
}

/// Variables judged by state rather than digest.
pub(crate) fn judged_by_state(kind: EventKind, subject: &str) -> bool {
    kind == EventKind::SecureBootVariable && matches!(subject, "SecureBoot" | "dbx")
}

/// One policy-relevant event of a verified log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredEvent {
    pub pcr: u32,
    /// The event type's TCG name (`EV_EFI_BOOT_SERVICES_APPLICATION`).
    pub event_type: String,
    pub kind: EventKind,
    pub subject: String,
    /// The sha256 digest the event extended.
    pub digest: Sha256Digest,
}

/// What a verified event log proved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMeasurements {
    pub events: Vec<MeasuredEvent>,
    pub secure_boot: Option<bool>,
    pub dbx_entries: Option<u64>,
    /// PCRs with events that the quote does not vouch for (not quoted, or not reproduced);
    /// their events are left out of `events`.
    pub unverified_pcrs: Vec<u32>,
    /// The quoted PCRs (but the firmware PCR) whose quoted value the log's replay reproduces; a
    /// PCR the log never extends counts as its reset value. `None` in measurements recorded
    /// before vouch checked this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained_pcrs: Option<BTreeSet<u32>>,
    /// The type names of the extending events of every PCR the quote vouches for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_types: BTreeMap<u32, BTreeSet<String>>,
}

impl LogMeasurements {
    /// Extracts the policy-relevant events of `log` whose PCR satisfies `verified`.
    pub fn from_log(log: &EventLog, verified: impl Fn(u32) -> bool) -> Self {
        let mut out = LogMeasurements {
            secure_boot: log.secure_boot_enabled(),
            dbx_entries: log.dbx_entry_count().and_then(|n| u64::try_from(n).ok()),
            ..Self::default()
        };
        let mut unverified = BTreeSet::new();
        for e in &log.events {
            if e.event_type == EventType::NO_ACTION {
                continue;
            }
            if verified(e.pcr) {
                out.event_types
                    .entry(e.pcr)
                    .or_default()
                    .insert(e.event_type.to_string());
            }
            let Some(digest) = e
                .digest(HashAlg::Sha256)
                .and_then(|d| Sha256Digest::from_slice(d).ok())
            else {
                continue;
            };
            let class = e.class();
            let kind = class.as_ref().and_then(EventKind::of);
            let (kind, subject) = match (kind, &class) {
                (Some(kind), Some(c)) => (kind, c.subject().to_owned()),
                // Its content is the data the log shows, well-formed for its type: nothing hides
                // behind it. (Undecodable data bound to its digest, such as a whole image logged
                // as an `EV_POST_CODE`, is judged as `other`.) Not in an OS PCR: there the data
                // *is* what boot loaders measure (a command line relabelled from `EV_IPL` to
                // `EV_EFI_ACTION`, its data set to the measured bytes, would escape `ipl`).
                _ if e.digests_match_data()
                    && !super::closed_world::OS_PCRS.contains(&e.pcr)
                    && !matches!(e.decoded, EventData::Raw | EventData::Malformed(_)) =>
                {
                    continue;
                }
                _ => (EventKind::Other, e.event_type.to_string()),
            };
            if !verified(e.pcr) {
                unverified.insert(e.pcr);
                continue;
            }
            out.events.push(MeasuredEvent {
                pcr: e.pcr,
                event_type: e.event_type.to_string(),
                kind,
                subject,
                digest,
            });
        }
        out.unverified_pcrs = unverified.into_iter().collect();
        out
    }

    /// The measurements of a golden log (no quote): the events of `pcrs`, each taken as
    /// explained, so that [`LogMeasurements::capture`] constrains exactly `pcrs`.
    pub fn golden(log: &EventLog, pcrs: &BTreeSet<u32>) -> Self {
        let mut lm = Self::from_log(log, |pcr| pcrs.contains(&pcr));
        lm.explained_pcrs = Some(pcrs.clone());
        lm
    }

    /// Reference values these measurements satisfy.
    pub fn capture(&self) -> EventReference {
        let mut digests: BTreeMap<EventKind, BTreeMap<String, BTreeSet<Sha256Digest>>> =
            BTreeMap::new();
        for e in &self.events {
            if judged_by_state(e.kind, &e.subject) {
                continue;
            }
            digests
                .entry(e.kind)
                .or_default()
                .entry(e.subject.clone())
                .or_default()
                .insert(e.digest);
        }
        let event_types = self
            .explained_pcrs
            .iter()
            .flatten()
            .map(|pcr| (*pcr, self.event_types.get(pcr).cloned().unwrap_or_default()))
            .collect();
        EventReference {
            digests,
            secure_boot_required: self.secure_boot == Some(true),
            dbx_min_entries: self.dbx_entries,
            event_types,
        }
    }
}

/// Approved event-log content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventReference {
    pub digests: BTreeMap<EventKind, BTreeMap<String, BTreeSet<Sha256Digest>>>,
    pub secure_boot_required: bool,
    pub dbx_min_entries: Option<u64>,
    /// The PCRs constrained closed-world, each with the event type names it may carry.
    pub event_types: BTreeMap<u32, BTreeSet<String>>,
}

type RawDigests = BTreeMap<String, Vec<String>>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    firmware_blob: RawDigests,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    boot_application: RawDigests,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    secure_boot_variable: RawDigests,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    ipl: RawDigests,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    other: RawDigests,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    secure_boot_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dbx_min_entries: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    event_types: BTreeMap<String, Vec<String>>,
}

impl TryFrom<RawEvents> for EventReference {
    type Error = PolicyError;

    fn try_from(raw: RawEvents) -> Result<Self, PolicyError> {
        let mut digests = BTreeMap::new();
        for (kind, map) in [
            (EventKind::FirmwareBlob, raw.firmware_blob),
            (EventKind::BootApplication, raw.boot_application),
            (EventKind::SecureBootVariable, raw.secure_boot_variable),
            (EventKind::Ipl, raw.ipl),
            (EventKind::Other, raw.other),
        ] {
            if map.is_empty() {
                continue;
            }
            let mut subjects = BTreeMap::new();
            for (subject, hexes) in map {
                let set = hexes
                    .iter()
                    .map(|h| h.parse::<Sha256Digest>())
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(|e| PolicyError::Events {
                        reason: format!("{kind:?} \"{subject}\": {e}"),
                    })?;
                if set.is_empty() {
                    return Err(PolicyError::Events {
                        reason: format!("{kind:?} \"{subject}\": no approved digests listed"),
                    });
                }
                subjects.insert(subject, set);
            }
            digests.insert(kind, subjects);
        }
        let mut event_types = BTreeMap::new();
        for (pcr, names) in raw.event_types {
            let index = pcr
                .parse::<u8>()
                .ok()
                .filter(|i| *i <= MAX_PCR)
                .ok_or_else(|| PolicyError::Events {
                    reason: format!("event_types: \"{pcr}\" is not a PCR index 0-{MAX_PCR}"),
                })?;
            let mut set = BTreeSet::new();
            for name in names {
                let t = EventType::from_name(&name).ok_or_else(|| PolicyError::Events {
                    reason: format!(
                        "event_types PCR {index}: \"{name}\" is not an event type (EV_... or 0x...)"
                    ),
                })?;
                set.insert(t.to_string());
            }
            event_types.insert(u32::from(index), set);
        }
        Ok(EventReference {
            digests,
            secure_boot_required: raw.secure_boot_required,
            dbx_min_entries: raw.dbx_min_entries,
            event_types,
        })
    }
}

impl From<&EventReference> for RawEvents {
    fn from(r: &EventReference) -> Self {
        let raw = |kind: EventKind| -> RawDigests {
            r.digests
                .get(&kind)
                .map(|m| {
                    m.iter()
                        .map(|(s, set)| (s.clone(), set.iter().map(Sha256Digest::to_hex).collect()))
                        .collect()
                })
                .unwrap_or_default()
        };
        RawEvents {
            firmware_blob: raw(EventKind::FirmwareBlob),
            boot_application: raw(EventKind::BootApplication),
            secure_boot_variable: raw(EventKind::SecureBootVariable),
            ipl: raw(EventKind::Ipl),
            other: raw(EventKind::Other),
            secure_boot_required: r.secure_boot_required,
            dbx_min_entries: r.dbx_min_entries,
            event_types: r
                .event_types
                .iter()
                .map(|(pcr, set)| (pcr.to_string(), set.iter().cloned().collect()))
                .collect(),
        }
    }
}

impl EventReference {
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
            && !self.secure_boot_required
            && self.dbx_min_entries.is_none()
            && self.event_types.is_empty()
    }
}

/// Compares a verified log's measurements with `r`; `quoted` is the set of quoted PCRs and
/// `scope` names the reference values in reasons ("model T-100").
pub fn evaluate(
    r: &EventReference,
    lm: Option<&LogMeasurements>,
    quoted: &BTreeSet<u32>,
    scope: &str,
) -> Vec<Finding> {
    let Some(lm) = lm else {
        return vec![Finding {
            area: Area::Configuration,
            reason: Reason::EventLogMissing {
                scope: scope.to_owned(),
            },
        }];
    };
    let mut out = super::closed_world::findings(r, lm, quoted, scope);
    if r.secure_boot_required && lm.secure_boot != Some(true) {
        out.push(Finding {
            area: Area::Configuration,
            reason: match lm.secure_boot {
                Some(false) => Reason::SecureBootDisabled,
                _ => Reason::SecureBootUnknown,
            },
        });
    }
    if let Some(min) = r.dbx_min_entries {
        match lm.dbx_entries {
            Some(n) if n >= min => {}
            Some(n) => out.push(Finding {
                area: Area::Configuration,
                reason: Reason::DbxShrunk {
                    entries: n,
                    min,
                    scope: scope.to_owned(),
                },
            }),
            None => out.push(Finding {
                area: Area::Configuration,
                reason: Reason::DbxMissing,
            }),
        }
    }
    for e in &lm.events {
        if judged_by_state(e.kind, &e.subject) {
            continue;
        }
        let subjects = r.digests.get(&e.kind);
        // `other` is constrained whenever anything is: it is where a relabelled event would hide.
        if subjects.is_none() && (e.kind != EventKind::Other || r.digests.is_empty()) {
            continue;
        }
        if subjects
            .and_then(|s| s.get(&e.subject))
            .is_some_and(|set| set.contains(&e.digest))
        {
            continue;
        }
        out.push(Finding {
            area: e.kind.area(),
            reason: Reason::EventNotInReference {
                pcr: e.pcr,
                event_type: e.event_type.clone(),
                subject: e.subject.clone(),
                digest: e.digest,
                scope: scope.to_owned(),
            },
        });
    }
    for (kind, subjects) in &r.digests {
        let judged = |e: &&MeasuredEvent| e.kind == *kind && !judged_by_state(e.kind, &e.subject);
        let listed = subjects.keys().any(|s| !judged_by_state(*kind, s));
        if *kind != EventKind::Other && listed && !lm.events.iter().any(|e| judged(&e)) {
            out.push(Finding {
                area: kind.area(),
                reason: Reason::EventClassMissing {
                    kind: *kind,
                    scope: scope.to_owned(),
                },
            });
        }
    }
    if !r.digests.is_empty() && !lm.unverified_pcrs.is_empty() {
        out.push(Finding {
            area: Area::Configuration,
            reason: Reason::EventsUnverifiable {
                pcrs: lm.unverified_pcrs.clone(),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::build::TerminalBoot;

    fn quoted() -> BTreeSet<u32> {
        (0..=9).collect()
    }

    fn measured(boot: &TerminalBoot) -> LogMeasurements {
        let log = crate::eventlog::parse(&boot.log().bytes()).unwrap();
        LogMeasurements::from_log(&log, |_| true)
    }

    #[test]
    fn captured_reference_accepts_the_same_boot() {
        let lm = measured(&TerminalBoot::default());
        let r = lm.capture();
        assert!(r.secure_boot_required);
        assert_eq!(r.dbx_min_entries, Some(371));
        assert!(r.digests[&EventKind::BootApplication].contains_key("\\EFI\\BOOT\\BOOTX64.EFI"));
        assert!(!r.digests[&EventKind::SecureBootVariable].contains_key("dbx"));
        assert!(evaluate(&r, Some(&lm), &quoted(), "model T-100").is_empty());
    }

    #[test]
    fn changed_boot_loader_is_named_with_pcr_type_path_and_scope() {
        let r = measured(&TerminalBoot::default()).capture();
        let evil = TerminalBoot {
            bootloader: b"patched loader".to_vec(),
            ..TerminalBoot::default()
        };
        let f = evaluate(&r, Some(&measured(&evil)), &quoted(), "model T-100");
        assert_eq!(f.len(), 1, "{f:?}");
        let Reason::EventNotInReference {
            pcr,
            event_type,
            subject,
            scope,
            ..
        } = &f[0].reason
        else {
            panic!("{f:?}");
        };
        assert_eq!(
            (*pcr, event_type.as_str(), subject.as_str(), scope.as_str()),
            (
                4,
                "EV_EFI_BOOT_SERVICES_APPLICATION",
                "\\EFI\\BOOT\\BOOTX64.EFI",
                "model T-100"
            )
        );
        assert_eq!(f[0].area, Area::Executables);
    }

    #[test]
    fn secure_boot_off_and_shrunk_dbx_have_reasons_of_their_own() {
        let r = measured(&TerminalBoot::default()).capture();
        let off = TerminalBoot {
            secure_boot: false,
            ..TerminalBoot::default()
        };
        let f = evaluate(&r, Some(&measured(&off)), &quoted(), "model T-100");
        assert_eq!(
            f.into_iter().map(|f| f.reason).collect::<Vec<_>>(),
            vec![Reason::SecureBootDisabled]
        );
        let shrunk = TerminalBoot {
            dbx_entries: 300,
            ..TerminalBoot::default()
        };
        let f = evaluate(&r, Some(&measured(&shrunk)), &quoted(), "model T-100");
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].reason,
            Reason::DbxShrunk {
                entries: 300,
                min: 371,
                scope: "model T-100".into()
            }
        );
        // More revocations are fine.
        let grown = TerminalBoot {
            dbx_entries: 400,
            ..TerminalBoot::default()
        };
        assert!(evaluate(&r, Some(&measured(&grown)), &quoted(), "model T-100").is_empty());
    }

    /// Regression for a review finding: relabelling a patched boot loader's event as a type
    /// vouch does not classify, or garbling its device path, must not hide it from the policy.
    #[test]
    fn relabelled_or_undecodable_boot_loader_events_are_caught() {
        use crate::eventlog::build::{
            EV_EFI_BOOT_SERVICES_APPLICATION, EV_POST_CODE, LogBuilder, image_load,
        };
        let r = measured(&TerminalBoot::default()).capture();
        let mut relabelled = LogBuilder::new(&[HashAlg::Sha256]);
        relabelled.event_measuring(
            4,
            EV_POST_CODE,
            b"patched loader",
            &image_load("\\EFI\\BOOT\\BOOTX64.EFI"),
        );
        let mut garbled = LogBuilder::new(&[HashAlg::Sha256]);
        garbled.event_measuring(
            4,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            b"patched loader",
            &[0xff; 7],
        );
        for log in [relabelled, garbled] {
            let parsed = crate::eventlog::parse(&log.bytes()).unwrap();
            let lm = LogMeasurements::from_log(&parsed, |_| true);
            let f = evaluate(&r, Some(&lm), &quoted(), "model T-100");
            assert!(
                f.iter()
                    .any(|f| matches!(f.reason, Reason::EventNotInReference { pcr: 4, .. })),
                "{f:?}"
            );
        }
    }

    /// A firmware volume logged as an `EV_POST_CODE` whose data is the volume itself has a
    /// digest bound to its data, but data no POST code has: it must not pass as harmless.
    #[test]
    fn an_image_logged_as_a_post_code_is_judged() {
        use crate::eventlog::build::{EV_POST_CODE, LogBuilder};
        let r = measured(&TerminalBoot::default()).capture();
        let mut log = LogBuilder::new(&[HashAlg::Sha256]);
        log.event(0, EV_POST_CODE, &[0x90, 0x00, 0xeb, 0xfe, 0x13, 0x37, 0x00]);
        let parsed = crate::eventlog::parse(&log.bytes()).unwrap();
        let lm = LogMeasurements::from_log(&parsed, |_| true);
        let f = evaluate(&r, Some(&lm), &quoted(), "model T-100");
        assert!(
            f.iter().any(|f| matches!(
                &f.reason,
                Reason::EventNotInReference { pcr: 0, event_type, subject, .. }
                    if event_type == "EV_POST_CODE" && subject == "EV_POST_CODE"
            )),
            "{f:?}"
        );
        // A POST code description bound to its digest stays harmless.
        let mut log = LogBuilder::new(&[HashAlg::Sha256]);
        log.event(0, EV_POST_CODE, b"ACPI DATA");
        let parsed = crate::eventlog::parse(&log.bytes()).unwrap();
        assert!(
            LogMeasurements::from_log(&parsed, |_| true)
                .events
                .is_empty()
        );
    }

    #[test]
    fn missing_log_and_unverified_pcrs_are_reported() {
        let r = measured(&TerminalBoot::default()).capture();
        let f = evaluate(&r, None, &quoted(), "device t1");
        assert_eq!(
            f.into_iter().map(|f| f.reason).collect::<Vec<_>>(),
            vec![Reason::EventLogMissing {
                scope: "device t1".into()
            }]
        );
        let log = crate::eventlog::parse(&TerminalBoot::default().log().bytes()).unwrap();
        let lm = LogMeasurements::from_log(&log, |pcr| pcr <= 7);
        assert_eq!(lm.unverified_pcrs, vec![8]);
        let f = evaluate(&r, Some(&lm), &quoted(), "device t1");
        assert!(
            f.iter()
                .any(|f| f.reason == Reason::EventsUnverifiable { pcrs: vec![8] }),
            "{f:?}"
        );
    }

    #[test]
    fn json_round_trip_and_validation() {
        let r = measured(&TerminalBoot::default()).capture();
        let json = serde_json::to_value(RawEvents::from(&r)).unwrap();
        let back =
            EventReference::try_from(serde_json::from_value::<RawEvents>(json).unwrap()).unwrap();
        assert_eq!(back, r);
        let bad: RawEvents = serde_json::from_str(r#"{"ipl": {"x": []}}"#).unwrap();
        assert!(EventReference::try_from(bad).is_err());
        assert!(serde_json::from_str::<RawEvents>(r#"{"kernel": {}}"#).is_err());
    }
}
