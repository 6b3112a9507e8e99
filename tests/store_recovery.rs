//! Issue 6, case 9: a verifier whose `--data` is on a small tmpfs that runs full. Operator
//! writes (`vouchctl quarantine`) fail with a clear error naming the full disk while it is
//! full, and succeed again once space is freed — same verifier process, no restart — with
//! everything committed before still there.
//!
//! Needs root (it mounts a tmpfs); it says so and fails if it cannot mount.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use vouch_test_kit::tmpfs::{self, Tmpfs};

use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};

/// Writes `dir` full; the test fails (says why) if it cannot.
fn fill(dir: &Path) -> PathBuf {
    tmpfs::fill(dir).expect("filling the tmpfs")
}

fn quarantine(v: &Verifier, id: &str, reason: &str) -> std::process::Output {
    v.ctl(&["quarantine", id, "--reason", reason])
}

#[test]
fn verifier_store_recovers_after_disk_full_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    // Declared before the verifier so it is unmounted after the verifier has stopped.
    let data = Tmpfs::mount(&dir.path().join("vouch-data"), "16m")
        .expect("this test needs root to mount a tmpfs");
    let mut v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    assert_eq!(v.data, data.path());
    let t1 = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t1.enroll(&v, "T-100");
    let t2 = Terminal::new(dir.path(), "term-2", &tpm, &v, "firmware v1");
    t2.enroll(&v, "T-100");

    let filler = fill(&v.data);

    // Operator writes fail, and say why; the state does not change.
    for attempt in 0..2 {
        let out = quarantine(&v, "term-1", &format!("while full {attempt}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "quarantine on a full disk succeeded");
        assert!(
            stderr.contains("no space left on device"),
            "attempt {attempt}: {stderr}"
        );
        assert!(
            !stderr.contains("Previous I/O"),
            "attempt {attempt}: {stderr}"
        );
    }
    assert!(v.alive(), "the verifier must survive a full disk");
    // Health tells the truth about the store meanwhile.
    let (code, body) = v.health();
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["store"]["ok"], false, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("store"),
        "{body}"
    );

    // Space is freed: the same process writes again.
    std::fs::remove_file(&filler).unwrap();
    let out = quarantine(&v, "term-1", "disk has space again");
    assert!(
        out.status.success(),
        "quarantine after freeing space: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d1 = v.device("term-1");
    assert_eq!(d1["state"], "quarantined");
    assert_eq!(d1["quarantine"]["reason"], "disk has space again");
    let (code, body) = v.health();
    assert_eq!(code, 200, "health after recovery: {body}");
    assert_eq!(body["store"]["ok"], true, "{body}");
    // What was committed before the disk filled is still there.
    assert_eq!(v.device("term-2")["state"], "pending");
    let audit = v.ctl_json(&["audit", "--json"]);
    let text = audit.to_string();
    assert!(text.contains("term-2"), "{text}");
    assert!(
        !text.contains("while full"),
        "a failed write became visible: {text}"
    );
    assert!(v.alive());
    drop(v);
}

/// An upgrade over a data directory written by vouch before versioned stores: the verifier
/// migrates the schema-1 store on start (`verifier/tests/data/store-v1.redb`, whose content is
/// listed in `verifier/tests/store_migration/v1.rs`) and serves what it held.
#[test]
fn a_verifier_started_on_a_schema_1_store_migrates_it_and_serves_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vouch-data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/data/store-v1.redb");
    std::fs::copy(&fixture, data.join("vouch.redb")).unwrap();

    let v = Verifier::start(dir.path(), BrokerKind::Managed);
    assert_eq!(v.data, data);
    assert!(v.log().contains("store migrated"), "{}", v.log());

    let held = v.device("q2-lobby");
    assert_eq!(held["state"], "quarantined", "{held}");
    assert_eq!(held["quarantine"]["reason"], "tamper seal broken", "{held}");
    assert_eq!(held["release_pending"], true, "{held}");
    assert_eq!(
        held["reasons"][0], "quarantined by operator:alice: tamper seal broken",
        "{held}"
    );
    assert_eq!(v.device("t1")["state"], "trusted");
    assert_eq!(v.device("u1")["state"], "unresponsive");
    assert_eq!(v.device("p1")["state"], "pending");
    let audit = v.ctl_json(&["audit", "--json"]).to_string();
    assert!(audit.contains("seal replaced"), "{audit}");
}
