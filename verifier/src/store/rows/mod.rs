//! The store's own record shapes ("rows"), one per table, and their conversion to and from the
//! domain types the engine computes on. The engine never sees a row: the store converts at its
//! boundary, so a change to a protocol type is a compile error here — the place to decide how
//! the stored form follows — instead of a silent change of the file format.
//!
//! A row of the current schema (see [`SCHEMA_VERSION`]) is CBOR with `deny_unknown_fields`: a
//! field this binary does not know means the row is not what this schema wrote, and it is
//! reported as corrupt, naming the table and the key. Rows of older schemas are read only by
//! the migration (`super::migrate`), through the frozen shapes in [`v1`].
//!
//! What a row may embed as-is, and why:
//! - Identifiers and byte strings (`DeviceId`, `Nonce`, `Bytes`, `Sha256Digest`): their
//!   encoding is the wire's (a checked string, 32 bytes, a byte string), validated on decode.
//! - `ClockInfo`: TPMS_CLOCK_INFO, whose four fields the TPM 2.0 specification fixes.
//! - `EventLogHeld`: a field of the signed `challenge` message; changing it is a protocol
//!   change, compatible or versioned there.
//! - `ChainHash` (punch rows and heads): 32 bytes, the punch chain's hash, which both sides
//!   compute (`protocol::punch`); its definition is part of the protocol.
//! - `ReferenceValues` (the policies and bundles tables): its serde form is the reference-values
//!   format operators write (`vouchctl policy set`), which must keep reading their files anyway.
//! - `SupplyChainPolicy` (the supply-chain table) likewise: the format of `vouchctl
//!   supply-chain set`.
//! - `Inventory` (a device's manifest baseline and its last reported one) and `VendorName`: the
//!   inventory is a field of the signed manifest and evidence whose canonical CBOR is hashed
//!   and measured into the quote, so its encoding is the protocol's.
//!
//! Everything else gets a store-owned shape here (and in [`vendor`]): the device record and its
//! status, the enrollment and its provenance, measurements, nonces, event logs, audit entries,
//! vendors and bundles. A shape shared by several
//! schema versions is defined once; a version that changes one freezes the old shape into
//! that version's module first. The fixture test (`tests/store_migration.rs`) reads a store
//! written by schema 1, so a change that breaks reading old rows — an as-is type included —
//! fails there.

use anyhow::Result;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::device::{Actor, AuditAction};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::inventory::Inventory;
use vouch_protocol::messages::EventLogHeld;
use vouch_protocol::nonce::IssuedNonce;
use vouch_protocol::policy::Measurements;
use vouch_protocol::policy::events::{EventKind, LogMeasurements, MeasuredEvent};
use vouch_protocol::tpm::ClockInfo;
use vouch_protocol::verifier::{AuditRecord, DeviceRecord, StoredLog};
use vouch_protocol::wire::{from_cbor_exact, to_cbor};

pub(super) mod punch;
mod status;
pub(super) mod v1;
pub(super) mod vendor;

pub(super) use status::{StatusRow, status_from_row, status_to_row};

/// The schema this binary writes, and the newest it can read.
pub const SCHEMA_VERSION: u64 = 5;

/// Decodes one row of `table` stored under `key`; an undecodable row is reported as corrupt,
/// naming both.
pub(super) fn decode<T: DeserializeOwned>(
    table: &str,
    key: impl Display,
    bytes: &[u8],
) -> Result<T> {
    from_cbor_exact(bytes)
        .map_err(|e| anyhow::anyhow!("stored row {key} of table {table} is corrupt: {e}"))
}

pub(super) fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    to_cbor(row)
}

/// A row of the `devices` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceRow {
    pub enrollment: EnrollmentRow,
    pub status: StatusRow,
    pub last_clock: Option<ClockInfo>,
    pub measurements: Option<MeasurementsRow>,
    pub measured_at: Option<u64>,
    pub outstanding: Vec<(Nonce, u64)>,
    pub last_verdict: Option<Bytes>,
    pub eventlog_held: Option<EventLogHeld>,
    pub last_counter: u64,
}

impl DeviceRow {
    pub(super) fn from_domain(r: &DeviceRecord) -> Self {
        Self {
            enrollment: EnrollmentRow::from_domain(&r.enrollment),
            status: status_to_row(&r.status),
            last_clock: r.last_clock,
            measurements: r.measurements.as_ref().map(MeasurementsRow::from_domain),
            measured_at: r.measured_at,
            outstanding: r.outstanding.clone(),
            last_verdict: r.last_verdict.clone(),
            eventlog_held: r.eventlog_held,
            last_counter: r.last_counter,
        }
    }

