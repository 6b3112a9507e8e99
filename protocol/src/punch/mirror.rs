//! The mirror's decision on a checked batch, given the device's durable head and the chain
//! hashes it holds: append the new records, acknowledge a copy again, ask for a resend after a
//! gap, or refuse a chain that disagrees with what is held (tamper). The verifier never acks
//! past a gap and never stores a record that does not link to its head.

use super::ChainError;
use super::batch::CheckedBatch;
use super::record::ChainHash;
use crate::verdict::DeviceState;

/// The last record the mirror holds durably for one device (`seq` 0: none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorHead {
    pub seq: u64,
    pub hash: ChainHash,
}

impl MirrorHead {
    pub const EMPTY: MirrorHead = MirrorHead {
        seq: 0,
        hash: ChainHash::GENESIS,
    };
}

/// What to do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorDecision {
    /// Store `batch.entries[skip..]` (they continue the head), move the head to `head`, ack it.
    Append { skip: usize, head: MirrorHead },
    /// Everything in the batch is held already, with the same hashes: ack the head again.
    Duplicate,
    /// The batch starts after `head.seq + 1`: store nothing, ask for a resend from there.
    Gap,
    /// The batch contradicts the held chain: reject it and quarantine the device.
    Tamper(ChainError),
}

/// Decides on `batch` against `head`; `held(seq)` returns the chain hash the mirror stores for
/// a seq at or below the head (a point lookup per overlapping record, never a scan).
pub fn decide<E>(
    head: MirrorHead,
    batch: &CheckedBatch,
    mut held: impl FnMut(u64) -> Result<Option<ChainHash>, E>,
) -> Result<MirrorDecision, E> {
    if batch.first > head.seq.saturating_add(1) {
        return Ok(MirrorDecision::Gap);
    }
    if batch.first == head.seq.saturating_add(1) && batch.first_prev != head.hash {
        return Ok(MirrorDecision::Tamper(ChainError::Broken {
            seq: batch.first,
        }));
    }
    // Records the mirror already holds must be byte-for-byte the same chain.
    for (rec, hash) in &batch.entries {
        if rec.seq > head.seq {
            break;
        }
        let stored = if rec.seq == head.seq {
            Some(head.hash)
        } else {
            held(rec.seq)?
        };
        if let Some(stored) = stored
            && stored != *hash
        {
            return Ok(MirrorDecision::Tamper(ChainError::Fork { seq: rec.seq }));
        }
    }
    if batch.last <= head.seq {
        return Ok(MirrorDecision::Duplicate);
    }
    Ok(MirrorDecision::Append {
        skip: (head.seq + 1 - batch.first) as usize,
        head: MirrorHead {
            seq: batch.last,
            hash: batch.head,
        },
    })
}

/// Whether records mirrored while the device is in `state` are marked `held` (collected while
/// the device was not trusted): payroll reviews them instead of losing them.
pub fn held_in(state: DeviceState) -> bool {
    state != DeviceState::Trusted
}

/// Whether a terminal with `pending` unacknowledged records out of `capacity` is under buffer
/// pressure at `threshold_percent`.
pub fn buffer_pressure(pending: u64, capacity: u64, threshold_percent: u8) -> bool {
    capacity > 0
        && u128::from(pending) * 100 >= u128::from(capacity) * u128::from(threshold_percent)
}
