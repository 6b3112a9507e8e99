//! `vouchctl` commands for vendor trust: trusting and revoking vendor keys, importing
//! vendor-signed manifests and reference bundles, revoking a firmware version, the supply-chain
//! policy, and a device's last verified measurements (what `vouch-provision reference
//! --evidence` reads). Each refusal exits 1 with the verifier's reason.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use vouch_protocol::vendor::Document;
use vouch_protocol::vendor::bundle::ReferenceBundle;
use vouch_protocol::vendor::manifest::DeviceManifest;

use super::client::Client;
use super::seg;
use crate::api::{
    ManifestImportView, ReasonBody, ReferenceImportView, ReferenceRevokedView, ReferenceView,
    VendorChangeView, VendorTrustBody, VendorView,
};

#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Trust a vendor's Ed25519 public key (the vendor.pub `vouch-provision vendor-init`
    /// wrote) under NAME: manifests and reference bundles it signs are accepted from then on.
    /// Compare the printed fingerprint with the vendor's out of band. A name is bound to one
    /// key for good: trusting it again with the same key changes nothing, with another key is
    /// refused, and a revoked name stays revoked (trust the new key under a new name).
    Trust {
        /// The vendor's name, as its documents name it: 1-64 of A-Z a-z 0-9 . _ -
        name: String,
        /// File holding the key: 64 hex characters.
        pubkey_file: PathBuf,
    },
    /// List the vendors trusted (and revoked), with their key fingerprints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a vendor: its manifests and reference bundles are refused from now on (devices
    /// already enrolled from its manifests stay enrolled).
    Revoke {
        name: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Verify vendor-signed device manifests (`vouch-provision issue` or `batch`) and enroll
    /// their devices; prints each enrolled id. A manifest from an unknown or revoked vendor,
    /// with a bad signature or malformed, is refused with the reason (exit 1 once all files
    /// were tried). An EK certificate that does not chain to the verifier's TPM roots does not
    /// refuse it: the device is enrolled (at best `warning` under require_ek_cert) and a
    /// warning says why.
    Manifest {
        /// Manifest files (COSE, CBOR).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify a vendor-signed reference bundle (`vouch-provision reference --vendor`) and store
    /// it as the reference values of its model at its firmware version. Refused: an unknown or
    /// revoked vendor, a bad signature, a bundle older than the one stored, a revoked version,
    /// or a model whose bundles come from another vendor.
    Reference {
        /// The bundle file (COSE, CBOR).
        bundle: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReferenceCommand {
    /// List the imported reference bundles (model, firmware version, vendor, revocation).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a firmware version (found vulnerable, say): every terminal of MODEL running
    /// VERSION is quarantined at its next attestation; `vouchctl devices` marks them REVOKED-FW
    /// before that. A revoked version stays revoked.
    Revoke {
        model: String,
        version: String,
        /// Why, for the audit trail and the quarantine reason.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SupplyChainCommand {
    /// Replace the supply-chain policy with a JSON file: {"mode": "deny"|"allow_only",
    /// "deny": {"pci_vendors": ["10ec"], "usb_vendors": [], "smbios_manufacturers": ["Hidden
    /// Board"], "tpm_manufacturers": ["XYZ"]}, "allow": {...}}. Checked at every attestation: a
    /// denied component makes the verdict contraindicated, naming the component and the rule.
    Set { file: PathBuf },
    /// Print the policy in force as JSON (the empty policy, allowing everything, if none set).
    Show,
}

/// Reads a document file, bounded by its type's limit (the verifier enforces it too).
fn read_doc<T: Document>(file: &Path) -> Result<Vec<u8>> {
    vouch_common::fs::read_limited(file, T::MAX_LEN as u64)
        .with_context(|| format!("reading {}", file.display()))
}

pub fn vendor(c: &Client, cmd: &VendorCommand) -> Result<()> {
    match cmd {
        VendorCommand::Trust { name, pubkey_file } => {
            let text = vouch_common::fs::read_limited(pubkey_file, 4096)
                .with_context(|| format!("reading {}", pubkey_file.display()))?;
            let key = String::from_utf8_lossy(&text).trim().to_owned();
            // Checked here too, so a wrong file is named before anything is sent.
            vouch_protocol::vendor::parse_public_key(&key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", pubkey_file.display()))?;
            let body = VendorTrustBody {
                name: name.clone(),
                key,
            };
            let v: VendorChangeView = c.post_json("/api/vendors", &body)?;
            println!(
                "vendor {} {} (key fingerprint {})",
                v.vendor.name,
                if v.changed {
                    "trusted"
                } else {
                    "was already trusted with this key"
                },
                v.vendor.fingerprint
            );
        }
        VendorCommand::List { json } => {
            let list: Vec<VendorView> = c.get("/api/vendors")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render_vendors(&list));
            }
        }
        VendorCommand::Revoke { name, reason } => {
            let body = ReasonBody {
                reason: reason.clone().unwrap_or_default(),
            };
            let v: VendorChangeView =
                c.post_json(&format!("/api/vendors/{}/revoke", seg(name)), &body)?;
            let r = v.vendor.revoked.as_ref();
            println!(
                "vendor {} {} at {}",
                v.vendor.name,
                if v.changed {
                    "revoked"
                } else {
                    "was already revoked"
                },
                r.map_or("-", |r| r.at.as_str())
            );
        }
    }
    Ok(())
}

pub fn import(c: &Client, cmd: &ImportCommand) -> Result<()> {
    match cmd {
        ImportCommand::Manifest { files } => {
            let mut refused = 0;
            for file in files {
                let result = read_doc::<DeviceManifest>(file).and_then(|bytes| {
                    c.post_bytes::<ManifestImportView>("/api/manifests", "application/cbor", &bytes)
                });
                match result {
                    Ok(v) => {
                        println!("{}", v.id);
                        if let Some(p) = &v.ek_cert_problem {
                            eprintln!("vouchctl: warning: {}: {p}", v.id);
                        }
                    }
                    Err(e) => {
                        eprintln!("vouchctl: {}: {e:#}", file.display());
                        refused += 1;
                    }
                }
            }
            if refused > 0 {
                bail!("{refused} of {} manifests refused", files.len());
            }
        }
        ImportCommand::Reference { bundle } => {
            let bytes = read_doc::<ReferenceBundle>(bundle)?;
            let v: ReferenceImportView =
                c.post_bytes("/api/references", "application/cbor", &bytes)?;
            let r = &v.reference;
            println!(
                "reference values for {} firmware {} from vendor {} {} ({}, issued {})",
                r.model,
                r.firmware_version,
                r.vendor,
                if v.created {
                    "imported"
                } else {
                    "were already imported"
                },
                r.content_id,
                r.issued_at
            );
            for d in &v.reevaluated {
                println!("  {} is {}", d.id, d.state);
            }
        }
    }
    Ok(())
}

pub fn reference(c: &Client, cmd: &ReferenceCommand) -> Result<()> {
    match cmd {
        ReferenceCommand::List { json } => {
            let list: Vec<ReferenceView> = c.get("/api/references")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render_references(&list));
            }
        }
        ReferenceCommand::Revoke {
            model,
            version,
            reason,
        } => {
            let body = ReasonBody {
                reason: reason.clone(),
            };
            let path = format!("/api/references/{}/{}/revoke", seg(model), seg(version));
            let v: ReferenceRevokedView = c.post_json(&path, &body)?;
            let r = &v.reference;
            println!(
                "firmware {} of model {} {} at {}: terminals running it are quarantined at \
                 their next attestation ({} challenged now)",
                r.firmware_version,
                r.model,
                if v.changed {
                    "revoked"
                } else {
                    "was already revoked"
                },
                r.revoked.as_ref().map_or("-", |r| r.at.as_str()),
                v.challenged
            );
        }
    }
    Ok(())
}

pub fn supply_chain(c: &Client, cmd: &SupplyChainCommand) -> Result<()> {
    match cmd {
        SupplyChainCommand::Set { file } => {
            let bytes = vouch_common::fs::read_limited(file, 4 << 20)
                .with_context(|| format!("reading {}", file.display()))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let p: serde_json::Value = c.put_json("/api/supply-chain", &value)?;
            println!("supply-chain policy set (mode {})", p["mode"]);
        }
        SupplyChainCommand::Show => {
            let p: serde_json::Value = c.get("/api/supply-chain")?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
    }
    Ok(())
}

/// `vouchctl measurements ID [--out FILE]`: the JSON of the device's last verified
/// measurements, on stdout or into FILE.
pub fn measurements(c: &Client, id: &str, out: Option<&Path>) -> Result<()> {
    let m: serde_json::Value = c.get(&format!("/api/devices/{}/measurements", seg(id)))?;
    let text = format!("{}\n", serde_json::to_string_pretty(&m)?);
    match out {
        Some(path) => {
            vouch_common::fs::write_atomic(path, text.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("measurements of {id} written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn render_vendors(list: &[VendorView]) -> String {
    let mut out = String::new();
    let w = list.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<w$}  {:<16}  {:<20}  STATUS",
        "NAME", "FINGERPRINT", "TRUSTED"
    );
    for v in list {
        let status = match &v.revoked {
            None => "trusted".to_owned(),
            Some(r) => format!("REVOKED {} by {}: {}", r.at, r.by, r.reason),
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<16}  {:<20}  {status}",
            v.name, v.fingerprint, v.trusted_at
        );
    }
    if list.is_empty() {
        out.push_str("(no vendors trusted: vouchctl vendor trust NAME PUBKEY_FILE)\n");
    }
    out
}

fn render_references(list: &[ReferenceView]) -> String {
    let mut out = String::new();
    let mw = list.iter().map(|r| r.model.len()).max().unwrap_or(5).max(5);
    let fw = list
        .iter()
        .map(|r| r.firmware_version.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "{:<mw$}  {:<fw$}  {:<16}  {:<12}  {:<20}  STATUS",
        "MODEL", "FIRMWARE", "VENDOR", "VALUES", "ISSUED"
    );
    for r in list {
        let status = match &r.revoked {
            None => "in force".to_owned(),
            Some(x) => format!("REVOKED {} by {}: {}", x.at, x.by, x.reason),
        };
        let _ = writeln!(
            out,
            "{:<mw$}  {:<fw$}  {:<16}  {:<12}  {:<20}  {status}",
            r.model, r.firmware_version, r.vendor, r.content_id, r.issued_at
        );
    }
    if list.is_empty() {
        out.push_str("(no reference bundles imported)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RevocationView;

    #[test]
    fn listings_show_revocations_with_their_reason() {
        let mut v = VendorView {
            name: "acme".into(),
            key: "00".repeat(32),
            fingerprint: "0123456789abcdef".into(),
            trusted_at: "2026-01-01T00:00:00Z".into(),
            trusted_by: "operator:admin".into(),
            revoked: None,
        };
        assert!(render_vendors(std::slice::from_ref(&v)).contains("trusted"));
        v.revoked = Some(RevocationView {
            at: "2026-02-01T00:00:00Z".into(),
            by: "operator:admin".into(),
            reason: "key leaked".into(),
        });
        let text = render_vendors(&[v]);
        assert!(text.contains("REVOKED 2026-02-01T00:00:00Z"), "{text}");
        assert!(text.contains("key leaked"), "{text}");
        assert!(render_references(&[]).contains("no reference bundles"));
    }
}
