//! The punch mirror's tables: records by (device, seq), each device's head, the index of held
//! records not yet reviewed, and the id of the punch key. Every access the applier makes is a
//! point lookup (head, one seq's hash); exports read ranges a bounded page at a time; a review
//! walks only the device's unreviewed held records through their index.

use anyhow::Result;
use redb::{ReadableTable, TableHandle};
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{ChainHash, MirrorHead};

use super::punch_key::{PunchKey, Sealed};
use super::read::Reader;
use super::rows::punch::{HeadRow, PunchRow};
use super::rows::{self};
use super::write::Writer;
use super::{PUNCH_HEADS, PUNCH_HELD, PUNCH_KEY, PUNCHES};

/// The key of the punch key's id in the `punch_key` table.
const KEY_ID: &str = "id";

/// One mirrored record as stored: chain hash and marks, and the sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPunch {
    pub hash: ChainHash,
    pub held: bool,
    pub reviewed: bool,
    pub sealed: Sealed,
}

/// A device's mirror head and what it knows of the terminal's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchHead {
    /// The last record held (0: none).
    pub seq: u64,
    pub hash: ChainHash,
    /// Records mirrored while the device was not trusted.
    pub held: u64,
    /// Of those, not yet reviewed by an operator.
    pub unreviewed: u64,
    /// The newest seq the terminal said it holds, with its last batch.
    pub device_last: u64,
    /// The terminal's buffer capacity, with its last batch.
    pub capacity: u64,
    /// The last tamper batch audited while the device was quarantined: its reason code and
    /// the device's `last_verdict_at` then. A copy with the same code in the same verdict
    /// period is not audited again (see `engine::punches`).
    pub last_tamper: Option<TamperMark>,
}

/// See [`PunchHead::last_tamper`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TamperMark {
    pub code: String,
    pub verdict_at: Option<u64>,
}

impl PunchHead {
    pub const EMPTY: PunchHead = PunchHead {
        seq: 0,
        hash: ChainHash::GENESIS,
        held: 0,
        unreviewed: 0,
        device_last: 0,
        capacity: 0,
        last_tamper: None,
    };

    /// The head as the mirror's decision sees it.
    pub fn mirror(&self) -> MirrorHead {
        MirrorHead {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// Records the terminal holds that the mirror does not have yet.
    pub fn pending_on_device(&self) -> u64 {
        self.device_last.saturating_sub(self.seq)
    }
}

fn head_from(device: &str, bytes: &[u8]) -> Result<PunchHead> {
    rows::decode::<HeadRow>(PUNCH_HEADS.name(), device, bytes).map(HeadRow::into_domain)
}

fn punch_from(device: &str, seq: u64, bytes: &[u8]) -> Result<StoredPunch> {
    let key = format!("{device}/{seq}");
    rows::decode::<PunchRow>(PUNCHES.name(), &key, bytes)?
        .into_domain()
        .map_err(|e| {
            anyhow::anyhow!(
                "stored row {key} of table {} is corrupt: {e}",
                PUNCHES.name()
            )
        })
}

fn key_id_from(bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        anyhow::anyhow!(
            "stored row {KEY_ID} of table {} is corrupt: {} bytes, not 32",
            PUNCH_KEY.name(),
            bytes.len()
        )
    })
}

/// What one review call marked: seqs `first..=last` (`count` records, held and unreviewed
/// ones only); `more`: further held records up to the asked seq remain unreviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reviewed {
    pub first: u64,
    pub last: u64,
    pub count: u64,
    pub more: bool,
}

/// One record of an export page.
pub type PunchEntry = (DeviceId, u64, StoredPunch);

impl Reader {
    pub fn punch_head(&self, device: &DeviceId) -> Result<Option<PunchHead>> {
        let t = self.tx.open_table(PUNCH_HEADS)?;
        t.get(device.as_str())?
            .map(|v| head_from(device.as_str(), v.value()))
            .transpose()
    }

    /// Up to `limit` records of `device` with seq above `after`, in seq order.
    pub fn punches(&self, device: &DeviceId, after: u64, limit: usize) -> Result<Vec<PunchEntry>> {
        let t = self.tx.open_table(PUNCHES)?;
        let mut out = Vec::new();
        let Some(start) = after.checked_add(1) else {
            return Ok(out);
        };
        for item in t.range((device.as_str(), start)..=(device.as_str(), u64::MAX))? {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            let (_, seq) = k.value();
            out.push((
                device.clone(),
                seq,
                punch_from(device.as_str(), seq, v.value())?,
            ));
        }
        Ok(out)
    }

    /// Up to `limit` records of every device after the cursor (device, seq), in that order.
    pub fn punches_all(
        &self,
        after: Option<(&DeviceId, u64)>,
        limit: usize,
    ) -> Result<Vec<PunchEntry>> {
        use std::ops::Bound;
        let t = self.tx.open_table(PUNCHES)?;
        let range = match after {
            Some((d, s)) => {
                t.range::<(&str, u64)>((Bound::Excluded((d.as_str(), s)), Bound::Unbounded))?
            }
            None => t.range::<(&str, u64)>(..)?,
        };
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (k, v) = item?;
            let (device, seq) = k.value();
            let id: DeviceId = device.parse().map_err(|e| {
                anyhow::anyhow!("stored row {device}/{seq} of table punches has a bad key: {e}")
            })?;
            out.push((id, seq, punch_from(device, seq, v.value())?));
        }
        Ok(out)
    }

    /// The id of the key the store's punch rows are sealed with, if any was recorded.
    pub fn punch_key_id(&self) -> Result<Option<[u8; 32]>> {
        let t = self.tx.open_table(PUNCH_KEY)?;
        t.get(KEY_ID)?.map(|v| key_id_from(v.value())).transpose()
    }

    /// Whether the mirror holds any record.
    pub fn has_punches(&self) -> Result<bool> {
        let t = self.tx.open_table(PUNCHES)?;
        Ok(t.first()?.is_some())
    }
}

