//! The store's on-disk format across versions. `tests/data/store-v1.redb` was written by the
//! store of schema version 1 (see `tests/data/README.md`) from the values in
//! `store_migration/v1.rs`; these tests open copies of it with this binary and check that it
//! migrates to the current schema in one step, that every record reads back exactly as it was
//! written, that reopening changes nothing, that a newer store is refused with a message that
//! says so (not "corrupt"), and that a damaged row is reported naming its table and key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{BootId, PunchInput, PunchRecord};
use vouch_verifier::store::{
    DeviceRecord, Migration, PunchHead, SCHEMA_VERSION, SchemaError, Store, StoredPunch,
};

#[path = "store_migration/v1.rs"]
mod v1;
#[path = "store_migration/v4.rs"]
mod v4;

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERDICT_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("verdict_expiry");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A copy of a fixture in a fresh directory (opening may migrate it: never the original).
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.redb");
    std::fs::copy(data(name), &path).unwrap();
    (dir, path)
}

fn v1_copy() -> (tempfile::TempDir, PathBuf) {
    copy_of("store-v1.redb")
}

/// Changes the file with redb directly, as another version of vouch (or damage) would.
fn raw_edit(path: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(path).unwrap();
    let w = db.begin_write().unwrap();
    edit(&w);
    w.commit().unwrap();
}

fn raw_schema_version(path: &Path) -> Option<u64> {
    let db = Database::create(path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(META).unwrap();
    t.get("schema_version").unwrap().map(|v| v.value())
}

/// Every device row's stored bytes, by key.
fn raw_devices(path: &Path) -> Vec<(String, Vec<u8>)> {
    let db = Database::create(path).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table(DEVICES).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value().to_owned(), v.value().to_vec())
        })
        .collect()
}

fn assert_device_eq(got: &DeviceRecord, want: &DeviceRecord) {
    let id = want.id();
    assert_eq!(got.enrollment, want.enrollment, "{id}: enrollment");
    assert_eq!(got.status, want.status, "{id}: status");
    assert_eq!(got.last_clock, want.last_clock, "{id}: last_clock");
    assert_eq!(got.measurements, want.measurements, "{id}: measurements");
    assert_eq!(got.measured_at, want.measured_at, "{id}: measured_at");
    assert_eq!(got.outstanding, want.outstanding, "{id}: outstanding");
    assert_eq!(got.last_verdict, want.last_verdict, "{id}: last_verdict");
    assert_eq!(got.eventlog_held, want.eventlog_held, "{id}: eventlog_held");
    assert_eq!(got.last_counter, want.last_counter, "{id}: last_counter");
}

/// Every record of the fixture reads back from `store` as the fixture wrote it, and the
/// sequence counters continue where it left them.
fn assert_holds_the_fixture(store: &Store) {
    assert_holds_the_fixture_and(store, &[]);
}

/// [`assert_holds_the_fixture`] for a store that also holds the `extra` devices.
fn assert_holds_the_fixture_and(store: &Store, extra: &[DeviceRecord]) {
    let want = v1::fixture();
    let r = store.read().unwrap();
    let (devices, next) = r.devices(None, 100).unwrap();
    assert_eq!(next, None);
    let mut expected: Vec<&DeviceRecord> = want.devices.iter().chain(extra).collect();
    expected.sort_by(|a, b| a.id().as_str().cmp(b.id().as_str()));
    assert_eq!(
        devices
            .iter()
            .map(|d| d.id().to_string())
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|d| d.id().to_string())
            .collect::<Vec<_>>(),
        "device ids"
    );
    for (got, want) in devices.iter().zip(&expected) {
        assert_device_eq(got, want);
        assert_device_eq(&r.device(want.id()).unwrap().unwrap(), want);
    }
    for (id, log) in &want.logs {
        assert_eq!(
            r.eventlog(id).unwrap().as_ref(),
            Some(log),
            "event log of {id}"
        );
    }
    for (n, rec) in &want.nonces {
        assert_eq!(
            r.nonce(n).unwrap().as_ref(),
            Some(rec),
            "nonce of {}",
            rec.device
        );
    }
    for (scope, rv) in &want.policies {
        assert_eq!(
            r.policy(scope).unwrap().as_ref(),
            Some(rv),
            "policy {scope}"
        );
    }
    let (audit, next) = r.audit(None, 100).unwrap();
    assert_eq!(next, None);
    let numbered: Vec<_> = (1u64..).zip(want.audit.iter().cloned()).collect();
    assert_eq!(audit, numbered, "audit trail");
    assert_eq!(
        r.verdicts_expired(u64::MAX, 100).unwrap(),
        want.verdict_expiry,
        "verdict expiry index"
    );
    drop(r);
    let mut w = store.write().unwrap();
    // Device-of-model lookups go through the model index, which migration must keep.
    let mut t100: Vec<String> = w
        .devices_of_model("T-100")
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    t100.sort();
    assert_eq!(t100, ["p1", "q1", "t1", "u1"]);
    assert_eq!(
        w.next_seq().unwrap(),
        want.seq + 1,
        "verdict sequence continues"
    );
    let audit_seq = w.append_audit(&want.audit[0]).unwrap();
    assert_eq!(
        audit_seq,
        want.audit.len() as u64 + 1,
        "audit sequence continues"
    );
    // Dropped without commit: the probes change nothing.
}

