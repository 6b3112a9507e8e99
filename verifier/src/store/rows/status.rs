//! The stored form of a device's status, and the one pair of functions that converts it to
//! and from the domain's `DeviceStatus` ([`status_to_row`], [`status_from_row`]). The row is
//! flat so it can hold every state the domain has or will have: the state, the quarantine in
//! force (reason, actor, time), an operator's release waiting for fresh evidence, the last
//! verdict's reasons (each a machine-readable `code` beside its operator text), when the last
//! verdict was issued, and the silence of an unresponsive device.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::device::{DeviceStatus, Quarantine, ReleaseRequest, Silence, StatusParts};
use vouch_protocol::reason::Reason;
use vouch_protocol::verdict::DeviceState;
use vouch_protocol::wire::{from_cbor_exact, to_cbor};

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

/// One reason: its stable code, the text operators read, and the typed value (CBOR of
/// `protocol::reason::Reason`, tagged with its code). `code` and `value` are `None` for reasons
/// recorded as text only (every reason of a schema-1 store). A value this binary cannot decode
/// (a reason kind added by a newer vouch within the same schema) reads back as its text, so an
/// unknown reason never makes the device unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct ReasonRow {
    pub code: Option<String>,
    pub text: String,
    pub value: Option<Bytes>,
}

impl ReasonRow {
    pub(in crate::store) fn text(text: String) -> Self {
        Self {
            code: None,
            text,
            value: None,
        }
    }

    fn from_domain(r: &Reason) -> Self {
        match r {
            Reason::Legacy(text) => Self::text(text.clone()),
            r => Self {
                code: Some(r.code().to_owned()),
                text: r.to_string(),
                value: Some(Bytes(to_cbor(r))),
            },
        }
    }

    fn into_domain(self) -> Reason {
        let Some(value) = self.value else {
            return Reason::Legacy(self.text);
        };
        match from_cbor_exact::<Reason>(value.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                // A kind from a newer vouch reads as its text; a kind this binary knows whose
                // value no longer decodes is a format regression worth a warning.
                let known = self
                    .code
                    .as_deref()
                    .is_some_and(|c| Reason::CODES.contains(&c));
                if known {
                    tracing::warn!(code = ?self.code, error = %e, "stored reason of a known kind does not decode; kept as text");
                }
                Reason::Legacy(self.text)
            }
        }
    }
}

fn reasons_to_rows(reasons: &[Reason]) -> Vec<ReasonRow> {
    reasons.iter().map(ReasonRow::from_domain).collect()
}

fn reasons_from_rows(rows: Vec<ReasonRow>) -> Vec<Reason> {
    rows.into_iter().map(ReasonRow::into_domain).collect()
}

/// Why a quarantine is in force: its reasons as for a verdict (an operator's words are a reason
/// too), who imposed it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct QuarantineRow {
    pub reasons: Vec<ReasonRow>,
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

// --- The one place the domain status meets its row: through `StatusParts`, the status taken
// apart. Rebuilding goes through `DeviceStatus::from_parts`, so a row whose fields form no legal
// state (a quarantined state without its quarantine, a silence outside `unresponsive`) is
// reported as corrupt by the caller, naming table and key, like any undecodable row.

pub(in crate::store) fn status_to_row(s: &DeviceStatus) -> StatusRow {
    let p = s.clone().into_parts();
    StatusRow {
        state: match p.state {
            DeviceState::Pending => StateRow::Pending,
            DeviceState::Trusted => StateRow::Trusted,
            DeviceState::Quarantined => StateRow::Quarantined,
            DeviceState::Unresponsive => StateRow::Unresponsive,
        },
        quarantine: p.quarantine.as_ref().map(|q| QuarantineRow {
            reasons: reasons_to_rows(&q.reasons),
            actor: ActorRow::from_domain(&q.actor),
            at: q.at,
        }),
        release: p.release.as_ref().map(|r| ReleaseRow {
            reason: r.reason.clone(),
            actor: ActorRow::from_domain(&r.actor),
            at: r.at,
        }),
        reasons: reasons_to_rows(&p.reasons),
        last_verdict_at: p.last_verdict_at,
        silence: p.silence.map(|x| SilenceRow {
            since: x.since,
            expiries: x.expiries,
        }),
    }
}

pub(in crate::store) fn status_from_row(r: StatusRow) -> Result<DeviceStatus> {
    let parts = StatusParts {
        state: match r.state {
            StateRow::Pending => DeviceState::Pending,
            StateRow::Trusted => DeviceState::Trusted,
            StateRow::Quarantined => DeviceState::Quarantined,
            StateRow::Unresponsive => DeviceState::Unresponsive,
        },
        quarantine: r.quarantine.map(|q| Quarantine {
            reasons: reasons_from_rows(q.reasons),
            actor: q.actor.into_domain(),
            at: q.at,
        }),
        release: r.release.map(|x| ReleaseRequest {
            reason: x.reason,
            actor: x.actor.into_domain(),
            at: x.at,
        }),
        reasons: reasons_from_rows(r.reasons),
        last_verdict_at: r.last_verdict_at,
        silence: r.silence.map(|x| Silence {
            since: x.since,
            expiries: x.expiries,
        }),
    };
    Ok(DeviceStatus::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use vouch_protocol::bytes::Sha256Digest;
    use vouch_protocol::device::Actor;

    fn through_cbor(row: &StatusRow) -> StatusRow {
        from_cbor_exact(&to_cbor(row)).unwrap()
    }

    #[test]
    fn typed_reasons_survive_the_row_with_their_codes() {
        let mut s = DeviceStatus::new();
        s.quarantine("tamper report", Actor::Operator("alice".into()), 7)
            .unwrap();
        let mut parts = s.into_parts();
        parts.reasons.push(Reason::PcrMismatch {
            index: 4,
            quoted: Sha256Digest([1; 32]),
            reference: Sha256Digest([2; 32]),
        });
        let s = DeviceStatus::from_parts(parts).unwrap();
        let row = through_cbor(&status_to_row(&s));
        let codes: Vec<_> = row.reasons.iter().map(|r| r.code.as_deref()).collect();
        assert_eq!(codes, [Some("quarantined"), Some("pcr_mismatch")]);
        assert_eq!(status_from_row(row).unwrap(), s);
    }

    #[test]
    fn a_reason_this_binary_cannot_decode_reads_back_as_its_text() {
        let row = ReasonRow {
            code: Some("from_a_newer_vouch".into()),
            text: "something a newer vouch found".into(),
            value: Some(Bytes(vec![0xa1, 0x64, b'c', b'o', b'd', b'e', 0x61, b'x'])),
        };
        assert_eq!(
            row.into_domain(),
            Reason::Legacy("something a newer vouch found".into())
        );
    }

    #[test]
    fn a_row_whose_fields_form_no_legal_state_is_refused() {
        let mut row = status_to_row(&DeviceStatus::new());
        row.state = StateRow::Quarantined;
        let e = status_from_row(row).unwrap_err();
        assert!(e.to_string().contains("quarantined"), "{e}");
    }
}
