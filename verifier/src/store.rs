//! The verifier's durable state in one redb file (`vouch.redb` in `--data`): devices, reference
//! values, issued nonces, the audit trail and counters. Every write transaction commits with
//! redb's default durability (fsync), and the engine publishes nothing before its transaction
//! committed, so what agents and operators see is never ahead of what a restart recovers.
//!
//! Records are CBOR (the protocol's own types); keys are chosen so every hot-path access is a
//! point lookup: device by id, nonce by value, policy by scope. Nonce expiry has its own index so
//! pruning is a range delete, never a scan.

use anyhow::{Context, Result};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Deserialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::nonce::IssuedNonce;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};
use vouch_protocol::wire::{from_cbor_exact, to_cbor};

mod recovery;

pub use recovery::StoreHealth;
use recovery::{Shared, describe, is_io, lock, tx_is_io};

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const MODEL_INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("model_devices");
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
const NONCES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("nonces");
const NONCE_EXPIRY: TableDefinition<(u64, &[u8; 32]), ()> = TableDefinition::new("nonce_expiry");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const EVENTLOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("eventlogs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Verdict expiry index: (expires at, device) of every device's current verdict.
const VERDICT_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("verdict_expiry");
/// Meta key set once the verdicts of an older store are in the expiry index.
const VERDICT_EXPIRY_BACKFILLED: &str = "verdict_expiry_backfilled";

const SEQ: &str = "seq";
const AUDIT_SEQ: &str = "audit_seq";

pub use vouch_protocol::verifier::{AuditRecord, DeviceRecord, StoredLog};

/// A page of audit entries with their sequence numbers, and the cursor of the next page.
pub type AuditSlice = (Vec<(u64, AuditRecord)>, Option<u64>);

fn policy_key(scope: &PolicyScope) -> String {
    scope.to_string()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T> {
    from_cbor_exact(bytes).map_err(|e| anyhow::anyhow!("stored {what} is corrupt: {e}"))
}

/// The store: one redb database, reopened in place after an I/O error.
///
/// redb latches the first I/O error of a database (a write that hit a full disk, a failed
/// fsync): from then on every operation of that handle fails with "Previous I/O error
/// occurred", even after the cause is gone. What was committed before is safe on disk (a
/// failed commit never becomes visible), so the store drops the failed handle and opens the
/// file again — on the next write or read, retrying a write's begin once — and meanwhile
/// reports the cause ([`Store::health`]) instead of redb's latch.
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens or creates the database; fails clearly if another verifier holds it.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Self::open_database(path)?;
        Ok(Self {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                db: RwLock::new(Some(Arc::new(db))),
                failed: AtomicBool::new(false),
                health: Mutex::new(StoreHealth {
                    ok: true,
                    last_error: None,
                    reopens: 0,
                }),
            }),
        })
    }

    /// Opens the file and makes sure every table exists.
    fn open_database(path: &Path) -> Result<Database> {
        let db = Database::create(path).with_context(|| {
            format!(
                "cannot open the store {} (is another verifier using this --data directory?)",
                path.display()
            )
        })?;
        let w = db.begin_write()?;
        {
            w.open_table(DEVICES)?;
            w.open_table(MODEL_INDEX)?;
            w.open_table(POLICIES)?;
            w.open_table(NONCES)?;
            w.open_table(NONCE_EXPIRY)?;
            w.open_table(AUDIT)?;
            w.open_table(EVENTLOGS)?;
            w.open_table(META)?;
            w.open_table(VERDICT_EXPIRY)?;
        }
        w.commit()?;
        Ok(db)
    }

    /// Whether the last write succeeded, and the last write error.
    pub fn health(&self) -> StoreHealth {
        lock(&self.shared.health).clone()
    }

    pub fn read(&self) -> Result<Reader> {
        // A failed reopen leaves nothing to read from; its error says why.
        self.shared.reopen_if_failed()?;
        let tx = self.shared.handle()?.begin_read();
        match tx {
            Ok(tx) => Ok(Reader { tx }),
            Err(e) => {
                if tx_is_io(&e) {
                    self.shared.failed.store(true, Ordering::Release);
                }
                Err(anyhow::anyhow!("store read failed: {}", describe(&e)))
            }
        }
    }

    /// Begins a write transaction. A handle an earlier I/O error left unusable is reopened
    /// first; if beginning still fails with an I/O error, the handle is reopened and the
    /// begin retried once.
    pub fn write(&self) -> Result<Writer> {
        let shared = &self.shared;
        let mut retried = false;
        loop {
            shared.reopen_if_failed()?;
            match shared.handle()?.begin_write() {
                Ok(tx) => {
                    return Ok(Writer {
                        tx,
                        shared: Arc::clone(shared),
                    });
                }
                Err(e) if tx_is_io(&e) && !retried => {
                    shared.failed.store(true, Ordering::Release);
                    retried = true;
                }
                Err(e) => {
                    if tx_is_io(&e) {
                        shared.failed.store(true, Ordering::Release);
                    }
                    return Err(shared.record_failure("write", describe(&e)));
                }
            }
        }
    }
}

