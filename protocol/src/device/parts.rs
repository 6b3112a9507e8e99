//! [`DeviceStatus`] taken apart for storage, and rebuilt: [`StatusParts`] is the flat shape a
//! store maps to its rows, and [`DeviceStatus::from_parts`] the one place where stored data
//! becomes a status again, rejecting the combinations [`super::Lifecycle`] makes
//! unrepresentable. The parts have no serde form: the verifier's store defines (and versions)
//! its own rows, and converts them through these.

use thiserror::Error;

use super::{DeviceStatus, Lifecycle, Quarantine, ReleaseRequest, Silence};
use crate::reason::Reason;
use crate::verdict::DeviceState;

/// A [`DeviceStatus`] as stored: every part of it, flat. Lossless:
/// `DeviceStatus::from_parts(s.clone().into_parts()) == Ok(s)` for every status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusParts {
    pub state: DeviceState,
    /// Present exactly when `state` is quarantined.
    pub quarantine: Option<Quarantine>,
    /// Only while quarantined: an operator's release waiting for a passing attestation.
    pub release: Option<ReleaseRequest>,
    /// Reasons of the last verdict.
    pub reasons: Vec<Reason>,
    pub last_verdict_at: Option<u64>,
    /// Present exactly when `state` is unresponsive.
    pub silence: Option<Silence>,
}

/// Stored parts that no transition produces, so no status can be built from them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatusError {
    #[error("device status is quarantined but names no quarantine")]
    QuarantineMissing,
    #[error("device status is unresponsive but has no silence (when fresh evidence stopped)")]
    SilenceMissing,
    #[error("device status is {state} but carries a quarantine")]
    QuarantineOutsideQuarantine { state: DeviceState },
    #[error("device status is {state} but carries a release request")]
    ReleaseOutsideQuarantine { state: DeviceState },
    #[error("device status is {state} but carries a silence")]
    SilenceOutsideUnresponsive { state: DeviceState },
}

impl DeviceStatus {
    /// Every part of the status, for storage.
    pub fn into_parts(self) -> StatusParts {
        let state = self.state();
        let (quarantine, release, silence) = match self.lifecycle {
            Lifecycle::Pending | Lifecycle::Trusted => (None, None, None),
            Lifecycle::Unresponsive { silence } => (None, None, Some(silence)),
            Lifecycle::Quarantined { why, release } => (Some(why), release, None),
        };
        StatusParts {
            state,
            quarantine,
            release,
            reasons: self.reasons,
            last_verdict_at: self.last_verdict_at,
            silence,
        }
    }

    /// The status `parts` describe, or what makes them inconsistent.
    pub fn from_parts(parts: StatusParts) -> Result<Self, StatusError> {
        let StatusParts {
            state,
            quarantine,
            release,
            reasons,
            last_verdict_at,
            silence,
        } = parts;
        if state != DeviceState::Quarantined {
            if quarantine.is_some() {
                return Err(StatusError::QuarantineOutsideQuarantine { state });
            }
            if release.is_some() {
                return Err(StatusError::ReleaseOutsideQuarantine { state });
            }
        }
        if state != DeviceState::Unresponsive && silence.is_some() {
            return Err(StatusError::SilenceOutsideUnresponsive { state });
        }
        let lifecycle = match state {
            DeviceState::Pending => Lifecycle::Pending,
            DeviceState::Trusted => Lifecycle::Trusted,
            DeviceState::Unresponsive => Lifecycle::Unresponsive {
                silence: silence.ok_or(StatusError::SilenceMissing)?,
            },
            DeviceState::Quarantined => Lifecycle::Quarantined {
                why: quarantine.ok_or(StatusError::QuarantineMissing)?,
                release,
            },
        };
        Ok(Self {
            lifecycle,
            reasons,
            last_verdict_at,
        })
    }
}

impl From<DeviceStatus> for StatusParts {
    fn from(s: DeviceStatus) -> Self {
        s.into_parts()
    }
}

impl TryFrom<StatusParts> for DeviceStatus {
    type Error = StatusError;

    fn try_from(parts: StatusParts) -> Result<Self, StatusError> {
        DeviceStatus::from_parts(parts)
    }
}
