//! `vouch-agent enroll`: create or reload the terminal's identity (TPM EK and AK, Ed25519 device
//! key) and write the signed enrollment request the operator hands to `vouchctl enroll`.
//! Running it again gives the same keys and the same request content.

use anyhow::{Context, Result, bail};
use std::path::Path;
use vouch_common::{fs, keys};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::messages::EnrollmentRequest;
use vouch_protocol::wire;

use crate::state::{StateDir, StoredIdentity};
use crate::tpm::Tpm;

pub fn enroll(
    tcti: &str,
    state: &StateDir,
    device_id: &DeviceId,
    model: &str,
    out: &Path,
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
    let mut tpm = Tpm::open(tcti)?;
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
    if existing.is_none() {
        state.save_identity(&identity)?;
    }
    let request = EnrollmentRequest {
        model: model.to_owned(),
        ek_public: identity.ek_public.clone(),
        ek_certificate: identity.ek_certificate.clone(),
        ak_public: identity.ak_public.clone(),
        ak_name: identity.ak_name.clone(),
        device_key: Bytes(key.verifying_key().to_bytes().to_vec()),
    };
    let bytes = wire::seal(device_id, &request, &key);
    fs::write_atomic(out, &bytes, 0o644)?;
    println!("device id:    {device_id}");
    println!("model:        {model}");
    println!("AK name:      {}", hex::encode(&identity.ak_name.0));
    println!("device key:   {}", keys::fingerprint(&key.verifying_key()));
    println!(
        "EK cert:      {}",
        if identity.ek_certificate.is_some() {
            "present"
        } else {
            "none in TPM NV"
        }
    );
    println!(
        "request:      {} (give it to the operator: vouchctl enroll FILE)",
        out.display()
    );
    Ok(())
}
