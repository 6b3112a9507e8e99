//! The terminal's punch buffer, `STATE/punches.redb`: every record by seq (its canonical CBOR,
//! its chain hash and when it was committed), the chain's meta (last seq and hash, acked seq
//! and hash), and when each acked head was persisted — retention counts from there: a record
//! goes once the ack covering it is `retention` old. Every write transaction commits durably (redb's default, fsync), and the last
//! seq and hash are written in the same transaction as the records they describe, so seqs are
//! never reused — not after a crash, and not after acknowledged records have been deleted.
//!
//! One writer (the committer thread) holds the buffer open for writing; the MQTT session reads
//! from the same handle. Capacity counts unacknowledged records (`last - acked`): at capacity
//! a punch is refused, never stored over an older one.

use anyhow::{Context, Result, bail};
#[cfg(test)]
use redb::ReadableTableMetadata;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{BootId, ChainHash, PunchInput, PunchRecord};

/// seq → commit time (u64 BE, Unix s) ‖ chain hash (32) ‖ canonical CBOR of the record.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// "last" / "acked" → seq (u64 BE) ‖ chain hash (32).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Acked seq → when that acked head was persisted (Unix s); one row per persisted ack, deleted
/// with the records it covers.
const ACKS: TableDefinition<u64, u64> = TableDefinition::new("acks");
const LAST: &str = "last";
const ACKED: &str = "acked";
const PREFIX: usize = 8 + 32;

/// A position in the chain: a seq and the hash of the record at it (seq 0: the genesis hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: ChainHash,
}

impl Head {
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: ChainHash::GENESIS,
    };

    fn encode(self) -> [u8; PREFIX] {
        let mut b = [0u8; PREFIX];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..].copy_from_slice(&self.hash.0);
        b
    }

    fn decode(b: &[u8], what: &str) -> Result<Self> {
        let (seq, hash) = split_prefix(b).with_context(|| format!("punch buffer meta {what}"))?;
        Ok(Head { seq, hash })
    }
}

/// The chain's meta: its newest record and the mirror's durable acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub last: Head,
    pub acked: Head,
}

impl Meta {
    pub fn unacked(&self) -> u64 {
        self.last.seq.saturating_sub(self.acked.seq)
    }
}

fn split_prefix(b: &[u8]) -> Result<(u64, ChainHash)> {
    let (num, rest) = b.split_first_chunk::<8>().context("shorter than 8 bytes")?;
    let hash = rest
        .get(..32)
        .and_then(ChainHash::from_slice)
        .context("no 32-byte hash")?;
    Ok((u64::from_be_bytes(*num), hash))
}

/// Why one punch of a group was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "punch buffer full: {unacked} records not yet acknowledged by the verifier (capacity \
         {capacity}); nothing was stored — check the terminal's connection to the verifier"
    )]
    Full { unacked: u64, capacity: u64 },
}

pub struct Buffer {
    db: Database,
    device: DeviceId,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The heads as `tx` sees them.
fn meta_of(tx: &redb::ReadTransaction) -> Result<Meta> {
    let t = tx.open_table(META)?;
    let get = |key: &str| -> Result<Head> {
        match t.get(key)? {
            Some(v) => Head::decode(v.value(), key),
            None => Ok(Head::GENESIS),
        }
    };
    Ok(Meta {
        last: get(LAST)?,
        acked: get(ACKED)?,
    })
}

impl Buffer {
    /// Opens (creating if needed) the buffer of `device` at `path`.
    pub fn open(path: &Path, device: DeviceId) -> Result<Self> {
        let db = Database::create(path).map_err(|e| {
            let hint = if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
                " (another vouch-agent holds it open)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot open the punch buffer {}{hint}: {e}", path.display())
        })?;
        // Personal data: owner only (the state directory lets its group traverse, not list).
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("cannot set mode 0600 on {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(RECORDS)?;
        let acked = {
            let t = tx.open_table(META)?;
            match t.get(ACKED)? {
                Some(v) => Head::decode(v.value(), ACKED)?.seq,
                None => 0,
            }
        };
        {
            // A buffer from before the ack times: its acked head counts as acked now.
            let mut acks = tx.open_table(ACKS)?;
            if acked > 0 && acks.first()?.is_none() {
                acks.insert(acked, vouch_common::time::now_unix())?;
            }
        }
        tx.commit()
            .with_context(|| format!("cannot initialise {}", path.display()))?;
        Ok(Self { db, device })
    }

    /// The database itself, for tests that hold a transaction open.
    #[cfg(test)]
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn meta(&self) -> Result<Meta> {
        meta_of(&self.db.begin_read()?)
    }

