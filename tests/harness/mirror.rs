//! The verifier's punch mirror as a test reads it (`vouchctl punches ID --format json`,
//! `vouchctl device ID --json`), and the check every punch scenario ends with: the mirror holds
//! exactly the agent's chain — the same count and head hash, seqs 1..N without a gap or a
//! duplicate, each record linking to the one before, every hash recomputed from the exported
//! fields with the protocol's device-bound hash, and every punch the agent confirmed present
//! with the hash it was confirmed with and the content it was submitted with.

use std::time::Duration;

use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{BootId, ChainHash, PunchInput, PunchRecord};

use crate::agent::Terminal;
use crate::procs::Verifier;
use crate::punch::{Ledger, Punch, PunchClient, SocketStatus};
use crate::wait_for;

/// One record of the mirror's JSON export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    pub device: String,
    pub record: PunchRecord,
    pub hash: ChainHash,
    pub held: bool,
    pub reviewed: bool,
}

/// RFC 3339 (`2026-12-02T08:00:00Z`) or a number of Unix seconds, as an export may give a time.
pub fn parse_time(v: &serde_json::Value) -> u64 {
    if let Some(n) = v.as_u64() {
        return n;
    }
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("an export time that is neither text nor a number: {v}"));
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("export time {s:?} is not RFC 3339: {e}"));
    u64::try_from(t.unix_timestamp()).unwrap()
}

fn text<'a>(o: &'a serde_json::Value, k: &str) -> &'a str {
    o[k].as_str()
        .unwrap_or_else(|| panic!("export record without text {k}: {o}"))
}

fn hash_field(o: &serde_json::Value, k: &str) -> ChainHash {
    ChainHash::from_hex(text(o, k))
        .unwrap_or_else(|| panic!("export record's {k} is not 64 hex digits: {o}"))
}

/// Rebuilds the protocol record from an exported object (panics naming what does not parse).
pub fn parse_export_record(o: &serde_json::Value) -> Mirrored {
    let method = match &o["method"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.as_str()),
        other => panic!("export method {other} is neither text nor null: {o}"),
    };
    let input = PunchInput::parse(
        text(o, "employee"),
        text(o, "kind"),
        method,
        parse_time(&o["time"]),
    )
    .unwrap_or_else(|e| panic!("export record does not parse as a punch ({e}): {o}"));
    let boot = BootId::parse_uuid(text(o, "boot"))
        .unwrap_or_else(|e| panic!("export record's boot id ({e}): {o}"));
    let record = PunchRecord {
        seq: o["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("export record without a seq: {o}")),
        time: input.time,
        employee: input.employee,
        kind: input.kind,
        method: input.method,
        boot,
        prev_hash: hash_field(o, "prev_hash"),
    };
    Mirrored {
        device: text(o, "device").to_owned(),
        record,
        hash: hash_field(o, "hash"),
        held: o["held"]
            .as_bool()
            .unwrap_or_else(|| panic!("export record without held: {o}")),
        reviewed: o["reviewed"]
            .as_bool()
            .unwrap_or_else(|| panic!("export record without reviewed: {o}")),
    }
}

/// `vouchctl punches ID --format json [--since SEQ]`, parsed.
pub fn export(v: &Verifier, id: &str, since: Option<u64>) -> Vec<Mirrored> {
    let since = since.map(|s| s.to_string());
    let mut args = vec!["punches", id, "--format", "json"];
    if let Some(s) = &since {
        args.extend(["--since", s]);
    }
    let all = v.ctl_json(&args);
    all.as_array()
        .unwrap_or_else(|| panic!("vouchctl {args:?} did not print an array"))
        .iter()
        .map(parse_export_record)
        .collect()
}

/// The `punches` object of `vouchctl device ID --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorView {
    pub head_seq: u64,
    pub head_hash: ChainHash,
    pub held: u64,
    pub pending_on_device: u64,
    pub buffer_pressure: bool,
}

