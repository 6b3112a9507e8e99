//! What the verifier knows about each device, as plain values: the record its decisions read
//! and change, the event log it holds, and the audit entries they append. The verifier core
//! computes on them; the store persists them as rows of its own, versioned with its schema, so
//! these types have no serde form.

use crate::bytes::Bytes;
use crate::device::{Actor, AuditAction, DeviceStatus};
use crate::enrollment::Enrollment;
use crate::ids::{DeviceId, Nonce};
use crate::messages::EventLogHeld;
use crate::policy::Measurements;
use crate::tpm::ClockInfo;
use crate::verdict::Verdict;
use crate::wire;

/// Everything the verifier keeps about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub enrollment: Enrollment,
    pub status: DeviceStatus,
    /// TPM clock of the last accepted quote (later quotes must not go backwards).
    pub last_clock: Option<ClockInfo>,
    /// Measurements of the last accepted quote (for `policy capture` and re-evaluation).
    pub measurements: Option<Measurements>,
    pub measured_at: Option<u64>,
    /// Challenges issued and not yet answered, with their expiry (bounded per device).
    pub outstanding: Vec<(Nonce, u64)>,
    /// The last signed verdict (COSE bytes), as published; its status, expiry and policy are
    /// read from it (see [`DeviceRecord::last_verdict`]), never kept beside it.
    pub last_verdict: Option<Bytes>,
    /// Which boot's event log the store holds for this device, and how much of it (sent in
    /// challenges so the agent sends only what is new).
    pub eventlog_held: Option<EventLogHeld>,
    /// Highest hello/status `counter` accepted from the device (0 before any): a hello or status
    /// not above it is a replay.
    pub last_counter: u64,
}

/// A device's accepted firmware event log (kept apart from the device record, which stays
/// small for the hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLog {
    pub boot: u32,
    pub bytes: Bytes,
}

impl DeviceRecord {
    pub fn new(enrollment: Enrollment) -> Self {
        Self {
            enrollment,
            status: DeviceStatus::new(),
            last_clock: None,
            measurements: None,
            measured_at: None,
            outstanding: Vec::new(),
            last_verdict: None,
            eventlog_held: None,
            last_counter: 0,
        }
    }

    pub fn id(&self) -> &DeviceId {
        &self.enrollment.id
    }

    /// The last verdict, decoded. It is the verifier's own signed message, so the signature is
    /// not checked again; a record whose bytes do not decode reads as having none.
    pub fn last_verdict(&self) -> Option<Verdict> {
        let bytes = self.last_verdict.as_ref()?;
        wire::decode_detached(bytes.as_slice(), wire::DEFAULT_MAX_PAYLOAD)
            .ok()?
            .peek_unverified()
            .ok()
    }
}

/// One audit trail entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: u64,
    pub device: Option<DeviceId>,
    pub action: AuditAction,
    pub actor: Actor,
    pub reason: String,
}