    /// The heads of the buffer at `path` without writing to it (`vouch-agent status` while no
    /// daemon runs; the caller holds the session lock, so none starts meanwhile). A file left
    /// by a crash cannot be read without a repair, which only a writer may do: then it is opened
    /// for writing and repaired, as the daemon would at its next start.
    pub fn read_meta(path: &Path, device: DeviceId) -> Result<Meta> {
        match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => meta_of(&db.begin_read()?)
                .with_context(|| format!("cannot read the punch buffer {}", path.display())),
            Err(redb::DatabaseError::RepairAborted) => Self::open(path, device)?.meta(),
            Err(e) => bail!("cannot open the punch buffer {}: {e}", path.display()),
        }
    }

    /// Stores `inputs` in order after `meta.last` in ONE durable transaction, together with the
    /// new last head and, if given, another acked head (newer, or older when the mirror went
    /// back). Each input gets its head or the reason
    /// it was refused (at capacity); refused inputs take no seq. Returns the new meta; on an
    /// error nothing at all was stored.
    pub fn commit_group(
        &self,
        meta: Meta,
        acked: Option<Head>,
        inputs: Vec<PunchInput>,
        boot: BootId,
        capacity: u64,
        now: u64,
    ) -> Result<(Meta, Vec<Result<Head, Refused>>)> {
        let mut next = meta;
        if let Some(a) = acked.filter(|a| a.seq <= meta.last.seq) {
            next.acked = a;
        }
        let mut out = Vec::with_capacity(inputs.len());
        let tx = self.db.begin_write()?;
        {
            let mut records = tx.open_table(RECORDS)?;
            let mut value = Vec::with_capacity(256);
            for input in inputs {
                if next.unacked() >= capacity {
                    out.push(Err(Refused::Full {
                        unacked: next.unacked(),
                        capacity,
                    }));
                    continue;
                }
                let prev = (next.last.seq > 0).then_some((next.last.seq, next.last.hash));
                let rec = input.chain_after(prev, boot);
                let hash = rec.hash(&self.device);
                value.clear();
                value.extend_from_slice(&now.to_be_bytes());
                value.extend_from_slice(&hash.0);
                value.extend_from_slice(&rec.to_cbor());
                records.insert(rec.seq, value.as_slice())?;
                next.last = Head { seq: rec.seq, hash };
                out.push(Ok(next.last));
            }
            let mut m = tx.open_table(META)?;
            if next.last != meta.last {
                m.insert(LAST, next.last.encode().as_slice())?;
            }
            if next.acked != meta.acked {
                m.insert(ACKED, next.acked.encode().as_slice())?;
                let mut acks = tx.open_table(ACKS)?;
                if next.acked.seq < meta.acked.seq {
                    // The mirror went back: what it no longer holds is not acked any more.
                    let above: Vec<u64> = acks
                        .range(next.acked.seq + 1..)?
                        .map(|e| e.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for seq in above {
                        acks.remove(seq)?;
                    }
                }
                if next.acked.seq > 0 {
                    acks.insert(next.acked.seq, now)?;
                }
            }
        }
        tx.commit().context("committing punches to the buffer")?;
        Ok((next, out))
    }

    /// Records `from..=to` in seq order (fewer if some are missing).
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<PunchRecord>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RECORDS)?;
        let mut out =
            Vec::with_capacity(to.saturating_sub(from).saturating_add(1).min(4096) as usize);
        for entry in t.range(from..=to)? {
            let (k, v) = entry?;
            let cbor = v
                .value()
                .get(PREFIX..)
                .with_context(|| format!("punch buffer record {} is truncated", k.value()))?;
            let rec = PunchRecord::from_cbor(cbor)
                .with_context(|| format!("punch buffer record {}", k.value()))?;
            if rec.seq != k.value() {
                bail!("punch buffer record {} carries seq {}", k.value(), rec.seq);
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// This terminal's chain hash of record `seq`, if it still holds it.
    pub fn hash_at(&self, seq: u64) -> Result<Option<ChainHash>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RECORDS)?;
        match t.get(seq)? {
            Some(v) => Ok(Some(split_prefix(v.value())?.1)),
            None => Ok(None),
        }
    }