pub fn mirror_view(v: &Verifier, id: &str) -> MirrorView {
    let d = v.device(id);
    let p = &d["punches"];
    let n = |k: &str| {
        p[k].as_u64()
            .unwrap_or_else(|| panic!("device view's punches without {k}: {d}"))
    };
    MirrorView {
        head_seq: n("head_seq"),
        head_hash: p["head_hash"]
            .as_str()
            .and_then(ChainHash::from_hex)
            .unwrap_or_else(|| panic!("device view's punches without a head_hash: {d}")),
        held: n("held"),
        pending_on_device: n("pending_on_device"),
        buffer_pressure: d["buffer_pressure"]
            .as_bool()
            .unwrap_or_else(|| panic!("device view without buffer_pressure: {d}")),
    }
}

/// Waits until the mirror's head is `seq` and the agent heard the ack for it.
pub fn wait_mirrored(v: &Verifier, t: &Terminal, seq: u64, timeout: Duration) {
    let mut client = PunchClient::wait_connect(&t.punch_socket());
    wait_for(timeout, &format!("punch {seq} mirrored and acked"), || {
        let m = mirror_view(v, &t.id);
        assert!(
            m.head_seq <= seq,
            "the mirror's head {} is past the agent's {seq}",
            m.head_seq
        );
        (m.head_seq == seq && client.status().acked_seq == seq).then_some(())
    });
}

/// Checks an export on its own: device `id` on every record, seqs 1..=N in order, record 1
/// linking to the genesis hash and every other to the one before it, every exported hash the
/// device-bound hash of the exported fields.
pub fn assert_chain_holds(id: &str, records: &[Mirrored]) {
    let device: DeviceId = id.parse().unwrap();
    let mut prev = ChainHash::GENESIS;
    for (i, m) in records.iter().enumerate() {
        let want_seq = i as u64 + 1;
        assert_eq!(m.device, id, "record {want_seq} names another device");
        assert_eq!(
            m.record.seq, want_seq,
            "the mirror's records are not seqs 1..N: position {i} holds seq {} (a gap or a \
             duplicate)",
            m.record.seq
        );
        assert_eq!(
            m.record.prev_hash,
            prev,
            "record {want_seq}'s prev_hash does not link to record {}",
            want_seq - 1
        );
        let h = m.record.hash(&device);
        assert_eq!(
            h, m.hash,
            "record {want_seq}'s exported hash is not the hash of its exported fields"
        );
        prev = h;
    }
}

/// The content the agent was given for a punch, against the record the mirror holds.
pub fn assert_same_punch(p: &Punch, r: &PunchRecord) {
    assert_eq!(
        (
            r.employee.as_str(),
            r.kind.as_str(),
            r.method.map(|m| m.as_str()),
            r.time
        ),
        (p.employee.as_str(), p.kind, p.method, p.time),
        "record {} is not the punch that was submitted",
        r.seq
    );
}

/// The end of every scenario: waits until the mirror caught up with the agent (head = the
/// agent's last seq, and the agent heard the ack), then checks that the mirror is exactly the
/// agent's chain and holds every confirmed punch unaltered. Returns the agent's status and the
/// export for further checks.
pub fn assert_mirror_matches_agent(
    v: &Verifier,
    t: &Terminal,
    ledger: &Ledger,
    timeout: Duration,
) -> (SocketStatus, Vec<Mirrored>) {
    let agent = PunchClient::wait_connect(&t.punch_socket()).status();
    assert!(
        agent.last_seq >= ledger.last_seq(),
        "the agent's last seq {} is below a confirmed punch {}: a confirmed punch was lost",
        agent.last_seq,
        ledger.last_seq()
    );
    wait_mirrored(v, t, agent.last_seq, timeout);
    let records = export(v, &t.id, None);
    assert_eq!(
        records.len() as u64,
        agent.last_seq,
        "the mirror holds {} records, the agent's chain {}",
        records.len(),
        agent.last_seq
    );
    assert_chain_holds(&t.id, &records);
    let head = records.last().map_or(ChainHash::GENESIS, |m| m.hash);
    assert_eq!(
        head, agent.last_hash,
        "the mirror's head hash differs from the agent's"
    );
    let view = mirror_view(v, &t.id);
    assert_eq!(
        (view.head_seq, view.head_hash),
        (agent.last_seq, agent.last_hash),
        "the device view's head differs from the agent's"
    );
    for (seq, (p, hash)) in &ledger.confirmed {
        let m = &records[usize::try_from(*seq - 1).unwrap()];
        assert_eq!(
            m.hash, *hash,
            "confirmed punch {seq} is mirrored with another hash"
        );
        assert_same_punch(p, &m.record);
    }
    // A new connection: the one above may have idled past the agent's IDLE_TIMEOUT (60 s)
    // while the mirror caught up, and the agent closes idle connections by design.
    let after = PunchClient::wait_connect(&t.punch_socket()).status();
    assert_eq!(
        (after.last_seq, after.acked_seq, after.unacked),
        (agent.last_seq, agent.last_seq, 0),
        "the agent's status after the mirror caught up"
    );
    (after, records)
}

