//! The two punch messages and the stateless check of a batch. A batch (`punches`, device-signed)
//! carries consecutive records and names its first and last seq and its head hash; the envelope
//! signature covers all of it, so one Ed25519 check authenticates the batch and the hash chain
//! ties every record to the signed head. An ack (`ack`, verifier-signed, retained) names the
//! mirror's durable head.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, Kind};
use crate::wire::Message;

use super::record::{ChainHash, PunchRecord};
use super::{ChainError, PunchError};

/// Most records one batch may carry (about 150 bytes each, well under the payload limit).
pub const MAX_BATCH_RECORDS: usize = 2000;

/// Agent → verifier: records `first..=last` of the device's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PunchBatch {
    pub first: u64,
    pub last: u64,
    /// Chain hash of record `last`.
    pub head: ChainHash,
    pub records: Vec<PunchRecord>,
    /// The newest seq the terminal holds when it sends (≥ `last`): what is still to come.
    pub device_last: u64,
    /// How many unacknowledged records the terminal's buffer can hold.
    pub capacity: u64,
}

impl Message for PunchBatch {
    const KIND: Kind = Kind::Punches;
}

impl PunchBatch {
    /// The batch of `records` (consecutive, hashed on `device`'s chain); `None` when empty.
    pub fn new(
        device: &DeviceId,
        records: Vec<PunchRecord>,
        device_last: u64,
        capacity: u64,
    ) -> Option<Self> {
        let first = records.first()?.seq;
        let last_rec = records.last()?;
        Some(Self {
            first,
            last: last_rec.seq,
            head: last_rec.hash(device),
            device_last: device_last.max(last_rec.seq),
            capacity,
            records,
        })
    }
}

/// Verifier → agent: "I hold your chain up to `seq`, whose hash is `head`, durably."
/// `resend` asks for everything after `seq` again (the verifier saw a gap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PunchAck {
    pub seq: u64,
    pub head: ChainHash,
    pub resend: bool,
}

impl Message for PunchAck {
    const KIND: Kind = Kind::Ack;
}

/// A batch whose shape and internal chain checked out: each record with its chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    pub first: u64,
    pub last: u64,
    pub head: ChainHash,
    /// `prev_hash` of record `first`.
    pub first_prev: ChainHash,
    pub entries: Vec<(PunchRecord, ChainHash)>,
    pub device_last: u64,
    pub capacity: u64,
}

/// Checks a (signature-verified) batch on its own: non-empty, bounded, consecutive seqs that
/// match its claim, every `prev_hash` linking to the record before, and the head hash equal to
/// the last record's. A shape error ([`PunchError`]) is a malformed message; a [`ChainError`]
/// means the device signed a chain that does not hold together — tamper.
pub fn check_batch(
    device: &DeviceId,
    batch: PunchBatch,
) -> Result<Result<CheckedBatch, ChainError>, PunchError> {
    let n = batch.records.len();
    if n == 0 {
        return Err(PunchError::EmptyBatch);
    }
    if n > MAX_BATCH_RECORDS {
        return Err(PunchError::BatchTooLarge {
            records: n,
            max: MAX_BATCH_RECORDS,
        });
    }
    if batch.first == 0 {
        return Err(PunchError::SeqZero);
    }
    let claimed = batch.last.checked_sub(batch.first).map(|d| d + 1);
    if claimed != Some(n as u64) {
        return Err(PunchError::ClaimMismatch {
            first: batch.first,
            last: batch.last,
            records: n,
        });
    }
    if batch.device_last < batch.last {
        return Err(PunchError::DeviceLastBehind {
            device_last: batch.device_last,
            last: batch.last,
        });
    }
    for (i, r) in batch.records.iter().enumerate() {
        let want = batch.first + i as u64;
        if r.seq != want {
            return Err(PunchError::NotConsecutive {
                expected: want,
                found: r.seq,
            });
        }
        if r.time > super::record::MAX_TIME {
            return Err(PunchError::TimeOutOfRange { time: r.time });
        }
    }
    let first_prev = batch.records[0].prev_hash;
    let mut entries = Vec::with_capacity(n);
    let mut prev: Option<ChainHash> = None;
    for r in batch.records {
        if let Some(p) = prev
            && r.prev_hash != p
        {
            return Ok(Err(ChainError::Broken { seq: r.seq }));
        }
        let h = r.hash(device);
        prev = Some(h);
        entries.push((r, h));
    }
    if prev != Some(batch.head) {
        return Ok(Err(ChainError::HeadMismatch { seq: batch.last }));
    }
    Ok(Ok(CheckedBatch {
        first: batch.first,
        last: batch.last,
        head: batch.head,
        first_prev,
        entries,
        device_last: batch.device_last,
        capacity: batch.capacity,
    }))
}
