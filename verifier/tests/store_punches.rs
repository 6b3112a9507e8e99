//! The punch mirror at rest: records are sealed (the plaintext employee id never reaches the
//! database file), the punch key is created beside the database with mode 0600 at the first
//! start, and a store holding punch records refuses to open without its key — missing,
//! replaced or readable by others — instead of making a new one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{BootId, PunchInput};
use vouch_verifier::store::{PunchHead, Store, StoredPunch};

const EMPLOYEE: &str = "PLAINTEXT-EMPLOYEE-4711";

/// Opens a store in `dir` and mirrors one punch of `EMPLOYEE` for device t1.
fn store_with_a_punch(dir: &Path) -> Store {
    let store = Store::open(&dir.join("vouch.redb")).unwrap();
    let device: DeviceId = "t1".parse().unwrap();
    let rec = PunchInput::parse(EMPLOYEE, "in", Some("card"), 1_700_000_000)
        .unwrap()
        .chain_after(None, BootId([1; 16]));
    let sealed = store.punch_key().seal(&device, 1, &rec.to_cbor()).unwrap();
    let mut w = store.write().unwrap();
    let hash = rec.hash(&device);
    w.put_punch(
        &device,
        1,
        &StoredPunch {
            hash,
            held: false,
            reviewed: false,
            sealed,
        },
    )
    .unwrap();
    w.put_punch_head(
        &device,
        &PunchHead {
            seq: 1,
            hash,
            ..PunchHead::EMPTY
        },
    )
    .unwrap();
    w.commit().unwrap();
    store
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_plaintext_employee_id_never_reaches_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_punch(dir.path());
    // The record reads back through the key.
    let device: DeviceId = "t1".parse().unwrap();
    let got = store.read().unwrap().punches(&device, 0, 10).unwrap();
    let plain = store
        .punch_key()
        .open(&device, 1, &got[0].2.sealed)
        .unwrap();
    assert!(contains(&plain, EMPLOYEE.as_bytes()));
    drop(store);
    let file = std::fs::read(dir.path().join("vouch.redb")).unwrap();
    assert!(!contains(&file, EMPLOYEE.as_bytes()), "plaintext at rest");
}

#[test]
fn the_punch_key_is_created_beside_the_database_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(&dir.path().join("vouch.redb")).unwrap());
    let meta = std::fs::metadata(dir.path().join("punch.key")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
}

#[test]
fn a_store_with_punches_refuses_to_open_without_its_key_and_makes_no_new_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_a_punch(dir.path()));
    let key = dir.path().join("punch.key");
    std::fs::remove_file(&key).unwrap();
    let err = format!(
        "{:#}",
        Store::open(&dir.path().join("vouch.redb")).unwrap_err()
    );
    assert!(
        err.contains("punch key") && err.contains("missing"),
        "{err}"
    );
    assert!(!key.exists(), "no new key made");
}

#[test]
fn a_store_with_punches_refuses_a_different_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_a_punch(dir.path()));
    let key = dir.path().join("punch.key");
    std::fs::remove_file(&key).unwrap();
    vouch_common::fs::write_atomic(&key, &[0x42; 32], 0o600).unwrap();
    let err = format!(
        "{:#}",
        Store::open(&dir.path().join("vouch.redb")).unwrap_err()
    );
    assert!(err.contains("not the key"), "{err}");
}

#[test]
fn a_punch_key_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_a_punch(dir.path()));
    let key = dir.path().join("punch.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = format!(
        "{:#}",
        Store::open(&dir.path().join("vouch.redb")).unwrap_err()
    );
    assert!(err.contains("0640"), "{err}");
}

#[test]
fn a_store_without_punches_accepts_a_replaced_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(&dir.path().join("vouch.redb")).unwrap());
    let key = dir.path().join("punch.key");
    std::fs::remove_file(&key).unwrap();
    // Nothing is sealed yet, so a new key loses nothing.
    drop(Store::open(&dir.path().join("vouch.redb")).unwrap());
    assert!(key.exists());
}

#[test]
fn a_store_with_punches_but_no_recorded_key_id_refuses_to_open_and_keeps_its_key_file() {
    use redb::{ReadableDatabase, ReadableTable};
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_a_punch(dir.path()));
    let db_path = dir.path().join("vouch.redb");
    {
        let db = redb::Database::open(&db_path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(redb::TableDefinition::<&str, &[u8]>::new("punch_key"))
            .unwrap()
            .remove("id")
            .unwrap();
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        assert!(
            r.open_table(redb::TableDefinition::<&str, &[u8]>::new("punch_key"))
                .unwrap()
                .first()
                .unwrap()
                .is_none()
        );
    }
    let key = dir.path().join("punch.key");
    let before = std::fs::read(&key).unwrap();
    let err = format!("{:#}", Store::open(&db_path).unwrap_err());
    assert!(
        err.contains("holds punch records but no id of the key"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key file is untouched"
    );
    // Without the key file it refuses the same way and makes no new one.
    std::fs::remove_file(&key).unwrap();
    let err = format!("{:#}", Store::open(&db_path).unwrap_err());
    assert!(err.contains("no id of the key"), "{err}");
    assert!(!key.exists(), "no new key made");
}

#[test]
fn a_review_marks_at_most_its_bound_per_call_and_says_whether_more_remain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vouch.redb")).unwrap();
    let device: DeviceId = "t1".parse().unwrap();
    let mut w = store.write().unwrap();
    for seq in 1..=5 {
        let sealed = store.punch_key().seal(&device, seq, b"r").unwrap();
        let p = StoredPunch {
            hash: vouch_protocol::punch::ChainHash([seq as u8; 32]),
            held: true,
            reviewed: false,
            sealed,
        };
        w.put_punch(&device, seq, &p).unwrap();
    }
    w.put_punch_head(
        &device,
        &PunchHead {
            seq: 5,
            held: 5,
            unreviewed: 5,
            ..PunchHead::EMPTY
        },
    )
    .unwrap();
    w.commit().unwrap();
    let mut calls = Vec::new();
    loop {
        let mut w = store.write().unwrap();
        let Some(m) = w.review_punches(&device, 100, 2).unwrap() else {
            break;
        };
        w.commit().unwrap();
        calls.push((m.first, m.last, m.count, m.more));
    }
    assert_eq!(
        calls,
        [(1, 2, 2, true), (3, 4, 2, true), (5, 5, 1, false)],
        "two at most per call, lowest seqs first"
    );
    let r = store.read().unwrap();
    assert_eq!(r.punch_head(&device).unwrap().unwrap().unreviewed, 0);
    assert!(
        r.punches(&device, 0, 10)
            .unwrap()
            .iter()
            .all(|(_, _, p)| p.held && p.reviewed)
    );
}
