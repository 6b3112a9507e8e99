//! What the CLI shows: a serde-serializable [`Report`] of a log and its replay (for JSON), and
//! [`render_text`], a table of events followed by the replayed PCRs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::text::truncate_chars;
use super::{EventClass, EventLog, Replay};
use crate::digest::HashAlg;

/// A log and its replay, shaped for JSON:
/// `{"format": "crypto-agile", "pcrs": {"sha256": {"0": "<hex>", ...}}, "events": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// `"crypto-agile"` or `"legacy-sha1"`.
    pub format: &'static str,
    /// Bank name → PCR index → lower-case hex value (JSON object keys are the decimal index).
    pub pcrs: BTreeMap<&'static str, BTreeMap<u32, String>>,
    /// Bank name → PCRs that could not be replayed (omitted when empty).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unreplayable: BTreeMap<&'static str, Vec<u32>>,
    /// Zero bytes after the last event taken as padding (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub padding: usize,
    pub events: Vec<ReportEvent>,
}

/// One event of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReportEvent {
    pub index: usize,
    pub offset: usize,
    pub pcr: u32,
    /// The TCG event type name, or hex for an unknown type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Algorithm name (or hex id) → lower-case hex digest.
    pub digests: BTreeMap<String, String>,
    pub summary: String,
    /// `null` for unclassified events.
    pub class: Option<EventClass>,
    /// The policy subject, present when `class` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    pub fn new(log: &EventLog, replay: &Replay) -> Self {
        let pcrs = replay
            .banks()
            .iter()
            .map(|(alg, bank)| {
                let values = bank.iter().map(|(&pcr, v)| (pcr, hex::encode(v))).collect();
                (alg.name(), values)
            })
            .collect();
        let unreplayable = replay
            .unreplayable()
            .iter()
            .map(|(alg, pcrs)| (alg.name(), pcrs.iter().copied().collect()))
            .collect();
        let events = log
            .events
            .iter()
            .map(|event| {
                let class = event.class();
                ReportEvent {
                    index: event.index,
                    offset: event.offset,
                    pcr: event.pcr,
                    event_type: event.event_type.to_string(),
                    digests: event
                        .digests
                        .iter()
                        .map(|d| (d.alg.to_string(), hex::encode(&d.digest)))
                        .collect(),
                    summary: event.summary(),
                    subject: class.as_ref().map(|c| c.subject().to_owned()),
                    class,
                }
            })
            .collect();
        Self {
            format: log.format.as_str(),
            pcrs,
            unreplayable,
            padding: log.padding,
            events,
        }
    }
}

/// Hex digits of a digest shown in the text table.
const SHORT_DIGEST: usize = 16;
/// Characters of a summary shown in the text table.
const SHORT_SUMMARY: usize = 100;

/// A human-readable rendering: a header line, one line per event (index, PCR, type, the SHA-256
/// digest or else the first one, shortened, and the summary), then the replayed PCRs per bank.
pub fn render_text(log: &EventLog, replay: &Replay) -> String {
    let banks: Vec<&str> = log.banks().into_iter().map(HashAlg::name).collect();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{} event log, {} events, banks: {}",
        log.format,
        log.events.len(),
        banks.join(", ")
    );
    if log.padding > 0 {
        let _ = writeln!(
            out,
            "({} bytes of zero padding after the last event)",
            log.padding
        );
    }
    let _ = writeln!(
        out,
        "{:>5}  {:>3}  {:<34} {:<24} summary",
        "index", "pcr", "type", "digest"
    );
    for event in &log.events {
        let digest = event
            .digest(HashAlg::Sha256)
            .map(|d| format!("sha256:{}", short_hex(d)))
            .or_else(|| {
                event
                    .digests
                    .first()
                    .map(|d| format!("{}:{}", d.alg, short_hex(&d.digest)))
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>5}  {:>3}  {:<34} {:<24} {}",
            event.index,
            event.pcr,
            event.event_type.to_string(),
            digest,
            truncate_chars(&event.summary(), SHORT_SUMMARY)
        );
    }
    for (alg, bank) in replay.banks() {
        let _ = writeln!(out, "\nPCRs ({alg}):");
        for (pcr, value) in bank {
            let _ = writeln!(out, "  {pcr:>2}: {}", hex::encode(value));
        }
    }
    for (alg, pcrs) in replay.unreplayable() {
        let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "\nnot replayable ({alg}, events without a {alg} digest): PCR {}",
            list.join(", ")
        );
    }
    out
}

fn short_hex(digest: &[u8]) -> String {
    let full = hex::encode(digest);
    truncate_chars(&full, SHORT_DIGEST)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::eventlog::parse;
    use crate::eventlog::testlog::small_agile_log;

    #[test]
    fn json_shape() {
        let log = parse(&small_agile_log()).unwrap();
        let replay = log.replay();
        let json = serde_json::to_value(Report::new(&log, &replay)).unwrap();
        assert_eq!(json["format"], "crypto-agile");
        let pcr7 = json["pcrs"]["sha256"]["7"].as_str().unwrap();
        assert_eq!(pcr7, hex::encode(replay.get(HashAlg::Sha256, 7).unwrap()));
        assert_eq!(json["pcrs"]["sha1"].as_object().unwrap().len(), 3);
        assert!(json.get("unreplayable").is_none() && json.get("padding").is_none());
        let events = json["events"].as_array().unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["type"], "EV_NO_ACTION");
        assert!(events[0]["class"].is_null() && events[0].get("subject").is_none());
        let var = &events[2];
        assert_eq!(
            (var["index"].as_u64(), var["pcr"].as_u64()),
            (Some(2), Some(7))
        );
        assert_eq!(var["type"], "EV_EFI_VARIABLE_DRIVER_CONFIG");
        assert_eq!(var["summary"], "SecureBoot = enabled");
        assert_eq!(var["class"]["kind"], "secure_boot_variable");
        assert_eq!(var["subject"], "SecureBoot");
        let digest = var["digests"]["sha256"].as_str().unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, digest.to_lowercase());
        assert_eq!(
            var["offset"].as_u64(),
            Some(u64::try_from(log.events[2].offset).unwrap())
        );
    }

    #[test]
    fn text_rendering() {
        let log = parse(&small_agile_log()).unwrap();
        let text = render_text(&log, &log.replay());
        assert!(text.starts_with("crypto-agile event log, 5 events, banks: sha1, sha256\n"));
        assert!(text.contains("EV_IPL"));
        assert!(text.contains("grub_cmd: linux /vmlinuz"));
        assert!(text.contains("\nPCRs (sha256):\n   0: "));
        assert!(text.contains("   8: "));
        // One line per event, one header line and one column header.
        let table = text.split("\n\n").next().unwrap();
        assert_eq!(table.lines().count(), 2 + 5);
    }
}
