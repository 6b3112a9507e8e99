//! The stored form of a device's status, and the one pair of functions that converts it to
//! and from the domain's `DeviceStatus` ([`status_to_row`], [`status_from_row`]). The row is
//! flat so it can hold every state the domain has or will have: the state, the quarantine in
//! force (reason, actor, time), an operator's release waiting for fresh evidence, the last
//! verdict's reasons (each a machine-readable `code` beside its operator text), when the last
//! verdict was issued, and the silence of an unresponsive device.

use serde::{Deserialize, Serialize};
use vouch_protocol::device::{DeviceStatus, Quarantine, ReleaseRequest, Silence};
use vouch_protocol::verdict::DeviceState;

use super::ActorRow;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct StatusRow {
    pub state: StateRow,
    pub quarantine: Option<QuarantineRow>,
    pub release: Option<ReleaseRow>,
    pub reasons: Vec<ReasonRow>,
    pub last_verdict_at: Option<u64>,
    pub silence: Option<SilenceRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(in crate::store) enum StateRow {
    Pending,
    Trusted,
    Quarantined,
    Unresponsive,
}

/// One reason: its stable code, and the text operators read. `code` is `None` for reasons
/// recorded as text only (every reason of a schema-1 store, and today's string reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct ReasonRow {
    pub code: Option<String>,
    pub text: String,
}

impl ReasonRow {
    pub(in crate::store) fn text(text: String) -> Self {
        Self { code: None, text }
    }
}

/// Why a quarantine is in force: a reason as for a verdict (the verifier's own carries a code
/// once reasons are typed; an operator's is text), who imposed it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct QuarantineRow {
    pub reason: ReasonRow,
    pub actor: ActorRow,
    pub at: u64,
}

/// An operator's release waiting for a passing attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct ReleaseRow {
    pub reason: String,
    pub actor: ActorRow,
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct SilenceRow {
    pub since: u64,
    pub expiries: u32,
}

// --- The one place the domain status meets its row. Written against `DeviceStatus`'s public
// fields as they are today. When the status becomes states as types with typed reasons, only
// these two functions change: `status_to_row` stores each reason's code beside its text, and
// `status_from_row` becomes fallible, so that `read::device_from` reports a row whose fields
// form no legal state as corrupt (naming table and key, like any undecodable row).

pub(in crate::store) fn status_to_row(s: &DeviceStatus) -> StatusRow {
    StatusRow {
        state: match s.state {
            DeviceState::Pending => StateRow::Pending,
            DeviceState::Trusted => StateRow::Trusted,
            DeviceState::Quarantined => StateRow::Quarantined,
            DeviceState::Unresponsive => StateRow::Unresponsive,
        },
        quarantine: s.quarantine.as_ref().map(|q| QuarantineRow {
            reason: ReasonRow::text(q.reason.clone()),
            actor: ActorRow::from_domain(&q.actor),
            at: q.at,
        }),
        release: s.release.as_ref().map(|r| ReleaseRow {
            reason: r.reason.clone(),
            actor: ActorRow::from_domain(&r.actor),
            at: r.at,
        }),
        reasons: s.reasons.iter().cloned().map(ReasonRow::text).collect(),
        last_verdict_at: s.last_verdict_at,
        silence: s.silence.map(|x| SilenceRow {
            since: x.since,
            expiries: x.expiries,
        }),
    }
}

pub(in crate::store) fn status_from_row(r: StatusRow) -> DeviceStatus {
    DeviceStatus {
        state: match r.state {
            StateRow::Pending => DeviceState::Pending,
            StateRow::Trusted => DeviceState::Trusted,
            StateRow::Quarantined => DeviceState::Quarantined,
            StateRow::Unresponsive => DeviceState::Unresponsive,
        },
        quarantine: r.quarantine.map(|q| Quarantine {
            reason: q.reason.text,
            actor: q.actor.into_domain(),
            at: q.at,
        }),
        release: r.release.map(|x| ReleaseRequest {
            reason: x.reason,
            actor: x.actor.into_domain(),
            at: x.at,
        }),
        reasons: r.reasons.into_iter().map(|x| x.text).collect(),
        last_verdict_at: r.last_verdict_at,
        silence: r.silence.map(|x| Silence {
            since: x.since,
            expiries: x.expiries,
        }),
    }
}
