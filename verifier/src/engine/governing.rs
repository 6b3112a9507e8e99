//! What governs a device's appraisal, read from the store for the verifier core
//! (`vouch_protocol::verifier::governing_with`): the operator's reference values, the vendor
//! bundle for the device's model and firmware version (and its revocation), and the
//! supply-chain policy — point reads in the write transaction. The supply-chain policy is read
//! at most once per transaction ([`StoreLookup`] keeps it), so a batch of evidence costs one
//! read of it, not one per device.
//!
//! And what follows a change of them, run after the change committed, in transactions of
//! [`REEVALUATION_CHUNK`] devices each published after its commit:
//! - reference values stored for a device or model, or a bundle imported for a model and
//!   firmware version: the devices they now govern are re-evaluated on their stored
//!   measurements ([`Engine::reevaluate`], [`Engine::reevaluate_bundle`]);
//! - a firmware version revoked: its devices are quarantined only at their next attestation
//!   (the rule; `vouchctl devices` shows them before), and [`Engine::challenge_firmware`]
//!   asks each for one now through the ordinary challenge path (rate limit included);
//! - a supply-chain policy set: nothing at once. Every device is judged by it at its next
//!   attestation; challenging the whole fleet at once is what the status interval avoids.

use anyhow::Result;
use vouch_protocol::ids::{DeviceId, Kind};
use vouch_protocol::policy::{PolicyScope, ReferenceValues};
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::trust::{BundleRecord, VendorRecord};
use vouch_protocol::verifier::{ChallengeRequest, Governing, Lookup, governing_with};

use super::{ApiError, Engine};
use crate::api::DeviceStateView;
use crate::store::{DeviceRecord, Writer};

/// Devices re-evaluated (or challenged) per transaction after a change.
pub(super) const REEVALUATION_CHUNK: usize = 500;

/// The store's reads for the core's [`Lookup`], in one transaction.
pub(super) struct StoreLookup<'a> {
    w: &'a Writer,
    /// The supply-chain policy once read in this transaction.
    supply_chain: &'a mut Option<Option<SupplyChainPolicy>>,
}

impl<'a> StoreLookup<'a> {
    /// Lookups in `w`; `cache` holds the supply-chain policy for the rest of the transaction
    /// (start it at `None` with each transaction).
    pub(super) fn new(w: &'a Writer, cache: &'a mut Option<Option<SupplyChainPolicy>>) -> Self {
        Self {
            w,
            supply_chain: cache,
        }
    }
}

impl Lookup for StoreLookup<'_> {
    type Error = anyhow::Error;

    fn policy(&mut self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        self.w.policy(scope)
    }

    /// A bundle whose vendor the operator revoked governs nothing: its devices fall back to
    /// the operator's own values, or have none.
    fn bundle(&mut self, model: &str, version: &str) -> Result<Option<BundleRecord>> {
        let Some(b) = self.w.bundle(model, version)? else {
            return Ok(None);
        };
        let vendor = self.w.vendor(&b.vendor)?;
        Ok(unless_vendor_revoked(b, vendor.as_ref()))
    }

    fn revoked_bundles(&mut self, model: &str) -> Result<Vec<BundleRecord>> {
        self.w.revoked_bundles(model)
    }

    fn supply_chain(&mut self) -> Result<Option<SupplyChainPolicy>> {
        if let Some(p) = self.supply_chain {
            return Ok(p.clone());
        }
        let p = self.w.supply_chain()?;
        *self.supply_chain = Some(p.clone());
        Ok(p)
    }
}

/// `b`, unless the operator revoked its vendor (`vendor` as stored) and not the bundle itself:
/// a revoked bundle still governs, so its revocation is reported.
pub(super) fn unless_vendor_revoked(
    b: BundleRecord,
    vendor: Option<&VendorRecord>,
) -> Option<BundleRecord> {
    let vendor_revoked = vendor.is_some_and(|v| v.revoked.is_some());
    (!vendor_revoked || b.revoked.is_some()).then_some(b)
}

