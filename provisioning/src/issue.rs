//! `vouch-provision issue REQUEST RESPONSE --vendor DIR --model M --firmware-version V --out
//! MANIFEST`: the station's last step. It signs a device manifest only when every check holds,
//! in this order, refusing with the failed check named:
//! 1. the request is a valid, device-signed enrollment request (`Enrollment::from_request`),
//!    for the model given (`--model` must equal the request's), carrying a hardware inventory;
//! 2. the response answers the pending challenge made for exactly this request, before it
//!    expired, with the right secret (the AK is in the TPM holding the EK);
//! 3. the EK certificate chains to a TPM-manufacturer root in `--tpm-roots DIR` (every `*.pem`
//!    there is an anchor) and certifies this EK. Without `--tpm-roots`, or without a
//!    certificate, it refuses unless `--allow-no-ek-cert`: the factory decides, explicitly.
//!
//! The manifest records `credential_activated = true`, `simulated = false` and the firmware
//! version given; it is checked with `Enrollment::from_manifest`, the verifier's own import
//! check, before it is written. The pending challenge is removed afterwards: it is single-use.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::credential::{MAX_RESPONSE, request_digest};
use vouch_protocol::ekcert::{
    EkCertInfo, MAX_PEM_TEXT, TrustAnchors, parse_pem_certificates, verify_ek_certificate,
};
use vouch_protocol::enrollment::{Enrollment, MAX_REQUEST};
use vouch_protocol::messages::EnrollmentRequest;
use vouch_protocol::vendor::bundle::check_label;
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_provisioning::pending;

use crate::challenge::read_request;
use vouch_provisioning::vendor::VendorDir;

/// Most PEM files read from a roots directory.
const MAX_ROOT_FILES: usize = 256;

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The terminal's enrollment request file (the one `challenge` was made for).
    pub request: PathBuf,
    /// The terminal's credential response (`vouch-agent activate --out`).
    pub response: PathBuf,
    /// The vendor directory (`vendor-init`) that signs the manifest.
    #[arg(long, value_name = "DIR")]
    pub vendor: PathBuf,
    /// The terminal's model: must be the one its request names.
    #[arg(long)]
    pub model: String,
    /// The firmware version the terminal was provisioned with.
    #[arg(long)]
    pub firmware_version: String,
    /// Where to write the signed manifest.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory of trusted TPM-manufacturer CA certificates (*.pem).
    #[arg(long, value_name = "DIR")]
    pub tpm_roots: Option<PathBuf>,
    /// The pending-challenge directory `challenge` used.
    #[arg(long, default_value = pending::DEFAULT_DIR)]
    pub pending: PathBuf,
    /// Issue even though the EK certificate is missing or not checked (no --tpm-roots).
    #[arg(long)]
    pub allow_no_ek_cert: bool,
}

/// Every certificate in every `*.pem` file of `dir`, as trust anchors.
pub fn load_roots(dir: &Path) -> Result<TrustAnchors> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the TPM roots directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "the TPM roots directory {} holds no *.pem file",
            dir.display()
        );
    }
    if files.len() > MAX_ROOT_FILES {
        bail!(
            "the TPM roots directory {} holds {} *.pem files (limit {MAX_ROOT_FILES})",
            dir.display(),
            files.len()
        );
    }
    let mut ders = Vec::new();
    for f in &files {
        let bytes = vouch_common::fs::read_limited(f, MAX_PEM_TEXT as u64)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("TPM root {} is not PEM text", f.display()))?;
        let certs =
            parse_pem_certificates(text).with_context(|| format!("TPM root {}", f.display()))?;
        ders.extend(certs);
    }
    TrustAnchors::from_der(ders).with_context(|| format!("TPM roots in {}", dir.display()))
}

