//! `vouch-provision reference`: hashes golden firmware images under the paths they will have on
//! the terminal, takes expected PCR values and/or a golden firmware event log, and prints
//! reference values as JSON — or captures them from a known-good terminal's verified
//! measurements (`--evidence FILE`, the JSON `vouchctl measurements ID --out FILE` writes).
//! With `--vendor DIR --model M --firmware-version V --out BUNDLE` the same values are written
//! as a vendor-signed reference bundle ([`vouch_protocol::vendor::bundle::ReferenceBundle`])
//! for that model and firmware version, which operators import with `vouchctl import reference`.
//!
//! From a golden log, the reference pins every PCR its `events` section constrains: the PCRs
//! vouch-agent quotes besides the firmware PCR (0-9 without `--firmware-pcr`). Each gets its
//! replayed value in `pcrs` (a PCR the log never extends pins its reset value) and its event
//! types in `events.event_types`, so a terminal's log must explain each of them closed-world.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use vouch_protocol::appraisal::log_pcr_value;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::inventory::INVENTORY_PATH;
use vouch_protocol::policy::events::LogMeasurements;
use vouch_protocol::policy::{MAX_PCR, Measurements, ReferenceValues};
use vouch_protocol::vendor::bundle::{ReferenceBundle, check_label};

use vouch_provisioning::vendor::VendorDir;

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// TERMINAL_PATH=GOLDEN_FILE: the path the agent measures on the terminal, and a local copy
    /// of the approved image (repeatable; a path given twice accepts both hashes).
    #[arg(
        long = "firmware",
        value_name = "TERMINAL_PATH=GOLDEN_FILE",
        conflicts_with = "evidence"
    )]
    pub firmware: Vec<String>,
    /// INDEX=HEX: an expected sha256 PCR value (repeatable; overrides the event log's).
    #[arg(long = "pcr", value_name = "INDEX=HEX", conflicts_with = "evidence")]
    pub pcrs: Vec<String>,
    /// A golden firmware event log of this model and firmware version.
    #[arg(long, conflicts_with = "evidence")]
    pub eventlog: Option<PathBuf>,
    /// A known-good terminal's verified measurements (`vouchctl measurements ID --out FILE`):
    /// its quoted PCRs (but the firmware PCR), firmware hashes and event-log values.
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
    /// The PCR the terminals' agents measure firmware into (pinned with --firmware).
    #[arg(long, default_value_t = 14)]
    pub firmware_pcr: u8,
    /// Write the JSON (or, with --vendor, the signed bundle) here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sign the values as this vendor (a `vendor-init` directory): writes a reference bundle.
    #[arg(long, value_name = "DIR", requires_all = ["model", "firmware_version", "out"])]
    pub vendor: Option<PathBuf>,
    /// The terminal model the bundle is for (with --vendor).
    #[arg(long, requires = "vendor")]
    pub model: Option<String>,
    /// The firmware version the bundle is for (with --vendor).
    #[arg(long, requires = "vendor")]
    pub firmware_version: Option<String>,
}

/// The PCRs vouch-agent quotes besides its firmware PCR (`vouch_agent::attester::QUOTED_PCRS`).
const AGENT_QUOTED_PCRS: std::ops::RangeInclusive<u8> = 0..=9;

fn hash_file(path: &Path) -> Result<Sha256Digest> {
    vouch_common::fs::sha256_file(path)
        .map(Sha256Digest)
        .with_context(|| format!("cannot read golden image {}", path.display()))
}

/// Reference values captured from verified measurements in `path` (JSON).
fn from_evidence(path: &Path) -> Result<ReferenceValues> {
    let bytes = vouch_common::fs::read_limited(path, 16 << 20)?;
    let m: Measurements = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not the JSON of verified measurements (what `vouchctl measurements ID --out FILE` writes)",
            path.display()
        )
    })?;
    let mut rv = m.capture();
    // The inventory digest is in the firmware list but is no firmware file: each terminal's
    // differs, and the manifest's baseline governs it.
    rv.firmware.remove(INVENTORY_PATH);
    if rv.is_empty() {
        bail!("{} holds no measurements to capture", path.display());
    }
    Ok(rv)
}