/// Writes the fixture's values with this binary's store. The v1 fixture was written by this
/// same sequence at the commit named in `tests/data/README.md` (plus the then-current
/// `verdict_expiry_backfilled` flag, which schema 2 folds into the migration).
fn write_fixture(store: &Store) {
    let f = v1::fixture();
    let mut w = store.write().unwrap();
    for d in &f.devices {
        w.put_device(d).unwrap();
    }
    for (id, log) in &f.logs {
        w.put_eventlog(id, log).unwrap();
    }
    for (n, rec) in &f.nonces {
        w.put_nonce(n, rec).unwrap();
    }
    for a in &f.audit {
        w.append_audit(a).unwrap();
    }
    for (scope, rv) in &f.policies {
        w.put_policy(scope, rv).unwrap();
    }
    for _ in 0..f.seq {
        w.next_seq().unwrap();
    }
    for (exp, id) in &f.verdict_expiry {
        w.index_verdict_expiry(&id.parse().unwrap(), None, *exp)
            .unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn the_v1_fixture_migrates_to_the_current_schema_and_reads_back_as_written() {
    let (_dir, path) = v1_copy();
    assert_eq!(
        raw_schema_version(&path),
        None,
        "the fixture predates versions"
    );
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 1,
            devices: 5,
            unreadable: 0,
            indexed: 0,
        }
    );
    assert_holds_the_fixture(&store);
    drop(store);
    assert_eq!(raw_schema_version(&path), Some(SCHEMA_VERSION));
}

#[test]
fn reopening_a_migrated_store_changes_nothing() {
    let (_dir, path) = v1_copy();
    drop(Store::open(&path).unwrap());
    let migrated = raw_devices(&path);
    let (store, again) = Store::open_migrating(&path).unwrap();
    assert_eq!(again, Migration::Current);
    drop(store);
    assert_eq!(
        raw_devices(&path),
        migrated,
        "rows rewritten on a second open"
    );
    assert_holds_the_fixture(&Store::open(&path).unwrap());
}

/// The committed schema-2 fixture: a change to the rows schema 3 kept from schema 2 (or to a
/// type they embed as-is) that would make schema-2 stores unreadable fails here. Schema 2 → 3
/// only adds the (empty) punch tables.
#[test]
fn the_v2_fixture_migrates_to_the_current_schema_and_reads_back_as_written() {
    let (_dir, path) = copy_of("store-v2.redb");
    assert_eq!(raw_schema_version(&path), Some(2));
    let before = raw_devices(&path);
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 2,
            devices: 0,
            unreadable: 0,
            indexed: 0,
        }
    );
    assert_holds_the_fixture(&store);
    let r = store.read().unwrap();
    assert!(!r.has_punches().unwrap(), "the punch tables start empty");
    assert_eq!(r.punch_key_id().unwrap(), Some(store.punch_key().id()));
    drop(r);
    drop(store);
    assert_eq!(
        raw_devices(&path),
        before,
        "device rows are the same in schema 3"
    );
    assert_eq!(raw_schema_version(&path), Some(SCHEMA_VERSION));
}

