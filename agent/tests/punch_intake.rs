//! The punch intake of the real `vouch-agent run` daemon (on an enrolled state directory, with
//! no broker reachable — intake never waits for one): durable confirmed punches across kill -9,
//! seqs never reused, capacity refusal without overwrite, invalid input refused with nothing
//! stored, pipelined and concurrent requests group-committed with distinct consecutive seqs,
//! and `status --json` with and without the daemon.

mod punch_support;

use punch_support::{Terminal, no_broker, pipeline, punch_line, status_over_socket};
use std::collections::BTreeSet;
use vouch_agent::punch::buffer::Head;

#[test]
fn a_confirmed_punch_survives_kill_9_and_the_next_punch_gets_the_next_seq() {
    let t = Terminal::enrolled();
    let url = no_broker();
    let d = t.run(&url, &[]);
    assert_eq!(t.punch_ok("E100"), 1);
    assert_eq!(t.punch_ok("E101"), 2);
    d.kill9();

    let b = t.buffer();
    let meta = b.meta().expect("meta");
    assert_eq!(meta.last.seq, 2);
    let recs = b.read_range(1, 2).expect("records");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].employee.as_str(), "E101");
    assert_eq!(recs[1].hash(&t.device()), meta.last.hash);
    drop(b);

    let _d = t.run(&url, &[]);
    assert_eq!(t.punch_ok("E102"), 3);
}

#[test]
fn seqs_are_never_reused_after_acked_records_are_deleted_and_the_daemon_restarts() {
    let t = Terminal::enrolled();
    let url = no_broker();
    let d = t.run(&url, &[]);
    for i in 0..3 {
        t.punch_ok(&format!("E{i}"));
    }
    d.kill9();
    // What an ack followed by the retention does: the acked head persisted, records deleted.
    {
        let b = t.buffer();
        let meta = b.meta().expect("meta");
        let acked = Head {
            seq: 3,
            hash: meta.last.hash,
        };
        let boot = vouch_agent::punch::current_boot_id().expect("boot id");
        b.commit_group(meta, Some(acked), vec![], boot, 10, 0)
            .expect("persist the acked head");
        assert_eq!(b.prune(3, u64::MAX / 2, 0, 100).expect("prune"), 3);
        assert_eq!(b.oldest().expect("oldest"), None, "every record deleted");
    }
    let _d = t.run(&url, &[]);
    assert_eq!(t.punch_ok("E3"), 4, "seq 4 follows the deleted seqs 1..=3");
    let status = status_over_socket(&t.socket()).expect("status");
    assert_eq!(status["acked_seq"], 3);
    assert_eq!(status["unacked"], 1);
}

