//! The store on a real, tiny filesystem that runs full: writes must fail with a clear error,
//! `Store::health` must say so, and once space is freed writes must succeed again on the same
//! `Store` — no reopening by hand, no restart — with every earlier commit still there.
//!
//! Needs root (it mounts a 4 MiB tmpfs); it says so and fails if it cannot mount.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The fixture module is shared with `store_migration.rs`, which reads all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vouch_test_kit::tmpfs::{self, Tmpfs};

use vouch_protocol::device::{Actor, AuditAction};
use vouch_verifier::store::{AuditRecord, Store};

/// A tmpfs of `size` on a fresh temporary directory; the test fails (says why) without root.
fn tmpfs(size: &str) -> Tmpfs {
    Tmpfs::mount_temp(size).expect("this test needs root to mount a tmpfs")
}

fn fill(dir: &Path) -> PathBuf {
    tmpfs::fill(dir).expect("filling the tmpfs")
}

fn entry(i: u64) -> AuditRecord {
    AuditRecord {
        at: i,
        device: None,
        action: AuditAction::PolicyChanged,
        actor: Actor::Verifier,
        reason: format!("entry {i}: {}", "x".repeat(1000)),
    }
}

/// Commits `n` audit entries starting at `from` in one transaction.
fn append(store: &Store, from: u64, n: u64) -> anyhow::Result<()> {
    let mut w = store.write()?;
    for i in from..from + n {
        w.append_audit(&entry(i))?;
    }
    w.commit()
}

fn audit_ats(store: &Store) -> Vec<u64> {
    let (entries, next) = store.read().unwrap().audit(None, 1000).unwrap();
    assert_eq!(next, None);
    entries.into_iter().map(|(_, r)| r.at).collect()
}

#[test]
fn store_recovers_after_disk_full_without_restart() {
    let fs = tmpfs("4m");
    let store = Store::open(&fs.path().join("vouch.redb")).unwrap();
    append(&store, 0, 100).unwrap();
    assert!(store.health().ok);

    let filler = fill(fs.path());

    // A batch that needs new pages cannot be written: the error names the cause, not redb's
    // latch, and so does every later attempt while the disk stays full.
    let mut errors = Vec::new();
    for attempt in 0..3 {
        let err = append(&store, 1000 + attempt * 1000, 500).unwrap_err();
        errors.push(format!("{err:#}"));
    }
    for err in &errors {
        assert!(
            err.contains("store write failed: no space left on device")
                || err.contains("store reopen failed: no space left on device"),
            "{errors:?}"
        );
        assert!(!err.contains("Previous I/O"), "{errors:?}");
    }
    let h = store.health();
    assert!(!h.ok, "{h:?}");
    assert!(
        h.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no space left on device")),
        "{h:?}"
    );

    // Reads keep working while the disk is full, and show only what committed.
    assert_eq!(audit_ats(&store), (0..100).collect::<Vec<_>>());

    // Space comes back: the same Store writes again.
    std::fs::remove_file(&filler).unwrap();
    append(&store, 100, 100).unwrap();
    let h = store.health();
    assert!(h.ok, "{h:?}");
    assert!(h.reopens >= 1, "{h:?}");
    assert!(
        h.last_error.is_some(),
        "the last failure stays visible: {h:?}"
    );

    // Nothing committed was lost, nothing that failed appeared.
    assert_eq!(audit_ats(&store), (0..200).collect::<Vec<_>>());
}

#[path = "store_migration/v1.rs"]
mod v1;

/// The committed state as redb itself reads it: the schema version and every device row.
fn raw_rows(path: &Path) -> (Option<u64>, Vec<(String, Vec<u8>)>) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    let db = redb::Database::create(path).unwrap();
    let r = db.begin_read().unwrap();
    let version = r
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .map(|v| v.value());
    let rows = r
        .open_table(DEVICES)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_owned(), v.value().to_vec())
        })
        .collect();
    (version, rows)
}

/// A migration is one transaction: when the disk fills up in the middle of it, the store is
/// left exactly as the old version wrote it, and the next open, with space back, migrates it.
#[test]
fn a_migration_that_runs_out_of_disk_leaves_the_old_store_intact() {
    use vouch_verifier::store::Migration;
    let fs = tmpfs("32m");
    let path = fs.path().join("vouch.redb");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/store-v1.redb");
    std::fs::copy(&fixture, &path).unwrap();
    v1::add_v1_devices(&path, "q1", "m", 3000);
    let before = raw_rows(&path);

    let filler = fill(fs.path());
    let err = Store::open(&path).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("migrating the store")
            && msg.contains("the store is unchanged")
            && msg.contains("No space left on device"),
        "{msg}"
    );
    std::fs::remove_file(&filler).unwrap();
    // Uncommitted pages may have been written to free space; what is committed is unchanged.
    let after = raw_rows(&path);
    assert_eq!(after.0, None, "still schema 1");
    assert!(
        after == before,
        "the failed migration changed the stored rows"
    );

    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert!(
        matches!(
            migration,
            Migration::Migrated {
                from: 1,
                devices: 3005,
                unreadable: 0,
                ..
            }
        ),
        "{migration:?}"
    );
    let q1 = store
        .read()
        .unwrap()
        .device(&"q1".parse().unwrap())
        .unwrap();
    let want = v1::fixture();
    assert_eq!(
        q1.map(|d| d.status),
        want.devices
            .into_iter()
            .find(|d| d.id().as_str() == "q1")
            .map(|d| d.status)
    );
}