/// A copy of the fixture `name` with its punch key `key` beside it as `punch.key` (0600).
fn copy_with_key(name: &str, key: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = copy_of(name);
    std::fs::copy(data(key), dir.path().join("punch.key")).unwrap();
    std::fs::set_permissions(
        dir.path().join("punch.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    (dir, path)
}

/// The committed schema-3 fixture (the fixture's values plus punch records, and the punch key
/// they were sealed with): a change that makes existing schema-3 stores unreadable fails here.
/// Schema 3 → 4 only adds the (empty) vendor-trust tables: no row is rewritten.
#[test]
fn the_v3_fixture_migrates_to_the_current_schema_and_reads_back_as_written() {
    let (_dir, path) = copy_with_key("store-v3.redb", "store-v3.punch.key");
    assert_eq!(raw_schema_version(&path), Some(3));
    let before = raw_devices(&path);
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 3,
            devices: 0,
            unreadable: 0,
            indexed: 0,
        }
    );
    assert_holds_the_fixture(&store);
    assert_holds_the_punches(&store);
    let r = store.read().unwrap();
    assert_eq!(r.vendors().unwrap(), []);
    assert_eq!(r.bundles().unwrap(), []);
    assert_eq!(r.supply_chain().unwrap(), None);
    drop(r);
    drop(store);
    assert_eq!(
        raw_devices(&path),
        before,
        "device rows are the same in schema 4"
    );
    assert_eq!(raw_schema_version(&path), Some(SCHEMA_VERSION));
}

/// The committed schema-4 fixture (the v3 values plus vendors, bundles, a supply-chain policy
/// and a manifest-enrolled device): it migrates to schema 5, which chains its audit entries in
/// seq order and signs the head with the verifier's key; every record reads back as written.
#[test]
fn the_v4_fixture_migrates_to_v5_chaining_and_signing_its_audit_trail() {
    let (_dir, path) = copy_with_key("store-v4.redb", "store-v4.punch.key");
    assert_eq!(raw_schema_version(&path), Some(4));
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let store = Store::open_keyed(&path, key.clone()).unwrap();
    assert_holds_the_v4_fixture(&store);
    let entries = store.read().unwrap().audit(None, 1000).unwrap().0.len() as u64;
    assert!(entries > 0, "the fixture has audit entries to chain");
    let (n, head) = store
        .verify_audit(&key.verifying_key(), None)
        .unwrap()
        .unwrap();
    assert_eq!((n, head.seq), (entries, entries));
    drop(store);
    assert_eq!(raw_schema_version(&path), Some(SCHEMA_VERSION));
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(migration, Migration::Current);
    assert_holds_the_v4_fixture(&store);
}

/// Writes `tests/data/store-v4.redb` and its `store-v4.punch.key` (`cargo test -p
/// vouch-verifier --test store_migration -- --ignored write_the_v4_fixture`). Only for a store
/// that writes schema 4.
#[test]
#[ignore = "writes the committed fixture"]
fn write_the_v4_fixture() {
    assert_eq!(SCHEMA_VERSION, 4, "this writes the schema-4 fixture");
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("store-v4.redb");
    let store = Store::open(&tmp).unwrap();
    write_fixture(&store);
    write_punches(&store);
    write_v4_additions(&store);
    drop(store);
    std::fs::copy(&tmp, data("store-v4.redb")).unwrap();
    std::fs::copy(dir.path().join("punch.key"), data("store-v4.punch.key")).unwrap();
}

fn write_v4_additions(store: &Store) {
    let a = v4::additions();
    let mut w = store.write().unwrap();
    for v in &a.vendors {
        w.put_vendor(v).unwrap();
    }
    for b in &a.bundles {
        w.put_bundle(b).unwrap();
    }
    w.put_supply_chain(&a.supply_chain).unwrap();
    w.put_device(&a.device).unwrap();
    w.commit().unwrap();
}

/// Everything the v4 fixture holds reads back as written.
fn assert_holds_the_v4_fixture(store: &Store) {
    let a = v4::additions();
    assert_holds_the_fixture_and(store, std::slice::from_ref(&a.device));
    assert_holds_the_punches(store);
    let r = store.read().unwrap();
    assert_eq!(r.vendors().unwrap(), a.vendors);
    for v in &a.vendors {
        assert_eq!(r.vendor(&v.name).unwrap().as_ref(), Some(v));
    }
    assert_eq!(r.bundles().unwrap(), a.bundles);
    for b in &a.bundles {
        assert_eq!(
            r.bundle(&b.model, &b.firmware_version).unwrap().as_ref(),
            Some(b)
        );
    }
    assert_eq!(r.bundle(v4::MODEL, "9.9").unwrap(), None);
    assert_eq!(r.supply_chain().unwrap().as_ref(), Some(&a.supply_chain));
    drop(r);
    let w = store.write().unwrap();
    assert_eq!(
        w.devices_of_model(v4::MODEL).unwrap(),
        [a.device.id().clone()]
    );
    assert_eq!(
        w.bundle(v4::MODEL, "2.0.2").unwrap().as_ref(),
        Some(&a.bundles[1])
    );
    assert_eq!(w.supply_chain().unwrap().as_ref(), Some(&a.supply_chain));
}

