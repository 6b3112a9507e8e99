//! `GET /api/devices/{id}/comparison` through the engine: a device's last measurements beside
//! the reference values that govern it now, in one read transaction. The lookup follows the
//! appraisal's (`governing_with`, with the same vendor-revocation rule as the write path's
//! `super::governing`); the comparison itself is pure (`vouch_protocol::verifier::compare`).

use anyhow::Result;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::trust::BundleRecord;
use vouch_protocol::verifier::{Comparison, Lookup, compare, governing_with};

use super::governing::{stored_version, unless_vendor_revoked};
use super::operator::parse_id;
use super::{ApiError, Engine};
use crate::store::Reader;

/// The store's reads for the core's [`Lookup`] in a read transaction.
struct ReadLookup<'a>(&'a Reader);

impl Lookup for ReadLookup<'_> {
    type Error = anyhow::Error;

    fn policy(&mut self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        self.0.policy(scope)
    }

    fn bundle(&mut self, model: &str, version: &str) -> Result<Option<BundleRecord>> {
        let Some(b) = self.0.bundle(model, version)? else {
            return Ok(None);
        };
        let vendor = self.0.vendor(&b.vendor)?;
        Ok(unless_vendor_revoked(b, vendor.as_ref()))
    }

    fn revoked_bundles(&mut self, model: &str) -> Result<Vec<BundleRecord>> {
        self.0.revoked_bundles(model)
    }

    fn supply_chain(&mut self) -> Result<Option<SupplyChainPolicy>> {
        self.0.supply_chain()
    }
}

impl Engine {
    /// Device `id`'s last measurements compared with what governs it. Not found for a device
    /// that is not enrolled or has not attested yet.
    pub fn comparison(&self, id: &str) -> Result<Comparison, ApiError> {
        let id = parse_id(id)?;
        let r = self.store.read()?;
        let rec = r
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        let Some(m) = &rec.measurements else {
            return Err(ApiError::NotFound(format!(
                "device {id} has no verified measurements yet: nothing to compare until it attests"
            )));
        };
        let gov = governing_with(&rec, stored_version(&rec), &mut ReadLookup(&r))?;
        Ok(compare(m, gov.found.as_ref()))
    }
}
