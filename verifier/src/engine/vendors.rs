//! The operator side of vendor trust through the engine: trusting and revoking vendor keys,
//! importing vendor-signed device manifests (enrollment with provenance) and reference bundles,
//! revoking a firmware version, the supply-chain policy, and the EK certificate check against
//! the configured TPM manufacturer roots. Every change commits in one write transaction with its
//! audit entry.
//!
//! Decisions made here (docs/operator-trust.md):
//! - A vendor name is bound to one key for good. Trusting a name again with the same key changes
//!   nothing; with another key it is a conflict; and a revoked name stays revoked: the vendor's
//!   new key is trusted under a new name. So a manifest that once verified under a name can never
//!   verify again after the revocation, whoever signed it.
//! - An EK certificate that does not chain does not refuse a manifest: the device is enrolled,
//!   `ek_cert_anchor` stays unset (with `require_ek_cert` the device is at best `warning`), and
//!   the answer and the device view say which check failed.
//! - A device enrolled from a manifest is enrolled once: importing the same manifest again
//!   changes nothing, a different manifest (or a terminal's own request) for the same keys is a
//!   conflict, since the provenance (vendor, inventory baseline) must not change silently.
//! - A model's reference bundles all come from one vendor; a bundle older than the stored one
//!   for the same model and version is refused, and a revoked version stays revoked.

use ed25519_dalek::VerifyingKey;
use vouch_protocol::device::{Actor, AuditAction};
use vouch_protocol::ekcert::{TrustAnchors, verify_ek_certificate};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::policy::Measurements;
use vouch_protocol::supply_chain::{Mode, SupplyChainPolicy};
use vouch_protocol::vendor::bundle::{ReferenceBundle, check_label};
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_protocol::vendor::trust::{BundleRecord, Revocation, VendorRecord};
use vouch_protocol::vendor::{self, Document, VendorName};
use vouch_protocol::verifier::AuditRecord;

use super::operator::parse_id;
use super::views::{self, Trust};
use super::{ApiError, Engine};
use crate::api::{
    ManifestImportView, ReferenceImportView, ReferenceRevokedView, ReferenceView, VendorChangeView,
    VendorView,
};
use crate::store::DeviceRecord;

/// Longest revocation reason accepted.
const MAX_REASON: usize = 1024;

/// A manifest import as the HTTP shell needs it: the answer, and the device's broker identity
/// to add to the password file after the commit.
#[derive(Debug)]
pub struct ImportedManifest {
    pub view: ManifestImportView,
    pub mqtt_password_hash: Option<String>,
}

fn parse_vendor(name: &str) -> Result<VendorName, ApiError> {
    name.parse()
        .map_err(|e: vendor::BadVendorName| ApiError::BadRequest(e.to_string()))
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(ApiError::BadRequest("a reason is required".into()));
    }
    if r.len() > MAX_REASON || r.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "the reason must be at most {MAX_REASON} printable characters"
        )));
    }
    Ok(r.to_owned())
}

fn revoked_text(r: &Revocation) -> String {
    format!(
        "at {} by {}: {}",
        vouch_common::time::rfc3339(r.at),
        r.by,
        r.reason
    )
}

/// The key trusted for the vendor a document claims (`v`, as the store holds it), or the
/// refusal naming what to do.
fn trusted_key(
    v: Option<VendorRecord>,
    name: &VendorName,
    what: &str,
) -> Result<VerifyingKey, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::BadRequest(format!(
            "{what} refused: vendor {name} is not trusted (vouchctl vendor trust {name} KEYFILE)"
        )));
    };
    if let Some(r) = &v.revoked {
        return Err(ApiError::BadRequest(format!(
            "{what} refused: vendor {name} was revoked {}",
            revoked_text(r)
        )));
    }
    VerifyingKey::from_bytes(&v.key).map_err(|_| {
        ApiError::Internal(anyhow::anyhow!(
            "the stored key of vendor {name} is not an Ed25519 point"
        ))
    })
}