/// A bundle row with a field schema 4 does not have is reported corrupt naming the table and
/// the key as an operator knows it (`model@version`).
#[test]
fn a_bundle_row_with_an_unknown_field_is_reported_as_corrupt_naming_table_and_key() {
    let (_dir, path) = copy_with_key("store-v4.redb", "store-v4.punch.key");
    raw_edit(&path, |w| {
        let def = TableDefinition::<&str, &[u8]>::new("bundles");
        let mut t = w.open_table(def).unwrap();
        let key = format!("{}\0{}", v4::MODEL, "2.0.2");
        let bytes = t.get(key.as_str()).unwrap().unwrap().value().to_vec();
        let mut row: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        row.as_map_mut()
            .unwrap()
            .push(("surprise".into(), 1.into()));
        let mut out = Vec::new();
        ciborium::into_writer(&row, &mut out).unwrap();
        t.insert(key.as_str(), out.as_slice()).unwrap();
    });
    let store = Store::open(&path).unwrap();
    let r = store.read().unwrap();
    for err in [
        r.bundle(v4::MODEL, "2.0.2").unwrap_err(),
        r.bundles().unwrap_err(),
    ] {
        let msg = format!("{err:#}");
        assert!(
            msg.contains("row K-9@2.0.2 of table bundles is corrupt") && msg.contains("surprise"),
            "{msg}"
        );
    }
    assert!(r.bundle(v4::MODEL, "2.0.1").unwrap().is_some());
}

/// The punch records of the v3 fixture: device t-1's chain of three, the last one held.
fn fixture_punches() -> Vec<PunchRecord> {
    let device: DeviceId = FIXTURE_PUNCH_DEVICE.parse().unwrap();
    let mut out: Vec<PunchRecord> = Vec::new();
    let punches = [
        ("E1", "in", Some("card")),
        ("E2", "out", None),
        ("E1", "out", Some("face")),
    ];
    for (i, (emp, kind, method)) in punches.into_iter().enumerate() {
        let prev = out.last().map(|r| (r.seq, r.hash(&device)));
        let input = PunchInput::parse(emp, kind, method, 1_700_000_000 + i as u64).unwrap();
        out.push(input.chain_after(prev, BootId([4; 16])));
    }
    out
}

const FIXTURE_PUNCH_DEVICE: &str = "t-1";

fn write_punches(store: &Store) {
    let device: DeviceId = FIXTURE_PUNCH_DEVICE.parse().unwrap();
    let recs = fixture_punches();
    let mut w = store.write().unwrap();
    for r in &recs {
        let held = r.seq == 3;
        let sealed = store
            .punch_key()
            .seal(&device, r.seq, &r.to_cbor())
            .unwrap();
        w.put_punch(
            &device,
            r.seq,
            &StoredPunch {
                hash: r.hash(&device),
                held,
                reviewed: false,
                sealed,
            },
        )
        .unwrap();
    }
    let last = recs.last().unwrap();
    w.put_punch_head(
        &device,
        &PunchHead {
            seq: last.seq,
            hash: last.hash(&device),
            held: 1,
            unreviewed: 1,
            device_last: 5,
            capacity: 1000,
            last_tamper: None,
        },
    )
    .unwrap();
    w.commit().unwrap();
}

fn assert_holds_the_punches(store: &Store) {
    let device: DeviceId = FIXTURE_PUNCH_DEVICE.parse().unwrap();
    let want = fixture_punches();
    let r = store.read().unwrap();
    let got = r.punches(&device, 0, 100).unwrap();
    assert_eq!(got.len(), want.len());
    for ((d, seq, p), w) in got.iter().zip(&want) {
        assert_eq!((d, *seq), (&device, w.seq));
        assert_eq!(p.hash, w.hash(&device));
        assert_eq!(p.held, w.seq == 3);
        let plain = store.punch_key().open(&device, *seq, &p.sealed).unwrap();
        assert_eq!(&PunchRecord::from_cbor(&plain).unwrap(), w);
    }
    let head = r.punch_head(&device).unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (3, want[2].hash(&device)));
    assert_eq!(
        (head.held, head.unreviewed, head.device_last, head.capacity),
        (1, 1, 5, 1000)
    );
}

