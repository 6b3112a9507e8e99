//! Rows of the punch mirror (schema 3): one row per mirrored record, keyed (device, seq), holding
//! its chain hash and marks in the clear and the record itself sealed (see `punch_key`); and
//! one head row per device. The employee id, time, kind and method exist only inside the
//! ciphertext.

use serde::{Deserialize, Serialize};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::punch::ChainHash;

use super::super::punch_key::{NONCE_LEN, Sealed};
use super::super::{PunchHead, StoredPunch, TamperMark};

/// A row of the `punches` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct PunchRow {
    /// Chain hash of the record (what the mirror compares a resent record with).
    pub hash: ChainHash,
    /// Mirrored while the device was not trusted.
    pub held: bool,
    /// An operator reviewed it (only ever set on held records).
    pub reviewed: bool,
    /// XChaCha20-Poly1305 nonce.
    pub nonce: Bytes,
    /// The record's canonical CBOR, sealed with AAD = device ‖ seq.
    pub sealed: Bytes,
}

impl PunchRow {
    pub(in crate::store) fn from_domain(p: &StoredPunch) -> Self {
        Self {
            hash: p.hash,
            held: p.held,
            reviewed: p.reviewed,
            nonce: Bytes(p.sealed.nonce.to_vec()),
            sealed: Bytes(p.sealed.ciphertext.clone()),
        }
    }

    /// The domain row; fails on a nonce of the wrong length.
    pub(in crate::store) fn into_domain(self) -> anyhow::Result<StoredPunch> {
        let nonce = <[u8; NONCE_LEN]>::try_from(self.nonce.0.as_slice()).map_err(|_| {
            anyhow::anyhow!(
                "punch row nonce is {} bytes, not {NONCE_LEN}",
                self.nonce.0.len()
            )
        })?;
        Ok(StoredPunch {
            hash: self.hash,
            held: self.held,
            reviewed: self.reviewed,
            sealed: Sealed {
                nonce,
                ciphertext: self.sealed.0,
            },
        })
    }
}

/// A row of the `punch_heads` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct HeadRow {
    pub seq: u64,
    pub hash: ChainHash,
    pub held: u64,
    pub unreviewed: u64,
    pub device_last: u64,
    pub capacity: u64,
    /// Absent in rows written before it existed, and while no tamper was audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tamper_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tamper_verdict_at: Option<u64>,
}

impl HeadRow {
    pub(in crate::store) fn from_domain(h: &PunchHead) -> Self {
        Self {
            seq: h.seq,
            hash: h.hash,
            held: h.held,
            unreviewed: h.unreviewed,
            device_last: h.device_last,
            capacity: h.capacity,
            tamper_code: h.last_tamper.as_ref().map(|t| t.code.clone()),
            tamper_verdict_at: h.last_tamper.as_ref().and_then(|t| t.verdict_at),
        }
    }

    pub(in crate::store) fn into_domain(self) -> PunchHead {
        PunchHead {
            seq: self.seq,
            hash: self.hash,
            held: self.held,
            unreviewed: self.unreviewed,
            device_last: self.device_last,
            capacity: self.capacity,
            last_tamper: self.tamper_code.map(|code| TamperMark {
                code,
                verdict_at: self.tamper_verdict_at,
            }),
        }
    }
}
