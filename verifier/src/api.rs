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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    pub reason: String,
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
}

/// Every error response: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
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