#[test]
fn records_written_by_the_current_schema_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.redb");
    let (store, created) = Store::open_migrating(&path).unwrap();
    assert_eq!(created, Migration::Created);
    write_fixture(&store);
    write_punches(&store);
    write_v4_additions(&store);
    assert_holds_the_v4_fixture(&store);
    drop(store);
    assert_eq!(raw_schema_version(&path), Some(SCHEMA_VERSION));
    assert_holds_the_v4_fixture(&Store::open(&path).unwrap());
}

/// A store from before the verdict expiry index (schema 1 without the
/// `verdict_expiry_backfilled` flag): the migration indexes every current verdict, so the
/// expiry sweep finds them. Replaces the engine's one-time backfill at start.
#[test]
fn a_v1_store_older_than_the_expiry_index_gets_its_verdicts_indexed_by_the_migration() {
    let (_dir, path) = v1_copy();
    raw_edit(&path, |w| {
        let mut idx = w.open_table(VERDICT_EXPIRY).unwrap();
        idx.retain(|_, _| false).unwrap();
        w.open_table(META)
            .unwrap()
            .remove("verdict_expiry_backfilled")
            .unwrap();
    });
    let (store, migration) = Store::open_migrating(&path).unwrap();
    let want = v1::fixture().verdict_expiry;
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 1,
            devices: 5,
            unreadable: 0,
            indexed: want.len() as u64,
        }
    );
    assert_eq!(
        store
            .read()
            .unwrap()
            .verdicts_expired(u64::MAX, 100)
            .unwrap(),
        want
    );
    assert_holds_the_fixture(&store);
}

#[test]
fn a_store_of_a_newer_schema_is_refused_with_a_clear_message_and_left_untouched() {
    let (_dir, path) = v1_copy();
    drop(Store::open(&path).unwrap());
    raw_edit(&path, |w| {
        w.open_table(META)
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
    });
    let rows = raw_devices(&path);
    let err = Store::open(&path).unwrap_err();
    assert_eq!(
        err.downcast_ref::<SchemaError>(),
        Some(&SchemaError::Newer {
            path: path.clone(),
            found: 99,
            known: SCHEMA_VERSION,
        })
    );
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "written by a newer vouch (schema 99, this binary knows up to {SCHEMA_VERSION})"
        )) && msg.contains("upgrade vouch or restore a backup")
            && !msg.contains("corrupt"),
        "{msg}"
    );
    assert_eq!(raw_schema_version(&path), Some(99));
    assert_eq!(raw_devices(&path), rows);
}

#[test]
fn a_row_with_a_field_its_schema_does_not_have_is_reported_as_corrupt_naming_table_and_key() {
    let (_dir, path) = v1_copy();
    drop(Store::open(&path).unwrap());
    raw_edit(&path, |w| {
        let mut t = w.open_table(DEVICES).unwrap();
        let bytes = t.get("t1").unwrap().unwrap().value().to_vec();
        let mut row: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        let ciborium::Value::Map(fields) = &mut row else {
            panic!("a device row is a map")
        };
        fields.push(("surprise".into(), 1.into()));
        let mut out = Vec::new();
        ciborium::into_writer(&row, &mut out).unwrap();
        t.insert("t1", out.as_slice()).unwrap();
    });
    let store = Store::open(&path).unwrap();
    let r = store.read().unwrap();
    let id: vouch_protocol::ids::DeviceId = "t1".parse().unwrap();
    for err in [
        r.device(&id).unwrap_err(),
        r.devices(None, 100).unwrap_err(),
    ] {
        let msg = format!("{err:#}");
        assert!(
            msg.contains("row t1 of table devices is corrupt") && msg.contains("surprise"),
            "{msg}"
        );
    }
    // The other rows are unaffected.
    assert!(r.device(&"p1".parse().unwrap()).unwrap().is_some());
}

/// A schema-1 row that does not decode does not fail the migration of the others: the
/// migration leaves it, and it keeps reading as corrupt, naming its key (the verifier then
/// refuses to start naming it, as the previous version did).
#[test]
fn an_undecodable_v1_row_is_left_by_the_migration_and_reads_as_corrupt() {
    let (_dir, path) = v1_copy();
    raw_edit(&path, |w| {
        w.open_table(DEVICES)
            .unwrap()
            .insert("zz-broken", [0xa1, 0x01].as_slice())
            .unwrap();
    });
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 1,
            devices: 5,
            unreadable: 1,
            indexed: 0,
        }
    );
    let err = store
        .read()
        .unwrap()
        .device(&"zz-broken".parse().unwrap())
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("row zz-broken of table devices is corrupt"),
        "{err:#}"
    );
}