/// A consistent snapshot for lookups (workers, API reads).
#[allow(missing_debug_implementations)] // wraps a redb transaction, which has no Debug
pub struct Reader {
    tx: ReadTransaction,
}

impl Reader {
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>> {
        let t = self.tx.open_table(DEVICES)?;
        t.get(id.as_str())?
            .map(|v| decode("device record", v.value()))
            .transpose()
    }

    pub fn nonce(&self, n: &Nonce) -> Result<Option<IssuedNonce>> {
        let t = self.tx.open_table(NONCES)?;
        t.get(n.as_bytes())?
            .map(|v| decode("nonce", v.value()))
            .transpose()
    }

    pub fn eventlog(&self, id: &DeviceId) -> Result<Option<StoredLog>> {
        let t = self.tx.open_table(EVENTLOGS)?;
        t.get(id.as_str())?
            .map(|v| decode("event log", v.value()))
            .transpose()
    }

    pub fn policy(&self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        let t = self.tx.open_table(POLICIES)?;
        t.get(policy_key(scope).as_str())?
            .map(|v| decode("policy", v.value()))
            .transpose()
    }

    /// Up to `limit` devices with ids after `after`, in id order, and the cursor for the next page.
    pub fn devices(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeviceRecord>, Option<String>)> {
        let t = self.tx.open_table(DEVICES)?;
        let mut out = Vec::new();
        let iter = match after {
            Some(a) => {
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        for item in iter {
            let (_, v) = item?;
            if out.len() == limit {
                let next = out.last().map(|d: &DeviceRecord| d.id().to_string());
                return Ok((out, next));
            }
            out.push(decode("device record", v.value())?);
        }
        Ok((out, None))
    }

    /// Up to `limit` audit entries after sequence number `after`, oldest first.
    pub fn audit(&self, after: Option<u64>, limit: usize) -> Result<AuditSlice> {
        let t = self.tx.open_table(AUDIT)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for item in t.range(start..)? {
            let (k, v) = item?;
            if out.len() == limit {
                let next = out.last().map(|(s, _): &(u64, AuditRecord)| *s);
                return Ok((out, next));
            }
            out.push((k.value(), decode("audit entry", v.value())?));
        }
        Ok((out, None))
    }
}

/// One write transaction; nothing is visible to readers or durable until [`Writer::commit`].
#[allow(missing_debug_implementations)] // wraps a redb transaction, which has no Debug
pub struct Writer {
    tx: WriteTransaction,
    shared: Arc<Shared>,
}

impl Writer {
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>> {
        let t = self.tx.open_table(DEVICES)?;
        let r = t.get(id.as_str())?;
        r.map(|v| decode("device record", v.value())).transpose()
    }

    pub fn put_device(&mut self, rec: &DeviceRecord) -> Result<()> {
        let mut t = self.tx.open_table(DEVICES)?;
        t.insert(rec.id().as_str(), to_cbor(rec).as_slice())?;
        let mut idx = self.tx.open_table(MODEL_INDEX)?;
        idx.insert((rec.enrollment.model.as_str(), rec.id().as_str()), ())?;
        Ok(())
    }

    /// Ids of the devices of `model`, via the model index (no scan of all devices).
    pub fn devices_of_model(&self, model: &str) -> Result<Vec<DeviceId>> {
        let idx = self.tx.open_table(MODEL_INDEX)?;
        let mut out = Vec::new();
        for item in idx.range((model, "")..)? {
            let (k, _) = item?;
            let (m, id) = k.value();
            if m != model {
                break;
            }
            if let Ok(id) = id.parse() {
                out.push(id);
            }
        }
        Ok(out)
    }

    pub fn put_eventlog(&mut self, id: &DeviceId, log: &StoredLog) -> Result<()> {
        let mut t = self.tx.open_table(EVENTLOGS)?;
        t.insert(id.as_str(), to_cbor(log).as_slice())?;
        Ok(())
    }

    pub fn policy(&self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        let t = self.tx.open_table(POLICIES)?;
        let r = t.get(policy_key(scope).as_str())?;
        r.map(|v| decode("policy", v.value())).transpose()
    }

    pub fn put_policy(&mut self, scope: &PolicyScope, rv: &ReferenceValues) -> Result<()> {
        let mut t = self.tx.open_table(POLICIES)?;
        t.insert(policy_key(scope).as_str(), to_cbor(rv).as_slice())?;
        Ok(())
    }

    pub fn nonce(&self, n: &Nonce) -> Result<Option<IssuedNonce>> {
        let t = self.tx.open_table(NONCES)?;
        let r = t.get(n.as_bytes())?;
        r.map(|v| decode("nonce", v.value())).transpose()
    }

    pub fn put_nonce(&mut self, n: &Nonce, rec: &IssuedNonce) -> Result<()> {
        let mut t = self.tx.open_table(NONCES)?;
        t.insert(n.as_bytes(), to_cbor(rec).as_slice())?;
        let mut e = self.tx.open_table(NONCE_EXPIRY)?;
        e.insert((rec.expires_at, n.as_bytes()), ())?;
        Ok(())
    }

    pub fn remove_nonce(&mut self, n: &Nonce) -> Result<()> {
        let mut t = self.tx.open_table(NONCES)?;
        let old = t
            .remove(n.as_bytes())?
            .map(|v| decode::<IssuedNonce>("nonce", v.value()));
        if let Some(Ok(rec)) = old {
            let mut e = self.tx.open_table(NONCE_EXPIRY)?;
            e.remove((rec.expires_at, n.as_bytes()))?;
        }
        Ok(())
    }

    /// Deletes nonce records that expired before `cutoff`; returns how many.
    pub fn prune_nonces(&mut self, cutoff: u64) -> Result<usize> {
        let mut expired = Vec::new();
        {
            let e = self.tx.open_table(NONCE_EXPIRY)?;
            for item in e.range(..(cutoff, &[0u8; 32]))? {
                let (k, _) = item?;
                let (at, n) = k.value();
                expired.push((at, *n));
            }
        }
        let mut t = self.tx.open_table(NONCES)?;
        let mut e = self.tx.open_table(NONCE_EXPIRY)?;
        for (at, n) in &expired {
            t.remove(n)?;
            e.remove((*at, n))?;
        }
        Ok(expired.len())
    }

    /// Appends to the audit trail; returns the entry's sequence number.
    pub fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        let seq = self.bump(AUDIT_SEQ)?;
        let mut t = self.tx.open_table(AUDIT)?;
        t.insert(seq, to_cbor(rec).as_slice())?;
        Ok(seq)
    }

    /// The next verifier-wide sequence number for verdicts and commands.
    pub fn next_seq(&mut self) -> Result<u64> {
        self.bump(SEQ)
    }

    fn bump(&mut self, key: &str) -> Result<u64> {
        let mut t = self.tx.open_table(META)?;
        let next = t.get(key)?.map_or(0, |v| v.value()) + 1;
        t.insert(key, next)?;
        Ok(next)
    }

    /// Commits durably. A failure is reported as `store write failed: <cause>` and recorded in
    /// [`Store::health`]; after an I/O error the next operation reopens the database.
    pub fn commit(self) -> Result<()> {
        match self.tx.commit() {
            Ok(()) => {
                self.shared.record_success();
                Ok(())
            }
            Err(e) => {
                if matches!(&e, redb::CommitError::Storage(s) if is_io(s)) {
                    self.shared.failed.store(true, Ordering::Release);
                }
                let cause = describe(&e);
                tracing::error!(error = %cause, "store commit failed; the transaction was dropped");
                Err(self.shared.record_failure("write", cause))
            }
        }
    }
}

/// The verdict expiry index: one entry (expires at, device) per device's current verdict, changed
/// in the transaction that stores the verdict, so the expiry sweep range-reads the entries due
/// instead of scanning devices.
impl Writer {
    /// Moves `id`'s entry from the expiry of its previous verdict (if any) to `exp`.
    pub fn index_verdict_expiry(
        &mut self,
        id: &DeviceId,
        old: Option<u64>,
        exp: u64,
    ) -> Result<()> {
        let mut t = self.tx.open_table(VERDICT_EXPIRY)?;
        if let Some(old) = old {
            t.remove((old, id.as_str()))?;
        }
        t.insert((exp, id.as_str()), ())?;
        Ok(())
    }