/// The firmware version `rec`'s stored measurements reported.
pub(super) fn stored_version(rec: &DeviceRecord) -> Option<&str> {
    rec.measurements
        .as_ref()
        .and_then(|m| m.firmware_version.as_deref())
}

impl Engine {
    /// What governs `rec` for re-appraising its stored measurements (the firmware version
    /// they reported selects the bundle).
    pub(super) fn governing_stored(&self, w: &Writer, rec: &DeviceRecord) -> Result<Governing> {
        let mut cache = None;
        governing_with(
            rec,
            stored_version(rec),
            &mut StoreLookup::new(w, &mut cache),
        )
    }

    /// Re-evaluates those of `candidates` that the values at `scope` govern (the core skips
    /// the others), after the change committed; the devices re-evaluated, with their state.
    pub(super) fn reevaluate(
        &self,
        scope: &PolicyScope,
        candidates: &[DeviceId],
        now: u64,
    ) -> Result<Vec<DeviceStateView>, ApiError> {
        let mut reevaluated = Vec::new();
        for chunk in candidates.chunks(REEVALUATION_CHUNK) {
            let mut w = self.store.write()?;
            let mut out = Vec::new();
            for id in chunk {
                let Some(rec) = w.device(id)? else {
                    continue;
                };
                let before = rec.status.state();
                let gov = self.governing_stored(&w, &rec)?;
                let Some(effects) = self
                    .core
                    .on_policy_change(rec, scope, &gov, now, &mut **self.nonces())
                    .map_err(anyhow::Error::from)?
                else {
                    continue;
                };
                let (msgs, stored) = self.write_effects(&mut w, id, effects)?;
                out.extend(msgs);
                reevaluated.push(DeviceStateView {
                    id: id.to_string(),
                    state: stored.map_or(before, |r| r.status.state()),
                });
            }
            w.commit()?;
            self.publish(out);
        }
        Ok(reevaluated)
    }

    /// After a bundle for `model` at firmware `version` was imported (and committed):
    /// re-evaluates the devices of the model it now governs — those without their own or a
    /// model policy whose stored measurements report `version` (or, before any, whose
    /// manifest does).
    pub fn reevaluate_bundle(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Vec<DeviceStateView>, ApiError> {
        let candidates = self.store.write()?.devices_of_model(model)?;
        let scope = PolicyScope::Firmware {
            model: model.to_owned(),
            version: version.to_owned(),
        };
        self.reevaluate(&scope, &candidates, self.now())
    }

    /// After firmware `version` of `model` was revoked (and committed): challenges each device
    /// of the model that runs it (by its stored measurements, else its manifest), so its next
    /// attestation — which the revocation contraindicates — comes now rather than at its next
    /// status. A device over its challenge rate limit is skipped (its next status asks anyway).
    /// Returns how many were challenged.
    pub fn challenge_firmware(&self, model: &str, version: &str) -> Result<usize, ApiError> {
        let candidates = self.store.write()?.devices_of_model(model)?;
        let now = self.now();
        let mut challenged = 0;
        for chunk in candidates.chunks(REEVALUATION_CHUNK) {
            let mut w = self.store.write()?;
            let mut out = Vec::new();
            for id in chunk {
                let Some(rec) = w.device(id)? else {
                    continue;
                };
                let runs = vouch_protocol::verifier::firmware_version(&rec, stored_version(&rec));
                if runs != Some(version) {
                    continue;
                }
                let req = ChallengeRequest {
                    kind: Kind::Hello,
                    request: 0,
                    counter: None,
                };
                let decision = {
                    let mut rate = self
                        .rate
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    self.core
                        .on_challenge_request(rec, req, now, &mut rate, &mut **self.nonces())
                        .map_err(anyhow::Error::from)?
                };
                if decision.rejected.is_some() {
                    continue;
                }
                let (msgs, _) = self.write_effects(&mut w, id, decision.effects)?;
                out.extend(msgs);
                challenged += 1;
            }
            w.commit()?;
            self.publish(out);
        }
        Ok(challenged)
    }
}
