//! `vouch-provision challenge REQUEST --out CHALLENGE`: the station's first step of credential
//! activation. It validates the terminal's enrollment request, makes a TPM2_MakeCredential
//! challenge for the request's EK and AK Name in pure Rust (`vouch_provisioning::credential`,
//! no TPM on the station), keeps the secret in the pending store (`--pending DIR`, mode 0700)
//! for `issue`, and writes the challenge the terminal answers with `vouch-agent activate`.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use vouch_protocol::enrollment::MAX_REQUEST;
use vouch_protocol::messages::EnrollmentRequest;
use vouch_provisioning::{credential, pending};

#[derive(Debug, Args)]
pub struct ChallengeArgs {
    /// The terminal's enrollment request file (`vouch-agent enroll --out`).
    pub request: PathBuf,
    /// Where to write the challenge for the terminal.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the station keeps pending challenges until `issue` (created 0700).
    #[arg(long, default_value = pending::DEFAULT_DIR)]
    pub pending: PathBuf,
    /// How long the challenge may be answered, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
}

/// Reads an enrollment request file, bounded by the protocol's limit.
pub fn read_request(path: &std::path::Path) -> Result<Vec<u8>> {
    vouch_common::fs::read_limited(path, MAX_REQUEST as u64)
        .with_context(|| format!("reading the enrollment request {}", path.display()))
}

pub fn run(args: &ChallengeArgs) -> Result<()> {
    let request = read_request(&args.request)?;
    let now = vouch_common::time::now_unix();
    let (challenge, record) =
        credential::challenge_for_request(&request, now, args.ttl_secs, &mut rand::rng())
            .with_context(|| format!("{}", args.request.display()))?;
    // The request verified above; warn now about what `issue` will refuse, before the
    // terminal does its part.
    let body: Option<EnrollmentRequest> =
        vouch_protocol::wire::decode_detached(&request, MAX_REQUEST)
            .and_then(|m| m.peek_unverified())
            .ok();
    if body.is_some_and(|b| b.inventory.is_none()) {
        eprintln!(
            "warning: {} carries no hardware inventory; `issue` will refuse it (upgrade the agent)",
            args.request.display()
        );
    }
    let stored = pending::store(&args.pending, &record)?;
    vouch_common::fs::write_atomic(&args.out, &challenge.to_cbor(), 0o644)?;
    println!(
        "challenge for {} written to {} (pending record {}, expires {})",
        challenge.device,
        args.out.display(),
        stored.display(),
        vouch_common::time::rfc3339(challenge.expires_at)
    );
    println!(
        "on the terminal: vouch-agent activate {} --out RESPONSE",
        args.out.display()
    );
    Ok(())
}