    /// The domain record; fails when the stored status is no legal state.
    pub(super) fn into_domain(self) -> Result<DeviceRecord> {
        Ok(DeviceRecord {
            enrollment: self.enrollment.into_domain(),
            status: status_from_row(self.status)?,
            last_clock: self.last_clock,
            measurements: self.measurements.map(MeasurementsRow::into_domain),
            measured_at: self.measured_at,
            outstanding: self.outstanding,
            last_verdict: self.last_verdict,
            eventlog_held: self.eventlog_held,
            last_counter: self.last_counter,
        })
    }
}

/// A device's enrollment (shared by schemas 1 to 4: the two fields schema 4 added are left out
/// of the encoding when absent, so a device enrolled from its own request is stored as in
/// schema 3, and schema 1 to 3 rows read as having neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollmentRow {
    pub id: DeviceId,
    pub model: String,
    pub ek_public: Bytes,
    pub ek_certificate: Option<Bytes>,
    pub ak_public: Bytes,
    pub ak_name: Bytes,
    pub device_key: Bytes,
    pub enrolled_at: u64,
    /// Absent in schema-1 rows written before MQTT identities existed.
    #[serde(default)]
    pub mqtt_password_hash: Option<String>,
    /// Schema 4: the vendor manifest the device was enrolled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<vendor::ProvenanceRow>,
    /// Schema 4: the trusted root its EK certificate chained to at enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert_anchor: Option<String>,
}

impl EnrollmentRow {
    fn from_domain(e: &Enrollment) -> Self {
        Self {
            id: e.id.clone(),
            model: e.model.clone(),
            ek_public: e.ek_public.clone(),
            ek_certificate: e.ek_certificate.clone(),
            ak_public: e.ak_public.clone(),
            ak_name: e.ak_name.clone(),
            device_key: e.device_key.clone(),
            enrolled_at: e.enrolled_at,
            mqtt_password_hash: e.mqtt_password_hash.clone(),
            provenance: e
                .provenance
                .as_ref()
                .map(vendor::ProvenanceRow::from_domain),
            ek_cert_anchor: e.ek_cert_anchor.clone(),
        }
    }

    fn into_domain(self) -> Enrollment {
        Enrollment {
            id: self.id,
            model: self.model,
            ek_public: self.ek_public,
            ek_certificate: self.ek_certificate,
            ak_public: self.ak_public,
            ak_name: self.ak_name,
            device_key: self.device_key,
            enrolled_at: self.enrolled_at,
            mqtt_password_hash: self.mqtt_password_hash,
            provenance: self.provenance.map(vendor::ProvenanceRow::into_domain),
            ek_cert_anchor: self.ek_cert_anchor,
        }
    }
}

