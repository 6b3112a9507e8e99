//! The broker as an attacker meets it (issue 6, cases 1-4, plus ACL and authentication): the
//! verifier's managed Mosquitto, real swtpm terminals, the real binaries, loopback only. Every
//! "refused" is observed at the broker (no delivery, a refused CONNACK, a closed connection),
//! next to a positive control showing the same observation does see what is allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::raw::{self, Raw};
use vouch_e2e::spy::Spy;
use vouch_e2e::tls::make_pki;
use vouch_e2e::wait_for;
use vouch_protocol::ids::Topic;
use vouch_protocol::verdict::{DeviceState, Verdict};
use vouch_protocol::wire;

/// A managed verifier and trusted terminals, each on its own swtpm.
struct Fleet {
    dir: TempDir,
    _tpms: Vec<Swtpm>,
    v: Verifier,
    terms: Vec<Terminal>,
}

fn fleet(ids: &[&str]) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start(dir.path(), BrokerKind::Managed);
    let mut tpms = Vec::new();
    let mut terms = Vec::new();
    for id in ids {
        let tpm_dir = dir.path().join(format!("tpm-{id}"));
        fs::create_dir_all(&tpm_dir).unwrap();
        let tpm = swtpm(&tpm_dir);
        let t = Terminal::new(dir.path(), id, &tpm, &v, "firmware v1");
        t.enroll(&v, "T-100");
        t.attest_expect(4);
        v.capture(id);
        t.attest_expect(0);
        tpms.push(tpm);
        terms.push(t);
    }
    Fleet {
        dir,
        _tpms: tpms,
        v,
        terms,
    }
}