/// Decides on the EK certificate: verified info, or `None` when the factory allowed none.
fn check_ek_cert(
    args: &IssueArgs,
    req: &EnrollmentRequest,
    now: u64,
) -> Result<Option<EkCertInfo>> {
    let Some(roots) = &args.tpm_roots else {
        if args.allow_no_ek_cert {
            eprintln!(
                "warning: no --tpm-roots: the EK certificate is NOT checked (--allow-no-ek-cert)"
            );
            return Ok(None);
        }
        bail!(
            "no --tpm-roots DIR: the EK certificate cannot be checked; pass the TPM manufacturers' CA certificates, or --allow-no-ek-cert to issue without"
        );
    };
    let anchors = load_roots(roots)?;
    let Some(cert) = &req.ek_certificate else {
        if args.allow_no_ek_cert {
            eprintln!("warning: the terminal sent no EK certificate (--allow-no-ek-cert)");
            return Ok(None);
        }
        bail!(
            "the terminal's TPM sent no EK certificate, so its EK cannot be traced to a TPM manufacturer; pass --allow-no-ek-cert to issue without"
        );
    };
    let chain = vec![cert.0.clone()];
    let info = verify_ek_certificate(&chain, req.ek_public.as_slice(), &anchors, now)
        .with_context(|| {
            format!(
                "the EK certificate does not pass against the TPM roots in {}",
                roots.display()
            )
        })?;
    Ok(Some(info))
}

pub fn run(args: &IssueArgs) -> Result<()> {
    check_label("model", &args.model).map_err(anyhow::Error::msg)?;
    check_label("firmware version", &args.firmware_version).map_err(anyhow::Error::msg)?;
    let now = vouch_common::time::now_unix();
    let request = read_request(&args.request)?;
    let what = || {
        format!(
            "{} is not a valid enrollment request",
            args.request.display()
        )
    };
    let enrollment = Enrollment::from_request(&request, now).with_context(what)?;
    // Verified by `from_request` just above; read once more for the fields it does not keep.
    let req: EnrollmentRequest = vouch_protocol::wire::decode_detached(&request, MAX_REQUEST)
        .and_then(|m| m.peek_unverified())
        .with_context(what)?;
    if enrollment.model != args.model {
        bail!(
            "--model {:?} is not the model the terminal's request names ({:?})",
            args.model,
            enrollment.model
        );
    }
    let Some(inventory) = req.inventory.clone() else {
        bail!(
            "{}: the agent sent no inventory; upgrade it",
            args.request.display()
        );
    };
    inventory
        .check()
        .with_context(|| format!("{}: the request's inventory", args.request.display()))?;
    match &req.firmware_version {
        Some(v) if *v != args.firmware_version => eprintln!(
            "warning: the terminal reports firmware version {v:?}, the manifest records {:?} (--firmware-version)",
            args.firmware_version
        ),
        _ => {}
    }
    let vendor = VendorDir::load(&args.vendor)?;

    let bytes =
        vouch_common::fs::read_limited(&args.response, MAX_RESPONSE as u64).with_context(|| {
            format!(
                "reading the credential response {}",
                args.response.display()
            )
        })?;
    let digest = request_digest(&request);
    pending::check_response_file(&args.pending, &request, &bytes, now).with_context(|| {
        format!(
            "credential activation of {} failed ({})",
            enrollment.id,
            args.response.display()
        )
    })?;

    let ek_info = check_ek_cert(args, &req, now)?;
    let manifest = DeviceManifest {
        device: enrollment.id.clone(),
        model: enrollment.model.clone(),
        firmware_version: args.firmware_version.clone(),
        ek_public: enrollment.ek_public.clone(),
        ek_certificates: req.ek_certificate.iter().cloned().collect::<Vec<Bytes>>(),
        ak_public: enrollment.ak_public.clone(),
        ak_name: enrollment.ak_name.clone(),
        device_key: enrollment.device_key.clone(),
        mqtt_password_hash: req.mqtt_password_hash.clone(),
        inventory,
        issued_at: now,
        credential_activated: true,
        simulated: false,
    };
    Enrollment::from_manifest(vendor.name.clone(), manifest.clone(), now)
        .context("the manifest would not pass the verifier's import check")?;
    let signed = vouch_protocol::vendor::seal(&vendor.name, &manifest, &vendor.key);
    vouch_common::fs::write_atomic(&args.out, &signed, 0o644)?;
    pending::remove(&args.pending, &digest).with_context(|| {
        format!(
            "the manifest {} is written, but its pending challenge could not be removed",
            args.out.display()
        )
    })?;
    let anchor = ek_info
        .map(|i| format!("EK certificate chains to {:?}", i.anchor))
        .unwrap_or_else(|| "EK certificate NOT checked".to_owned());
    println!(
        "issued manifest for {} ({} firmware {}) signed by {}: {} (credential activated; {anchor})",
        manifest.device,
        manifest.model,
        manifest.firmware_version,
        vendor.name,
        args.out.display()
    );
    Ok(())
}
