//! The store's on-disk format across versions. `tests/data/store-v1.redb` was written by the
//! store of schema version 1 (see `tests/data/README.md`); these tests open a copy of it and
//! check that every record reads back exactly as it was written (`store_migration/v1.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use vouch_verifier::store::{DeviceRecord, Store};

#[path = "store_migration/v1.rs"]
mod v1;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/store-v1.redb")
}

/// A copy of the v1 fixture in a fresh directory (opening migrates it: never the original).
fn v1_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouch.redb");
    std::fs::copy(fixture_path(), &path).unwrap();
    (dir, path)
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

/// Every record of the fixture reads back from `store` as the fixture wrote it.
fn assert_holds_the_fixture(store: &Store) {
    let want = v1::fixture();
    let r = store.read().unwrap();
    let (devices, next) = r.devices(None, 100).unwrap();
    assert_eq!(next, None);
    let mut expected: Vec<&DeviceRecord> = want.devices.iter().collect();
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
    assert_eq!(
        audit,
        want.audit
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        r.verdicts_expired(u64::MAX, 100).unwrap(),
        want.verdict_expiry
    );
    drop(r);
    let mut w = store.write().unwrap();
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
    // Dropped: the probe writes are not committed.
}

#[test]
fn the_v1_fixture_reads_back_as_written() {
    let (_dir, path) = v1_copy();
    let store = Store::open(&path).unwrap();
    assert_holds_the_fixture(&store);
}

/// Writes `tests/data/store-v1.redb` with the store of this commit. Run only to make the
/// fixture (`cargo test -p vouch-verifier --test store_migration -- --ignored`), and only on
/// a commit whose store writes schema version 1.
#[test]
#[ignore = "writes the committed fixture"]
fn write_the_v1_fixture() {
    let f = v1::fixture();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("store-v1.redb");
    {
        let store = Store::open(&tmp).unwrap();
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
        // A verifier of this version that ran once has indexed its verdicts.
        w.set_verdict_expiry_backfilled().unwrap();
        w.commit().unwrap();
    }
    std::fs::copy(&tmp, fixture_path()).unwrap();
}
