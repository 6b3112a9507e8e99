//! Schema 1, frozen: the device row as the store wrote it before schema versions existed (the
//! protocol's `DeviceRecord` and `DeviceStatus` as CBOR), read only to migrate it. These
//! shapes never change: they describe files that exist. The other tables' rows, and the
//! enrollment and measurements inside a device row, are the same in schemas 1 and 2 and are
//! defined once in `super`.

use serde::Deserialize;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::ids::Nonce;
use vouch_protocol::messages::EventLogHeld;
use vouch_protocol::tpm::ClockInfo;

use super::status::{QuarantineRow, ReasonRow, ReleaseRow, SilenceRow, StateRow, StatusRow};
use super::{ActorRow, DeviceRow, EnrollmentRow, MeasurementsRow};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct DeviceV1 {
    enrollment: EnrollmentRow,
    status: StatusV1,
    last_clock: Option<ClockInfo>,
    measurements: Option<MeasurementsRow>,
    measured_at: Option<u64>,
    outstanding: Vec<(Nonce, u64)>,
    last_verdict: Option<Bytes>,
    eventlog_held: Option<EventLogHeld>,
    /// Absent in rows written before hello/status counters existed.
    #[serde(default)]
    last_counter: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusV1 {
    state: StateRow,
    quarantine: Option<HoldV1>,
    release: Option<HoldV1>,
    reasons: Vec<String>,
    last_verdict_at: Option<u64>,
    /// Absent unless the device is unresponsive (and in rows written before that state).
    #[serde(default)]
    silence: Option<SilenceRow>,
}

/// Schema 1's quarantine and release request: both a text reason, an actor and a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldV1 {
    reason: String,
    actor: ActorRow,
    at: u64,
}

impl DeviceV1 {
    /// The same record in schema 2: reasons become text-only [`ReasonRow`]s; nothing is lost.
    pub(in crate::store) fn into_v2(self) -> DeviceRow {
        let s = self.status;
        DeviceRow {
            enrollment: self.enrollment,
            status: StatusRow {
                state: s.state,
                quarantine: s.quarantine.map(|q| QuarantineRow {
                    reasons: vec![ReasonRow::text(q.reason)],
                    actor: q.actor,
                    at: q.at,
                }),
                release: s.release.map(|r| ReleaseRow {
                    reason: r.reason,
                    actor: r.actor,
                    at: r.at,
                }),
                reasons: s.reasons.into_iter().map(ReasonRow::text).collect(),
                last_verdict_at: s.last_verdict_at,
                // Schema 1 could hold an unresponsive device without its silence (written
                // before the field existed); schema 1's own `expire` started a new silence for
                // one, so the migration does the same instead of leaving an illegal state.
                silence: match (s.state, s.silence) {
                    (StateRow::Unresponsive, None) => Some(SilenceRow {
                        since: s.last_verdict_at.unwrap_or(0),
                        expiries: 1,
                    }),
                    (_, silence) => silence,
                },
            },
            last_clock: self.last_clock,
            measurements: self.measurements,
            measured_at: self.measured_at,
            outstanding: self.outstanding,
            last_verdict: self.last_verdict,
            eventlog_held: self.eventlog_held,
            last_counter: self.last_counter,
        }
    }
}
