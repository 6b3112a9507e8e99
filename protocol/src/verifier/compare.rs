//! Measured versus reference, item by item, for the dashboard's terminal page and
//! `GET /api/devices/{id}/comparison`: each quoted PCR, each firmware file and each
//! policy-relevant event-log entry of a device's last measurements, beside the reference value(s)
//! that govern it, with a status (`match`, `differs`, `missing`, `unexpected`, `no_reference`)
//! and which source governs (operator policy for the device or model, a vendor bundle for its
//! model and firmware version, or none). It follows the rules of [`crate::policy::evaluate`]
//! item for item, so an item it calls `differs`, `missing` or `unexpected` is one the appraisal
//! reports a finding for; whole-log checks (Secure Boot state, dbx size, closed-world PCRs,
//! unverifiable PCRs) are the verdict's reasons, not rows here.

use serde::Serialize;
use std::collections::BTreeSet;

use crate::inventory::INVENTORY_PATH;
use crate::policy::events::{EventKind, judged_by_state};
use crate::policy::{Measurements, PolicyScope, ReferenceValues};

use super::core::GoverningValues;

/// How one measured item stands against the reference values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// The measured value is among the approved ones.
    Match,
    /// Measured, listed, but the value is not approved.
    Differs,
    /// Listed in the reference values but not measured (a PCR not quoted, a file not
    /// measured or without a hash, an event class the log never shows).
    Missing,
    /// Measured but not listed where the reference values constrain its kind.
    Unexpected,
    /// Measured, and nothing constrains it.
    NoReference,
}

impl ItemStatus {
    /// Whether the item counts against the device.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            ItemStatus::Differs | ItemStatus::Missing | ItemStatus::Unexpected
        )
    }
}

/// What kind of measurement an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Pcr,
    Firmware,
    Event,
}

/// One row: what was measured and what the reference values allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComparedItem {
    pub kind: ItemKind,
    /// `PCR 7`, a firmware path, or `PCR 4 boot_application \EFI\BOOT\BOOTX64.EFI`.
    pub name: String,
    /// The PCR the item is in (a PCR's own index; an event's PCR; the firmware PCR for files).
    pub pcr: Option<u32>,
    /// The measured value (hex), if measured.
    pub measured: Option<String>,
    /// The approved values (hex); empty when nothing constrains the item.
    pub reference: Vec<String>,
    pub status: ItemStatus,
}

/// Where the governing reference values come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GoverningSource {
    /// The operator's values for this device.
    OperatorDevice { policy_id: String },
    /// The operator's values for the device's model.
    OperatorModel { model: String, policy_id: String },
    /// A vendor bundle for the model at a firmware version.
    VendorBundle {
        model: String,
        version: String,
        policy_id: String,
    },
    /// Nothing governs the device.
    None,
}

impl GoverningSource {
    /// The source of `found` (none when `None`).
    pub fn of(found: Option<&GoverningValues>) -> Self {
        let Some(f) = found else {
            return GoverningSource::None;
        };
        let policy_id = f.id.clone();
        match &f.scope {
            PolicyScope::Device(_) => GoverningSource::OperatorDevice { policy_id },
            PolicyScope::Model(m) => GoverningSource::OperatorModel {
                model: m.clone(),
                policy_id,
            },
            PolicyScope::Firmware { model, version } => GoverningSource::VendorBundle {
                model: model.clone(),
                version: version.clone(),
                policy_id,
            },
        }
    }
}

/// The whole comparison of a device's last measurements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub source: GoverningSource,
    /// The firmware version the measurements reported.
    pub firmware_version: Option<String>,
    /// How many items count against the device.
    pub bad: usize,
    pub items: Vec<ComparedItem>,
}

fn hexes<'a>(set: impl IntoIterator<Item = &'a crate::bytes::Sha256Digest>) -> Vec<String> {
    set.into_iter().map(|d| d.to_hex()).collect()
}