    /// Removes one entry (the sweep took it).
    pub fn unindex_verdict_expiry(&mut self, exp: u64, id: &str) -> Result<()> {
        let mut t = self.tx.open_table(VERDICT_EXPIRY)?;
        t.remove((exp, id))?;
        Ok(())
    }

    /// Up to `limit` entries of verdicts that expired before `now`, earliest first.
    pub fn verdicts_expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        expired_entries(&t, now, limit)
    }

    /// Whether the verdicts stored before the index existed have been indexed (a store created
    /// by an earlier version has verdicts but no entries).
    pub fn verdict_expiry_backfilled(&self) -> Result<bool> {
        let t = self.tx.open_table(META)?;
        Ok(t.get(VERDICT_EXPIRY_BACKFILLED)?.is_some())
    }

    pub fn set_verdict_expiry_backfilled(&mut self) -> Result<()> {
        let mut t = self.tx.open_table(META)?;
        t.insert(VERDICT_EXPIRY_BACKFILLED, 1)?;
        Ok(())
    }
}

impl Reader {
    /// Up to `limit` entries of verdicts that expired before `now` (a cheap peek before the
    /// sweep takes the write lock).
    pub fn verdicts_expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        expired_entries(&t, now, limit)
    }

    /// Entries in the expiry index (one per device with a verdict).
    pub fn verdict_expiry_len(&self) -> Result<u64> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        Ok(redb::ReadableTableMetadata::len(&t)?)
    }
}

