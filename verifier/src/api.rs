//! JSON shapes of the operator HTTP API, shared by the server (`http`) and the client
//! (`vouchctl`) so the two cannot drift apart. Field names here are a contract: `vouchctl
//! device ID --json` prints `DeviceView` as is.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vouch_protocol::verdict::{DeviceState, Status};

/// One device as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: String,
    pub model: String,
    pub state: DeviceState,
    /// Reasons of the last verdict; they name the PCR index or firmware path at fault.
    pub reasons: Vec<String>,
    /// The stable codes of `reasons`, in the same order (docs/protocol.md, "Reason codes"):
    /// what tools and tests match on. Absent in answers of a verifier that predates them.
    #[serde(default)]
    pub reason_codes: Vec<String>,
    /// RFC 3339 time of the last verdict, `null` before the first.
    pub last_verdict_at: Option<String>,
    /// `ear.status` of the last verdict.
    pub verdict_status: Option<Status>,
    /// RFC 3339 time after which the last verdict must not be relied on.
    pub verdict_expires_at: Option<String>,
    /// The last verdict has expired: the device has not attested since (offline, or its
    /// evidence keeps being rejected). The expiry sweep turns a trusted device `unresponsive`
    /// within seconds and renews its verdict, so this is true only briefly for such a device.
    pub stale: bool,
    pub policy_id: Option<String>,
    pub quarantine: Option<QuarantineView>,
    /// An operator released the device and its re-attestation is awaited.
    pub release_pending: bool,
    pub enrolled_at: String,
    /// RFC 3339 time of the last verified quote.
    pub measured_at: Option<String>,
    /// TPM Name of the enrolled attestation key (hex).
    pub ak_name: String,
    /// The device's punch mirror. Absent (zeros) in answers of a verifier without one.
    #[serde(default)]
    pub punches: PunchesView,
    /// The terminal's unacknowledged punches exceed the verifier's threshold
    /// (`--punch-pressure-percent`) of its buffer, by what its last batch said.
    #[serde(default)]
    pub buffer_pressure: bool,
    /// What the vendor manifest said at import; `null` for a terminal enrolled from its own
    /// request (`vouchctl enroll`).
    #[serde(default)]
    pub provenance: Option<ProvenanceView>,
    /// Subject of the trusted TPM manufacturer root the EK certificate chained to when the
    /// device was enrolled; `null` when it has none or it did not chain.
    #[serde(default)]
    pub ek_cert_anchor: Option<String>,
    /// Why the device's EK certificate does not count (no certificate, no roots configured, or
    /// the check that failed); `null` when `ek_cert_anchor` is set. With `require_ek_cert` such a
    /// device is at best `warning`.
    #[serde(default)]
    pub ek_cert_problem: Option<String>,
    /// The firmware version the device last reported (`null` before its first verified quote,
    /// or from an agent that does not report one).
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// Its model at the firmware version it runs (last reported, else the provisioned one) was
    /// revoked (`vouchctl reference revoke`): its next attestation quarantines it.
    #[serde(default)]
    pub firmware_revoked: bool,
    /// A software attester (vouch-sim) stands in for its TPM: it proves nothing about hardware.
    #[serde(default)]
    pub simulated: bool,
}

/// The vendor manifest a device was enrolled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceView {
    pub vendor: String,
    pub simulated: bool,
    /// The vendor's station proved the AK lives in the TPM of the EK (credential activation).
    pub credential_activated: bool,
    /// The firmware version the vendor provisioned.
    pub firmware_version: String,
    /// RFC 3339 issue time of the manifest.
    pub issued_at: String,
}

/// Who revoked something, when (RFC 3339) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationView {
    pub at: String,
    pub by: String,
    pub reason: String,
}

/// Body of `POST /v1/vendors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorTrustBody {
    pub name: String,
    /// The vendor's Ed25519 public key, 64 hex characters (its `vendor.pub`).
    pub key: String,
}

