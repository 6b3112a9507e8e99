//! Schema-4 rows of vendor trust: the vendors the operator trusts (`vendors`, by name), the
//! reference bundles imported per model and firmware version (`bundles`), and the provenance a
//! vendor manifest gave a device (inside its enrollment row), converted to and from the
//! protocol's records (`vendor::trust`, `enrollment::Provenance`) here.
//!
//! Embedded as-is, like reference values: the vendor name (an id), the inventory (a field of
//! the signed manifest and evidence, whose encoding the protocol fixes: its digest is measured)
//! and the reference values (the operator's format). The supply-chain policy is stored as-is
//! too (the JSON format `vouchctl supply-chain set` takes; see `protocol::supply_chain`).

use anyhow::Result;
use serde::{Deserialize, Serialize};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::enrollment::Provenance;
use vouch_protocol::inventory::Inventory;
use vouch_protocol::policy::ReferenceValues;
use vouch_protocol::vendor::VendorName;
use vouch_protocol::vendor::trust::{BundleRecord, Revocation, VendorRecord};

use super::ActorRow;

/// A row of the `vendors` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct VendorRow {
    pub name: VendorName,
    /// The Ed25519 public key (32 bytes).
    pub key: Bytes,
    pub trusted_at: u64,
    pub trusted_by: ActorRow,
    pub revoked: Option<RevocationRow>,
}

/// Who revoked a vendor or a firmware version, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct RevocationRow {
    pub at: u64,
    pub by: ActorRow,
    pub reason: String,
}

/// A row of the `bundles` table (key: model, NUL, firmware version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct BundleRow {
    pub vendor: VendorName,
    pub model: String,
    pub firmware_version: String,
    pub issued_at: u64,
    pub imported_at: u64,
    pub reference: ReferenceValues,
    pub revoked: Option<RevocationRow>,
}

/// What a vendor manifest said about a device (schema 4), inside its enrollment row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct ProvenanceRow {
    pub vendor: VendorName,
    pub firmware_version: String,
    pub inventory: Inventory,
    pub issued_at: u64,
    pub credential_activated: bool,
    pub simulated: bool,
    pub ek_certificates: Vec<Bytes>,
}

impl RevocationRow {
    fn from_domain(r: &Revocation) -> Self {
        Self {
            at: r.at,
            by: ActorRow::from_domain(&r.by),
            reason: r.reason.clone(),
        }
    }

    fn into_domain(self) -> Revocation {
        Revocation {
            at: self.at,
            by: self.by.into_domain(),
            reason: self.reason,
        }
    }
}

impl VendorRow {
    pub(in crate::store) fn from_domain(v: &VendorRecord) -> Self {
        Self {
            name: v.name.clone(),
            key: Bytes(v.key.to_vec()),
            trusted_at: v.trusted_at,
            trusted_by: ActorRow::from_domain(&v.trusted_by),
            revoked: v.revoked.as_ref().map(RevocationRow::from_domain),
        }
    }

    /// The domain record; fails when the key is not 32 bytes.
    pub(in crate::store) fn into_domain(self) -> Result<VendorRecord> {
        let len = self.key.0.len();
        let key: [u8; 32] = self
            .key
            .0
            .try_into()
            .map_err(|_| anyhow::anyhow!("vendor key is {len} bytes, not 32"))?;
        Ok(VendorRecord {
            name: self.name,
            key,
            trusted_at: self.trusted_at,
            trusted_by: self.trusted_by.into_domain(),
            revoked: self.revoked.map(RevocationRow::into_domain),
        })
    }
}

impl BundleRow {
    pub(in crate::store) fn from_domain(b: &BundleRecord) -> Self {
        Self {
            vendor: b.vendor.clone(),
            model: b.model.clone(),
            firmware_version: b.firmware_version.clone(),
            issued_at: b.issued_at,
            imported_at: b.imported_at,
            reference: b.reference.clone(),
            revoked: b.revoked.as_ref().map(RevocationRow::from_domain),
        }
    }

    pub(in crate::store) fn into_domain(self) -> BundleRecord {
        BundleRecord {
            vendor: self.vendor,
            model: self.model,
            firmware_version: self.firmware_version,
            issued_at: self.issued_at,
            imported_at: self.imported_at,
            reference: self.reference,
            revoked: self.revoked.map(RevocationRow::into_domain),
        }
    }
}

impl ProvenanceRow {
    pub(in crate::store) fn from_domain(p: &Provenance) -> Self {
        Self {
            vendor: p.vendor.clone(),
            firmware_version: p.firmware_version.clone(),
            inventory: p.inventory.clone(),
            issued_at: p.issued_at,
            credential_activated: p.credential_activated,
            simulated: p.simulated,
            ek_certificates: p.ek_certificates.clone(),
        }
    }

    pub(in crate::store) fn into_domain(self) -> Provenance {
        Provenance {
            vendor: self.vendor,
            firmware_version: self.firmware_version,
            inventory: self.inventory,
            issued_at: self.issued_at,
            credential_activated: self.credential_activated,
            simulated: self.simulated,
            ek_certificates: self.ek_certificates,
        }
    }
}

/// The `bundles` key of a model and firmware version: `model NUL version`. Neither label may
/// hold a control character (`vendor::bundle::check_label`), so the key is unambiguous.
pub(in crate::store) fn bundle_key(model: &str, version: &str) -> String {
    format!("{model}\0{version}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use vouch_protocol::device::Actor;
    use vouch_protocol::wire::{from_cbor_exact, to_cbor};

    #[test]
    fn a_vendor_row_with_a_short_key_is_refused() {
        let mut row = VendorRow::from_domain(&VendorRecord {
            name: "acme".parse().unwrap(),
            key: [7; 32],
            trusted_at: 5,
            trusted_by: Actor::Operator("alice".into()),
            revoked: Some(Revocation {
                at: 9,
                by: Actor::Verifier,
                reason: "key leaked".into(),
            }),
        });
        let back: VendorRow = from_cbor_exact(&to_cbor(&row)).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.into_domain().unwrap().key, [7; 32]);
        row.key = Bytes(vec![7; 31]);
        let e = row.into_domain().unwrap_err();
        assert!(e.to_string().contains("31 bytes"), "{e}");
    }
}