#[cfg(test)]
mod tests {
    //! The comparison must be able to fail: an export rebuilt from a real chain passes, and
    //! each kind of damage (a gap, a duplicate, an altered field, a broken link) is caught.

    use super::*;
    use vouch_protocol::punch::BootId;

    const ID: &str = "term-1";

    /// Records 1..=n of a chain, exported as the contract describes the JSON.
    fn exported(n: u64) -> Vec<serde_json::Value> {
        let device: DeviceId = ID.parse().unwrap();
        let boot = BootId([9; 16]);
        let mut prev = None;
        (0..n)
            .map(|i| {
                let p = Punch::nth(i);
                let r = PunchInput::parse(&p.employee, p.kind, p.method, p.time)
                    .unwrap()
                    .chain_after(prev, boot);
                let h = r.hash(&device);
                prev = Some((r.seq, h));
                serde_json::json!({
                    "device": ID,
                    "seq": r.seq,
                    "time": vouch_common::time::rfc3339(r.time),
                    "employee": r.employee.as_str(),
                    "kind": r.kind.as_str(),
                    "method": r.method.map(|m| m.as_str()),
                    "held": false,
                    "reviewed": false,
                    "hash": h.to_hex(),
                    "prev_hash": r.prev_hash.to_hex(),
                    "boot": boot.to_string(),
                })
            })
            .collect()
    }

    fn parsed(objs: &[serde_json::Value]) -> Vec<Mirrored> {
        objs.iter().map(parse_export_record).collect()
    }

    fn fails(objs: &[serde_json::Value]) -> bool {
        let records = parsed(objs);
        std::panic::catch_unwind(|| assert_chain_holds(ID, &records)).is_err()
    }

    #[test]
    fn an_intact_export_passes_and_matches_its_punches() {
        let records = parsed(&exported(20));
        assert_chain_holds(ID, &records);
        for (i, m) in records.iter().enumerate() {
            assert_same_punch(&Punch::nth(i as u64), &m.record);
        }
    }

    #[test]
    fn a_gap_a_duplicate_an_altered_field_and_a_broken_link_are_caught() {
        let good = exported(20);
        let mut gap = good.clone();
        gap.remove(7);
        assert!(fails(&gap), "a gap");
        let mut dup = good.clone();
        dup.insert(8, good[7].clone());
        assert!(fails(&dup), "a duplicate");
        let mut altered = good.clone();
        altered[5]["employee"] = "MALLORY".into();
        assert!(fails(&altered), "an altered employee");
        let mut moved = good.clone();
        moved[5]["time"] = vouch_common::time::rfc3339(Punch::nth(5).time + 1).into();
        assert!(fails(&moved), "an altered time");
        let mut relinked = good.clone();
        relinked[9]["prev_hash"] = ChainHash([1; 32]).to_hex().into();
        assert!(fails(&relinked), "a broken link");
        let mut other = good;
        other[3]["device"] = "term-2".into();
        assert!(fails(&other), "another device's record");
    }

    #[test]
    fn a_record_on_another_devices_chain_does_not_hash_the_same() {
        let records = parsed(&exported(3));
        let elsewhere: Vec<Mirrored> = records
            .into_iter()
            .map(|mut m| {
                m.device = "term-2".into();
                m
            })
            .collect();
        assert!(std::panic::catch_unwind(|| assert_chain_holds("term-2", &elsewhere)).is_err());
    }
}