/// Builds reference values from the arguments.
pub fn build(args: &ReferenceArgs) -> Result<ReferenceValues> {
    if let Some(path) = &args.evidence {
        return from_evidence(path);
    }
    let mut firmware: BTreeMap<String, BTreeSet<Sha256Digest>> = BTreeMap::new();
    for spec in &args.firmware {
        let (terminal, golden) = spec
            .split_once('=')
            .with_context(|| format!("--firmware {spec}: expected TERMINAL_PATH=GOLDEN_FILE"))?;
        if terminal.is_empty() {
            bail!("--firmware {spec}: the terminal path is empty");
        }
        firmware
            .entry(terminal.to_owned())
            .or_default()
            .insert(hash_file(Path::new(golden))?);
    }
    let mut pcrs = BTreeMap::new();
    let mut events = None;
    if let Some(path) = &args.eventlog {
        let bytes = vouch_common::fs::read_limited(path, 64 << 20)?;
        let log = vouch_protocol::eventlog::parse(&bytes)
            .with_context(|| format!("{} is not a valid event log", path.display()))?;
        if !log.banks().contains(&HashAlg::Sha256) {
            bail!("{} has no sha256 bank", path.display());
        }
        let constrained: BTreeSet<u32> = AGENT_QUOTED_PCRS
            .filter(|i| *i != args.firmware_pcr)
            .map(u32::from)
            .collect();
        for index in AGENT_QUOTED_PCRS.filter(|i| *i != args.firmware_pcr) {
            let value = log_pcr_value(&log, index).with_context(|| {
                format!(
                    "{}: PCR {index} cannot be replayed (an event lacks its sha256 digest)",
                    path.display()
                )
            })?;
            pcrs.insert(index, value);
        }
        events = Some(LogMeasurements::golden(&log, &constrained).capture());
    }
    for spec in &args.pcrs {
        let (i, hex) = spec
            .split_once('=')
            .with_context(|| format!("--pcr {spec}: expected INDEX=HEX"))?;
        let index: u8 = i
            .parse()
            .ok()
            .filter(|i| *i <= MAX_PCR)
            .with_context(|| format!("--pcr {spec}: index must be 0-{MAX_PCR}"))?;
        let value: Sha256Digest = hex.parse().with_context(|| format!("--pcr {spec}"))?;
        pcrs.insert(index, value);
    }
    if !vouch_protocol::firmware::usable_pcr(args.firmware_pcr) {
        bail!("--firmware-pcr must be 8-16 or 23");
    }
    let firmware_pcr = (!firmware.is_empty()).then_some(args.firmware_pcr);
    let rv = ReferenceValues {
        pcrs,
        firmware,
        events,
        firmware_pcr,
    };
    if rv.is_empty() {
        bail!("no reference values given: pass --firmware, --pcr and/or --eventlog");
    }
    Ok(rv)
}

pub fn run(args: &ReferenceArgs) -> Result<()> {
    let rv = build(args)?;
    if let (Some(dir), Some(model), Some(version), Some(out)) =
        (&args.vendor, &args.model, &args.firmware_version, &args.out)
    {
        return write_bundle(dir, model, version, rv, out);
    }
    let json = serde_json::to_string_pretty(&rv)? + "\n";
    match &args.out {
        Some(p) => vouch_common::fs::write_atomic(p, json.as_bytes(), 0o644)?,
        None => print!("{json}"),
    }
    Ok(())
}

