//! The verifier's decisions without I/O: what it records about each device and how messages,
//! operator actions and the clock change it. The verifier's engine loads records, calls in here
//! and commits what comes back.

mod record;

pub use record::{AuditRecord, DeviceRecord, StoredLog};
