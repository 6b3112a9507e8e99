//! The verifier's durable state in one redb file (`vouch.redb` in `--data`): devices, reference
//! values, issued nonces, the audit trail and counters. Every write transaction commits with
//! redb's default durability (fsync), and the engine publishes nothing before its transaction
//! committed, so what agents and operators see is never ahead of what a restart recovers.
//!
//! Records are stored as the store's own versioned rows (`rows`), converted to and from the
//! protocol's domain types at this boundary; `meta` holds the `schema_version`, and opening
//! migrates an older store (`migrate`). Keys are chosen so every hot-path access is a point
//! lookup: device by id, nonce by value, policy by scope. Nonce expiry has its own index so
//! pruning is a range delete, never a scan. Reads are in `read`, writes in `write`, I/O error
//! recovery in `recovery`. The punch mirror's tables are in `punches`; its records are sealed
//! with the punch key (`punch_key`, a file beside the database, never inside it). Trusted
//! vendors, reference bundles and the supply-chain policy are in `vendors`.

use anyhow::Result;
use ed25519_dalek::SigningKey;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use vouch_protocol::policy::PolicyScope;

mod audit;
mod migrate;
mod outbox;
pub mod punch_key;
mod punches;
mod read;
mod recovery;
mod rows;
mod tokens;
mod vendors;
mod write;

pub use audit::{ChainReport, verify_offline};
pub use migrate::{Migration, SchemaError};
pub use outbox::{Due, OutboxEntry};
pub use punch_key::{PunchKey, Sealed};
pub use punches::{PunchEntry, PunchHead, Reviewed, StoredPunch, TamperMark};
pub use read::Reader;
pub use recovery::StoreHealth;
use recovery::{Shared, describe, lock, tx_is_io};
pub use rows::SCHEMA_VERSION;
pub use tokens::TokenRow;
pub use write::Writer;

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const MODEL_INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("model_devices");
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
const NONCES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("nonces");
const NONCE_EXPIRY: TableDefinition<(u64, &[u8; 32]), ()> = TableDefinition::new("nonce_expiry");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const EVENTLOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("eventlogs");
/// Counters and the schema version; its shape (`&str` → `u64`) never changes (see `migrate`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Verdict expiry index: (expires at, device) of every device's current verdict.
const VERDICT_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("verdict_expiry");
/// Mirrored punch records by (device, seq) (schema 3; see `punches`).
const PUNCHES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("punches");
/// Each device's mirror head.
const PUNCH_HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("punch_heads");
/// Held records not yet reviewed, by (device, seq): what a review walks.
const PUNCH_HELD: TableDefinition<(&str, u64), ()> = TableDefinition::new("punch_held");
/// The id of the key punch rows are sealed with (`punch_key`).
const PUNCH_KEY: TableDefinition<&str, &[u8]> = TableDefinition::new("punch_key");
/// Trusted vendors by name (schema 4; see `vendors`).
const VENDORS: TableDefinition<&str, &[u8]> = TableDefinition::new("vendors");
/// Imported reference bundles by `model NUL firmware version`.
const BUNDLES: TableDefinition<&str, &[u8]> = TableDefinition::new("bundles");
/// The supply-chain policy: one row.
const SUPPLY_CHAIN: TableDefinition<&str, &[u8]> = TableDefinition::new("supply_chain");

const SEQ: &str = "seq";
const AUDIT_SEQ: &str = "audit_seq";

pub use vouch_protocol::verifier::{AuditRecord, DeviceRecord, StoredLog};

/// A page of audit entries with their sequence numbers, and the cursor of the next page.
pub type AuditSlice = (Vec<(u64, AuditRecord)>, Option<u64>);

fn policy_key(scope: &PolicyScope) -> String {
    scope.to_string()
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
    punch_key: PunchKey,
    /// Signs the audit chain head at each commit that appended (`audit`).
    audit_key: Option<Arc<SigningKey>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens or creates the database and migrates it to [`SCHEMA_VERSION`]; fails clearly if
    /// another verifier holds it or a newer vouch wrote it ([`SchemaError`]).
    /// The audit chain head is left unsigned: see [`Store::open_keyed`].
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::open_migrating(path)?.0)
    }

    /// [`Store::open`] for the verifier: the audit chain head is signed with `key` at every
    /// commit that appended audit entries (and by the migration that chains an older store).
    pub fn open_keyed(path: &Path, key: SigningKey) -> Result<Self> {
        Ok(Self::open_inner(path, Some(key))?.0)
    }

    /// [`Store::open`], saying what it did to the schema.
    pub fn open_migrating(path: &Path) -> Result<(Self, Migration)> {
        Self::open_inner(path, None)
    }

    fn open_inner(path: &Path, audit_key: Option<SigningKey>) -> Result<(Self, Migration)> {
        let db = Database::create(path).map_err(|e| {
            // Only a file another process holds open gets the hint; a corrupt file or one in
            // another redb format says what it is.
            let hint = if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
                " (is another verifier using this --data directory?)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot open the store {}{hint}: {e}", path.display())
        })?;
        let migration = migrate::open(&db, path, audit_key.as_ref())?;
        let punch_key = punches::bind_key(&db, path)?;
        if let Migration::Migrated {
            from,
            devices,
            unreadable,
            indexed,
        } = migration
        {
            tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, devices, unreadable, indexed, "store migrated");
        }
        let store = Self {
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
            punch_key,
            audit_key: audit_key.map(Arc::new),
        };
        Ok((store, migration))
    }

    /// The key punch records are sealed with at rest (`DATA/punch.key`).
    pub fn punch_key(&self) -> &PunchKey {
        &self.punch_key
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
                        after_commit: Vec::new(),
                        audit_key: self.audit_key.clone(),
                        audit_appended: false,
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
    use vouch_protocol::ids::{DeviceId, Nonce};
    use vouch_protocol::nonce::IssuedNonce;

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
    fn a_firmware_scope_reads_its_bundle_and_is_never_stored_as_a_policy() {
        use vouch_protocol::policy::ReferenceValues;
        use vouch_protocol::vendor::trust::BundleRecord;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let rv = ReferenceValues {
            firmware_pcr: Some(14),
            pcrs: [(0, vouch_protocol::bytes::Sha256Digest([1; 32]))].into(),
            ..ReferenceValues::default()
        };
        let scope = PolicyScope::Firmware {
            model: "T".into(),
            version: "1.0".into(),
        };
        let mut w = s.write().unwrap();
        let e = w.put_policy(&scope, &rv).unwrap_err();
        assert!(
            e.to_string()
                .contains("firmware T@1.0 come from an imported bundle"),
            "{e}"
        );
        assert_eq!(w.policy(&scope).unwrap(), None);
        w.put_bundle(&BundleRecord {
            vendor: "acme".parse().unwrap(),
            model: "T".into(),
            firmware_version: "1.0".into(),
            issued_at: 1,
            imported_at: 2,
            reference: rv.clone(),
            revoked: None,
        })
        .unwrap();
        assert_eq!(w.policy(&scope).unwrap().as_ref(), Some(&rv));
        // Another version, or the model's own scope, is not the bundle.
        let other = PolicyScope::Firmware {
            model: "T".into(),
            version: "1.0.1".into(),
        };
        assert_eq!(w.policy(&other).unwrap(), None);
        assert_eq!(w.policy(&PolicyScope::Model("T".into())).unwrap(), None);
        w.commit().unwrap();
        assert_eq!(s.read().unwrap().policy(&scope).unwrap(), Some(rv));
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