/// Signs `reference` as the vendor in `dir` for `model` at `version` and writes it to `out`.
fn write_bundle(
    dir: &Path,
    model: &str,
    version: &str,
    reference: ReferenceValues,
    out: &Path,
) -> Result<()> {
    check_label("model", model).map_err(anyhow::Error::msg)?;
    check_label("firmware version", version).map_err(anyhow::Error::msg)?;
    let vendor = VendorDir::load(dir)?;
    let bundle = ReferenceBundle {
        model: model.to_owned(),
        firmware_version: version.to_owned(),
        issued_at: vouch_common::time::now_unix(),
        reference,
    };
    let bytes = vouch_protocol::vendor::seal(&vendor.name, &bundle, &vendor.key);
    vouch_common::fs::write_atomic(out, &bytes, 0o644)?;
    println!(
        "reference bundle for {model} firmware {version} signed by {}: {}",
        vendor.name,
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Default for ReferenceArgs {
        fn default() -> Self {
            ReferenceArgs {
                firmware: vec![],
                pcrs: vec![],
                eventlog: None,
                evidence: None,
                firmware_pcr: 14,
                out: None,
                vendor: None,
                model: None,
                firmware_version: None,
            }
        }
    }

    #[test]
    fn golden_images_and_pcrs_become_policy_json() {
        let dir = tempfile::tempdir().unwrap();
        let golden = dir.path().join("fw.bin");
        std::fs::write(&golden, b"abc").unwrap();
        let args = ReferenceArgs {
            firmware: vec![format!("/opt/terminal/fw.bin={}", golden.display())],
            pcrs: vec![format!("7={}", "11".repeat(32))],
            ..ReferenceArgs::default()
        };
        let rv = build(&args).unwrap();
        let json = serde_json::to_value(&rv).unwrap();
        assert_eq!(
            json["firmware"]["/opt/terminal/fw.bin"][0],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(json["pcrs"]["sha256"]["7"], "11".repeat(32));
        // It is exactly what `vouchctl policy set` accepts.
        let back: ReferenceValues = serde_json::from_value(json).unwrap();
        assert_eq!(back, rv);
    }

    #[test]
    fn golden_event_log_gives_boot_pcrs_and_event_references() {
        let dir = tempfile::tempdir().unwrap();
        let log = vouch_protocol::eventlog::build::TerminalBoot::default().log();
        let path = dir.path().join("golden.bin");
        std::fs::write(&path, log.bytes()).unwrap();
        let rv = build(&ReferenceArgs {
            firmware: vec![],
            pcrs: vec![],
            eventlog: Some(path),
            ..ReferenceArgs::default()
        })
        .unwrap();
        // Every PCR the events section constrains is pinned: 0-9, PCR 9 at its reset value.
        assert_eq!(
            rv.pcrs.keys().copied().collect::<Vec<_>>(),
            (0..=9).collect::<Vec<u8>>()
        );
        let parsed = vouch_protocol::eventlog::parse(&log.bytes()).unwrap();
        for pcr in [4, 8] {
            let replayed = parsed.replay().get(HashAlg::Sha256, pcr).unwrap().to_vec();
            assert_eq!(rv.pcrs[&(pcr as u8)].0.to_vec(), replayed);
        }
        assert_eq!(rv.pcrs[&9], Sha256Digest::ZERO);
        let events = rv.events.unwrap();
        assert!(events.secure_boot_required);
        assert_eq!(events.dbx_min_entries, Some(371));
        assert_eq!(
            events.event_types.keys().copied().collect::<Vec<_>>(),
            rv.pcrs.keys().map(|i| u32::from(*i)).collect::<Vec<_>>()
        );
        assert_eq!(
            events.event_types[&8].iter().collect::<Vec<_>>(),
            vec!["EV_IPL"]
        );
        assert!(events.event_types[&9].is_empty());
    }

    #[test]
    fn a_firmware_pcr_among_the_quoted_ones_is_not_pinned_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("golden.bin");
        let log = vouch_protocol::eventlog::build::TerminalBoot::default().log();
        std::fs::write(&path, log.bytes()).unwrap();
        let rv = build(&ReferenceArgs {
            firmware: vec![],
            pcrs: vec![],
            eventlog: Some(path),
            firmware_pcr: 9,
            ..ReferenceArgs::default()
        })
        .unwrap();
        assert!(!rv.pcrs.contains_key(&9));
        assert!(!rv.events.unwrap().event_types.contains_key(&9));
    }

    #[test]
    fn bad_arguments_are_named() {
        let bad = |firmware: &[&str], pcrs: &[&str]| {
            build(&ReferenceArgs {
                firmware: firmware.iter().map(|s| s.to_string()).collect(),
                pcrs: pcrs.iter().map(|s| s.to_string()).collect(),
                ..ReferenceArgs::default()
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad(&["nopath"], &[]).contains("TERMINAL_PATH=GOLDEN_FILE"));
        assert!(bad(&["/x=/definitely/missing"], &[]).contains("golden image"));
        assert!(bad(&[], &["24=00"]).contains("index"));
        assert!(bad(&[], &[]).contains("no reference values"));
    }
}