#[test]
fn at_capacity_the_next_punch_is_refused_with_the_message_and_nothing_is_stored() {
    let t = Terminal::enrolled();
    let d = t.run(&no_broker(), &["--punch-capacity", "2"]);
    t.punch_ok("E1");
    t.punch_ok("E2");
    let out = t.punch(&["--employee", "E3", "--kind", "in"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("punch buffer full: 2 records not yet acknowledged by the verifier"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no seq printed for a refused punch");
    d.kill9();
    let b = t.buffer();
    assert_eq!(b.meta().expect("meta").last.seq, 2);
    let recs = b.read_range(1, 10).expect("records");
    let employees: Vec<&str> = recs.iter().map(|r| r.employee.as_str()).collect();
    assert_eq!(
        employees,
        ["E1", "E2"],
        "nothing overwritten, nothing added"
    );
}

#[test]
fn invalid_punch_input_is_refused_with_a_clear_error_and_nothing_is_stored() {
    let t = Terminal::enrolled();
    let d = t.run(&no_broker(), &[]);
    let long = "E".repeat(65);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--employee", "", "--kind", "in"],
            "employee id must be 1 to 64 characters, got 0",
        ),
        (
            &["--employee", &long, "--kind", "in"],
            "employee id must be 1 to 64 characters, got 65",
        ),
        (
            &["--employee", "E1", "--kind", "sideways"],
            "punch kind must be \"in\" or \"out\", got \"sideways\"",
        ),
        (
            &["--employee", "E1", "--kind", "in", "--method", "retina"],
            "punch method must be",
        ),
        (
            &["--employee", "E1", "--kind", "in", "--at", "yesterday"],
            "\"at\" must be an RFC 3339 time",
        ),
    ];
    for (args, want) in cases {
        let out = t.punch(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A field the schema does not have (a biometric template, say), sent raw on the socket.
    let answers = pipeline(
        &t.socket(),
        &[r#"{"op":"punch","employee":"E1","kind":"in","template":"AAAA"}"#.to_owned()],
    );
    assert_eq!(answers[0]["ok"], false);
    let err = answers[0]["error"].as_str().expect("error text");
    assert!(err.contains("unknown field `template`"), "{err}");
    // An over-long line gets an error answer too.
    let answers = pipeline(&t.socket(), &["x".repeat(5000)]);
    assert!(
        answers[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("longer than 4096")),
        "{answers:?}"
    );

    let status = status_over_socket(&t.socket()).expect("status");
    assert_eq!(status["last_seq"], 0, "nothing stored: {status}");
    d.kill9();
    assert_eq!(
        t.buffer().read_range(1, u64::MAX).expect("records").len(),
        0
    );
}

#[test]
fn pipelined_and_concurrent_punches_get_distinct_consecutive_seqs() {
    let t = Terminal::enrolled();
    let _d = t.run(&no_broker(), &[]);
    let socket = t.socket();
    let workers: Vec<_> = (0..4)
        .map(|c| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let lines: Vec<String> =
                    (0..250).map(|i| punch_line(&format!("C{c}-{i}"))).collect();
                pipeline(&socket, &lines)
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for w in workers {
        let answers = w.join().expect("worker");
        let mine: Vec<u64> = answers
            .iter()
            .map(|a| {
                assert_eq!(a["ok"], true, "{a}");
                assert_eq!(a["hash"].as_str().map(str::len), Some(64), "{a}");
                a["seq"].as_u64().expect("seq")
            })
            .collect();
        // Answers come back in request order: one connection's seqs increase.
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        seqs.extend(mine);
    }
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), 1000, "every seq distinct");
    assert_eq!(distinct, (1..=1000).collect(), "consecutive from 1");
    let status = status_over_socket(&socket).expect("status");
    assert_eq!(status["last_seq"], 1000);
}

#[test]
fn status_json_shows_the_punch_buffer_with_and_without_the_daemon() {
    let t = Terminal::enrolled();
    let zeros = t.status_json();
    assert_eq!(
        zeros["punches"],
        serde_json::json!({"last_seq": 0, "acked_seq": 0, "unacked": 0, "capacity": 1_000_000}),
        "no buffer yet: zeros"
    );
    let d = t.run(&no_broker(), &["--punch-capacity", "50"]);
    t.punch_ok("E1");
    t.punch_ok("E2");
    let live = t.status_json();
    assert_eq!(
        live["punches"],
        serde_json::json!({"last_seq": 2, "acked_seq": 0, "unacked": 2, "capacity": 50}),
        "asked of the running daemon"
    );
    d.kill9();
    let file = t.status_json();
    assert_eq!(file["punches"]["last_seq"], 2, "read from the buffer file");
    assert_eq!(file["punches"]["unacked"], 2);
}

#[test]
fn the_socket_is_0660_at_its_configured_path_and_a_stale_one_is_replaced_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let t = Terminal::enrolled();
    let url = no_broker();
    let custom = t.dir.path().join("intake.sock");
    let flag = custom.to_str().expect("utf-8 path");
    let d = t.run_on(&custom, &url, &["--punch-socket", flag]);
    let mode = std::fs::metadata(&custom)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    let out = t.punch(&["--employee", "E1", "--kind", "out", "--socket", flag]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    d.kill9();
    assert!(custom.exists(), "kill -9 leaves the socket file behind");
    let _d = t.run_on(&custom, &url, &["--punch-socket", flag]);
    let out = t.punch(&["--employee", "E2", "--kind", "in", "--socket", flag]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn status_never_makes_the_daemons_start_fail_and_asks_only_its_socket_while_it_runs() {
    let t = Terminal::enrolled();
    let d = t.run(&no_broker(), &[]);
    t.punch_ok("E1");
    // A clean stop: the buffer file needs no repair, so status reads it read-only.
    d.terminate();
    let buffer = t.state().join("punches.redb");
    let before = std::fs::read(&buffer).expect("buffer file");
    assert_eq!(
        t.status_json()["punches"]["last_seq"],
        1,
        "read from the file"
    );
    assert_eq!(
        std::fs::read(&buffer).expect("buffer file"),
        before,
        "status wrote nothing to the buffer"
    );

    // Status runs in a tight loop while the daemon starts: the daemon must come up anyway.
    let socket = t.dir.path().join("elsewhere.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let stop = stop.clone();
        let mut cmd = t.agent();
        cmd.args(["status", "--json"]);
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = cmd.output();
                runs += 1;
            }
            runs
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sock = socket.to_str().expect("utf-8 path");
    let _d = t.run_on(
        &socket,
        &no_broker(),
        &["--punch-socket", sock, "--punch-capacity", "50"],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(looping.join().expect("status loop") > 0, "status ran");

    // While it runs only its socket is asked: the capacity is the daemon's flag, not the file's
    // default, and without the right socket status says nothing answers instead of reading
    // the daemon's buffer.
    let live = t.status_json_with(&["--punch-socket", sock]);
    assert_eq!(live["punches"]["capacity"], 50, "{live}");
    assert_eq!(live["punches"]["last_seq"], 1);
    let out = t
        .agent()
        .args(["status", "--json"])
        .output()
        .expect("status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nothing answers on its punch socket"),
        "{err}"
    );
}
