//! The chain-of-trust checks an appraisal makes beside reference values ([`vet`]): revoked
//! firmware, the device's hardware against the inventory its vendor manifest recorded, the
//! operator's supply-chain policy, and whether the EK certificate chained to a trusted
//! TPM-manufacturer root. They run on measurements whose quote verified — fresh evidence and
//! stored measurements re-appraised alike — so a stored inventory keeps being judged.
//!
//! - A revoked firmware version (the bundle for the device's model and reported version):
//!   `firmware_revoked`, contraindicated, executables claim contraindicated — whatever
//!   reference values govern, the operator's own included.
//! - An inventory must be bound to the quote: the newest `vouch:inventory` entry of the quoted
//!   firmware list must be its digest, else `inventory_not_measured` (and nothing is judged on
//!   it). A device enrolled from a manifest, and every device while a supply-chain policy is
//!   in force, must send one (`inventory_missing`), and every
//!   difference from the manifest's baseline is a `hardware_changed` naming component, was
//!   and now (the swapped-board case).
//! - Every supply-chain violation of a (bound) inventory is a `supply_chain_denied` naming the
//!   component and the rule, for every device that sends one, manifest or not.
//!   All of these contraindicate the hardware claim.
//! - With `require_ek_cert`, a device without an EK-certificate anchor gets
//!   `ek_cert_untrusted` and at best `warning`: its hardware claim is at most
//!   [`claim::UNSAFE_HARDWARE`].

use crate::inventory::{self, Inventory};
use crate::policy::Measurements;
use crate::reason::Reason;
use crate::supply_chain::SupplyChainPolicy;
use crate::verdict::{Status, claim};

use super::{Appraisal, bounded_reasons};

/// What [`vet`] checks measurements against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vetting<'a> {
    /// The inventory the device's vendor manifest recorded (`None`: not enrolled from one).
    pub baseline: Option<&'a Inventory>,
    /// The operator's supply-chain policy.
    pub supply_chain: Option<&'a SupplyChainPolicy>,
    /// The device's firmware version was revoked: (model, version, reason).
    pub revoked: Option<(&'a str, &'a str, &'a str)>,
    /// `Some(detail)`: an EK certificate chaining to a trusted root is required and the device
    /// has none (`detail` says why).
    pub ek_cert_untrusted: Option<&'a str>,
}

/// `a` (the appraisal of `m` against reference values) with the findings of `v` added: their
/// reasons before the reference values' ones, their claims, and the status they force.
pub fn vet(mut a: Appraisal, m: &Measurements, v: &Vetting<'_>) -> Appraisal {
    let mut found = Vec::new();
    if let Some((model, version, reason)) = v.revoked {
        found.push(Reason::FirmwareRevoked {
            model: model.to_owned(),
            version: version.to_owned(),
            reason: reason.to_owned(),
        });
        a.trust.executables = claim::CONTRAINDICATED_RUNTIME;
    }
    let hardware = hardware_findings(m, v);
    if !hardware.is_empty() {
        a.trust.hardware = claim::CONTRAINDICATED_HARDWARE;
    }
    found.extend(hardware);
    let untrusted = v.ek_cert_untrusted.map(|detail| {
        // At most a warning-tier hardware claim: the verifier cannot vouch for the hardware.
        if Status::of_claim(a.trust.hardware) < Status::Warning {
            a.trust.hardware = claim::UNSAFE_HARDWARE;
        }
        Reason::EkCertUntrusted {
            detail: detail.to_owned(),
        }
    });
    if found.is_empty() && untrusted.is_none() {
        return a;
    }
    found.append(&mut a.reasons);
    found.extend(untrusted);
    a.reasons = bounded_reasons(found);
    a.status = a.status.max(a.trust.worst());
    a
}

/// The inventory findings: binding, provenance baseline, supply chain.
fn hardware_findings(m: &Measurements, v: &Vetting<'_>) -> Vec<Reason> {
    let Some(inv) = &m.inventory else {
        // Fail closed: a device the manifest describes, or any device while a supply-chain
        // policy is in force, cannot escape the checks by sending no inventory.
        let policy_in_force = v.supply_chain.is_some_and(|p| !p.is_empty());
        return if v.baseline.is_some() || policy_in_force {
            vec![Reason::InventoryMissing]
        } else {
            Vec::new()
        };
    };
    if inventory::measured_digest(&m.firmware) != Some(inv.digest()) {
        return vec![Reason::InventoryNotMeasured];
    }
    let mut out: Vec<Reason> = v
        .baseline
        .map(|b| inventory::diff(b, inv))
        .unwrap_or_default()
        .into_iter()
        .map(|c| Reason::HardwareChanged {
            component: c.component,
            was: c.was,
            now: c.now,
        })
        .collect();
    if let Some(policy) = v.supply_chain {
        out.extend(
            policy
                .check_inventory(inv)
                .into_iter()
                .map(|x| Reason::SupplyChainDenied {
                    component: x.component,
                    rule: x.rule,
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Defect, FailedClaim, LogInput, verify_after_quote};
    use crate::bytes::{Bytes, Sha256Digest};
    use crate::firmware;
    use crate::ids::Nonce;
    use crate::inventory::{Inventory, PciDevice};
    use crate::messages::{Evidence, PcrValue};
    use crate::tpm::ClockInfo;

    /// Evidence whose firmware list (the inventory's measurement) replays to PCR 14.
    fn evidence(inv: Inventory) -> Evidence {
        let list = vec![inv.measurement()];
        let pcr14 = firmware::replay_from(&Sha256Digest::ZERO, &list);
        Evidence {
            nonce: Nonce::from_bytes([1; 32]),
            attest: Bytes(Vec::new()),
            signature: Bytes(Vec::new()),
            pcrs: vec![PcrValue {
                index: 14,
                value: pcr14,
            }],
            firmware_pcr: 14,
            firmware: list,
            eventlog: None,
            firmware_version: Some("1.0".into()),
            inventory: Some(inv),
        }
    }

    fn clock() -> ClockInfo {
        ClockInfo {
            clock: 1,
            reset_count: 0,
            restart_count: 0,
            safe: true,
        }
    }

    #[test]
    fn a_verified_quote_records_the_reported_version_and_inventory_and_refuses_a_malformed_one() {
        let pci = |slot: &str| PciDevice {
            slot: slot.into(),
            vendor: 0x8086,
            device: 1,
        };
        let mut inv = Inventory {
            pci: vec![pci("0000:00:02.0"), pci("0000:00:01.0")],
            ..Inventory::default()
        };
        let f = verify_after_quote(&evidence(inv.clone()), LogInput::Absent, clock()).unwrap_err();
        assert_eq!(
            f.reason,
            Defect::InventoryMalformed(
                "inventory lists are not sorted (normalize before signing or sending)".into()
            )
        );
        assert_eq!(f.claim, FailedClaim::Evidence);
        inv.normalize();
        let mut ev = evidence(inv.clone());
        ev.firmware_version = Some("1@2".into());
        let f = verify_after_quote(&ev, LogInput::Absent, clock()).unwrap_err();
        assert_eq!(f.reason.code(), "firmware_version_malformed");
        let v = verify_after_quote(&evidence(inv.clone()), LogInput::Absent, clock()).unwrap();
        assert_eq!(v.measurements.inventory, Some(inv));
        assert_eq!(v.measurements.firmware_version.as_deref(), Some("1.0"));
    }
}
