//! The closed-world half of per-event policy: for every PCR the `event_types` section of the
//! reference constrains, the log must account for the whole quoted value, with events of the
//! approved types only; and no event may carry a firmware event type in a PCR the PC Client
//! specification leaves to the operating system.
//!
//! Why each rule is needed: the PCR extend covers an event's digest, not its type or data, so a
//! log can *omit* an event (the quote still reflects it), or *relabel* it to a type vouch judges
//! differently. Checked here, per constrained PCR:
//!
//! 1. It was quoted ("PCR n is constrained by the reference … but was not quoted").
//! 2. Its quoted value equals the replay of the log's events for it, a PCR without events
//!    counting as its reset value ("quoted PCR n is not explained by the event log", or "event
//!    log does not match the quote: PCR n" when it has events). An omitted event fails here.
//! 3. Every extending event's type is listed for it ("PCR 8 EV_POST_CODE event is not in the
//!    reference for …"). A relabelled event fails here.
//!
//! And, for every PCR the quote vouches for (TCG PC Client Platform Firmware Profile, "PCR
//! usage" and "Event types"): PCRs 0-7 belong to the platform firmware, PCRs 8-15 to the OS and
//! its boot loaders (GRUB: 8 commands, 9 files; systemd-boot/stub: 11-13; shim: 14), which log
//! with `EV_IPL` and `EV_EVENT_TAG`, and may use `EV_ACTION`/`EV_EFI_ACTION` strings. Every
//! other type the specification defines is a firmware event (POST code, CRTM, microcode,
//! platform blobs, UEFI variables and images, handoff tables, GPT, separators, ...): one in PCR
//! 8-15 is a boot-loader measurement relabelled to escape its class, whatever the reference
//! says. Vendor types the specification does not define are left to the reference (rule 3).

use std::collections::{BTreeMap, BTreeSet};

use super::events::{EventReference, LogMeasurements};
use super::{Area, Finding};
use crate::eventlog::EventType;
use crate::reason::Reason;

/// PCRs the PC Client spec leaves to the OS and its boot loaders.
pub(super) const OS_PCRS: std::ops::RangeInclusive<u32> = 8..=15;

/// Whether an event of `t` may appear in an OS PCR (8-15).
pub fn os_pcr_may_carry(t: EventType) -> bool {
    matches!(
        t,
        EventType::IPL | EventType::EVENT_TAG | EventType::ACTION | EventType::EFI_ACTION
    ) || t.name().is_none()
}

/// Findings of the closed-world rules; `quoted` is the set of quoted PCRs.
pub(super) fn findings(
    r: &EventReference,
    lm: &LogMeasurements,
    quoted: &BTreeSet<u32>,
    scope: &str,
) -> Vec<Finding> {
    let mut out = relabelled(&lm.event_types);
    if r.event_types.is_empty() {
        return out;
    }
    let Some(explained) = &lm.explained_pcrs else {
        out.push(Finding {
            area: Area::Executables,
            reason: Reason::ClosedWorldStaleMeasurements {
                scope: scope.to_owned(),
            },
        });
        return out;
    };
    for (pcr, allowed) in &r.event_types {
        let pcr = *pcr;
        let reason = if !quoted.contains(&pcr) {
            Reason::ClosedWorldPcrNotQuoted {
                pcr,
                scope: scope.to_owned(),
            }
        } else if !explained.contains(&pcr) {
            if lm.unverified_pcrs.contains(&pcr) {
                Reason::ClosedWorldPcrMismatch { pcr }
            } else {
                Reason::ClosedWorldPcrUnexplained { pcr }
            }
        } else {
            for t in lm.event_types.get(&pcr).into_iter().flatten() {
                if !allowed.contains(t) {
                    out.push(Finding {
                        area: Area::Executables,
                        reason: Reason::ClosedWorldEventType {
                            pcr,
                            event_type: t.clone(),
                            scope: scope.to_owned(),
                        },
                    });
                }
            }
            continue;
        };
        out.push(Finding {
            area: Area::Executables,
            reason,
        });
    }
    out
}

/// Firmware event types in OS PCRs, whatever the reference lists.
fn relabelled(types: &BTreeMap<u32, BTreeSet<String>>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (pcr, names) in types {
        if !OS_PCRS.contains(pcr) {
            continue;
        }
        for name in names {
            if EventType::from_name(name).is_some_and(|t| !os_pcr_may_carry(t)) {
                out.push(Finding {
                    area: Area::Executables,
                    reason: Reason::FirmwareEventInOsPcr {
                        pcr: *pcr,
                        event_type: name.clone(),
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boot_loader_types_belong_in_os_pcrs() {
        for ok in [
            EventType::IPL,
            EventType::EVENT_TAG,
            EventType::EFI_ACTION,
            EventType(0x9000_0001),
        ] {
            assert!(os_pcr_may_carry(ok), "{ok}");
        }
        for relabel in [
            EventType::POST_CODE,
            EventType::POST_CODE2,
            EventType::SEPARATOR,
            EventType::S_CRTM_VERSION,
            EventType::EFI_BOOT_SERVICES_APPLICATION,
            EventType::EFI_PLATFORM_FIRMWARE_BLOB,
            EventType::EFI_VARIABLE_AUTHORITY,
        ] {
            assert!(!os_pcr_may_carry(relabel), "{relabel}");
        }
    }
}