fn expired_entries(
    t: &impl ReadableTable<(u64, &'static str), ()>,
    now: u64,
    limit: usize,
) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    // (now, "") sorts before every entry expiring at `now`: the range is `exp < now`.
    for item in t.range(..(now, ""))?.take(limit) {
        let (k, _) = item?;
        let (exp, id) = k.value();
        out.push((exp, id.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_protocol::device::{Actor, AuditAction};

    fn rec(n: u8) -> IssuedNonce {
        IssuedNonce {
            device: "t1".parse().unwrap(),
            issued_at: u64::from(n),
            expires_at: 100 + u64::from(n),
            used_at: None,
        }
    }

    #[test]
    fn nonces_survive_reopen_and_prune_by_expiry_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = Store::open(&path).unwrap();
            let mut w = s.write().unwrap();
            for n in 0..10u8 {
                w.put_nonce(&Nonce::from_bytes([n; 32]), &rec(n)).unwrap();
            }
            w.commit().unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(
            s.read()
                .unwrap()
                .nonce(&Nonce::from_bytes([3; 32]))
                .unwrap()
                .is_some()
        );
        let mut w = s.write().unwrap();
        assert_eq!(w.prune_nonces(105).unwrap(), 5);
        w.commit().unwrap();
        let r = s.read().unwrap();
        assert!(r.nonce(&Nonce::from_bytes([4; 32])).unwrap().is_none());
        assert!(r.nonce(&Nonce::from_bytes([5; 32])).unwrap().is_some());
    }

    #[test]
    fn uncommitted_writes_are_not_visible() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        {
            let mut w = s.write().unwrap();
            w.put_nonce(&Nonce::from_bytes([1; 32]), &rec(1)).unwrap();
            // dropped without commit
        }
        assert!(
            s.read()
                .unwrap()
                .nonce(&Nonce::from_bytes([1; 32]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn audit_and_seq_are_monotonic_and_paged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut w = s.write().unwrap();
        for i in 0..5 {
            w.append_audit(&AuditRecord {
                at: i,
                device: None,
                action: AuditAction::PolicyChanged,
                actor: Actor::Verifier,
                reason: format!("r{i}"),
            })
            .unwrap();
        }
        assert_eq!(w.next_seq().unwrap(), 1);
        assert_eq!(w.next_seq().unwrap(), 2);
        w.commit().unwrap();
        let r = s.read().unwrap();
        let (page, next) = r.audit(None, 2).unwrap();
        assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        let (page, next) = r.audit(next, 10).unwrap();
        assert_eq!(page.len(), 3);
        assert_eq!(next, None);
    }

    #[test]
    fn second_open_of_the_same_file_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _a = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("another verifier"), "{err}");
    }

    #[test]
    fn verdict_expiry_index_yields_only_expired_entries_and_moves_with_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let id = |n: &str| -> DeviceId { n.parse().unwrap() };
        let mut w = s.write().unwrap();
        w.index_verdict_expiry(&id("a"), None, 100).unwrap();
        w.index_verdict_expiry(&id("b"), None, 200).unwrap();
        w.index_verdict_expiry(&id("c"), None, 99).unwrap();
        // b's next verdict: its old entry goes.
        w.index_verdict_expiry(&id("b"), Some(200), 300).unwrap();
        w.commit().unwrap();
        let r = s.read().unwrap();
        assert_eq!(r.verdict_expiry_len().unwrap(), 3);
        // `exp` is the last second a verdict may be relied on: due only after it.
        assert_eq!(
            r.verdicts_expired(100, 10).unwrap(),
            vec![(99, "c".to_owned())]
        );
        assert_eq!(
            r.verdicts_expired(301, 10).unwrap(),
            vec![(99, "c".into()), (100, "a".into()), (300, "b".into())]
        );
        assert_eq!(r.verdicts_expired(301, 2).unwrap().len(), 2, "bounded");
        drop(r);
        let mut w = s.write().unwrap();
        w.unindex_verdict_expiry(99, "c").unwrap();
        assert_eq!(
            w.verdicts_expired(101, 10).unwrap(),
            vec![(100, "a".to_owned())]
        );
    }
}