/// The EK certificate chain an enrollment carries: the manifest's (leaf first), else the
/// terminal's own certificate.
fn ek_chain(e: &Enrollment) -> Vec<Vec<u8>> {
    match &e.provenance {
        Some(p) => p.ek_certificates.iter().map(|c| c.0.clone()).collect(),
        None => e.ek_certificate.iter().map(|c| c.0.clone()).collect(),
    }
}

impl Engine {
    /// Checks EK certificates against `roots` (`vouch-verifier run --tpm-roots DIR`; none by
    /// default, so no certificate chains).
    pub fn with_tpm_roots(mut self, roots: TrustAnchors) -> Self {
        self.tpm_roots = roots;
        self
    }

    /// The anchor `e`'s EK certificate chains to under the configured roots at `now`, or why
    /// it does not.
    fn check_ek_cert(&self, e: &Enrollment, now: u64) -> Result<String, String> {
        let chain = ek_chain(e);
        if chain.is_empty() {
            return Err("no EK certificate".into());
        }
        if self.tpm_roots.is_empty() {
            return Err("the verifier trusts no TPM manufacturer root (tpm_roots)".into());
        }
        verify_ek_certificate(&chain, e.ek_public.as_slice(), &self.tpm_roots, now)
            .map(|info| info.anchor)
            .map_err(|err| format!("EK certificate refused: {err}"))
    }

    /// Sets `e.ek_cert_anchor` from the EK certificate check; returns why it is unset.
    pub(super) fn anchor_enrollment(&self, e: &mut Enrollment, now: u64) -> Option<String> {
        match self.check_ek_cert(e, now) {
            Ok(anchor) => {
                e.ek_cert_anchor = Some(anchor);
                None
            }
            Err(problem) => {
                e.ek_cert_anchor = None;
                Some(problem)
            }
        }
    }

    /// Why a stored device's EK certificate does not count (`None` when it chained at
    /// enrollment), checked again now so the answer names the failed check.
    pub(super) fn ek_cert_problem(&self, rec: &DeviceRecord) -> Option<String> {
        if rec.enrollment.ek_cert_anchor.is_some() {
            return None;
        }
        Some(match self.check_ek_cert(&rec.enrollment, self.now()) {
            Err(problem) => problem,
            Ok(anchor) => format!(
                "the EK certificate did not chain when the device was enrolled (it chains to \
                 {anchor} under the roots configured now)"
            ),
        })
    }

    /// What the device view needs besides the record, read with `bundle` (a point lookup).
    pub(super) fn trust_of(
        &self,
        rec: &DeviceRecord,
        bundle: impl Fn(&str, &str) -> anyhow::Result<Option<BundleRecord>>,
    ) -> Result<Trust, ApiError> {
        let firmware_revoked = match views::running_firmware(rec) {
            Some(v) => bundle(&rec.enrollment.model, v)?.is_some_and(|b| b.revoked.is_some()),
            None => false,
        };
        Ok(Trust {
            ek_cert_problem: self.ek_cert_problem(rec),
            firmware_revoked,
        })
    }