impl Writer {
    pub fn punch_head(&self, device: &DeviceId) -> Result<Option<PunchHead>> {
        let t = self.tx.open_table(PUNCH_HEADS)?;
        t.get(device.as_str())?
            .map(|v| head_from(device.as_str(), v.value()))
            .transpose()
    }

    /// The chain hash of record `seq` of `device`, if the mirror holds it.
    pub fn punch_hash(&self, device: &DeviceId, seq: u64) -> Result<Option<ChainHash>> {
        let t = self.tx.open_table(PUNCHES)?;
        t.get((device.as_str(), seq))?
            .map(|v| punch_from(device.as_str(), seq, v.value()).map(|p| p.hash))
            .transpose()
    }

    /// Stores record `seq` of `device` (indexing it when held and unreviewed).
    pub fn put_punch(&mut self, device: &DeviceId, seq: u64, p: &StoredPunch) -> Result<()> {
        let mut t = self.tx.open_table(PUNCHES)?;
        t.insert(
            (device.as_str(), seq),
            rows::encode(&PunchRow::from_domain(p)).as_slice(),
        )?;
        if p.held && !p.reviewed {
            self.tx
                .open_table(PUNCH_HELD)?
                .insert((device.as_str(), seq), ())?;
        }
        Ok(())
    }

    pub fn put_punch_head(&mut self, device: &DeviceId, h: &PunchHead) -> Result<()> {
        let mut t = self.tx.open_table(PUNCH_HEADS)?;
        t.insert(
            device.as_str(),
            rows::encode(&HeadRow::from_domain(h)).as_slice(),
        )?;
        Ok(())
    }

    /// Marks up to `max` of `device`'s held records up to `through` reviewed, lowest seqs
    /// first; `None` when there were none. Walks the unreviewed-held index only, so one call
    /// touches at most `max` records (and the write transaction stays short).
    pub fn review_punches(
        &mut self,
        device: &DeviceId,
        through: u64,
        max: usize,
    ) -> Result<Option<Reviewed>> {
        let (seqs, more) = {
            let idx = self.tx.open_table(PUNCH_HELD)?;
            let mut v = Vec::new();
            let mut more = false;
            for item in idx.range((device.as_str(), 0)..=(device.as_str(), through))? {
                let seq = item?.0.value().1;
                if v.len() == max {
                    more = true;
                    break;
                }
                v.push(seq);
            }
            (v, more)
        };
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(None);
        };
        {
            let mut t = self.tx.open_table(PUNCHES)?;
            let mut idx = self.tx.open_table(PUNCH_HELD)?;
            for &seq in &seqs {
                let row = t
                    .get((device.as_str(), seq))?
                    .map(|v| punch_from(device.as_str(), seq, v.value()))
                    .transpose()?;
                if let Some(mut p) = row {
                    p.reviewed = true;
                    t.insert(
                        (device.as_str(), seq),
                        rows::encode(&PunchRow::from_domain(&p)).as_slice(),
                    )?;
                }
                idx.remove((device.as_str(), seq))?;
            }
        }
        let count = seqs.len() as u64;
        if let Some(mut h) = self.punch_head(device)? {
            h.unreviewed = h.unreviewed.saturating_sub(count);
            self.put_punch_head(device, &h)?;
        }
        Ok(Some(Reviewed {
            first,
            last,
            count,
            more,
        }))
    }

    /// Records the id of the key punch rows are sealed with.
    pub fn put_punch_key_id(&mut self, id: &[u8; 32]) -> Result<()> {
        let mut t = self.tx.open_table(PUNCH_KEY)?;
        t.insert(KEY_ID, id.as_slice())?;
        Ok(())
    }
}

/// Loads (or, for a mirror that holds no record, creates) the punch key beside the database at
/// `db_path` and records its id in the store; see `punch_key::load_or_create` for what is
/// refused. A store that holds records insists on the key they were sealed with.
pub(super) fn bind_key(db: &redb::Database, db_path: &std::path::Path) -> Result<PunchKey> {
    use redb::ReadableDatabase;
    let (recorded, has_rows) = {
        let r = db.begin_read()?;
        let recorded = r
            .open_table(PUNCH_KEY)?
            .get(KEY_ID)?
            .map(|v| key_id_from(v.value()))
            .transpose()?;
        (recorded, r.open_table(PUNCHES)?.first()?.is_some())
    };
    if has_rows && recorded.is_none() {
        anyhow::bail!(
            "the store {} holds punch records but no id of the key they are sealed with \
             (table {}): refusing to pick or create a punch key that may not open them; \
             restore the store together with its punch.key from the same backup",
            db_path.display(),
            PUNCH_KEY.name()
        );
    }
    let path = super::punch_key::key_path(db_path);
    let (key, _) = super::punch_key::load_or_create(&path, recorded.filter(|_| has_rows))?;
    if recorded != Some(key.id()) {
        let w = db.begin_write()?;
        w.open_table(PUNCH_KEY)?
            .insert(KEY_ID, key.id().as_slice())?;
        w.commit()?;
    }
    Ok(key)
}
