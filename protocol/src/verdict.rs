//! Attestation results shaped after EAR (draft-ietf-rats-ear) and AR4SI trustworthiness claims:
//! an overall status, a trustworthiness vector, the appraisal policy, reasons an operator can act
//! on, and vouch's own claims (device state, the nonce answered, an ordering `seq`). A verdict is
//! signed by the verifier like every other message, so any relying party holding `verifier.pub`
//! can check it (the RATS passport model).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::{DeviceId, Nonce};

/// Profile naming this claim set.
pub const PROFILE: &str = "tag:vouch.invalid,2026:ear-tpm-v1";

/// EAR `ear.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    None,
    Affirming,
    Warning,
    Contraindicated,
}

impl Status {
    /// The trust tier of an AR4SI claim value (-128..=127).
    pub fn of_claim(value: i8) -> Status {
        match value.unsigned_abs() {
            0..=1 => Status::None,
            2..=31 => Status::Affirming,
            32..=95 => Status::Warning,
            _ => Status::Contraindicated,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// AR4SI claim values vouch uses (names as in draft-ietf-rats-ar4si).
pub mod claim {
    pub const CRYPTO_VALIDATION_FAILED: i8 = 99;
    pub const TRUSTWORTHY_INSTANCE: i8 = 2;
    pub const UNTRUSTWORTHY_INSTANCE: i8 = 96;
    pub const UNRECOGNIZED_INSTANCE: i8 = 97;
    pub const APPROVED_CONFIG: i8 = 2;
    pub const UNSUPPORTABLE_CONFIG: i8 = 96;
    pub const APPROVED_BOOT: i8 = 3;
    pub const CONTRAINDICATED_RUNTIME: i8 = 96;
    pub const APPROVED_FILES: i8 = 2;
    pub const CONTRAINDICATED_FILES: i8 = 96;
    pub const GENUINE_HARDWARE: i8 = 2;
    /// The verifier does not consider the hardware secure (a warning): used when its EK
    /// certificate does not chain to a trusted TPM-manufacturer root.
    pub const UNSAFE_HARDWARE: i8 = 32;
    pub const CONTRAINDICATED_HARDWARE: i8 = 96;
}

/// EAR `ear.trustworthiness-vector`; a claim of 0 means "no claim" and is omitted on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustVector {
    #[serde(rename = "instance-identity", default, skip_serializing_if = "is_zero")]
    pub instance_identity: i8,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub configuration: i8,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub executables: i8,
    #[serde(rename = "file-system", default, skip_serializing_if = "is_zero")]
    pub file_system: i8,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hardware: i8,
    #[serde(rename = "runtime-opaque", default, skip_serializing_if = "is_zero")]
    pub runtime_opaque: i8,
    #[serde(rename = "storage-opaque", default, skip_serializing_if = "is_zero")]
    pub storage_opaque: i8,
    #[serde(rename = "sourced-data", default, skip_serializing_if = "is_zero")]
    pub sourced_data: i8,
}

fn is_zero(v: &i8) -> bool {
    *v == 0
}

impl TrustVector {
    /// The worst tier among the claims made (`None` when no claim is made).
    pub fn worst(&self) -> Status {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.file_system,
            self.hardware,
            self.runtime_opaque,
            self.storage_opaque,
            self.sourced_data,
        ]
        .into_iter()
        .map(Status::of_claim)
        .max()
        .unwrap_or(Status::None)
    }
}

/// Where a device stands with the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Enrolled; no reference values yet, or not yet attested against them.
    Pending,
    /// Its last attestation passed its reference values.
    Trusted,
    /// Cut off: by the verifier after a failed attestation, or by an operator.
    Quarantined,
    /// Was trusted, but its verdict expired without fresh evidence: the verifier can no longer
    /// vouch for it. Fresh passing evidence makes it trusted again.
    Unresponsive,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Trusted => "trusted",
            DeviceState::Quarantined => "quarantined",
            DeviceState::Unresponsive => "unresponsive",
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed attestation result for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    #[serde(rename = "eat_profile")]
    pub profile: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not to be relied on after (Unix seconds).
    pub exp: u64,
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: String,
    #[serde(rename = "ear.status")]
    pub status: Status,
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trust: TrustVector,
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: Option<String>,
    #[serde(rename = "vouch.device")]
    pub device: DeviceId,
    #[serde(rename = "vouch.state")]
    pub state: DeviceState,
    /// Why the status is what it is; names the PCR index or firmware path at fault.
    #[serde(rename = "vouch.reasons")]
    pub reasons: Vec<String>,
    /// The challenge nonce of the evidence appraised; `None` for a re-evaluation of stored
    /// measurements (policy change), an operator action, or a verdict renewed because the last
    /// one expired without fresh evidence.
    #[serde(rename = "vouch.nonce")]
    pub nonce: Option<Nonce>,
    /// Verifier-wide increasing number: an agent ignores a verdict older than one it holds.
    #[serde(rename = "vouch.seq")]
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_tiers_follow_ar4si() {
        assert_eq!(Status::of_claim(0), Status::None);
        assert_eq!(Status::of_claim(1), Status::None);
        assert_eq!(Status::of_claim(-1), Status::None);
        assert_eq!(Status::of_claim(2), Status::Affirming);
        assert_eq!(Status::of_claim(31), Status::Affirming);
        assert_eq!(Status::of_claim(32), Status::Warning);
        assert_eq!(Status::of_claim(95), Status::Warning);
        assert_eq!(Status::of_claim(96), Status::Contraindicated);
        assert_eq!(Status::of_claim(127), Status::Contraindicated);
        assert_eq!(Status::of_claim(-128), Status::Contraindicated);
    }

    #[test]
    fn worst_claim_wins() {
        let v = TrustVector {
            hardware: claim::GENUINE_HARDWARE,
            executables: claim::CONTRAINDICATED_RUNTIME,
            ..TrustVector::default()
        };
        assert_eq!(v.worst(), Status::Contraindicated);
        assert_eq!(TrustVector::default().worst(), Status::None);
    }

    #[test]
    fn vector_omits_absent_claims_and_uses_ear_names() {
        let v = TrustVector {
            file_system: 2,
            ..TrustVector::default()
        };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"file-system":2}"#);
    }
}
