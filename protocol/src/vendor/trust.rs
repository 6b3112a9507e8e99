//! What the verifier keeps about vendors and their reference bundles: which vendor keys the
//! operator trusts (`vouchctl vendor trust|list|revoke`), which bundles were imported and which
//! firmware versions were revoked (`vouchctl import reference`, `reference list|revoke`). Pure
//! records: the store keeps its own versioned rows of them.

use crate::device::Actor;
use crate::policy::ReferenceValues;

use super::VendorName;

/// A vendor the operator trusts, or trusted until it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorRecord {
    pub name: VendorName,
    /// The vendor's Ed25519 public key.
    pub key: [u8; 32],
    pub trusted_at: u64,
    pub trusted_by: Actor,
    /// Set once revoked: manifests and bundles from this vendor are refused from then on.
    pub revoked: Option<Revocation>,
}

/// Who revoked something, when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: u64,
    pub by: Actor,
    pub reason: String,
}

/// An imported reference bundle: the reference values for one model and firmware version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRecord {
    pub vendor: VendorName,
    pub model: String,
    pub firmware_version: String,
    /// The bundle's own issue time (a newer bundle for the same model and version replaces an
    /// older one; an older one is refused).
    pub issued_at: u64,
    pub imported_at: u64,
    pub reference: ReferenceValues,
    /// Set once the firmware version was revoked: every terminal reporting it is
    /// contraindicated at its next attestation.
    pub revoked: Option<Revocation>,
}

impl VendorRecord {
    /// Whether documents signed by this vendor are accepted.
    pub fn is_trusted(&self) -> bool {
        self.revoked.is_none()
    }
}
