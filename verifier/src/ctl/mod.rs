//! `vouchctl`, the operator CLI: argument definitions and one function per command. Every
//! command but `eventlog` talks to the verifier's HTTP API; failures print one line on stderr
//! and exit non-zero (see `bin/vouchctl.rs`).

pub mod client;
mod ear;
pub mod punches;
mod render;
mod tokens;
mod vendors;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

use crate::api::{
    AuditPage, DevicePage, DeviceView, EnrolledView, PolicyView, ReasonBody, StatsView,
};
use client::Client;

/// Operator CLI for a vouch verifier.
#[derive(Debug, Parser)]
#[command(name = "vouchctl", version, about, long_about = None)]
pub struct Cli {
    /// Base URL of the verifier's HTTP API.
    #[arg(
        long,
        global = true,
        env = "VOUCH_API",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// File holding the admin bearer token (ignored when VOUCH_TOKEN is set).
    #[arg(long, global = true, default_value = "./vouch-data/admin.token")]
    pub token_file: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a terminal from the enrollment request `vouch-agent enroll` wrote; prints its id.
    Enroll {
        /// Enrollment request file (CBOR).
        request_file: PathBuf,
    },
    /// List devices; PUNCHES shows each mirror's head seq, `!` marking a terminal whose punch
    /// buffer is under pressure; MARKS shows REVOKED-FW (the firmware it runs was revoked: its
    /// next attestation quarantines it) and SIM (a simulated terminal).
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Show one device.
    Device {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Manage reference values.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Cut a device off, with a reason for the audit trail.
    Quarantine {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Ask for a quarantined device back; it becomes trusted only when its re-attestation passes.
    Release {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Export mirrored punch records of one device (ID) or of all (--all), as JSON or CSV on
    /// stdout. Every page fetched is recorded in the audit trail (punches_exported).
    Punches(punches::PunchesArgs),
    /// Mark a device's held punch records (mirrored while it was not trusted) up to --through
    /// reviewed; audited. They stay held: neither a review nor a release unmarks that.
    ReviewPunches(punches::ReviewArgs),
    /// Vendors whose signed manifests and reference bundles are accepted.
    #[command(subcommand)]
    Vendor(vendors::VendorCommand),
    /// Import vendor-signed documents: device manifests (enrolls the devices) and reference
    /// bundles.
    #[command(subcommand)]
    Import(vendors::ImportCommand),
    /// Imported reference bundles: list them, revoke a firmware version.
    #[command(subcommand)]
    Reference(vendors::ReferenceCommand),
    /// The supply-chain policy: deny (or allow-only) rules on PCI/USB vendor ids, SMBIOS
    /// manufacturers and TPM manufacturers, checked at every attestation.
    #[command(subcommand)]
    SupplyChain(vendors::SupplyChainCommand),
    /// Print a device's last verified measurements as JSON (the input of `vouch-provision
    /// reference --evidence`).
    Measurements {
        id: String,
        /// Write them to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a device's latest attestation result as a signed EAR token (a JWT, one line) for
    /// relying parties; `--json` prints its claims after checking the signature.
    Ear(ear::EarArgs),
    /// Show the audit trail (enrollments, state changes, operator actions, policy changes).
    Audit {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        cmd: Option<AuditCmd>,
    },
    /// Manage API tokens with a role (admin only).
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Show message counters, including rejected messages by reason.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Decode a TCG firmware event log and replay it to PCR values (offline: no verifier
    /// needed). Exits non-zero with the parser's reason on a malformed log.
    Eventlog {
        /// The log, e.g. a copy of /sys/kernel/security/tpm0/binary_bios_measurements.
        file: PathBuf,
        /// Print {"pcrs": {"BANK": {"INDEX": "HEX"}}, "events": [...]} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Adopt the device's last verified measurements as its reference values, and re-evaluate.
    Capture { id: String },
    /// Set reference values from a JSON file for one device or for a model.
    Set(PolicySetArgs),
    /// Print the reference values of a device or a model as JSON (the `policy set` format).
    Show(PolicyTarget),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PolicyTarget {
    /// Reference values for this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Reference values for every device of this model (a device policy takes precedence).
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    #[command(flatten)]
    pub target: PolicyTarget,
    /// JSON: {"pcrs": {"sha256": {"0": "HEX", ...}}, "firmware": {"PATH": ["HEX", ...]}}
    pub file: PathBuf,
}

/// Path segments are percent-encoded so an id or model can never change the request path.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn read_token(file: &Path) -> Result<String> {
    if let Ok(t) = std::env::var("VOUCH_TOKEN") {
        return Ok(t.trim().to_owned());
    }
    let bytes = vouch_common::fs::read_limited(file, 4096)
        .with_context(|| "no token: set VOUCH_TOKEN or pass --token-file".to_string())?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// `vouchctl eventlog`: parse, replay, print.
fn eventlog(file: &Path, json: bool) -> Result<()> {
    use vouch_protocol::eventlog;
    let bytes = vouch_common::fs::read_limited(file, 64 * 1024 * 1024)?;
    let log = eventlog::parse(&bytes)
        .with_context(|| format!("{} is not a valid event log", file.display()))?;
    let replay = log.replay();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&eventlog::Report::new(&log, &replay))?
        );
    } else {
        print!("{}", eventlog::render_text(&log, &replay));
    }
    Ok(())
}

/// Fetches every page of a paged listing: `split` takes a page apart into its items and the
/// cursor of the next page, which is passed back as `?after=`.
fn all_pages<P, T, K>(
    c: &Client,
    path: &str,
    split: impl Fn(P) -> (Vec<T>, Option<K>),
) -> Result<Vec<T>>
where
    P: serde::de::DeserializeOwned,
    K: std::fmt::Display,
{
    let mut all = Vec::new();
    let mut url = path.to_owned();
    loop {
        let (items, next) = split(c.get(&url)?);
        all.extend(items);
        match next {
            Some(n) => url = format!("{path}?after={}", seg(&n.to_string())),
            None => return Ok(all),
        }
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    let client = || -> Result<Client> { Ok(Client::new(&cli.api, read_token(&cli.token_file)?)) };
    match &cli.command {
        Command::Eventlog { file, json } => eventlog(file, *json)?,
        Command::Enroll { request_file } => {
            let bytes = vouch_common::fs::read_limited(request_file, 64 * 1024)?;
            let v: EnrolledView =
                client()?.post_bytes("/api/devices", "application/cbor", &bytes)?;
            println!("{}", v.id);
            if let Some(p) = &v.ek_cert_problem {
                eprintln!("vouchctl: warning: {}: {p}", v.id);
            }
        }
        Command::Devices { json } => {
            let all = all_pages(&client()?, "/api/devices", |p: DevicePage| {
                (p.devices, p.next)
            })?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", render::devices(&all));
            }
        }
        Command::Device { id, json } => {
            let d: DeviceView = client()?.get(&format!("/api/devices/{}", seg(id)))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", render::device(&d));
            }
        }
        Command::Policy(PolicyCommand::Capture { id }) => {
            let v: PolicyView =
                client()?.post_json(&format!("/api/devices/{}/policy/capture", seg(id)), &())?;
            print!("{}", render::policy(&v));
        }
        Command::Policy(PolicyCommand::Set(args)) => {
            let bytes = vouch_common::fs::read_limited(&args.file, 1024 * 1024)?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", args.file.display()))?;
            let path = match (&args.target.device, &args.target.model) {
                (Some(d), _) => format!("/api/policies/device/{}", seg(d)),
                (None, Some(m)) => format!("/api/policies/model/{}", seg(m)),
                (None, None) => bail!("pass --device ID or --model MODEL"),
            };
            let v: PolicyView = client()?.put_json(&path, &value)?;
            print!("{}", render::policy(&v));
        }
        Command::Policy(PolicyCommand::Show(target)) => {
            let path = match (&target.device, &target.model) {
                (Some(d), _) => format!("/api/policies/device/{}", seg(d)),
                (None, Some(m)) => format!("/api/policies/model/{}", seg(m)),
                (None, None) => bail!("pass --device ID or --model MODEL"),
            };
            let v: serde_json::Value = client()?.get(&path)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Quarantine { id, reason } => {
            let body = ReasonBody {
                reason: reason.clone(),
            };
            let d: DeviceView =
                client()?.post_json(&format!("/api/devices/{}/quarantine", seg(id)), &body)?;
            println!("{} is {}", d.id, d.state);
        }
        Command::Release { id, reason } => {
            let body = ReasonBody {
                reason: reason.clone(),
            };
            let d: DeviceView =
                client()?.post_json(&format!("/api/devices/{}/release", seg(id)), &body)?;
            println!(
                "{} is {}; release recorded, waiting for its re-attestation",
                d.id, d.state
            );
        }
        Command::Vendor(cmd) => vendors::vendor(&client()?, cmd)?,
        Command::Import(cmd) => vendors::import(&client()?, cmd)?,
        Command::Reference(cmd) => vendors::reference(&client()?, cmd)?,
        Command::SupplyChain(cmd) => vendors::supply_chain(&client()?, cmd)?,
        Command::Measurements { id, out } => vendors::measurements(&client()?, id, out.as_deref())?,
        Command::Ear(args) => ear::run(&client()?, args)?,
        Command::Punches(args) => punches::export(&client()?, args)?,
        Command::ReviewPunches(args) => punches::review(&client()?, args)?,
        Command::Audit {
            cmd: Some(AuditCmd::Verify(args)),
            ..
        } => audit_verify(args)?,
        Command::Audit { json, cmd: None } => {
            let all = all_pages(&client()?, "/api/audit", |p: AuditPage| (p.entries, p.next))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", render::audit(&all));
            }
        }
        Command::Token(cmd) => tokens::run(&client()?, cmd)?,
        Command::Stats { json } => {
            let s: StatsView = client()?.get("/api/stats")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", render::stats(&s));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(seg("T-100.a_b"), "T-100.a_b");
        assert_eq!(seg("../x"), "..%2Fx");
        assert_eq!(seg("a b?c"), "a%20b%3Fc");
    }

    #[test]
    fn punches_takes_a_device_or_all_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["vouchctl", "punches"], args].concat());
        assert!(parse(&[]).is_err(), "neither");
        assert!(parse(&["t1", "--all"]).is_err(), "both");
        assert!(
            parse(&["--all", "--since", "3"]).is_err(),
            "--since needs a device"
        );
        assert!(parse(&["--all", "--format", "csv"]).is_ok());
        assert!(parse(&["t1", "--since", "3", "--format", "json"]).is_ok());
        assert!(parse(&["t1", "--format", "xml"]).is_err());
    }

    #[test]
    fn policy_set_requires_exactly_one_target() {
        assert!(Cli::try_parse_from(["vouchctl", "policy", "set", "f.json"]).is_err());
        assert!(
            Cli::try_parse_from([
                "vouchctl", "policy", "set", "--device", "a", "--model", "m", "f.json"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["vouchctl", "policy", "set", "--model", "m", "f.json"]).is_ok()
        );
    }
}

/// `vouchctl audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the audit hash chain and its signed head (exit 0 ok, 2 when the chain is broken,
    /// naming the first bad entry; 1 for any other error).
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The store of a stopped verifier (`DATA/vouch.redb`), opened read-only.
    #[arg(long)]
    store: PathBuf,
    /// The verifier's public key (`DATA/verifier.pub`) the head signature must verify with.
    #[arg(long)]
    verifier_key: PathBuf,
    /// A head recorded earlier (`SEQ:HASH`, as printed): it must still be in the chain.
    #[arg(long)]
    expect: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Exit status of `audit verify` for a broken chain (distinct from 1, any other failure).
pub const AUDIT_BROKEN_EXIT: i32 = 2;

fn audit_verify(args: &AuditVerifyArgs) -> Result<()> {
    let expect = args
        .expect
        .as_deref()
        .map(str::parse::<vouch_protocol::audit::Head>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--expect: {e}"))?;
    let key = vouch_common::keys::read_public(&args.verifier_key)?;
    let report = crate::store::verify_offline(&args.store, &key, expect)?;
    match report {
        Ok((n, head)) => {
            if args.json {
                let v = serde_json::json!({"ok": true, "entries": n,
                    "head": {"seq": head.seq, "hash": head.hash.to_hex()}});
                println!("{v}");
            } else {
                println!("audit chain ok: {n} entries, head {head}");
            }
            Ok(())
        }
        Err(p) => {
            if args.json {
                let v = serde_json::json!({"ok": false, "seq": p.seq(), "problem": p.code(),
                    "error": p.to_string()});
                println!("{v}");
            } else {
                eprintln!("audit chain broken: {p}");
            }
            std::process::exit(AUDIT_BROKEN_EXIT);
        }
    }
}
