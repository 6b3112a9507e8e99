//! A quarantined terminal keeps mirroring (issue 8, §4 f): its punches reach the mirror marked
//! `held` (collected while untrusted); release does not unmark them; `vouchctl review-punches`
//! marks them reviewed, audited. Also the operator's exports: the CSV header exactly
//! `device,seq,time,employee,kind,method,held`, `--since`, `--all`, and exports audited. Ends with
//! the whole-chain comparison of agent and mirror.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vouch_e2e::agent::PunchFlags;
use vouch_e2e::mirror::{Mirrored, assert_mirror_matches_agent, export, mirror_view};
use vouch_e2e::procs::{BrokerKind, Verifier};
use vouch_e2e::punch::{Ledger, Punch};
use vouch_e2e::punch_fleet::{CATCH_UP, PunchFleet};
use vouch_e2e::wait_for;

const CSV_HEADER: &str = "device,seq,time,employee,kind,method,held";

fn ctl_ok(v: &Verifier, args: &[&str]) -> String {
    let out = v.ctl(args);
    assert!(
        out.status.success(),
        "vouchctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn audit_of(v: &Verifier, id: &str, action: &str) -> Vec<serde_json::Value> {
    v.ctl_json(&["audit", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device"] == id && e["action"] == action)
        .cloned()
        .collect()
}

fn flags(records: &[Mirrored]) -> Vec<(u64, bool, bool)> {
    records
        .iter()
        .map(|m| (m.record.seq, m.held, m.reviewed))
        .collect()
}

fn expect(
    seqs: std::ops::RangeInclusive<u64>,
    held: bool,
    reviewed: bool,
) -> Vec<(u64, bool, bool)> {
    seqs.map(|s| (s, held, reviewed)).collect()
}

#[test]
fn quarantined_terminal_keeps_mirroring_and_its_punches_stay_held_until_reviewed() {
    let f = PunchFleet::start(BrokerKind::Mosquitto, "term-1", PunchFlags::default());
    let id = f.t.id.clone();
    let mut client = f.client();
    let mut ledger = Ledger::default();
    ledger.submit(&mut client, &Punch::range(0, 100), 100);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);

    ctl_ok(&f.v, &["quarantine", &id, "--reason", "case opened"]);
    assert_eq!(f.v.device(&id)["state"], "quarantined");
    ledger.submit(&mut client, &Punch::range(100, 200), 100);
    let (_, records) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    assert_eq!(
        flags(&records),
        [
            expect(1..=100, false, false),
            expect(101..=200, true, false)
        ]
        .concat(),
        "punches mirrored while quarantined are held, the others not"
    );
    assert_eq!(mirror_view(&f.v, &id).held, 100);

    // Release: the device attests again and is trusted; the held marks stay.
    ctl_ok(&f.v, &["release", &id, "--reason", "inspected"]);
    wait_for(
        Duration::from_secs(90),
        "re-attestation after release",
        || (f.v.device(&id)["state"] == "trusted").then_some(()),
    );
    ledger.submit(&mut client, &Punch::range(200, 250), 50);
    let (_, records) = assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    assert_eq!(
        flags(&records),
        [
            expect(1..=100, false, false),
            expect(101..=200, true, false),
            expect(201..=250, false, false)
        ]
        .concat(),
        "release unmarked held punches"
    );

    // Review: held records up to 150 are marked reviewed (and stay held); audited.
    ctl_ok(
        &f.v,
        &[
            "review-punches",
            &id,
            "--through",
            "150",
            "--reason",
            "payroll checked",
        ],
    );
    let records = export(&f.v, &id, None);
    assert_eq!(
        flags(&records),
        [
            expect(1..=100, false, false),
            expect(101..=150, true, true),
            expect(151..=200, true, false),
            expect(201..=250, false, false)
        ]
        .concat()
    );
    let reviewed = audit_of(&f.v, &id, "punches_reviewed");
    assert_eq!(reviewed.len(), 1, "{reviewed:?}");
    assert_eq!(reviewed[0]["actor"], "operator:admin");
    assert!(
        reviewed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("payroll checked"),
        "{reviewed:?}"
    );
    assert_eq!(
        mirror_view(&f.v, &id).held,
        100,
        "reviewed records are still held"
    );

    // CSV: the exact header, one row per record, in seq order, held as true|false.
    let exported_before = audit_of(&f.v, &id, "punches_exported").len();
    let csv = ctl_ok(&f.v, &["punches", &id, "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 250);
    for (row, m) in rows.iter().zip(&records) {
        let r = &m.record;
        assert_eq!(
            row,
            &[
                id.as_str(),
                &r.seq.to_string(),
                &vouch_common::time::rfc3339(r.time),
                r.employee.as_str(),
                r.kind.as_str(),
                r.method.map_or("", |m| m.as_str()),
                if m.held { "true" } else { "false" },
            ],
            "csv row of record {}",
            r.seq
        );
    }
    let all = ctl_ok(&f.v, &["punches", "--all", "--format", "csv"]);
    assert_eq!(all.lines().next(), Some(CSV_HEADER));
    assert_eq!(
        all.lines()
            .skip(1)
            .filter(|l| l.starts_with("term-1,"))
            .count(),
        250
    );
    let since = export(&f.v, &id, Some(240));
    assert_eq!(
        since.iter().map(|m| m.record.seq).collect::<Vec<_>>(),
        (241..=250).collect::<Vec<_>>()
    );
    assert!(
        audit_of(&f.v, &id, "punches_exported").len() > exported_before,
        "exports are audited"
    );

    // An employee id may hold a comma and a quote (printable ASCII): the CSV quotes the field
    // (RFC 4180) instead of shifting the columns.
    let tricky = Punch {
        employee: "O'Neil,\"Jr\"".into(),
        kind: "out",
        method: None,
        time: 1_796_198_400,
    };
    ledger.submit(&mut client, std::slice::from_ref(&tricky), 1);
    assert_mirror_matches_agent(&f.v, &f.t, &ledger, CATCH_UP);
    let csv = ctl_ok(&f.v, &["punches", &id, "--since", "250", "--format", "csv"]);
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            CSV_HEADER,
            "term-1,251,2026-12-02T08:00:00Z,\"O'Neil,\"\"Jr\"\"\",out,,false"
        ]
    );
}