/// A vendor the operator trusts or once trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorView {
    pub name: String,
    /// Ed25519 public key, hex.
    pub key: String,
    /// First 8 bytes of SHA-256 of the key, hex: compare it with the vendor out of band.
    pub fingerprint: String,
    pub trusted_at: String,
    pub trusted_by: String,
    /// Set once revoked: its manifests and bundles are refused from then on.
    pub revoked: Option<RevocationView>,
}

/// The answer to `POST /v1/vendors` and `POST /v1/vendors/{name}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorChangeView {
    pub vendor: VendorView,
    /// False when nothing changed (the same key trusted again, or already revoked).
    pub changed: bool,
}

/// The answer to `POST /v1/manifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestImportView {
    pub id: String,
    /// False when the same manifest's device was already enrolled (import is idempotent).
    pub created: bool,
    pub vendor: String,
    pub simulated: bool,
    /// As in [`DeviceView`]: the root the EK certificate chained to, or why it did not count.
    pub ek_cert_anchor: Option<String>,
    pub ek_cert_problem: Option<String>,
}

/// An imported reference bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceView {
    pub vendor: String,
    pub model: String,
    pub firmware_version: String,
    /// RFC 3339 issue time of the bundle (a newer bundle replaces it; an older one is refused).
    pub issued_at: String,
    pub imported_at: String,
    /// The id of its reference values (as verdicts' `policy_id` name them).
    pub content_id: String,
    /// Set once the firmware version was revoked: every terminal running it is quarantined at
    /// its next attestation.
    pub revoked: Option<RevocationView>,
}

/// The answer to `POST /v1/references/{model}/{version}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceRevokedView {
    pub reference: ReferenceView,
    /// False when it was already revoked.
    pub changed: bool,
    /// Terminals running it that were sent a challenge, so their next attestation (which the
    /// revocation contraindicates) comes now.
    pub challenged: usize,
}

/// The answer to `POST /v1/references`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceImportView {
    pub reference: ReferenceView,
    /// False when the same bundle was already imported.
    pub created: bool,
    /// Devices re-evaluated against the bundle, with their state afterwards.
    #[serde(default)]
    pub reevaluated: Vec<DeviceStateView>,
}

/// A device's punch mirror as operators see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchesView {
    /// The last record held (0: none).
    pub head_seq: u64,
    /// Its chain hash (hex; 64 zeros when none).
    pub head_hash: String,
    /// Records mirrored while the device was not trusted.
    pub held: u64,
    /// Of those, not yet reviewed (`vouchctl review-punches`).
    pub held_unreviewed: u64,
    /// Records the terminal holds that the mirror has not received yet (by its last batch).
    pub pending_on_device: u64,
    /// The terminal's buffer capacity (by its last batch; 0 before the first).
    pub capacity: u64,
    /// Set when the device's mirror head could not be read: the fields above are then zeros
    /// and say nothing (the rest of the device view is sound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    pub reason: String,
    /// The stable codes of the quarantine's own reasons (`punch_fork`, `pcr_mismatch`, an
    /// operator's `operator`, ...), in order: the device's `reason_codes` name only the held
    /// verdict's `quarantined`. Absent in answers of a verifier without them.
    #[serde(default)]
    pub reason_codes: Vec<String>,
    pub actor: String,
    pub at: String,
}

/// A page of devices; pass `next` as `after` to get the following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePage {
    pub devices: Vec<DeviceView>,
    pub next: Option<String>,
}

/// One audit trail entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub seq: u64,
    pub at: String,
    pub device: Option<String>,
    pub action: String,
    pub actor: String,
    pub reason: String,
}

/// A page of audit entries, oldest first; pass `next` as `after` for the following page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditView>,
    pub next: Option<u64>,
}

/// The result of a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub policy_id: String,
    /// Devices re-evaluated against the new reference values, with their state afterwards.
    pub reevaluated: Vec<DeviceStateView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateView {
    pub id: String,
    pub state: DeviceState,
}

/// Counters since the verifier started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// Accepted messages per kind.
    pub accepted: BTreeMap<String, u64>,
    /// Rejected messages per reason label (oversized, malformed, bad_signature, replay, ...).
    pub rejected: BTreeMap<String, u64>,
    /// The most recent rejections, newest last.
    pub recent_rejections: Vec<RejectionView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionView {
    pub at: String,
    pub topic: String,
    pub label: String,
    pub reason: String,
}