/// The MQTT password `vouch-agent enroll` created for a terminal.
fn password(t: &Terminal) -> String {
    fs::read_to_string(t.state.join("mqtt.password"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A terminal's own credentials, used as an attacking client (its agent is not running).
fn as_terminal(v: &Verifier, t: &Terminal) -> Spy {
    Spy::connect_as(v.mqtt_port, &t.id, Some(&password(t))).unwrap()
}

fn topic(id: &str, kind: &str) -> String {
    format!("vouch/v1/{id}/{kind}")
}

fn broker_log(v: &Verifier) -> String {
    fs::read_to_string(v.data.join("broker/mosquitto.log")).unwrap_or_default()
}

/// Gives the broker time to deliver what it is going to deliver: a marker published by an
/// all-topics spy after the messages under test reaches `observer` only after them (one
/// publisher-to-subscriber path keeps order).
fn flush(v: &Verifier, observer: &Spy, marker_topic: &str) {
    let writer = Spy::connect(v.mqtt_port, "flush");
    let marker = format!("flush-{}", Instant::now().elapsed().as_nanos()).into_bytes();
    writer.publish_acked(marker_topic, marker.clone());
    wait_for(Duration::from_secs(30), "the flush marker", || {
        observer.on(marker_topic).contains(&marker).then_some(())
    });
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Case 1: CONNECT, reset before CONNACK, CONNECT with the same id wedged rumqttd for everyone.
#[test]
fn reconnect_with_same_client_id_before_connack_does_not_wedge_the_broker() {
    let f = fleet(&["term-1"]);
    let t = &f.terms[0];
    let pw = password(t);
    for i in 0..50 {
        // Authenticated as the terminal, as an anonymous client and with a wrong password,
        // all with the same client id, each dropped before its CONNACK.
        raw::connect_and_drop(f.v.mqtt_port, "term-1", Some("term-1"), Some(&pw));
        raw::connect_and_drop(f.v.mqtt_port, "term-1", None, None);
        raw::connect_and_drop(f.v.mqtt_port, "vouch@verifier", Some("term-1"), Some("x"));
        if i % 10 == 0 {
            let (code, _c) = Raw::connect(f.v.mqtt_port, "term-1", Some("term-1"), Some(&pw));
            assert_eq!(code, 0, "an authenticated connection between the resets");
        }
    }
    // New clients still connect, the terminal still attests, the verifier is healthy.
    let spy = Spy::connect(f.v.mqtt_port, "after");
    spy.subscribe(&topic("term-1", "verdict"));
    t.attest_expect(0);
    let (code, body) = f.v.health();
    assert_eq!(
        (code, &body["ok"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
}

/// Case 2: oversized publishes grew the verifier (which hosted the broker) to 1.4 GB.
#[test]
fn oversized_publishes_do_not_grow_verifier_memory() {
    let f = fleet(&["term-1"]);
    let t = &f.terms[0];
    let pid = f.v.pid().unwrap();
    let broker = f.v.broker_pid().unwrap();
    assert_ne!(pid, broker, "the broker is a process of its own");
    let before = rss_kb(pid, "VmRSS:");
    let oversized_before = f.v.rejected("oversized");
    let evidence = topic("term-1", "evidence");
    // 400 publishes one byte over the protocol limit: the broker lets them through (the limit
    // plus header room) and the verifier rejects each as oversized.
    let (code, mut c) = Raw::connect(f.v.mqtt_port, "term-1", Some("term-1"), Some(&password(t)));
    assert_eq!(code, 0);
    for i in 0..400 {
        if !c.publish_fill(&evidence, (1 << 20) + 1, 0xa5) {
            // The broker may drop a slow client; carry on with a new connection.
            let (code, again) =
                Raw::connect(f.v.mqtt_port, "term-1", Some("term-1"), Some(&password(t)));
            assert_eq!(code, 0, "reconnect after publish {i}");
            c = again;
        }
    }
    // Far over the limit: the broker itself closes the connection, nothing reaches the verifier.
    for _ in 0..20 {
        let (code, mut big) =
            Raw::connect(f.v.mqtt_port, "term-1", Some("term-1"), Some(&password(t)));
        assert_eq!(code, 0);
        big.publish_fill(&evidence, 4 << 20, 0x5a);
        assert!(
            big.closed_within(Duration::from_secs(30)),
            "the broker kept a connection that sent a 4 MiB packet"
        );
    }
    // Positive control: the over-limit-by-one publishes did reach the verifier.
    wait_for(Duration::from_secs(120), "oversized rejections", || {
        (f.v.rejected("oversized") >= oversized_before + 100).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kb(pid, "VmRSS:");
    let peak = rss_kb(pid, "VmHWM:");
    assert!(
        peak < 512 * 1024,
        "verifier peak RSS {peak} kB (before: {before} kB)"
    );
    assert!(
        after < before + 256 * 1024,
        "verifier RSS grew from {before} kB to {after} kB"
    );
    t.attest_expect(0);
}

/// Case 3: anyone could take the verifier's fixed client id and knock it off the broker;
/// agents' ids likewise.
#[test]
fn taking_the_verifiers_client_id_does_not_disconnect_it() {
    let f = fleet(&["term-1", "term-2"]);
    let (t1, t2) = (&f.terms[0], &f.terms[1]);
    let daemon = t1.spawn_daemon(3);
    wait_for(Duration::from_secs(60), "the daemon to connect", || {
        broker_log(&f.v).contains("as term-1 (").then_some(())
    });
    // Positive control: the takeover the broker log reports, on an identity nobody else uses.
    let pw2 = password(t2);
    let (code, _first) = Raw::connect(f.v.mqtt_port, "term-2", Some("term-2"), Some(&pw2));
    assert_eq!(code, 0);
    let (code, _second) = Raw::connect(f.v.mqtt_port, "term-2", Some("term-2"), Some(&pw2));
    assert_eq!(code, 0);
    wait_for(Duration::from_secs(30), "the takeover to be logged", || {
        broker_log(&f.v)
            .contains("Client term-2 already connected, closing old connection")
            .then_some(())
    });
    let verifier_connects = f.v.log().matches("connected to MQTT broker").count();
    let daemon_errors = || daemon.log().matches("MQTT connection error").count();
    let daemon_errors_before = daemon_errors();

    // The attacks: the verifier's and term-1's client ids, anonymously, with a wrong password,
    // and with term-2's valid credentials (the broker replaces the id by the user name).
    for id in ["vouch@verifier", "term-1"] {
        let (code, _) = Raw::connect(f.v.mqtt_port, id, None, None);
        assert_eq!(code, 5, "anonymous connect as {id}");
        let (code, _) = Raw::connect(f.v.mqtt_port, id, Some(id), Some("wrong"));
        assert_eq!(code, 5, "wrong password as {id}");
        let (code, _held) = Raw::connect(f.v.mqtt_port, id, Some("term-2"), Some(&pw2));
        assert_eq!(code, 0, "term-2 connecting with client id {id}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let log = broker_log(&f.v);
    assert!(
        !log.contains("Client vouch@verifier already connected"),
        "{log}"
    );
    assert!(!log.contains("Client term-1 already connected"), "{log}");
    assert_eq!(
        f.v.log().matches("connected to MQTT broker").count(),
        verifier_connects,
        "the verifier reconnected: it was knocked off"
    );
    assert_eq!(
        daemon_errors(),
        daemon_errors_before,
        "the agent was knocked off"
    );
    let (code, body) = f.v.health();
    assert_eq!(code, 200, "{body}");
    drop(daemon);
}

/// Case 4: after a quarantine, the terminal re-published its old affirming verdict as the
/// retained message and new subscribers believed it.
#[test]
fn terminal_cannot_republish_an_affirming_verdict_after_quarantine() {
    let f = fleet(&["term-1"]);
    let t = &f.terms[0];
    let verdict_topic = topic("term-1", "verdict");
    let watcher = Spy::connect(f.v.mqtt_port, "watcher");
    watcher.subscribe(&verdict_topic);
    let affirming = watcher.wait_on(&verdict_topic);
    assert_eq!(decode(&affirming).state, DeviceState::Trusted);

    let out = f.v.ctl(&["quarantine", "term-1", "--reason", "stolen"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contraindicated = wait_for(Duration::from_secs(30), "the quarantine verdict", || {
        watcher
            .on(&verdict_topic)
            .into_iter()
            .rfind(|p| decode(p).state == DeviceState::Quarantined)
    });

    let attacker = as_terminal(&f.v, t);
    attacker.publish_retained_acked(&verdict_topic, affirming.clone());
    // Positive control: the same client's publish on a topic it may write is delivered.
    let status_topic = topic("term-1", "status");
    watcher.subscribe(&status_topic);
    attacker.publish_acked(&status_topic, b"control".to_vec());
    wait_for(Duration::from_secs(30), "the control publish", || {
        watcher
            .on(&status_topic)
            .contains(&b"control".to_vec())
            .then_some(())
    });
    flush(&f.v, &watcher, &status_topic);
    assert_eq!(
        watcher.on(&verdict_topic).last(),
        Some(&contraindicated),
        "the republished verdict was delivered"
    );

    let fresh = Spy::connect(f.v.mqtt_port, "fresh");
    fresh.subscribe(&verdict_topic);
    let retained = fresh.wait_on(&verdict_topic);
    assert_eq!(retained, contraindicated);
    assert_eq!(decode(&retained).state, DeviceState::Quarantined);
}

fn decode(payload: &[u8]) -> Verdict {
    let topic: Topic = "vouch/v1/term-1/verdict".parse().unwrap();
    wire::decode(&topic, payload, 1 << 20)
        .unwrap()
        .peek_unverified::<Verdict>()
        .unwrap()
}

#[test]
fn terminal_cannot_publish_on_another_terminals_topics() {
    let f = fleet(&["term-1", "term-2"]);
    let watcher = Spy::connect(f.v.mqtt_port, "watcher");
    watcher.subscribe("vouch/v1/#");
    let attacker = as_terminal(&f.v, &f.terms[0]);
    let before = f.v.stats()["rejected"].clone();
    for kind in ["hello", "evidence", "status", "punches"] {
        attacker.publish_acked(&topic("term-2", kind), b"from term-1".to_vec());
    }
    // Positive control: its own status topic is delivered.
    attacker.publish_acked(&topic("term-1", "status"), b"own".to_vec());
    wait_for(Duration::from_secs(30), "the control publish", || {
        watcher
            .on(&topic("term-1", "status"))
            .contains(&b"own".to_vec())
            .then_some(())
    });
    flush(&f.v, &watcher, &topic("term-1", "status"));
    for kind in ["hello", "evidence", "status", "punches"] {
        assert!(
            !watcher
                .on(&topic("term-2", kind))
                .contains(&b"from term-1".to_vec()),
            "term-1's publish on term-2/{kind} was delivered"
        );
    }
    // The verifier counted the control (malformed), nothing for term-2.
    wait_for(Duration::from_secs(30), "the control's rejection", || {
        (f.v.stats()["rejected"] != before).then_some(())
    });
    let recent = f.v.stats()["recent_rejections"].to_string();
    assert!(!recent.contains("term-2"), "{recent}");
}

#[test]
fn terminal_cannot_publish_on_verdict_challenge_cmd_topics() {
    let f = fleet(&["term-1", "term-2"]);
    let watcher = Spy::connect(f.v.mqtt_port, "watcher");
    watcher.subscribe("vouch/v1/#");
    let attacker = as_terminal(&f.v, &f.terms[0]);
    let forged = b"forged by term-1".to_vec();
    for id in ["term-1", "term-2"] {
        for kind in ["verdict", "challenge", "cmd", "ack"] {
            attacker.publish_acked(&topic(id, kind), forged.clone());
        }
    }
    attacker.publish_acked(&topic("term-1", "hello"), b"own".to_vec());
    wait_for(Duration::from_secs(30), "the control publish", || {
        watcher
            .on(&topic("term-1", "hello"))
            .contains(&b"own".to_vec())
            .then_some(())
    });
    flush(&f.v, &watcher, &topic("term-1", "hello"));
    for id in ["term-1", "term-2"] {
        for kind in ["verdict", "challenge", "cmd", "ack"] {
            assert!(
                !watcher.on(&topic(id, kind)).contains(&forged),
                "term-1's publish on {id}/{kind} was delivered"
            );
        }
    }
}

#[test]
fn terminal_cannot_subscribe_to_another_terminals_topics() {
    let f = fleet(&["term-1", "term-2"]);
    let eavesdropper = as_terminal(&f.v, &f.terms[1]);
    for filter in [
        "vouch/v1/term-1/verdict",
        "vouch/v1/term-1/challenge",
        "vouch/v1/term-1/evidence",
        "vouch/v1/term-1/#",
        "vouch/v1/+/verdict",
        "#",
    ] {
        // Mosquitto may grant the SUBACK and deliver nothing, or refuse it: both are fine.
        let _ = eavesdropper.subscribe_granted(filter);
    }
    // term-1 attests: its challenge, evidence and verdict cross the broker.
    f.terms[0].attest_expect(0);
    let own = topic("term-2", "verdict");
    // Positive control: its own retained verdict arrives on its own subscription.
    assert!(eavesdropper.subscribe_granted(&own));
    eavesdropper.wait_on(&own);
    for kind in ["verdict", "challenge", "evidence", "hello", "status"] {
        assert!(
            eavesdropper.on(&topic("term-1", kind)).is_empty(),
            "term-2 received term-1's {kind}"
        );
    }
}

#[test]
fn wrong_mqtt_password_is_refused() {
    let f = fleet(&["term-1"]);
    let err = Spy::connect_as(f.v.mqtt_port, "term-1", Some("not the password")).unwrap_err();
    assert!(
        err.contains("NotAuthorized") || err.contains("BadUserNamePassword"),
        "{err}"
    );
    let err = Spy::connect_as(f.v.mqtt_port, "vouch@verifier", Some("guess")).unwrap_err();
    assert!(
        err.contains("NotAuthorized") || err.contains("BadUserNamePassword"),
        "{err}"
    );
    // Positive control: the right password connects.
    let ok = as_terminal(&f.v, &f.terms[0]);
    assert!(ok.connected());
}

#[test]
fn anonymous_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start(dir.path(), BrokerKind::Managed);
    let err = Spy::connect_as(v.mqtt_port, "anyone", None).unwrap_err();
    assert!(
        err.contains("NotAuthorized") || err.contains("BadUserNamePassword"),
        "{err}"
    );
    let (code, _) = Raw::connect(v.mqtt_port, "", None, None);
    assert_ne!(
        code, 0,
        "an anonymous CONNECT with an empty client id was accepted"
    );
    // Positive control: an account connects on the same listener.
    assert!(Spy::connect(v.mqtt_port, "control").connected());
}

#[test]
fn managed_broker_killed_comes_back_and_no_evidence_is_lost() {
    let f = fleet(&["term-1", "term-2"]);
    let accepted = |v: &Verifier| v.stats()["accepted"]["evidence"].as_u64().unwrap_or(0);
    let accepted_before = accepted(&f.v);
    let mut daemons: Vec<_> = f.terms.iter().map(|t| t.spawn_daemon(2)).collect();
    let sent = |d: &[vouch_e2e::procs::Proc]| -> usize {
        d.iter()
            .map(|p| p.log().matches("sent evidence").count())
            .sum()
    };
    wait_for(Duration::from_secs(60), "the daemons to attest", || {
        (accepted(&f.v) >= accepted_before + 2).then_some(())
    });
    let old = f.v.broker_pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Health goes not-ok (the child is gone or the verifier's client lost it) ...
    let start = Instant::now();
    let mut saw_down = None;
    while start.elapsed() < Duration::from_secs(30) {
        let (code, body) = f.v.health();
        if code == 503 {
            saw_down = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let down = saw_down.expect("health never left ok after the broker was killed");
    assert_eq!(down["ok"], false);
    assert!(down["error"].as_str().unwrap().contains("broker"), "{down}");
    // ... and comes back with a new child.
    f.v.wait_healthy();
    let new = f.v.broker_pid().unwrap();
    assert_ne!(new, old);
    let (_, body) = f.v.health();
    assert!(body["broker"]["restarts"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        f.v.log()
            .contains("managed Mosquitto exited; restarting it")
    );
    // The daemons reconnect and attest again.
    let after_restart = accepted(&f.v);
    wait_for(
        Duration::from_secs(90),
        "attestations after the restart",
        || (accepted(&f.v) >= after_restart + 2).then_some(()),
    );
    for p in &mut daemons {
        assert!(p.stop(), "a daemon did not exit on SIGTERM");
    }
    // Every evidence a daemon sent was accepted by the verifier (once what is in flight lands).
    let sent = sent(&daemons);
    wait_for(
        Duration::from_secs(30),
        "the last evidence to be accepted",
        || (accepted(&f.v) - accepted_before >= sent as u64).then_some(()),
    );
    assert_eq!(
        accepted(&f.v) - accepted_before,
        sent as u64,
        "evidence sent by the daemons vs accepted by the verifier"
    );
    let _ = &f.dir;
}

/// Enrolls `t`, captures its policy and has it attest trusted.
fn make_trusted(v: &Verifier, t: &Terminal) {
    t.enroll(v, "T-100");
    t.attest_expect(4);
    v.capture(&t.id);
    t.attest_expect(0);
}

#[test]
fn agent_and_verifier_connect_over_tls_verifying_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "good");
    // The managed broker serves TLS from the configured files; the agent verifies it.
    let managed = dir.path().join("managed");
    fs::create_dir_all(&managed).unwrap();
    let tpm = swtpm(&managed);
    let v = Verifier::start_tls(&managed, BrokerKind::Managed, &pki, &pki.ca);
    let t = Terminal::new(&managed, "term-1", &tpm, &v, "firmware v1");
    assert!(v.mqtt_url().starts_with("mqtts://"));
    make_trusted(&v, &t);
    let tls_port = v.tls_port().unwrap();
    assert!(
        v.broker_log().contains(&format!("on port {tls_port}.")),
        "the agent did not use the TLS listener:\n{}",
        v.broker_log()
    );
    // An external Mosquitto with TLS: the verifier connects over mqtts:// too.
    let external = dir.path().join("external");
    fs::create_dir_all(&external).unwrap();
    let tpm2 = swtpm(&external);
    let v2 = Verifier::start_tls(&external, BrokerKind::Mosquitto, &pki, &pki.ca);
    assert!(v2.healthy());
    let t2 = Terminal::new(&external, "term-2", &tpm2, &v2, "firmware v1");
    make_trusted(&v2, &t2);
    let log = v2.broker_log();
    let port = v2.tls_port().unwrap();
    assert!(log.contains("as vouch@verifier"), "{log}");
    assert!(log.contains(&format!("on port {port}.")), "{log}");
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_pki(dir.path(), "good");
    let other = make_pki(dir.path(), "other");
    let managed = dir.path().join("managed");
    fs::create_dir_all(&managed).unwrap();
    let tpm = swtpm(&managed);
    let v = Verifier::start_tls(&managed, BrokerKind::Managed, &good, &good.ca);
    let mut t = Terminal::new(&managed, "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    // The agent trusting another CA refuses the broker: no MQTT session is ever established.
    t.mqtt_ca = Some(other.ca.clone());
    let out = t.attest_once_within(10);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
    assert!(!v.broker_log().contains("as term-1"), "{}", v.broker_log());
    // Positive control: with the right CA the same terminal connects (and is pending).
    t.mqtt_ca = Some(good.ca.clone());
    t.attest_expect(4);
    assert!(v.broker_log().contains("as term-1"));

    // A verifier trusting another CA does not connect to its external broker: health says so.
    let external = dir.path().join("external");
    fs::create_dir_all(&external).unwrap();
    let v2 = Verifier::start_tls_unhealthy(&external, BrokerKind::Mosquitto, &good, &other.ca);
    wait_for(
        Duration::from_secs(30),
        "the verifier's failed TLS connect",
        || v2.log().contains("MQTT connection error").then_some(()),
    );
    let (code, body) = v2.health();
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not connected"),
        "{body}"
    );
    assert!(!v2.broker_log().contains("as vouch@verifier"));
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn process_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[test]
fn leftover_broker_of_a_killed_verifier_is_ended_on_start() {
    let mut f = fleet(&["term-1"]);
    let old = f.v.broker_pid().unwrap();
    f.v.kill9();
    // The orphan still runs and holds the port ...
    assert!(
        process_alive(old),
        "the managed broker died with the verifier"
    );
    f.v.start_again();
    // ... until the new verifier ends it, because it runs our configuration, and starts its own.
    assert!(!process_alive(old), "the leftover broker {old} still runs");
    let new = f.v.broker_pid().unwrap();
    assert_ne!(new, old);
    assert!(
        f.v.log()
            .contains("ending the managed Mosquitto a previous verifier left running")
    );
    f.terms[0].attest_expect(0);
}

#[test]
fn a_stale_broker_pid_file_never_ends_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Verifier::start(dir.path(), BrokerKind::Managed);
    v.stop();
    // A recycled pid: the pid file names a process that is not our Mosquitto.
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    fs::write(
        v.data.join("broker/mosquitto.pid"),
        format!("{}\n", bystander.id()),
    )
    .unwrap();
    v.start_again();
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the verifier signalled a process that was not its broker"
    );
    assert!(!v.log().contains("left running"));
    assert!(v.healthy());
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}
