//! Reference values and their evaluation. A device's reference values come from the operator
//! (`policy set` with JSON, or `policy capture` of its last verified measurements) or from its
//! model; evaluation compares verified measurements against them and returns findings that name
//! the PCR index or firmware path at fault.
//!
//! JSON shape (also used for storage):
//! `{"pcrs": {"sha256": {"0": "<hex>", ...}}, "firmware": {"<path>": ["<hex>", ...]},
//!   "events": {...}}` — see [`events`] for the per-event section.

pub mod closed_world;
pub mod events;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::bytes::Sha256Digest;
use crate::error::PolicyError;
use crate::firmware::FirmwareEntry;
use crate::inventory::{INVENTORY_PATH, Inventory};
use crate::reason::Reason;
use crate::wire::to_cbor;
use events::{EventReference, LogMeasurements, RawEvents};

/// Highest PCR index of a PC-client TPM.
pub const MAX_PCR: u8 = 23;

/// Approved measurements for a device or a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    /// Expected sha256-bank PCR values.
    pub pcrs: BTreeMap<u8, Sha256Digest>,
    /// For each firmware path, the hashes it may have.
    pub firmware: BTreeMap<String, BTreeSet<Sha256Digest>>,
    /// What the firmware event log may contain.
    pub events: Option<EventReference>,
    /// The PCR firmware measurements must go into. Pinned because a list moved to a fresh PCR
    /// would "un-measure" what the old PCR holds.
    pub firmware_pcr: Option<u8>,
}

/// The serde form: string keys and hex values, as an operator writes them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReference {
    #[serde(default)]
    pcrs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    firmware: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<RawEvents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    firmware_pcr: Option<u8>,
}

impl TryFrom<RawReference> for ReferenceValues {
    type Error = PolicyError;

    fn try_from(raw: RawReference) -> Result<Self, PolicyError> {
        let mut pcrs = BTreeMap::new();
        for (bank, values) in raw.pcrs {
            if bank != "sha256" {
                return Err(PolicyError::UnknownBank { bank });
            }
            for (index, hex) in values {
                let idx: u8 = index
                    .parse()
                    .ok()
                    .filter(|i| *i <= MAX_PCR)
                    .ok_or_else(|| PolicyError::PcrIndex {
                        index: index.clone(),
                    })?;
                let value =
                    hex.parse()
                        .map_err(|e: crate::error::IdError| PolicyError::PcrValue {
                            bank: bank.clone(),
                            index: u32::from(idx),
                            reason: e.to_string(),
                        })?;
                pcrs.insert(idx, value);
            }
        }
        let mut firmware = BTreeMap::new();
        for (path, hashes) in raw.firmware {
            if path.is_empty() {
                return Err(PolicyError::Firmware {
                    path,
                    reason: "empty path".into(),
                });
            }
            let mut set = BTreeSet::new();
            for h in hashes {
                let d = h
                    .parse()
                    .map_err(|e: crate::error::IdError| PolicyError::Firmware {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                set.insert(d);
            }
            if set.is_empty() {
                return Err(PolicyError::Firmware {
                    path,
                    reason: "no approved hashes listed".into(),
                });
            }
            firmware.insert(path, set);
        }
        let events = raw
            .events
            .map(EventReference::try_from)
            .transpose()?
            .filter(|e| !e.is_empty());
        if let Some(p) = raw.firmware_pcr
            && !crate::firmware::usable_pcr(p)
        {
            return Err(PolicyError::PcrIndex {
                index: format!("firmware_pcr {p} (must be 8-16 or 23)"),
            });
        }
        let rv = ReferenceValues {
            pcrs,
            firmware,
            events,
            firmware_pcr: raw.firmware_pcr,
        };
        if rv.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(rv)
    }
}

impl From<&ReferenceValues> for RawReference {
    fn from(rv: &ReferenceValues) -> Self {
        let mut pcrs = BTreeMap::new();
        if !rv.pcrs.is_empty() {
            pcrs.insert(
                "sha256".to_owned(),
                rv.pcrs
                    .iter()
                    .map(|(i, v)| (i.to_string(), v.to_hex()))
                    .collect(),
            );
        }
        let firmware = rv
            .firmware
            .iter()
            .map(|(p, set)| (p.clone(), set.iter().map(|d| d.to_hex()).collect()))
            .collect();
        RawReference {
            pcrs,
            firmware,
            events: rv.events.as_ref().map(RawEvents::from),
            firmware_pcr: rv.firmware_pcr,
        }
    }
}

impl Serialize for ReferenceValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawReference::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ReferenceValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawReference::deserialize(d)?;
        ReferenceValues::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl ReferenceValues {
    pub fn is_empty(&self) -> bool {
        self.pcrs.is_empty()
            && self.firmware.is_empty()
            && self.events.as_ref().is_none_or(EventReference::is_empty)
    }

    /// A short content hash: equal reference values give equal ids, so a verdict names exactly
    /// the policy it was appraised against.
    pub fn content_id(&self) -> String {
        let digest = crate::digest::sha256(&to_cbor(self));
        hex::encode(&digest[..6])
    }
}

/// Whose reference values apply to a device: the operator's for the device or its model, or
/// a vendor's bundle for its model at the firmware version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "name", rename_all = "lowercase")]
pub enum PolicyScope {
    Device(String),
    Model(String),
    /// An imported vendor bundle (`vendor::bundle`): model and firmware version, neither of
    /// which holds an `@` (`vendor::bundle::check_label`).
    Firmware {
        model: String,
        version: String,
    },
}

impl PolicyScope {
    /// How reasons name these reference values: `model T-100`, `device T1-lobby`,
    /// `firmware T-100@2.1`.
    pub fn label(&self) -> String {
        match self {
            PolicyScope::Device(d) => format!("device {d}"),
            PolicyScope::Model(m) => format!("model {m}"),
            PolicyScope::Firmware { model, version } => format!("firmware {model}@{version}"),
        }
    }
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Device(d) => write!(f, "device:{d}"),
            PolicyScope::Model(m) => write!(f, "model:{m}"),
            PolicyScope::Firmware { model, version } => write!(f, "firmware:{model}@{version}"),
        }
    }
}