/// Body of quarantine and release requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonBody {
    pub reason: String,
}

/// Body of a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledView {
    pub id: String,
    /// False when the same request was already enrolled (enrollment is idempotent).
    pub created: bool,
    /// As in [`DeviceView`]: the root the EK certificate chained to, or why it did not count.
    /// Absent in answers of a verifier that predates EK certificate checks.
    #[serde(default)]
    pub ek_cert_anchor: Option<String>,
    #[serde(default)]
    pub ek_cert_problem: Option<String>,
}

/// Every error response: `{"error": "...", "code": "..."}` with a 4xx/5xx status. `error` names
/// what was wrong; `code` is a stable snake_case code (`unauthorized`, `forbidden`, `not_found`,
/// `bad_request`, `conflict`, `payload_too_large`, `method_not_allowed`, `internal`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// Absent in answers of a verifier that predates error codes.
    #[serde(default)]
    pub code: String,
}

impl ErrorBody {
    pub fn new(code: &str, error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            code: code.to_owned(),
        }
    }
}

/// `GET /v1/health`: 200 with `ok: true` only when everything the verifier needs is up; 503 with
/// `ok: false` and `error` naming what is down otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub ok: bool,
    /// The verifier takes terminals' messages: its store is open (always, once the API answers:
    /// `run` opens it first) and its MQTT client is connected with every subscription granted
    /// by a SUBACK on this connection. False while starting and while the broker is away; wait
    /// on this instead of sleeping.
    pub ready: bool,
    /// What is down, `null` when healthy.
    pub error: Option<String>,
    pub broker: BrokerHealthView,
    pub store: StoreHealthView,
}

/// The store part of [`HealthView`]: whether the last write committed, and the last failure.
pub type StoreHealthView = crate::store::StoreHealth;

/// The broker part of [`HealthView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHealthView {
    /// The verifier runs the broker (Mosquitto) itself.
    pub managed: bool,
    /// Managed: the Mosquitto child is running. External: the verifier is connected to it.
    pub running: bool,
    /// Pid of the managed Mosquitto.
    pub pid: Option<u32>,
    /// Times the managed Mosquitto was restarted after dying.
    pub restarts: u64,
    /// The verifier's MQTT client is connected.
    pub mqtt_connected: bool,
    /// ... and its subscriptions are in place (it receives terminals' messages).
    pub mqtt_subscribed: bool,
}

/// One mirrored punch record, decrypted for an export: enough to re-check the chain
/// (`hash`, `prev_hash`) and rebuild the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchView {
    pub device: String,
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// Unix seconds of `time` (what the record carries).
    pub unix_time: u64,
    pub employee: String,
    /// `in` or `out`.
    pub kind: String,
    /// `face`, `fingerprint`, `card`, `pin`, or `null`.
    pub method: Option<String>,
    /// Mirrored while the device was not trusted.
    pub held: bool,
    /// An operator reviewed it (`vouchctl review-punches`).
    pub reviewed: bool,
    /// The record's chain hash (hex).
    pub hash: String,
    pub prev_hash: String,
    /// The terminal's boot id (UUID).
    pub boot: String,
}

/// Where the next page of an export starts: after record `seq` of `device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchCursor {
    pub device: String,
    pub seq: u64,
}

/// A page of an export, in (device, seq) order; `next` is `null` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchPage {
    pub punches: Vec<PunchView>,
    pub next: Option<PunchCursor>,
}

/// Body of `POST /v1/devices/{id}/punches/review`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// Marks held records with seq up to this one reviewed.
    pub through: u64,
    pub reason: String,
}

/// The result of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewView {
    pub device: String,
    /// Held records marked reviewed now.
    pub reviewed: u64,
    /// Held records of the device still unreviewed.
    pub held_unreviewed: u64,
    /// Held records up to the asked seq remain: one call marks a bounded number; call again.
    #[serde(default)]
    pub more: bool,
}
