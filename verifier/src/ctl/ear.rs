//! `vouchctl ear ID [--json] [--verifier-key FILE]`: fetch a device's EAR token; with `--json`,
//! check its signature with the verifier's key and print its claims.

use anyhow::{Context, Result};
use clap::Args;
use ed25519_dalek::VerifyingKey;
use std::path::PathBuf;

use super::client::Client;
use super::seg;

#[derive(Debug, Args)]
pub struct EarArgs {
    /// The device id.
    pub id: String,
    /// Print the verified claims as JSON instead of the token.
    #[arg(long)]
    pub json: bool,
    /// The verifier's public key (`verifier.pub`) to check the token with [default: the key the
    /// API serves at /api/verifier-key].
    #[arg(long, value_name = "FILE")]
    pub verifier_key: Option<PathBuf>,
}

pub fn run(client: &Client, args: &EarArgs) -> Result<()> {
    let token = client.get_text(&format!("/api/devices/{}/ear", seg(&args.id)))?;
    if !args.json {
        println!("{}", token.trim());
        return Ok(());
    }
    let key = match &args.verifier_key {
        Some(path) => vouch_common::keys::read_public(path)?,
        None => served_key(client)?,
    };
    let claims = crate::ear::verify(&token, &key).context("the EAR token does not verify")?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}

fn served_key(client: &Client) -> Result<VerifyingKey> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let pem = client.get_text("/api/verifier-key")?;
    VerifyingKey::from_public_key_pem(&pem).context("the verifier key the API serves")
}