/// The policy id carried in verdicts: `device:T1@3f2a9c01d2e4`, `firmware:T-100@2.1@3f2a9c01d2e4`.
pub fn policy_id(scope: &PolicyScope, rv: &ReferenceValues) -> String {
    format!("{scope}@{}", rv.content_id())
}

/// What a verified quote proved about a device (kept for `policy capture` and re-evaluation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurements {
    /// Quoted sha256-bank PCR values.
    pub pcrs: BTreeMap<u8, Sha256Digest>,
    /// The PCR holding the firmware list (its value follows from the list).
    pub firmware_pcr: u8,
    /// The firmware list, replay-checked against `firmware_pcr`.
    pub firmware: Vec<FirmwareEntry>,
    /// What the verified firmware event log proved, when the evidence carried one.
    pub eventlog: Option<LogMeasurements>,
    /// The firmware version the evidence reported (which vendor bundle governs the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// The hardware inventory the evidence carried (checked against the device's manifest and
    /// the supply-chain policy, now and whenever these measurements are appraised again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

impl Measurements {
    /// Reference values that these measurements satisfy: every quoted PCR except the firmware
    /// PCR (whose value depends on measurement order, and is covered by the per-file hashes),
    /// and every hash each firmware file had.
    pub fn capture(&self) -> ReferenceValues {
        let pcrs = self
            .pcrs
            .iter()
            .filter(|(i, _)| **i != self.firmware_pcr)
            .map(|(i, v)| (*i, *v))
            .collect();
        let mut firmware: BTreeMap<String, BTreeSet<Sha256Digest>> = BTreeMap::new();
        // The inventory measurement is no firmware file: its digest changes with the hardware,
        // which the manifest's baseline and the supply-chain policy judge.
        for e in self.firmware.iter().filter(|e| e.path != INVENTORY_PATH) {
            if let Some(h) = e.sha256 {
                firmware.entry(e.path.clone()).or_default().insert(h);
            }
        }
        ReferenceValues {
            pcrs,
            firmware,
            events: self.eventlog.as_ref().map(LogMeasurements::capture),
            firmware_pcr: Some(self.firmware_pcr),
        }
    }
}

/// Which trustworthiness claim a finding counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Platform configuration PCRs (1, 3, 5, 6, 7, and OS PCRs other than the firmware PCR).
    Configuration,
    /// Code PCRs (0, 2, 4) and the firmware PCR.
    Executables,
    /// Firmware files on the terminal.
    FileSystem,
}

