//! `vouch-agent enroll`: create or reload the terminal's identity (TPM EK and AK, Ed25519 device
//! key) and write the signed enrollment request the operator hands to `vouchctl enroll`.
//! Running it again gives the same keys and the same request content.
//!
//! It also creates the terminal's MQTT password (32 random bytes, hex, in the state directory,
//! mode 0600; reused on every later run) and puts only its Mosquitto password-file hash into the
//! signed request, so the verifier can give the terminal its broker identity (user name = device
//! id) without the password ever leaving the terminal.
//!
//! The request also carries the firmware version (`--firmware-version`) and the hardware
//! inventory read now (`--sysfs-root`, see `inventory`), which the vendor's manifest keeps as
//! the terminal's baseline. An inventory that cannot be read fails the enrollment, naming the
//! file: a factory station must not issue a manifest with a baseline it did not see.

use anyhow::{Context, Result, bail};
use std::path::Path;
use vouch_common::{fs, keys};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::messages::EnrollmentRequest;
use vouch_protocol::wire;

use crate::config::DeviceReport;
use crate::state::{StateDir, StoredIdentity};
use crate::tpm::{Tcti, TpmConnector};

/// Longest MQTT password file accepted (a vouch password is 64 hex characters).
const MAX_PASSWORD_FILE: u64 = 4096;

/// Reads the MQTT password at `path` (surrounding whitespace trimmed), refusing an empty one.
pub fn read_mqtt_password(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    let bytes =
        zeroize::Zeroizing::new(fs::read_limited(path, MAX_PASSWORD_FILE).with_context(|| {
            format!(
                "cannot read the MQTT password {} (run `vouch-agent enroll` first, or pass \
                 --mqtt-password-file)",
                path.display()
            )
        })?);
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?
        .trim();
    if text.is_empty() || text.contains(['\n', '\r']) {
        bail!(
            "{} must hold one non-empty line (the MQTT password)",
            path.display()
        );
    }
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// The MQTT password at `path`, created (mode 0600) if there is none yet.
fn load_or_create_mqtt_password(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    if fs::read_optional(path, MAX_PASSWORD_FILE)?.is_some() {
        return read_mqtt_password(path);
    }
    let password = vouch_common::mqtt_passwd::generate_password()?;
    fs::write_atomic(path, format!("{}\n", password.as_str()).as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), "created MQTT password");
    Ok(password)
}

pub fn enroll(
    tcti: &str,
    state: &StateDir,
    device_id: &DeviceId,
    model: &str,
    out: &Path,
    mqtt_password: &Path,
    report: &DeviceReport,
) -> Result<()> {
    let tpm = Tcti(tcti.to_owned());
    let mut stdout = std::io::stdout();
    enroll_on(
        &tpm,
        state,
        device_id,
        model,
        out,
        mqtt_password,
        report,
        &mut stdout,
    )
}

/// [`enroll`] on the TPM `tpm` reaches, writing the summary for the operator to `summary`.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one of enroll's inputs, named"
)]
pub fn enroll_on(
    tpm: &dyn TpmConnector,
    state: &StateDir,
    device_id: &DeviceId,
    model: &str,
    out: &Path,
    mqtt_password: &Path,
    device_report: &DeviceReport,
    report: &mut dyn std::io::Write,
) -> Result<()> {
    if model.trim().is_empty() || model.len() > 128 {
        bail!("--model must be 1 to 128 characters");
    }
    let existing = state.identity()?;
    if let Some(id) = &existing
        && (&id.device_id != device_id || id.model != model)
    {
        bail!(
            "this state directory already holds the identity of device {} (model {}); \
             use that id and model, or another --state for another device",
            id.device_id,
            id.model
        );
    }
    let key = state.device_key()?;
    let mut tpm = tpm.open()?;
    let saved = existing.as_ref().map(StoredIdentity::ak_blobs);
    let (ident, blobs) = tpm
        .load_or_create_identity(saved.as_ref())
        .with_context(|| {
            if existing.is_some() {
                "the stored attestation key does not load on this TPM (was the TPM cleared or \
             replaced?); move the state directory away to enroll as a new identity"
            } else {
                "creating the TPM identity"
            }
        })?;
    let identity = StoredIdentity {
        device_id: device_id.clone(),
        model: model.to_owned(),
        ek_public: ident.ek_public.into(),
        ek_certificate: ident.ek_certificate.map(Bytes),
        ak_public: ident.ak_public.into(),
        ak_name: ident.ak_name.into(),
        ak_private: Bytes(blobs.private.clone()),
    };
    let root = &device_report.sysfs_root;
    let inventory = crate::inventory::collect(root, tpm.as_mut()).with_context(|| {
        format!(
            "cannot read the hardware inventory under {} (--sysfs-root)",
            root.display()
        )
    })?;
    drop(tpm);
    if existing.is_none() {
        state.save_identity(&identity)?;
    }
    let password = load_or_create_mqtt_password(mqtt_password)?;
    let request = EnrollmentRequest {
        model: model.to_owned(),
        ek_public: identity.ek_public.clone(),
        ek_certificate: identity.ek_certificate.clone(),
        ak_public: identity.ak_public.clone(),
        ak_name: identity.ak_name.clone(),
        device_key: Bytes(key.verifying_key().to_bytes().to_vec()),
        mqtt_password_hash: vouch_common::mqtt_passwd::hash_generated(&password),
        firmware_version: device_report.firmware_version.clone(),
        inventory: Some(inventory.clone()),
    };
    let bytes = wire::seal(device_id, &request, &key);
    fs::write_atomic(out, &bytes, 0o644)?;
    writeln!(report, "device id:    {device_id}")?;
    writeln!(report, "model:        {model}")?;
    writeln!(report, "AK name:      {}", hex::encode(&identity.ak_name.0))?;
    writeln!(
        report,
        "device key:   {}",
        keys::fingerprint(&key.verifying_key())
    )?;
    writeln!(
        report,
        "EK cert:      {}",
        if identity.ek_certificate.is_some() {
            "present"
        } else {
            "none in TPM NV"
        }
    )?;
    writeln!(
        report,
        "firmware:     {}",
        device_report
            .firmware_version
            .as_deref()
            .unwrap_or("not reported (--firmware-version)")
    )?;
    writeln!(
        report,
        "inventory:    {} ({} PCI, {} USB, {} NICs; TPM {})",
        inventory.digest(),
        inventory.pci.len(),
        inventory.usb.len(),
        inventory.nics.len(),
        inventory
            .tpm
            .as_ref()
            .map_or("unknown", |t| t.manufacturer.as_str())
    )?;
    writeln!(
        report,
        "MQTT user:    {device_id} (password in {})",
        mqtt_password.display()
    )?;
    writeln!(
        report,
        "request:      {} (give it to the operator: vouchctl enroll FILE)",
        out.display()
    )?;
    Ok(())
}