    /// Trusts `key_hex` (the vendor's `vendor.pub`) under `name`. Idempotent for the same key;
    /// another key under a trusted name, or any key under a revoked one, is a conflict.
    pub fn trust_vendor(
        &self,
        name: &str,
        key_hex: &str,
        actor: Actor,
    ) -> Result<VendorChangeView, ApiError> {
        let name = parse_vendor(name)?;
        let key = vendor::parse_public_key(key_hex).map_err(ApiError::BadRequest)?;
        let now = self.now();
        let mut w = self.store.write()?;
        if let Some(v) = w.vendor(&name)? {
            if let Some(r) = &v.revoked {
                return Err(ApiError::Conflict(format!(
                    "vendor {name} was revoked {}; a revoked name stays revoked: trust the \
                     vendor's key under a new name",
                    revoked_text(r)
                )));
            }
            if v.key != key.to_bytes() {
                return Err(ApiError::Conflict(format!(
                    "vendor {name} is already trusted with another key (fingerprint {}); revoke \
                     it and trust the new key under a new name",
                    views::vendor(&v).fingerprint
                )));
            }
            return Ok(VendorChangeView {
                vendor: views::vendor(&v),
                changed: false,
            });
        }
        let rec = VendorRecord {
            name: name.clone(),
            key: key.to_bytes(),
            trusted_at: now,
            trusted_by: actor.clone(),
            revoked: None,
        };
        w.put_vendor(&rec)?;
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::VendorTrusted,
            actor,
            reason: format!(
                "vendor {name}, key fingerprint {}",
                vendor::fingerprint(&key)
            ),
        })?;
        w.commit()?;
        Ok(VendorChangeView {
            vendor: views::vendor(&rec),
            changed: true,
        })
    }

    pub fn vendors(&self) -> Result<Vec<VendorView>, ApiError> {
        Ok(self
            .store
            .read()?
            .vendors()?
            .iter()
            .map(views::vendor)
            .collect())
    }

    /// Revokes a vendor: its manifests and bundles are refused from now on. Revoking it again
    /// changes nothing.
    pub fn revoke_vendor(
        &self,
        name: &str,
        reason: &str,
        actor: Actor,
    ) -> Result<VendorChangeView, ApiError> {
        let name = parse_vendor(name)?;
        let reason = if reason.trim().is_empty() {
            "no reason given".to_owned()
        } else {
            check_reason(reason)?
        };
        let now = self.now();
        let mut w = self.store.write()?;
        let mut v = w
            .vendor(&name)?
            .ok_or_else(|| ApiError::NotFound(format!("vendor {name} is not trusted")))?;
        if v.revoked.is_some() {
            return Ok(VendorChangeView {
                vendor: views::vendor(&v),
                changed: false,
            });
        }
        v.revoked = Some(Revocation {
            at: now,
            by: actor.clone(),
            reason: reason.clone(),
        });
        w.put_vendor(&v)?;
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::VendorRevoked,
            actor,
            reason: format!("vendor {name}: {reason}"),
        })?;
        w.commit()?;
        Ok(VendorChangeView {
            vendor: views::vendor(&v),
            changed: true,
        })
    }

    /// Verifies a vendor-signed manifest and enrolls its device (see the module doc for the
    /// rules), in one transaction with the enrollment's audit entry.
    pub fn import_manifest(
        &self,
        bytes: &[u8],
        actor: &Actor,
    ) -> Result<ImportedManifest, ApiError> {
        let now = self.now();
        let u = vendor::decode::<DeviceManifest>(bytes)
            .map_err(|e| ApiError::BadRequest(format!("manifest refused: {e}")))?;
        // The signature and EK certificate checks run outside the write transaction; the
        // vendor is looked up again inside it, so a revocation in between still refuses.
        let key = trusted_key(
            self.store.read()?.vendor(u.vendor())?,
            u.vendor(),
            "manifest",
        )?;
        let (vendor, m) = u
            .verify::<DeviceManifest>(&key)
            .map_err(|e| ApiError::BadRequest(format!("manifest refused: {e}")))?;
        let mut e = Enrollment::from_manifest(vendor.clone(), m, now)
            .map_err(|e| ApiError::BadRequest(format!("manifest refused: {e}")))?;
        let problem = self.anchor_enrollment(&mut e, now);
        let mut w = self.store.write()?;
        // A name is bound to one key for good (`trust_vendor`), so only a revocation can differ.
        trusted_key(w.vendor(&vendor)?, &vendor, "manifest")?;
        let id = e.id.clone();
        let simulated = e.provenance.as_ref().is_some_and(|p| p.simulated);
        let hash = e.mqtt_password_hash.clone();
        let existing = w.device(&id)?;
        if let Some(x) = &existing
            && x.enrollment.same_keys(&e)
            && x.enrollment.provenance != e.provenance
        {
            return Err(ApiError::Conflict(match &x.enrollment.provenance {
                None => format!(
                    "device {id} is already enrolled from its own request with these keys; a \
                     manifest's provenance cannot be added to an existing enrollment"
                ),
                Some(p) => format!(
                    "device {id} is already enrolled from another manifest (vendor {}, issued \
                     {}); a device's provenance does not change",
                    p.vendor,
                    vouch_common::time::rfc3339(p.issued_at)
                ),
            }));
        }
        let note = format!(
            "manifest of vendor {vendor}{}; {}",
            if simulated { " (simulated)" } else { "" },
            match (&e.ek_cert_anchor, &problem) {
                (Some(a), _) => format!("EK certificate chains to {a}"),
                (None, Some(p)) => p.clone(),
                (None, None) => "no EK certificate".into(),
            }
        );
        let new_anchor = e.ek_cert_anchor.clone();
        let created = self.enroll_checked(&mut w, existing.as_ref(), e, actor, now, &note)?;
        w.commit()?;
        let (ek_cert_anchor, ek_cert_problem) = match &existing {
            // The same manifest again: what was stored at its first import holds.
            Some(x) if !created => (x.enrollment.ek_cert_anchor.clone(), self.ek_cert_problem(x)),
            _ => (new_anchor, problem),
        };
        Ok(ImportedManifest {
            view: ManifestImportView {
                id: id.to_string(),
                created,
                vendor: vendor.to_string(),
                simulated,
                ek_cert_anchor,
                ek_cert_problem,
            },
            mqtt_password_hash: hash,
        })
    }

    /// Verifies a vendor-signed reference bundle and stores it for its model and firmware
    /// version, in one transaction with its audit entry; then re-evaluates the devices it
    /// governs.
    pub fn import_reference(
        &self,
        bytes: &[u8],
        actor: Actor,
    ) -> Result<ReferenceImportView, ApiError> {
        let now = self.now();
        let what = ReferenceBundle::TYPE;
        let u = vendor::decode::<ReferenceBundle>(bytes)
            .map_err(|e| ApiError::BadRequest(format!("{what} refused: {e}")))?;
        let key = trusted_key(
            self.store.read()?.vendor(u.vendor())?,
            u.vendor(),
            "reference bundle",
        )?;
        let (vendor, b) = u
            .verify::<ReferenceBundle>(&key)
            .map_err(|e| ApiError::BadRequest(format!("{what} refused: {e}")))?;
        let mut w = self.store.write()?;
        trusted_key(w.vendor(&vendor)?, &vendor, "reference bundle")?;
        check_label("model", &b.model)
            .and_then(|()| check_label("firmware version", &b.firmware_version))
            .map_err(|e| ApiError::BadRequest(format!("{what} refused: {e}")))?;
        if b.reference.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "{what} refused: its reference values are empty (they would approve anything)"
            )));
        }
        let label = format!("{}@{}", b.model, b.firmware_version);
        let bundles = w.bundles()?;
        if let Some(other) = bundles
            .iter()
            .find(|o| o.model == b.model && o.vendor != vendor)
        {
            return Err(ApiError::Conflict(format!(
                "{what} refused: reference values for model {} come from vendor {}, not {vendor}",
                b.model, other.vendor
            )));
        }
        let stored = bundles
            .into_iter()
            .find(|o| o.model == b.model && o.firmware_version == b.firmware_version);
        if let Some(old) = &stored {
            if let Some(r) = &old.revoked {
                return Err(ApiError::Conflict(format!(
                    "{what} refused: firmware {label} was revoked {}; a revoked version stays revoked",
                    revoked_text(r)
                )));
            }
            if b.issued_at < old.issued_at {
                return Err(ApiError::Conflict(format!(
                    "{what} refused: it was issued {}, before the one already imported for {label} (issued {})",
                    vouch_common::time::rfc3339(b.issued_at),
                    vouch_common::time::rfc3339(old.issued_at)
                )));
            }
            if b.issued_at == old.issued_at {
                if b.reference == old.reference {
                    return Ok(ReferenceImportView {
                        reference: views::reference(old),
                        created: false,
                        reevaluated: Vec::new(),
                    });
                }
                return Err(ApiError::Conflict(format!(
                    "{what} refused: another bundle for {label} with the same issue time ({}) is already imported",
                    vouch_common::time::rfc3339(b.issued_at)
                )));
            }
        }
        let rec = BundleRecord {
            vendor: vendor.clone(),
            model: b.model,
            firmware_version: b.firmware_version,
            issued_at: b.issued_at,
            imported_at: now,
            reference: b.reference,
            revoked: None,
        };
        w.put_bundle(&rec)?;
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::ReferenceImported,
            actor,
            reason: format!(
                "firmware {label} from vendor {vendor}, issued {}, values {}",
                vouch_common::time::rfc3339(rec.issued_at),
                rec.reference.content_id()
            ),
        })?;
        w.commit()?;
        let reevaluated = self.reevaluate_bundle(&rec.model, &rec.firmware_version)?;
        Ok(ReferenceImportView {
            reference: views::reference(&rec),
            created: true,
            reevaluated,
        })
    }

    pub fn references(&self) -> Result<Vec<ReferenceView>, ApiError> {
        Ok(self
            .store
            .read()?
            .bundles()?
            .iter()
            .map(views::reference)
            .collect())
    }

    /// Revokes firmware `version` of `model`: every terminal running it is contraindicated at
    /// its next attestation, which a challenge asks for now (`challenge_firmware`). Revoking it
    /// again changes nothing.
    pub fn revoke_reference(
        &self,
        model: &str,
        version: &str,
        reason: &str,
        actor: Actor,
    ) -> Result<ReferenceRevokedView, ApiError> {
        let reason = check_reason(reason)?;
        let now = self.now();
        let mut w = self.store.write()?;
        let mut b = w.bundle(model, version)?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "no reference bundle was imported for model {model} firmware {version}"
            ))
        })?;
        if b.revoked.is_some() {
            return Ok(ReferenceRevokedView {
                reference: views::reference(&b),
                changed: false,
                challenged: 0,
            });
        }
        b.revoked = Some(Revocation {
            at: now,
            by: actor.clone(),
            reason: reason.clone(),
        });
        w.put_bundle(&b)?;
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::ReferenceRevoked,
            actor,
            reason: format!("firmware {model}@{version}: {reason}"),
        })?;
        w.commit()?;
        let challenged = self.challenge_firmware(model, version)?;
        Ok(ReferenceRevokedView {
            reference: views::reference(&b),
            changed: true,
            challenged,
        })
    }

    /// Replaces the supply-chain policy with the operator's JSON (checked: the error names the
    /// rule at fault), audited in the same transaction.
    pub fn set_supply_chain(
        &self,
        json: &str,
        actor: Actor,
    ) -> Result<SupplyChainPolicy, ApiError> {
        let p =
            SupplyChainPolicy::from_json(json).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let now = self.now();
        let mut w = self.store.write()?;
        w.put_supply_chain(&p)?;
        let count = |r: &vouch_protocol::supply_chain::Rules| {
            r.pci_vendors.len()
                + r.usb_vendors.len()
                + r.smbios_manufacturers.len()
                + r.tpm_manufacturers.len()
        };
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::SupplyChainSet,
            actor,
            reason: format!(
                "mode {}, {} deny rules, {} allow rules",
                match p.mode {
                    Mode::Deny => "deny",
                    Mode::AllowOnly => "allow_only",
                },
                count(&p.deny),
                count(&p.allow)
            ),
        })?;
        w.commit()?;
        Ok(p)
    }

    /// The supply-chain policy in force (the empty one, which allows everything, when none was
    /// set).
    pub fn supply_chain(&self) -> Result<SupplyChainPolicy, ApiError> {
        Ok(self.store.read()?.supply_chain()?.unwrap_or_default())
    }

    /// The device's last verified measurements (what `vouch-provision reference --evidence`
    /// reads).
    pub fn measurements(&self, id: &str) -> Result<Measurements, ApiError> {
        let id = parse_id(id)?;
        let rec = self
            .store
            .read()?
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        rec.measurements.ok_or_else(|| {
            ApiError::NotFound(format!("device {id} has no verified measurements yet"))
        })
    }
}