/// What the last accepted quote proved (shared by schemas 1 to 4; schema 4's two fields are
/// left out when absent, as for [`EnrollmentRow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MeasurementsRow {
    pub pcrs: BTreeMap<u8, Sha256Digest>,
    pub firmware_pcr: u8,
    pub firmware: Vec<FirmwareRow>,
    pub eventlog: Option<LogMeasurementsRow>,
    /// Schema 4: the firmware version the evidence reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// Schema 4: the hardware inventory the evidence carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FirmwareRow {
    pub path: String,
    pub sha256: Option<Sha256Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogMeasurementsRow {
    pub events: Vec<MeasuredEventRow>,
    pub secure_boot: Option<bool>,
    pub dbx_entries: Option<u64>,
    pub unverified_pcrs: Vec<u32>,
    /// Absent in schema-1 rows measured before vouch checked it.
    #[serde(default)]
    pub explained_pcrs: Option<BTreeSet<u32>>,
    /// Absent in schema-1 rows when empty.
    #[serde(default)]
    pub event_types: BTreeMap<u32, BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MeasuredEventRow {
    pub pcr: u32,
    pub event_type: String,
    pub kind: EventKindRow,
    pub subject: String,
    pub digest: Sha256Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum EventKindRow {
    FirmwareBlob,
    BootApplication,
    SecureBootVariable,
    Ipl,
    Other,
}

impl MeasurementsRow {
    fn from_domain(m: &Measurements) -> Self {
        Self {
            pcrs: m.pcrs.clone(),
            firmware_pcr: m.firmware_pcr,
            firmware: m
                .firmware
                .iter()
                .map(|f| FirmwareRow {
                    path: f.path.clone(),
                    sha256: f.sha256,
                })
                .collect(),
            eventlog: m.eventlog.as_ref().map(|l| LogMeasurementsRow {
                events: l
                    .events
                    .iter()
                    .map(|e| MeasuredEventRow {
                        pcr: e.pcr,
                        event_type: e.event_type.clone(),
                        kind: EventKindRow::from_domain(e.kind),
                        subject: e.subject.clone(),
                        digest: e.digest,
                    })
                    .collect(),
                secure_boot: l.secure_boot,
                dbx_entries: l.dbx_entries,
                unverified_pcrs: l.unverified_pcrs.clone(),
                explained_pcrs: l.explained_pcrs.clone(),
                event_types: l.event_types.clone(),
            }),
            firmware_version: m.firmware_version.clone(),
            inventory: m.inventory.clone(),
        }
    }

    fn into_domain(self) -> Measurements {
        Measurements {
            pcrs: self.pcrs,
            firmware_pcr: self.firmware_pcr,
            firmware: self
                .firmware
                .into_iter()
                .map(|f| FirmwareEntry {
                    path: f.path,
                    sha256: f.sha256,
                })
                .collect(),
            eventlog: self.eventlog.map(|l| LogMeasurements {
                events: l
                    .events
                    .into_iter()
                    .map(|e| MeasuredEvent {
                        pcr: e.pcr,
                        event_type: e.event_type,
                        kind: e.kind.into_domain(),
                        subject: e.subject,
                        digest: e.digest,
                    })
                    .collect(),
                secure_boot: l.secure_boot,
                dbx_entries: l.dbx_entries,
                unverified_pcrs: l.unverified_pcrs,
                explained_pcrs: l.explained_pcrs,
                event_types: l.event_types,
            }),
            firmware_version: self.firmware_version,
            inventory: self.inventory,
        }
    }
}

impl EventKindRow {
    fn from_domain(k: EventKind) -> Self {
        match k {
            EventKind::FirmwareBlob => Self::FirmwareBlob,
            EventKind::BootApplication => Self::BootApplication,
            EventKind::SecureBootVariable => Self::SecureBootVariable,
            EventKind::Ipl => Self::Ipl,
            EventKind::Other => Self::Other,
        }
    }

    fn into_domain(self) -> EventKind {
        match self {
            Self::FirmwareBlob => EventKind::FirmwareBlob,
            Self::BootApplication => EventKind::BootApplication,
            Self::SecureBootVariable => EventKind::SecureBootVariable,
            Self::Ipl => EventKind::Ipl,
            Self::Other => EventKind::Other,
        }
    }
}

/// A row of the `eventlogs` table (shared by schemas 1 to 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogRow {
    pub boot: u32,
    pub bytes: Bytes,
}

impl LogRow {
    pub(super) fn from_domain(l: &StoredLog) -> Self {
        Self {
            boot: l.boot,
            bytes: l.bytes.clone(),
        }
    }

    pub(super) fn into_domain(self) -> StoredLog {
        StoredLog {
            boot: self.boot,
            bytes: self.bytes,
        }
    }
}

/// A row of the `nonces` table (shared by schemas 1 to 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NonceRow {
    pub device: DeviceId,
    pub issued_at: u64,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

impl NonceRow {
    pub(super) fn from_domain(n: &IssuedNonce) -> Self {
        Self {
            device: n.device.clone(),
            issued_at: n.issued_at,
            expires_at: n.expires_at,
            used_at: n.used_at,
        }
    }

    pub(super) fn into_domain(self) -> IssuedNonce {
        IssuedNonce {
            device: self.device,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        }
    }
}

/// A row of the `audit` table in schemas 1 to 4, before the chain (read only by the migration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditRowV4 {
    pub at: u64,
    pub device: Option<DeviceId>,
    pub action: AuditActionRow,
    pub actor: ActorRow,
    pub reason: String,
}

impl AuditRowV4 {
    pub(super) fn into_domain(self) -> AuditRecord {
        AuditRecord {
            at: self.at,
            device: self.device,
            action: self.action.into_domain(),
            actor: self.actor.into_domain(),
            reason: self.reason,
        }
    }
}

/// A row of the `audit` table (schema 5): the entry and its link in the hash chain
/// (`vouch_protocol::audit`): `prev` is the previous entry's hash, `hash` this entry's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditRow {
    pub at: u64,
    pub device: Option<DeviceId>,
    pub action: AuditActionRow,
    pub actor: ActorRow,
    pub reason: String,
    pub prev: Sha256Digest,
    pub hash: Sha256Digest,
}

impl AuditRow {
    pub(super) fn from_domain(a: &AuditRecord, prev: Sha256Digest, hash: Sha256Digest) -> Self {
        Self {
            at: a.at,
            device: a.device.clone(),
            action: AuditActionRow::from_domain(a.action),
            actor: ActorRow::from_domain(&a.actor),
            reason: a.reason.clone(),
            prev,
            hash,
        }
    }

    pub(super) fn into_domain(self) -> AuditRecord {
        self.into_parts().0
    }

