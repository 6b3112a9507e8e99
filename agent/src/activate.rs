//! `vouch-agent activate CHALLENGE --out RESPONSE`: the terminal's answer to a provisioning
//! station's credential challenge. The station wrapped a secret to the EK in this terminal's
//! enrollment request and bound it to the AK's Name (`vouch-provision challenge`); this TPM
//! recovers it with TPM2_ActivateCredential, which only the TPM holding that EK and that AK can
//! do, and the response carries the secret back for `vouch-provision issue` to check.
//!
//! Before the TPM is asked, the challenge must be for this terminal: its device id and AK Name
//! are the enrolled identity's, and it has not expired by this terminal's clock. The response
//! is written atomically, mode 0600 (it holds the secret until the station consumes it).

use anyhow::{Context, Result, bail};
use std::path::Path;
use vouch_common::fs;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::credential::{CredentialChallenge, CredentialResponse, MAX_CHALLENGE, VERSION};
use vouch_protocol::ids::DeviceId;

use crate::state::StateDir;
use crate::tpm::{Tcti, TpmConnector, TpmError};

/// [`activate_on`] with the TPM at `tcti` and the system clock.
pub fn activate(
    tcti: &str,
    state: &StateDir,
    device_id: Option<&DeviceId>,
    challenge: &Path,
    out: &Path,
) -> Result<()> {
    let now = vouch_common::time::now_unix();
    activate_on(
        &Tcti(tcti.to_owned()),
        state,
        device_id,
        challenge,
        out,
        now,
        &mut std::io::stdout(),
    )
}

/// Answers the challenge file `challenge` at `now` (Unix seconds) with the TPM `tpm` reaches,
/// writing the response to `out` and a summary to `report`. `device_id`, when given, must be
/// the enrolled device's.
pub fn activate_on(
    tpm: &dyn TpmConnector,
    state: &StateDir,
    device_id: Option<&DeviceId>,
    challenge: &Path,
    out: &Path,
    now: u64,
    report: &mut dyn std::io::Write,
) -> Result<()> {
    let identity = state.require_identity()?;
    if let Some(id) = device_id
        && *id != identity.device_id
    {
        bail!(
            "--device-id {id} is not this terminal's: its state directory {} holds device {}",
            state.root().display(),
            identity.device_id
        );
    }
    let bytes = fs::read_limited(challenge, MAX_CHALLENGE as u64)
        .with_context(|| format!("cannot read the challenge {}", challenge.display()))?;
    let ch = CredentialChallenge::from_cbor(&bytes)
        .with_context(|| format!("{} is not a credential challenge", challenge.display()))?;
    if ch.device != identity.device_id {
        bail!(
            "the challenge {} is for device {}, but this terminal is {}",
            challenge.display(),
            ch.device,
            identity.device_id
        );
    }
    if ch.ak_name != identity.ak_name {
        bail!(
            "the challenge {} is for attestation key {}, not this terminal's ({}): it was made \
             for another enrollment request",
            challenge.display(),
            hex::encode(&ch.ak_name.0),
            hex::encode(&identity.ak_name.0)
        );
    }
    if ch.expired(now) {
        bail!(
            "the challenge {} expired at {} (this terminal's clock says {}): ask the station \
             for a new one",
            challenge.display(),
            vouch_common::time::rfc3339(ch.expires_at),
            vouch_common::time::rfc3339(now)
        );
    }
    let mut tpm = tpm.open()?;
    let secret = match tpm.activate_credential(
        &identity.ak_blobs(),
        ch.id_object.as_slice(),
        ch.encrypted_secret.as_slice(),
    ) {
        Ok(secret) => secret,
        Err(e @ TpmError::ActivateCredential(_)) => return Err(e.into()),
        Err(e @ TpmError::LoadAk(_)) => {
            return Err(anyhow::Error::new(e).context(
                "the stored attestation key does not load on this TPM (was the TPM cleared or \
                 replaced, or is --tcti another terminal's TPM?)",
            ));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("activating the credential")),
    };
    drop(tpm);
    let mut response = CredentialResponse {
        v: VERSION,
        device: ch.device.clone(),
        request_digest: ch.request_digest,
        secret: Bytes(secret.to_vec()),
    };
    let encoded = zeroize::Zeroizing::new(response.to_cbor());
    zeroize::Zeroize::zeroize(&mut response.secret.0);
    fs::write_atomic(out, &encoded, 0o600)
        .with_context(|| format!("cannot write the response {}", out.display()))?;
    writeln!(report, "device id:    {}", ch.device)?;
    writeln!(report, "request:      {}", ch.request_digest)?;
    writeln!(
        report,
        "response:     {} (give it to the station: vouch-provision issue REQUEST RESPONSE ...)",
        out.display()
    )?;
    Ok(())
}