/// Compares `m` with the governing values `found` (none: every item is `no_reference`).
pub fn compare(m: &Measurements, found: Option<&GoverningValues>) -> Comparison {
    let empty = ReferenceValues::default();
    let rv = found.map_or(&empty, |f| &f.values);
    let mut items = Vec::new();
    compare_pcrs(m, rv, &mut items);
    compare_firmware(m, rv, &mut items);
    compare_events(m, rv, &mut items);
    Comparison {
        source: GoverningSource::of(found),
        firmware_version: m.firmware_version.clone(),
        bad: items.iter().filter(|i| i.status.is_bad()).count(),
        items,
    }
}

fn compare_pcrs(m: &Measurements, rv: &ReferenceValues, out: &mut Vec<ComparedItem>) {
    let indices: BTreeSet<u8> = m.pcrs.keys().chain(rv.pcrs.keys()).copied().collect();
    for i in indices {
        let measured = m.pcrs.get(&i);
        let want = rv.pcrs.get(&i);
        let status = match (measured, want) {
            (None, _) => ItemStatus::Missing,
            (Some(_), None) => ItemStatus::NoReference,
            (Some(got), Some(w)) if got == w => ItemStatus::Match,
            (Some(_), Some(_)) => ItemStatus::Differs,
        };
        out.push(ComparedItem {
            kind: ItemKind::Pcr,
            name: format!("PCR {i}"),
            pcr: Some(u32::from(i)),
            measured: measured.map(|d| d.to_hex()),
            reference: hexes(want),
            status,
        });
    }
}

fn compare_firmware(m: &Measurements, rv: &ReferenceValues, out: &mut Vec<ComparedItem>) {
    let pcr = Some(u32::from(m.firmware_pcr));
    let mut seen = BTreeSet::new();
    for e in m.firmware.iter().filter(|e| e.path != INVENTORY_PATH) {
        seen.insert(e.path.as_str());
        let allowed = rv.firmware.get(&e.path);
        let status = match (&e.sha256, allowed) {
            (_, None) if rv.firmware.is_empty() => ItemStatus::NoReference,
            (None, _) => ItemStatus::Missing,
            (Some(_), None) => ItemStatus::Unexpected,
            (Some(h), Some(set)) if set.contains(h) => ItemStatus::Match,
            (Some(_), Some(_)) => ItemStatus::Differs,
        };
        out.push(ComparedItem {
            kind: ItemKind::Firmware,
            name: e.path.clone(),
            pcr,
            measured: e.sha256.map(|d| d.to_hex()),
            reference: allowed.map(hexes).unwrap_or_default(),
            status,
        });
    }
    for (path, set) in &rv.firmware {
        if !seen.contains(path.as_str()) {
            out.push(ComparedItem {
                kind: ItemKind::Firmware,
                name: path.clone(),
                pcr,
                measured: None,
                reference: hexes(set),
                status: ItemStatus::Missing,
            });
        }
    }
}