/// One mismatch between measurements and reference values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub area: Area,
    pub reason: Reason,
}

fn pcr_area(index: u8, firmware_pcr: u8) -> Area {
    match index {
        0 | 2 | 4 => Area::Executables,
        i if i == firmware_pcr => Area::Executables,
        _ => Area::Configuration,
    }
}

/// Compares `m` against `rv`; `scope` names the reference values in reasons (`model T-100`).
/// An empty result means every reference value is met.
pub fn evaluate(rv: &ReferenceValues, m: &Measurements, scope: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(r) = &rv.events {
        let quoted = m.pcrs.keys().map(|i| u32::from(*i)).collect();
        out.extend(events::evaluate(r, m.eventlog.as_ref(), &quoted, scope));
    }
    if let Some(want) = rv.firmware_pcr
        && want != m.firmware_pcr
    {
        out.push(Finding {
            area: Area::Executables,
            reason: Reason::FirmwarePcrMoved {
                measured: m.firmware_pcr,
                expected: want,
                scope: scope.to_owned(),
            },
        });
    }
    for (index, want) in &rv.pcrs {
        let area = pcr_area(*index, m.firmware_pcr);
        match m.pcrs.get(index) {
            None => out.push(Finding {
                area,
                reason: Reason::PcrNotQuoted { index: *index },
            }),
            Some(got) if got != want => out.push(Finding {
                area,
                reason: Reason::PcrMismatch {
                    index: *index,
                    quoted: *got,
                    reference: *want,
                },
            }),
            Some(_) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for e in &m.firmware {
        seen.insert(e.path.as_str());
        if e.path == INVENTORY_PATH {
            // Not a firmware file (see `Measurements::capture`).
            continue;
        }
        let allowed = rv.firmware.get(&e.path);
        let path = e.path.clone();
        let reason = match (&e.sha256, allowed) {
            (_, None) if rv.firmware.is_empty() => continue,
            (None, _) => Reason::FirmwareMissing { path },
            (Some(_), None) => Reason::FirmwareNotInReference { path },
            (Some(h), Some(set)) if !set.contains(h) => {
                Reason::FirmwareHashNotApproved { path, sha256: *h }
            }
            (Some(_), Some(_)) => continue,
        };
        out.push(Finding {
            area: Area::FileSystem,
            reason,
        });
    }
    for path in rv.firmware.keys() {
        if !seen.contains(path.as_str()) {
            out.push(Finding {
                area: Area::FileSystem,
                reason: Reason::FirmwareNotMeasured { path: path.clone() },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Sha256Digest {
        Sha256Digest([b; 32])
    }

    fn measurements() -> Measurements {
        Measurements {
            pcrs: (0..=7).map(|i| (i, d(i))).chain([(14, d(14))]).collect(),
            firmware_pcr: 14,
            firmware: vec![FirmwareEntry {
                path: "/fw/app.bin".into(),
                sha256: Some(d(0xaa)),
            }],
            eventlog: None,
            firmware_version: None,
            inventory: None,
        }
    }

    #[test]
    fn captured_values_satisfy_their_own_measurements() {
        let m = measurements();
        let rv = m.capture();
        assert_eq!(rv.pcrs.len(), 8, "firmware PCR is not captured");
        assert!(evaluate(&rv, &m, "device t1").is_empty());
    }

    #[test]
    fn changed_pcr_is_named() {
        let rv = measurements().capture();
        let mut m = measurements();
        m.pcrs.insert(4, d(0x44));
        let f = evaluate(&rv, &m, "device t1");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].area, Area::Executables);
        assert_eq!(
            f[0].reason,
            Reason::PcrMismatch {
                index: 4,
                quoted: d(0x44),
                reference: d(4)
            }
        );
        m.pcrs.insert(7, d(0x77));
        assert!(
            evaluate(&rv, &m, "device t1")
                .iter()
                .any(|f| f.area == Area::Configuration
                    && matches!(f.reason, Reason::PcrMismatch { index: 7, .. }))
        );
        m.pcrs.remove(&7);
        let f = evaluate(&rv, &m, "device t1");
        assert!(
            f.iter()
                .any(|f| f.reason == Reason::PcrNotQuoted { index: 7 }),
            "{f:?}"
        );
    }

    #[test]
    fn changed_missing_and_unknown_firmware_are_named() {
        let rv = measurements().capture();
        let mut m = measurements();
        m.firmware[0].sha256 = Some(d(0xbb));
        m.firmware.push(FirmwareEntry {
            path: "/fw/extra.bin".into(),
            sha256: Some(d(1)),
        });
        m.firmware.push(FirmwareEntry {
            path: "/fw/gone.bin".into(),
            sha256: None,
        });
        let reasons: Vec<_> = evaluate(&rv, &m, "device t1")
            .into_iter()
            .map(|f| f.reason)
            .collect();
        assert_eq!(
            reasons,
            vec![
                Reason::FirmwareHashNotApproved {
                    path: "/fw/app.bin".into(),
                    sha256: d(0xbb)
                },
                Reason::FirmwareNotInReference {
                    path: "/fw/extra.bin".into()
                },
                Reason::FirmwareMissing {
                    path: "/fw/gone.bin".into()
                },
            ]
        );
        m.firmware.clear();
        let reasons: Vec<_> = evaluate(&rv, &m, "device t1")
            .into_iter()
            .map(|f| f.reason)
            .collect();
        assert_eq!(
            reasons,
            vec![Reason::FirmwareNotMeasured {
                path: "/fw/app.bin".into()
            }]
        );
    }

    #[test]
    fn moving_the_firmware_list_to_another_pcr_is_named() {
        let rv = measurements().capture();
        assert_eq!(rv.firmware_pcr, Some(14));
        let mut m = measurements();
        m.firmware_pcr = 15;
        let reasons: Vec<_> = evaluate(&rv, &m, "device t1")
            .into_iter()
            .map(|f| f.reason)
            .collect();
        assert!(
            reasons.contains(&Reason::FirmwarePcrMoved {
                measured: 15,
                expected: 14,
                scope: "device t1".into()
            }),
            "{reasons:?}"
        );
    }

    #[test]
    fn the_inventory_measurement_is_no_firmware_file() {
        let mut m = measurements();
        m.firmware.push(FirmwareEntry {
            path: INVENTORY_PATH.into(),
            sha256: Some(d(0x1e)),
        });
        let rv = m.capture();
        assert!(
            !rv.firmware.contains_key(INVENTORY_PATH),
            "{:?}",
            rv.firmware
        );
        // Another inventory digest (changed hardware) is no firmware finding either: the
        // baseline and the supply-chain policy judge hardware.
        m.firmware[1].sha256 = Some(d(0x2e));
        assert!(evaluate(&rv, &m, "device t1").is_empty());
    }

    #[test]
    fn pcr_only_policy_ignores_firmware() {
        let mut rv = measurements().capture();
        rv.firmware.clear();
        let mut m = measurements();
        m.firmware[0].sha256 = Some(d(0xbb));
        assert!(evaluate(&rv, &m, "device t1").is_empty());
    }

    #[test]
    fn json_round_trip_and_validation() {
        let json = format!(
            r#"{{"pcrs": {{"sha256": {{"0": "{}", "7": "{}"}}}}, "firmware": {{"/fw/a": ["{}"]}}}}"#,
            "00".repeat(32),
            "11".repeat(32),
            "aa".repeat(32)
        );
        let rv: ReferenceValues = serde_json::from_str(&json).unwrap();
        assert_eq!(rv.pcrs.len(), 2);
        let back: ReferenceValues =
            serde_json::from_str(&serde_json::to_string(&rv).unwrap()).unwrap();
        assert_eq!(back, rv);
        for bad in [
            r#"{"pcrs": {"sha1": {"0": "00"}}}"#.to_string(),
            format!(
                r#"{{"pcrs": {{"sha256": {{"24": "{}"}}}}}}"#,
                "00".repeat(32)
            ),
            r#"{"pcrs": {"sha256": {"0": "abcd"}}}"#.to_string(),
            r#"{"firmware": {"/a": []}}"#.to_string(),
            r#"{}"#.to_string(),
            r#"{"pcr": {}}"#.to_string(),
        ] {
            assert!(
                serde_json::from_str::<ReferenceValues>(&bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_id_changes_with_content() {
        let a = measurements().capture();
        let mut b = a.clone();
        b.pcrs.insert(0, d(9));
        assert_ne!(a.content_id(), b.content_id());
        assert_eq!(a.content_id(), measurements().capture().content_id());
        assert!(policy_id(&PolicyScope::Model("T-100".into()), &a).starts_with("model:T-100@"));
    }
}
