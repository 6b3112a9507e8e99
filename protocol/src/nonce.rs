//! Challenge freshness: a nonce is issued to one device, expires, and may be used once. The
//! verifier's store keeps these records durably so the rules hold across restarts.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::DeviceId;

/// Default lifetime of a challenge.
pub const DEFAULT_TTL_SECS: u64 = 60;

/// A challenge as the verifier recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedNonce {
    pub device: DeviceId,
    pub issued_at: u64,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

/// Why evidence's nonce is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NonceRejection {
    #[error("nonce was never issued (or expired long ago)")]
    Unknown,
    #[error("nonce was issued to another device")]
    WrongDevice,
    #[error("nonce was already used (replay)")]
    Replay,
    #[error("nonce expired")]
    Expired,
}

impl NonceRejection {
    pub fn label(&self) -> &'static str {
        match self {
            NonceRejection::Unknown => "nonce_unknown",
            NonceRejection::WrongDevice => "nonce_wrong_device",
            NonceRejection::Replay => "replay",
            NonceRejection::Expired => "nonce_expired",
        }
    }
}

/// Checks `record` (the store's entry for the evidence's nonce) for `device` at `now`.
pub fn check(
    record: Option<&IssuedNonce>,
    device: &DeviceId,
    now: u64,
) -> Result<(), NonceRejection> {
    let rec = record.ok_or(NonceRejection::Unknown)?;
    if &rec.device != device {
        return Err(NonceRejection::WrongDevice);
    }
    if rec.used_at.is_some() {
        return Err(NonceRejection::Replay);
    }
    if now > rec.expires_at {
        return Err(NonceRejection::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dev: &str, used: Option<u64>) -> IssuedNonce {
        IssuedNonce {
            device: dev.parse().unwrap(),
            issued_at: 100,
            expires_at: 160,
            used_at: used,
        }
    }

    #[test]
    fn every_rule_is_enforced() {
        let d: DeviceId = "t1".parse().unwrap();
        assert_eq!(check(None, &d, 100), Err(NonceRejection::Unknown));
        assert_eq!(
            check(Some(&rec("t2", None)), &d, 100),
            Err(NonceRejection::WrongDevice)
        );
        assert_eq!(
            check(Some(&rec("t1", Some(120))), &d, 130),
            Err(NonceRejection::Replay)
        );
        assert_eq!(
            check(Some(&rec("t1", None)), &d, 161),
            Err(NonceRejection::Expired)
        );
        assert_eq!(check(Some(&rec("t1", None)), &d, 160), Ok(()));
    }
}