    /// The entry, its `prev` and its `hash`.
    pub(super) fn into_parts(self) -> (AuditRecord, Sha256Digest, Sha256Digest) {
        (
            AuditRecord {
                at: self.at,
                device: self.device,
                action: self.action.into_domain(),
                actor: self.actor.into_domain(),
                reason: self.reason,
            },
            self.prev,
            self.hash,
        )
    }
}

/// The one row of the `audit_head` table (schema 5): the chain's last entry and the
/// verifier's Ed25519 signature over it (`vouch_protocol::audit::Head::message`); `sig` is
/// absent when the store was written without the verifier's key (tests, benchmarks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditHeadRow {
    pub seq: u64,
    pub hash: Sha256Digest,
    pub sig: Option<Bytes>,
}

/// Who caused a change (shared by schemas 1 to 4). Adding a variant is readable by this
/// binary but not by an older one of the same schema: it needs a schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub(super) enum ActorRow {
    Verifier,
    Operator(String),
}

impl ActorRow {
    pub(super) fn from_domain(a: &Actor) -> Self {
        match a {
            Actor::Verifier => Self::Verifier,
            Actor::Operator(n) => Self::Operator(n.clone()),
        }
    }

    pub(super) fn into_domain(self) -> Actor {
        match self {
            Self::Verifier => Actor::Verifier,
            Self::Operator(n) => Actor::Operator(n),
        }
    }
}

/// Kinds of audited change (shared by schemas 1 to 4; a new variant needs a schema version,
/// as for [`ActorRow`]: the three `Punches*` variants are schema 3's, the vendor, reference and
/// supply-chain ones schema 4's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AuditActionRow {
    Enrolled,
    Trusted,
    Pending,
    Quarantined,
    Released,
    ReleaseFailed,
    PolicyChanged,
    Unresponsive,
    PunchesRejected,
    PunchesExported,
    PunchesReviewed,
    VendorTrusted,
    VendorRevoked,
    ReferenceImported,
    ReferenceRevoked,
    SupplyChainSet,
    TokenCreated,
    TokenRevoked,
    AccessDenied,
}

impl AuditActionRow {
    fn from_domain(a: AuditAction) -> Self {
        match a {
            AuditAction::Enrolled => Self::Enrolled,
            AuditAction::Trusted => Self::Trusted,
            AuditAction::Pending => Self::Pending,
            AuditAction::Quarantined => Self::Quarantined,
            AuditAction::Released => Self::Released,
            AuditAction::ReleaseFailed => Self::ReleaseFailed,
            AuditAction::PolicyChanged => Self::PolicyChanged,
            AuditAction::Unresponsive => Self::Unresponsive,
            AuditAction::PunchesRejected => Self::PunchesRejected,
            AuditAction::PunchesExported => Self::PunchesExported,
            AuditAction::PunchesReviewed => Self::PunchesReviewed,
            AuditAction::VendorTrusted => Self::VendorTrusted,
            AuditAction::VendorRevoked => Self::VendorRevoked,
            AuditAction::ReferenceImported => Self::ReferenceImported,
            AuditAction::ReferenceRevoked => Self::ReferenceRevoked,
            AuditAction::SupplyChainSet => Self::SupplyChainSet,
            AuditAction::TokenCreated => Self::TokenCreated,
            AuditAction::TokenRevoked => Self::TokenRevoked,
            AuditAction::AccessDenied => Self::AccessDenied,
        }
    }

    fn into_domain(self) -> AuditAction {
        match self {
            Self::Enrolled => AuditAction::Enrolled,
            Self::Trusted => AuditAction::Trusted,
            Self::Pending => AuditAction::Pending,
            Self::Quarantined => AuditAction::Quarantined,
            Self::Released => AuditAction::Released,
            Self::ReleaseFailed => AuditAction::ReleaseFailed,
            Self::PolicyChanged => AuditAction::PolicyChanged,
            Self::Unresponsive => AuditAction::Unresponsive,
            Self::PunchesRejected => AuditAction::PunchesRejected,
            Self::PunchesExported => AuditAction::PunchesExported,
            Self::PunchesReviewed => AuditAction::PunchesReviewed,
            Self::VendorTrusted => AuditAction::VendorTrusted,
            Self::VendorRevoked => AuditAction::VendorRevoked,
            Self::ReferenceImported => AuditAction::ReferenceImported,
            Self::ReferenceRevoked => AuditAction::ReferenceRevoked,
            Self::SupplyChainSet => AuditAction::SupplyChainSet,
            Self::TokenCreated => AuditAction::TokenCreated,
            Self::TokenRevoked => AuditAction::TokenRevoked,
            Self::AccessDenied => AuditAction::AccessDenied,
        }
    }
}