    /// The oldest seq still held, if any.
    pub fn oldest(&self) -> Result<Option<u64>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RECORDS)?;
        Ok(t.first()?.map(|(k, _)| k.value()))
    }

    /// Deletes, from the oldest held seq on, at most `limit` records covered by an ack (at most
    /// the durable acked head `acked`) persisted at least `retention` seconds before `now`.
    /// Walks the ack rows in seq order and stops at the first too young, so it never scans.
    /// An ack time ahead of `now` (the clock was wrong, then corrected) is pulled back to `now`:
    /// it delays those records by one retention, never stops pruning. Ack rows go with the
    /// records they cover. Returns how many records it deleted.
    pub fn prune(&self, acked: u64, now: u64, retention: u64, limit: usize) -> Result<usize> {
        let tx = self.db.begin_write()?;
        let mut n = 0usize;
        let mut wrote = false;
        {
            let mut acks = tx.open_table(ACKS)?;
            let mut through = 0u64;
            let mut walked = Vec::new();
            let mut ahead = Vec::new();
            for entry in acks.range(..=acked)?.take(limit.max(1)) {
                let (k, v) = entry?;
                let (seq, at) = (k.value(), v.value());
                if at > now {
                    ahead.push(seq);
                    continue;
                }
                if !ahead.is_empty() || at.saturating_add(retention) > now {
                    break;
                }
                through = seq;
                walked.push(seq);
            }
            for seq in ahead {
                acks.insert(seq, now)?;
                wrote = true;
            }
            let mut records = tx.open_table(RECORDS)?;
            let doomed: Vec<u64> = records
                .range(..=through)?
                .take(limit)
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            // Every record at or below this is gone once `doomed` is.
            let gone_through = if doomed.len() < limit {
                through
            } else {
                doomed.last().copied().unwrap_or(0)
            };
            for seq in doomed {
                records.remove(seq)?;
                n += 1;
            }
            for seq in walked.into_iter().filter(|s| *s <= gone_through) {
                acks.remove(seq)?;
                wrote = true;
            }
        }
        if n == 0 && !wrote {
            // Nothing to delete: no commit, no fsync.
            tx.abort()?;
        } else {
            tx.commit().context("deleting acknowledged punches")?;
        }
        Ok(n)
    }

    /// How many ack rows are held.
    #[cfg(test)]
    pub(crate) fn ack_rows(&self) -> usize {
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(ACKS).unwrap();
        ReadableTableMetadata::len(&t).unwrap() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceId {
        "term-1".parse().unwrap()
    }

    fn input(employee: &str) -> PunchInput {
        PunchInput::parse(employee, "in", Some("card"), 1_700_000_000).unwrap()
    }

    const BOOT: BootId = BootId([7; 16]);

    fn append(
        b: &Buffer,
        meta: Meta,
        n: usize,
        cap: u64,
        now: u64,
    ) -> (Meta, Vec<Result<Head, Refused>>) {
        let inputs = (0..n).map(|i| input(&format!("E{i}"))).collect();
        b.commit_group(meta, None, inputs, BOOT, cap, now).unwrap()
    }

    #[test]
    fn records_chain_from_genesis_and_read_back_with_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        let (meta, out) = append(&b, b.meta().unwrap(), 3, 10, 100);
        let heads: Vec<Head> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(heads.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let recs = b.read_range(1, 3).unwrap();
        assert_eq!(recs[0].prev_hash, ChainHash::GENESIS);
        assert_eq!(recs[1].prev_hash, recs[0].hash(&device()));
        assert_eq!(recs[2].hash(&device()), meta.last.hash);
        assert_eq!(b.hash_at(2).unwrap(), Some(heads[1].hash));
        assert_eq!(b.meta().unwrap(), meta);
    }

    #[test]
    fn at_capacity_punches_are_refused_and_take_no_seq() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        let (meta, out) = append(&b, b.meta().unwrap(), 4, 3, 100);
        assert!(out[..3].iter().all(Result::is_ok));
        let err = out[3].clone().unwrap_err().to_string();
        assert!(
            err.starts_with("punch buffer full: 3 records not yet acknowledged"),
            "{err}"
        );
        assert_eq!(meta.last.seq, 3);
        assert_eq!(b.read_range(1, 10).unwrap().len(), 3);
        // An ack frees room: the next punch gets seq 4, nothing was overwritten.
        let acked = Head {
            seq: 1,
            hash: b.hash_at(1).unwrap().unwrap(),
        };
        let (meta, out) = b
            .commit_group(meta, Some(acked), vec![input("X")], BOOT, 3, 100)
            .unwrap();
        assert_eq!(out[0].clone().unwrap().seq, 4);
        assert_eq!(meta.acked, acked);
        assert_eq!(b.read_range(1, 1).unwrap()[0].employee.as_str(), "E0");
    }

    fn ack(b: &Buffer, meta: Meta, seq: u64, now: u64) -> Meta {
        let head = Head {
            seq,
            hash: b.hash_at(seq).unwrap().unwrap(),
        };
        b.commit_group(meta, Some(head), vec![], BOOT, 100, now)
            .unwrap()
            .0
    }

    #[test]
    fn retention_counts_from_the_ack_not_from_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        // Committed at 1000, acked only at 5000 (a long outage in between).
        let (meta, _) = append(&b, b.meta().unwrap(), 3, 100, 1000);
        let meta = ack(&b, meta, 3, 5000);
        assert_eq!(
            b.prune(meta.acked.seq, 5099, 100, 1000).unwrap(),
            0,
            "acked 99 s ago: kept for the retention"
        );
        assert_eq!(b.prune(meta.acked.seq, 5100, 100, 1000).unwrap(), 3);
        assert_eq!(b.ack_rows(), 0, "the ack row goes with its records");
    }

    #[test]
    fn an_ack_time_from_a_clock_ahead_delays_pruning_by_one_retention_not_forever() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        // The RTC was years ahead when 1..=2 were committed and acked; NTP then fixed it.
        let future = 4_000_000_000;
        let (meta, _) = append(&b, b.meta().unwrap(), 2, 100, future);
        let meta = ack(&b, meta, 2, future);
        let (meta, _) = append(&b, meta, 2, 100, 1000);
        let meta = ack(&b, meta, 4, 1000);
        // The first prune after the fix pulls the future ack time back to now (1010).
        assert_eq!(b.prune(meta.acked.seq, 1010, 100, 1000).unwrap(), 0);
        assert_eq!(b.prune(meta.acked.seq, 1109, 100, 1000).unwrap(), 0);
        assert_eq!(
            b.prune(meta.acked.seq, 1110, 100, 1000).unwrap(),
            4,
            "one retention after the correction, everything acked goes"
        );
        assert_eq!(b.oldest().unwrap(), None);
        assert_eq!(b.ack_rows(), 0);
    }

    #[test]
    fn a_bounded_prune_keeps_the_ack_row_of_records_it_has_not_reached() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        let (meta, _) = append(&b, b.meta().unwrap(), 5, 100, 1000);
        let meta = ack(&b, meta, 5, 1000);
        assert_eq!(b.prune(meta.acked.seq, 2000, 100, 2).unwrap(), 2);
        assert_eq!(b.ack_rows(), 1, "records 3..=5 still need it");
        assert_eq!(b.prune(meta.acked.seq, 2000, 100, 2).unwrap(), 2);
        assert_eq!(b.prune(meta.acked.seq, 2000, 100, 2).unwrap(), 1);
        assert_eq!(b.prune(meta.acked.seq, 2000, 100, 2).unwrap(), 0);
        assert_eq!(b.ack_rows(), 0);
    }

    #[test]
    fn a_regressed_ack_forgets_the_ack_times_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buffer::open(&dir.path().join("p.redb"), device()).unwrap();
        let (meta, _) = append(&b, b.meta().unwrap(), 5, 100, 1000);
        let meta = ack(&b, meta, 5, 1000);
        // The mirror was restored from a backup holding 1..=2, told at 3000.
        let meta = ack(&b, meta, 2, 3000);
        assert_eq!(meta.acked.seq, 2);
        assert_eq!(b.prune(meta.acked.seq, 3099, 100, 1000).unwrap(), 0);
        assert_eq!(b.prune(meta.acked.seq, 3100, 100, 1000).unwrap(), 2);
        assert_eq!(
            b.oldest().unwrap(),
            Some(3),
            "3..=5 are the mirror's to get again"
        );
    }

    #[test]
    fn prune_deletes_only_acked_records_past_their_retention_and_seqs_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let b = Buffer::open(&path, device()).unwrap();
        let (meta, _) = append(&b, b.meta().unwrap(), 5, 100, 1000);
        let acked = Head {
            seq: 3,
            hash: b.hash_at(3).unwrap().unwrap(),
        };
        let (meta, _) = b
            .commit_group(meta, Some(acked), vec![], BOOT, 100, 1000)
            .unwrap();
        // Too young: nothing goes.
        assert_eq!(b.prune(meta.acked.seq, 1050, 100, 1000).unwrap(), 0);
        // Old enough, but only what the ack covers, and bounded by the limit.
        assert_eq!(b.prune(meta.acked.seq, 1100, 100, 2).unwrap(), 2);
        assert_eq!(b.prune(meta.acked.seq, 1100, 100, 1000).unwrap(), 1);
        assert_eq!(b.oldest().unwrap(), Some(4));
        drop(b);
        let b = Buffer::open(&path, device()).unwrap();
        let meta = b.meta().unwrap();
        assert_eq!(meta.last.seq, 5);
        let (_, out) = append(&b, meta, 1, 100, 2000);
        assert_eq!(
            out[0].clone().unwrap().seq,
            6,
            "seqs are never reused after deletion"
        );
    }
}