#[test]
fn a_migration_pages_through_a_fleet_larger_than_one_page() {
    let (_dir, path) = v1_copy();
    let extra = v1::add_v1_devices(&path, "q1", "m", 600);
    let (store, migration) = Store::open_migrating(&path).unwrap();
    assert_eq!(
        migration,
        Migration::Migrated {
            from: 1,
            devices: 605,
            unreadable: 0,
            indexed: 0,
        }
    );
    let want = v1::fixture();
    let q1 = want
        .devices
        .iter()
        .find(|d| d.id().as_str() == "q1")
        .unwrap();
    let r = store.read().unwrap();
    for id in &extra {
        let got = r.device(&id.parse().unwrap()).unwrap().unwrap();
        assert_eq!(got.id().as_str(), id);
        assert_eq!(got.status, q1.status, "{id}: status");
        assert_eq!(got.last_verdict, q1.last_verdict, "{id}: verdict");
    }
}

/// A file with vouch-like tables but no `meta` table was never written by vouch (every version
/// has one) or lost it: it is refused, not stamped as a new store whose rows all read corrupt.
#[test]
fn a_file_with_tables_but_no_meta_table_is_refused_not_taken_for_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.redb");
    {
        let db = Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(TableDefinition::<&str, &[u8]>::new("devices"))
            .unwrap()
            .insert("t1", [0u8].as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    let msg = format!("{:#}", Store::open(&path).unwrap_err());
    assert!(
        msg.contains("no meta table") && msg.contains("devices"),
        "{msg}"
    );
    // Left as it was: still no meta table.
    let db = Database::create(&path).unwrap();
    let r = db.begin_read().unwrap();
    assert!(r.open_table(META).is_err());
}

/// Drops `field` from the map at `path` (a list of map keys) of device `id`'s schema-1 row.
fn strip_v1_field(store: &Path, id: &str, path: &[&str], field: &str) {
    let rows = raw_devices(store);
    let (_, bytes) = rows.iter().find(|(k, _)| k == id).unwrap();
    let mut v: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
    let mut map = v.as_map_mut().unwrap();
    for key in path {
        map = map
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(key))
            .unwrap()
            .1
            .as_map_mut()
            .unwrap();
    }
    let before = map.len();
    map.retain(|(k, _)| k.as_text() != Some(field));
    assert_eq!(map.len(), before - 1, "{id} had {field}");
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    raw_edit(store, |w| {
        w.open_table(DEVICES)
            .unwrap()
            .insert(id, out.as_slice())
            .unwrap();
    });
}

/// Opens (migrating) the store at `path` and reads device `id`.
fn migrated_device(path: &Path, id: &str) -> DeviceRecord {
    let store = Store::open(path).unwrap();
    let r = store.read().unwrap();
    r.device(&id.parse().unwrap()).unwrap().unwrap()
}

/// Schema-1 rows written before the hello/status counter existed have no `last_counter`: they
/// migrate with 0 (every counter is fresh for them), as the old binary read them.
#[test]
fn a_v1_row_from_before_the_freshness_counter_migrates_with_counter_zero() {
    let (_dir, path) = v1_copy();
    strip_v1_field(&path, "t1", &[], "last_counter");
    let rec = migrated_device(&path, "t1");
    assert_eq!(rec.last_counter, 0);
    assert_eq!(
        rec.status.state(),
        vouch_protocol::verdict::DeviceState::Trusted
    );
}

/// Schema 1 could hold an unresponsive device without its silence (written before the field
/// existed): it migrates to a legal state, silent since its last verdict, one expiry counted —
/// what schema 1's own expiry did with such a record — instead of reading as corrupt.
#[test]
fn a_v1_unresponsive_row_without_its_silence_migrates_to_a_legal_state() {
    let (_dir, path) = v1_copy();
    strip_v1_field(&path, "u1", &["status"], "silence");
    let rec = migrated_device(&path, "u1");
    let silence = rec.status.silence().expect("unresponsive with a silence");
    assert_eq!(
        (Some(silence.since), silence.expiries),
        (rec.status.last_verdict_at, 1)
    );
}