fn compare_events(m: &Measurements, rv: &ReferenceValues, out: &mut Vec<ComparedItem>) {
    let Some(lm) = &m.eventlog else {
        return;
    };
    let r = rv.events.as_ref();
    let digests = r.map(|r| &r.digests);
    let constrains_any = digests.is_some_and(|d| !d.is_empty());
    for e in lm
        .events
        .iter()
        .filter(|e| !judged_by_state(e.kind, &e.subject))
    {
        let subjects = digests.and_then(|d| d.get(&e.kind));
        let allowed = subjects.and_then(|s| s.get(&e.subject));
        // As the appraisal: `other` is constrained whenever anything is.
        let constrained = subjects.is_some() || (e.kind == EventKind::Other && constrains_any);
        let status = match allowed {
            _ if !constrained => ItemStatus::NoReference,
            None => ItemStatus::Unexpected,
            Some(set) if set.contains(&e.digest) => ItemStatus::Match,
            Some(_) => ItemStatus::Differs,
        };
        out.push(ComparedItem {
            kind: ItemKind::Event,
            name: format!("PCR {} {} {}", e.pcr, e.kind.name(), e.subject),
            pcr: Some(e.pcr),
            measured: Some(e.digest.to_hex()),
            reference: allowed.map(hexes).unwrap_or_default(),
            status,
        });
    }
    // A listed class the log never shows is missing as a whole (the appraisal's
    // `EventClassMissing`); a listed subject alone that is absent is no finding.
    for (kind, subjects) in digests.into_iter().flatten() {
        let listed = subjects.keys().any(|s| !judged_by_state(*kind, s));
        let shown = lm
            .events
            .iter()
            .any(|e| e.kind == *kind && !judged_by_state(e.kind, &e.subject));
        if *kind != EventKind::Other && listed && !shown {
            out.push(ComparedItem {
                kind: ItemKind::Event,
                name: kind.name().to_owned(),
                pcr: None,
                measured: None,
                reference: hexes(subjects.values().flatten()),
                status: ItemStatus::Missing,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::Sha256Digest;
    use crate::firmware::FirmwareEntry;
    use crate::policy::events::{EventReference, LogMeasurements, MeasuredEvent};
    use crate::policy::{evaluate, policy_id};
    use crate::reason::Reason;

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
            firmware_version: Some("2.1".into()),
            inventory: None,
        }
    }

    fn governing(scope: PolicyScope, values: ReferenceValues) -> GoverningValues {
        GoverningValues {
            id: policy_id(&scope, &values),
            label: scope.label(),
            scope,
            values,
        }
    }

    fn status_of<'a>(c: &'a Comparison, name: &str) -> Option<&'a ComparedItem> {
        c.items.iter().find(|i| i.name == name)
    }

    #[test]
    fn own_capture_matches_everywhere() {
        let m = measurements();
        let g = governing(PolicyScope::Device("T1".into()), m.capture());
        let c = compare(&m, Some(&g));
        assert_eq!(c.bad, 0);
        assert!(evaluate(&g.values, &m, "device T1").is_empty());
        assert!(matches!(c.source, GoverningSource::OperatorDevice { .. }));
        // The firmware PCR is not captured: measured, but unconstrained.
        assert_eq!(
            status_of(&c, "PCR 14").map(|i| i.status),
            Some(ItemStatus::NoReference)
        );
        assert_eq!(
            status_of(&c, "PCR 3").map(|i| i.status),
            Some(ItemStatus::Match)
        );
    }

    #[test]
    fn a_pcr_the_appraisal_fails_on_differs() {
        let rv = measurements().capture();
        let mut m = measurements();
        m.pcrs.insert(3, d(0x33));
        let g = governing(PolicyScope::Model("T-100".into()), rv);
        let findings = evaluate(&g.values, &m, "model T-100");
        assert!(
            findings
                .iter()
                .any(|f| matches!(f.reason, Reason::PcrMismatch { index: 3, .. })),
            "the appraisal fails on PCR 3: {findings:?}"
        );
        let c = compare(&m, Some(&g));
        let item = status_of(&c, "PCR 3").cloned();
        assert_eq!(item.as_ref().map(|i| i.status), Some(ItemStatus::Differs));
        assert_eq!(
            item.as_ref().and_then(|i| i.measured.clone()),
            Some(d(0x33).to_hex())
        );
        assert_eq!(item.map(|i| i.reference), Some(vec![d(3).to_hex()]));
        assert_eq!(c.bad, 1);
        assert_eq!(c.bad, findings.len());
    }

    #[test]
    fn an_unquoted_pcr_is_missing_as_the_appraisal_says() {
        let rv = measurements().capture();
        let mut m = measurements();
        m.pcrs.remove(&5);
        let g = governing(
            PolicyScope::Firmware {
                model: "T-100".into(),
                version: "2.1".into(),
            },
            rv,
        );
        assert!(
            evaluate(&g.values, &m, "x")
                .iter()
                .any(|f| matches!(f.reason, Reason::PcrNotQuoted { index: 5 }))
        );
        let c = compare(&m, Some(&g));
        assert_eq!(
            status_of(&c, "PCR 5").map(|i| i.status),
            Some(ItemStatus::Missing)
        );
        assert!(matches!(
            c.source,
            GoverningSource::VendorBundle { ref version, .. } if version == "2.1"
        ));
    }

    #[test]
    fn firmware_files_differ_unexpected_and_missing_as_the_appraisal_finds() {
        let rv = measurements().capture();
        let mut m = measurements();
        m.firmware = vec![
            FirmwareEntry {
                path: "/fw/app.bin".into(),
                sha256: Some(d(0xbb)),
            },
            FirmwareEntry {
                path: "/fw/extra.bin".into(),
                sha256: Some(d(0xcc)),
            },
        ];
        let g = governing(PolicyScope::Device("T1".into()), rv.clone());
        let c = compare(&m, Some(&g));
        assert_eq!(
            status_of(&c, "/fw/app.bin").map(|i| i.status),
            Some(ItemStatus::Differs)
        );
        assert_eq!(
            status_of(&c, "/fw/extra.bin").map(|i| i.status),
            Some(ItemStatus::Unexpected)
        );
        assert_eq!(c.bad, evaluate(&rv, &m, "x").len());
        m.firmware.clear();
        let c = compare(&m, Some(&g));
        assert_eq!(
            status_of(&c, "/fw/app.bin").map(|i| i.status),
            Some(ItemStatus::Missing)
        );
        assert_eq!(c.bad, evaluate(&rv, &m, "x").len());
    }

    #[test]
    fn nothing_governing_means_no_reference_and_nothing_bad() {
        let c = compare(&measurements(), None);
        assert_eq!(c.source, GoverningSource::None);
        assert_eq!(c.bad, 0);
        assert!(c.items.iter().all(|i| i.status == ItemStatus::NoReference));
        assert!(!c.items.is_empty());
    }

    #[test]
    fn an_event_with_an_unapproved_digest_differs() {
        let ev = |digest| MeasuredEvent {
            pcr: 4,
            event_type: "EV_EFI_BOOT_SERVICES_APPLICATION".into(),
            kind: EventKind::BootApplication,
            subject: "\\EFI\\BOOT\\BOOTX64.EFI".into(),
            digest,
        };
        let mut m = measurements();
        m.eventlog = Some(LogMeasurements {
            events: vec![ev(d(0x44))],
            ..LogMeasurements::default()
        });
        let mut rv = m.capture();
        let c = compare(
            &m,
            Some(&governing(PolicyScope::Device("T1".into()), rv.clone())),
        );
        assert_eq!(c.bad, 0);
        m.eventlog = Some(LogMeasurements {
            events: vec![ev(d(0x45))],
            ..LogMeasurements::default()
        });
        let findings = evaluate(&rv, &m, "x");
        let g = governing(PolicyScope::Device("T1".into()), rv.clone());
        let c = compare(&m, Some(&g));
        let item = status_of(&c, "PCR 4 boot_application \\EFI\\BOOT\\BOOTX64.EFI");
        assert_eq!(item.map(|i| i.status), Some(ItemStatus::Differs));
        assert!(
            findings
                .iter()
                .any(|f| matches!(f.reason, Reason::EventNotInReference { pcr: 4, .. }))
        );
        // A class listed but never shown is missing as a whole.
        rv.events = Some(EventReference {
            digests: [(
                EventKind::Ipl,
                [("kernel".to_owned(), [d(1)].into_iter().collect())]
                    .into_iter()
                    .collect(),
            )]
            .into_iter()
            .collect(),
            ..EventReference::default()
        });
        let c = compare(&m, Some(&governing(PolicyScope::Device("T1".into()), rv)));
        assert_eq!(
            status_of(&c, "ipl").map(|i| i.status),
            Some(ItemStatus::Missing)
        );
    }
}
