//! The `[[webhook]]` tables of the verifier's config file, validated once into [`Webhook`]s:
//! `url` (https, or http to a loopback address only), `secret_file` (the HMAC key; refused when
//! group- or world-readable, or empty), `events` (default: all four).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Default `webhook_max_age_secs`: an alert undelivered after 7 days is dropped.
pub const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 3600;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A device entered quarantine (automatic or operator).
    Quarantine,
    /// An operator released a quarantined device.
    Release,
    /// A punch batch was refused as tamper (forged, broken chain, fork).
    Tamper,
    /// A terminal's punch buffer crossed into pressure.
    BufferPressure,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Quarantine,
        EventKind::Release,
        EventKind::Tamper,
        EventKind::BufferPressure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Quarantine => "quarantine",
            EventKind::Release => "release",
            EventKind::Tamper => "tamper",
            EventKind::BufferPressure => "buffer_pressure",
        }
    }
}

/// One `[[webhook]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    pub secret_file: PathBuf,
    pub events: Option<Vec<EventKind>>,
}

/// A validated webhook.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Arc<Zeroizing<Vec<u8>>>,
    pub events: Vec<EventKind>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Every configured webhook (shared by the engine and the delivery worker).
pub type Webhooks = Arc<[Webhook]>;

/// Validates the `[[webhook]]` tables.
pub fn resolve(files: &[WebhookFile]) -> Result<Vec<Webhook>> {
    files
        .iter()
        .map(|f| resolve_one(f).with_context(|| format!("webhook {}", f.url)))
        .collect()
}

fn resolve_one(f: &WebhookFile) -> Result<Webhook> {
    check_url(&f.url)?;
    let events = f.events.clone().unwrap_or_else(|| EventKind::ALL.to_vec());
    if events.is_empty() {
        bail!(
            "events is empty: list at least one of quarantine, release, tamper, buffer_pressure, or leave it out for all"
        );
    }
    Ok(Webhook {
        url: f.url.clone(),
        secret: Arc::new(read_secret(&f.secret_file)?),
        events,
    })
}

/// https anywhere; http only to a loopback host (the secret signs, but does not hide, the body).
fn check_url(url: &str) -> Result<()> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let authority = r.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            bail!("url: http:// is allowed only for a loopback host; use https://");
        }
        r
    } else {
        bail!("url must begin with https:// (or http:// for a loopback host)");
    };
    if rest.is_empty() || rest.starts_with('/') {
        bail!("url has no host");
    }
    Ok(())
}

fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("secret_file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "secret_file {} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let bytes = Zeroizing::new(vouch_common::fs::read_limited(path, 4096)?);
    let trimmed: Zeroizing<Vec<u8>> = Zeroizing::new(bytes.trim_ascii().to_vec());
    if trimmed.is_empty() {
        bail!("secret_file {} is empty", path.display());
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(check_url("https://alerts.example/vouch").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://[::1]:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        let e = check_url("http://alerts.example/vouch")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("https://").is_err());
    }

    #[test]
    fn a_readable_secret_is_refused_and_events_default_to_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "k3y\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = WebhookFile {
            url: "https://a.example/".into(),
            secret_file: p.clone(),
            events: None,
        };
        let e = format!("{:#}", resolve(std::slice::from_ref(&f)).unwrap_err());
        assert!(e.contains("readable by group or others"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let w = resolve(&[f]).unwrap();
        assert_eq!(w[0].events, EventKind::ALL.to_vec());
        assert_eq!(w[0].secret.as_slice(), b"k3y");
    }
}
