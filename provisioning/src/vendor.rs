//! The vendor directory: `vouch-provision vendor-init --out DIR` creates it, and every command
//! that signs (`issue`, `reference --vendor`, `batch`) loads it with [`VendorDir::load`].
//!
//! Layout (the contract operators and the other tools rely on):
//! - `vendor.key` — the Ed25519 signing key's 32-byte seed as 64 hex characters and a newline,
//!   mode 0600. Loading refuses a key file others can read or write, as the verifier does for
//!   its own keys, and one that is not a regular file.
//! - `vendor.pub` — the public key in the format `vouchctl vendor trust NAME FILE` reads
//!   ([`vouch_protocol::vendor::parse_public_key`]: 64 hex characters and a newline), mode 0644.
//! - `vendor.name` — the vendor name operators trust the key under, one line.
//!
//! The key is a raw seed rather than the PKCS#8 PEM of `vouch_common::keys` because the public
//! half must be the hex line `vouchctl vendor trust` takes; keeping both files in the same plain
//! shape lets a vendor check one against the other by eye. Key bytes are zeroized after use and
//! never printed; only the public fingerprint is.

use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::SigningKey;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use vouch_protocol::vendor::{VendorName, fingerprint, parse_public_key};
use zeroize::Zeroizing;

pub const KEY_FILE: &str = "vendor.key";
pub const PUB_FILE: &str = "vendor.pub";
pub const NAME_FILE: &str = "vendor.name";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the vendor key in (created 0700 if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The vendor name operators will trust the key under (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
}

/// A loaded vendor: its name and signing key.
pub struct VendorDir {
    pub name: VendorName,
    pub key: SigningKey,
}

impl std::fmt::Debug for VendorDir {
    /// The name and the public fingerprint only: the signing key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorDir")
            .field("name", &self.name)
            .field("key", &fingerprint(&self.key.verifying_key()))
            .finish()
    }
}

fn default_name(dir: &Path) -> Result<VendorName> {
    let base = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    base.parse().with_context(|| {
        format!(
            "{} does not make a vendor name: pass --name NAME",
            dir.display()
        )
    })
}

/// `vouch-provision vendor-init`.
pub fn init(args: &InitArgs) -> Result<()> {
    let dir = &args.out;
    let key_path = dir.join(KEY_FILE);
    if std::fs::symlink_metadata(&key_path).is_ok() {
        bail!(
            "{} already exists: a vendor key is never overwritten (operators trust it); use another --out",
            key_path.display()
        );
    }
    if !dir.exists() {
        vouch_common::fs::ensure_private_dir(dir)?;
    } else if !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let name: VendorName = match &args.name {
        Some(n) => n.parse()?,
        None => default_name(dir)?,
    };
    let seed = vouch_common::keys::random_bytes::<32>()?;
    let key = SigningKey::from_bytes(&seed);
    let mut text = Zeroizing::new(hex::encode(seed.as_ref()));
    text.push('\n');
    vouch_common::fs::write_atomic(&key_path, text.as_bytes(), 0o600)?;
    let public = key.verifying_key();
    let pub_text = format!("{}\n", hex::encode(public.as_bytes()));
    vouch_common::fs::write_atomic(&dir.join(PUB_FILE), pub_text.as_bytes(), 0o644)?;
    vouch_common::fs::write_atomic(&dir.join(NAME_FILE), format!("{name}\n").as_bytes(), 0o644)?;
    println!(
        "vendor {name}: key {} (keep it secret), public key {} (fingerprint {})",
        key_path.display(),
        dir.join(PUB_FILE).display(),
        fingerprint(&public)
    );
    println!(
        "operators trust it with: vouchctl vendor trust {name} {}",
        dir.join(PUB_FILE).display()
    );
    Ok(())
}

impl VendorDir {
    /// Loads `dir`: the name, the key (refusing a file others may read or write), and, when
    /// `vendor.pub` is present, a check that it is this key's public half.
    pub fn load(dir: &Path) -> Result<VendorDir> {
        let name_path = dir.join(NAME_FILE);
        let name_bytes = vouch_common::fs::read_limited(&name_path, 256)
            .with_context(|| format!("{} is not a vendor directory", dir.display()))?;
        let name: VendorName = String::from_utf8_lossy(&name_bytes)
            .trim()
            .parse()
            .with_context(|| format!("{}", name_path.display()))?;
        let key = load_key(&dir.join(KEY_FILE))?;
        let pub_path = dir.join(PUB_FILE);
        if let Some(bytes) = vouch_common::fs::read_optional(&pub_path, 256)? {
            let public = parse_public_key(&String::from_utf8_lossy(&bytes))
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}", pub_path.display()))?;
            if public != key.verifying_key() {
                bail!(
                    "{} is not the public key of {}: the directory mixes two vendors' files",
                    pub_path.display(),
                    dir.join(KEY_FILE).display()
                );
            }
        }
        Ok(VendorDir { name, key })
    }
}

fn load_key(path: &Path) -> Result<SigningKey> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("the vendor key {} cannot be read", path.display()))?;
    if !meta.file_type().is_file() {
        bail!("the vendor key {} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the vendor key {} has mode {mode:04o}: others may read it; set it to 0600 (chmod 600) and consider the key exposed",
            path.display()
        );
    }
    let bytes = Zeroizing::new(vouch_common::fs::read_limited(path, 128)?);
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .map_err(|_| anyhow::anyhow!("the vendor key {} is not text", path.display()))?;
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, seed.as_mut()).map_err(|_| {
        anyhow::anyhow!(
            "the vendor key {} is not 64 hex characters (a 32-byte Ed25519 seed)",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}
