//! Upload and acknowledgement through a real Mosquitto, the test playing the verifier (it
//! holds the verifier's key): the daemon sends device-signed batches once subscribed; an ack
//! whose head hash is not the terminal's deletes nothing; a valid ack is persisted and deletes
//! only after the retention; after a restart the upload resumes from the acked head the
//! retained ack names.

// clippy's allow-expect-in-tests covers #[test] functions only, not the broker and mirror
// helpers below, which should panic loudly too.
#![allow(clippy::expect_used)]

mod punch_support;

use punch_support::{DEVICE, Terminal, status_over_socket};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use vouch_protocol::ids::{DeviceId, Kind, Topic};
use vouch_protocol::punch::{ChainHash, PunchAck, PunchBatch, check_batch};
use vouch_protocol::wire;
use vouch_test_kit::process::Proc;

/// A plain, anonymous Mosquitto on a free loopback port (stopped by its pid on drop).
struct Broker {
    port: u16,
    dir: std::path::PathBuf,
    proc: Proc,
}

impl Broker {
    fn start(dir: &std::path::Path) -> Self {
        let port = vouch_test_kit::process::free_port().expect("free port");
        Self::start_on(dir, port)
    }

    fn start_on(dir: &std::path::Path, port: u16) -> Self {
        let proc = Self::spawn(dir, port);
        Self {
            port,
            dir: dir.to_owned(),
            proc,
        }
    }

    /// Stops it (by pid) and starts a fresh one on the same port: no sessions, no retained
    /// messages survive (persistence is off).
    fn restart_empty(&mut self, down_while: impl FnOnce()) {
        self.proc.stop();
        down_while();
        self.proc = Self::spawn(&self.dir, self.port);
    }

    fn spawn(dir: &std::path::Path, port: u16) -> Proc {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nuser root\nlog_dest stderr\n\
                 max_packet_size 2097152\nlistener {port} 127.0.0.1\n"
            ),
        )
        .expect("mosquitto.conf");
        let proc = Proc::spawn(
            "mosquitto",
            std::process::Command::new("mosquitto").arg("-c").arg(&conf),
            &dir.join("mosquitto.log"),
        )
        .expect("start mosquitto");
        assert!(
            vouch_test_kit::process::wait_for_port(port, Duration::from_secs(10)),
            "mosquitto did not listen"
        );
        proc
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// The test's verifier end: receives the device's batches (signature checked with the device
/// key) and publishes verifier-signed, retained acks.
struct Mirror {
    client: Client,
    batches: Receiver<PunchBatch>,
    device: DeviceId,
    verifier: ed25519_dalek::SigningKey,
}

impl Mirror {
    fn connect(broker: &Broker, t: &Terminal) -> Self {
        let device: DeviceId = DEVICE.parse().expect("device");
        let device_key = vouch_common::keys::load(&t.state().join("device.key"))
            .expect("device key")
            .verifying_key();
        let mut o = MqttOptions::new("test-verifier", "127.0.0.1", broker.port);
        o.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut conn) = Client::new(o, 64);
        let punches = Topic::new(device.clone(), Kind::Punches);
        client
            .subscribe(punches.to_string(), QoS::AtLeastOnce)
            .expect("subscribe");
        let (tx, rx) = std::sync::mpsc::channel();
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let batch = wire::decode(&punches, &p.payload, 4 << 20)
                            .and_then(|m| m.verify(&device_key))
                            .and_then(|m| m.open::<PunchBatch>())
                            .expect("a device-signed punch batch");
                        if tx.send(batch).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("the test verifier subscribed");
        Self {
            client,
            batches: rx,
            device,
            verifier: t.verifier.clone(),
        }
    }

    /// Batches until records through `last` arrived; checks each batch's chain.
    fn receive_through(&self, last: u64) -> Vec<PunchBatch> {
        // Beyond the terminal's 10 s resend timer, which covers batches sent before this end
        // subscribed.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.last().is_none_or(|b: &PunchBatch| b.last < last) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.batches.recv_timeout(left) {
                Ok(b) => {
                    let checked = check_batch(&self.device, b.clone()).expect("well-formed");
                    checked.expect("the batch's chain holds");
                    got.push(b);
                }
                Err(RecvTimeoutError::Timeout) => panic!("no batch through {last}: got {got:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("mirror thread ended"),
            }
        }
        got
    }

    /// Forgets batches received so far.
    fn drain(&self) {
        while self.batches.try_recv().is_ok() {}
    }

    fn ack(&self, seq: u64, head: ChainHash) {
        self.ack_with(seq, head, false);
    }

    fn ack_with(&self, seq: u64, head: ChainHash, resend: bool) {
        let topic = Topic::new(self.device.clone(), Kind::Ack).to_string();
        let bytes = wire::seal(
            &self.device,
            &PunchAck { seq, head, resend },
            &self.verifier,
        );
        self.client
            .publish(topic, QoS::AtLeastOnce, true, bytes)
            .expect("publish ack");
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_valid_ack_deletes_after_the_retention_and_upload_resumes_from_the_acked_head() {
    let t = Terminal::enrolled();
    let broker = Broker::start(t.dir.path());
    let mirror = Mirror::connect(&broker, &t);
    let flags = [
        "--punch-batch",
        "10",
        "--punch-linger-ms",
        "20",
        "--punch-retention",
        "0",
    ];
    let d = t.run(&broker.url(), &flags);
    for i in 0..25 {
        t.punch_ok(&format!("E{i}"));
    }
    let batches = mirror.receive_through(25);
    assert_eq!(batches[0].first, 1, "the first upload starts at seq 1");
    assert!(
        batches.iter().all(|b| b.records.len() <= 10),
        "batch size honoured"
    );
    // Batches depend on how the punches trickled in; the mirror acks record 20 wherever it is.
    let twenty = batches
        .iter()
        .flat_map(|b| &b.records)
        .find(|r| r.seq == 20)
        .expect("record 20 was sent")
        .hash(&mirror.device);
    mirror.ack(20, twenty);
    wait_for("the acked head", || {
        status_over_socket(&t.socket()).is_some_and(|s| s["acked_seq"] == 20)
    });
    // (The daemon answers status only after the deletions the ack allowed.)
    d.kill9();
    {
        let b = t.buffer();
        let meta = b.meta().expect("meta");
        assert_eq!((meta.acked.seq, meta.acked.hash), (20, twenty));
        assert_eq!(
            b.oldest().expect("oldest"),
            Some(21),
            "1..=20 deleted, 21.. kept"
        );
    }
    mirror.drain();
    // Restarted, the terminal hears the retained ack and sends only what follows it.
    let _d = t.run(&broker.url(), &flags);
    let again = mirror.receive_through(25);
    assert_eq!(again[0].first, 21, "resumed from the acked head: {again:?}");
    assert_eq!(again.last().map(|b| b.head), batches.last().map(|b| b.head));
}

#[test]
fn an_ack_whose_hash_is_not_the_terminals_deletes_nothing() {
    let t = Terminal::enrolled();
    let broker = Broker::start(t.dir.path());
    let mirror = Mirror::connect(&broker, &t);
    let d = t.run(
        &broker.url(),
        &["--punch-retention", "0", "--punch-linger-ms", "10"],
    );
    for i in 0..5 {
        t.punch_ok(&format!("E{i}"));
    }
    let batches = mirror.receive_through(5);
    let mut wrong = batches[0].head;
    wrong.0[0] ^= 1;
    mirror.ack(5, wrong);
    wait_for("the agent to refuse the ack", || {
        d.log().contains("disagrees with this terminal's chain")
    });
    assert_eq!(
        status_over_socket(&t.socket()).expect("status")["acked_seq"],
        0
    );
    d.kill9();
    let b = t.buffer();
    assert_eq!(b.meta().expect("meta").acked.seq, 0);
    assert_eq!(b.oldest().expect("oldest"), Some(1), "nothing deleted");
}

#[test]
fn an_acked_record_is_kept_until_its_retention_passes() {
    let t = Terminal::enrolled();
    let broker = Broker::start(t.dir.path());
    let mirror = Mirror::connect(&broker, &t);
    let d = t.run(
        &broker.url(),
        &["--punch-retention", "3600", "--punch-linger-ms", "10"],
    );
    for i in 0..5 {
        t.punch_ok(&format!("E{i}"));
    }
    let batches = mirror.receive_through(5);
    mirror.ack(5, batches.last().expect("batch").head);
    wait_for("the acked head", || {
        status_over_socket(&t.socket()).is_some_and(|s| s["acked_seq"] == 5 && s["unacked"] == 0)
    });
    d.kill9();
    let b = t.buffer();
    assert_eq!(b.meta().expect("meta").acked.seq, 5, "the ack is persisted");
    assert_eq!(
        b.read_range(1, 5).expect("records").len(),
        5,
        "kept for the retention"
    );
}

#[test]
fn a_resend_request_makes_the_terminal_send_again_from_the_mirrors_head() {
    let t = Terminal::enrolled();
    let broker = Broker::start(t.dir.path());
    let mirror = Mirror::connect(&broker, &t);
    let _d = t.run(&broker.url(), &["--punch-linger-ms", "10"]);
    for i in 0..6 {
        t.punch_ok(&format!("E{i}"));
    }
    let first = mirror.receive_through(6);
    let three = first
        .iter()
        .flat_map(|b| &b.records)
        .find(|r| r.seq == 3)
        .expect("record 3 was sent")
        .hash(&mirror.device);
    mirror.drain();
    // "I hold 1..=3, then saw a gap: send everything after 3 again."
    mirror.ack_with(3, three, true);
    let again = mirror.receive_through(6);
    assert_eq!(
        again[0].first, 4,
        "resent from the mirror's head + 1: {again:?}"
    );
    assert_eq!(again.last().map(|b| b.head), first.last().map(|b| b.head));
    wait_for("the acked head", || {
        status_over_socket(&t.socket()).is_some_and(|s| s["acked_seq"] == 3)
    });
}

#[test]
fn punches_taken_while_the_broker_is_down_are_uploaded_when_it_is_back() {
    let t = Terminal::enrolled();
    let mut broker = Broker::start(t.dir.path());
    let _d = t.run(&broker.url(), &["--punch-linger-ms", "10"]);
    t.punch_ok("before");
    // The broker goes away; intake carries on, confirming durably.
    broker.restart_empty(|| {
        for i in 0..20 {
            assert_eq!(t.punch_ok(&format!("offline-{i}")), i + 2);
        }
    });
    // A fresh broker: no retained ack, so the terminal sends everything after its own acked
    // head (0) once it has reconnected and subscribed.
    let mirror = Mirror::connect(&broker, &t);
    let batches = mirror.receive_through(21);
    let mut seqs: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.records.iter().map(|r| r.seq))
        .collect();
    seqs.dedup();
    assert!(seqs.ends_with(&(1..=21).collect::<Vec<_>>()), "{seqs:?}");
}

#[test]
fn after_a_long_outage_from_start_the_upload_starts_once_the_broker_is_up() {
    // Before the fix every --interval queued a status into the MQTT client's request channel,
    // which rumqttc does not drain before its first connection: after ~72 intervals it was
    // full, the first connection's subscription could not be queued ("could not queue" in the
    // log), no SubAck came and no batch was sent on that connection (here the old agent got
    // its batches out only after the broker happened to drop it once; in the field keepalive
    // keeps such a connection up).
    let t = Terminal::enrolled();
    let port = vouch_test_kit::process::free_port().expect("free port");
    let url = format!("mqtt://127.0.0.1:{port}");
    let d = t.run(&url, &["--interval", "1", "--punch-linger-ms", "10"]);
    for i in 0..3 {
        t.punch_ok(&format!("E{i}"));
    }
    // More intervals than the request channel has room for (64 + the punch window's room).
    std::thread::sleep(Duration::from_secs(85));
    let broker = Broker::start_on(t.dir.path(), port);
    let mirror = Mirror::connect(&broker, &t);
    // The agent's reconnect backoff is up to 60 s by now, then the 10 s resend timer at most.
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut got = Vec::new();
    while got.last().is_none_or(|b: &PunchBatch| b.last < 3) {
        let left = deadline.saturating_duration_since(Instant::now());
        match mirror.batches.recv_timeout(left) {
            Ok(b) => got.push(b),
            Err(e) => panic!("no batch through 3 ({e:?}): got {got:?}\n{}", d.log()),
        }
    }
    assert!(
        !d.log().contains("could not queue"),
        "nothing was refused by a full request channel:\n{}",
        d.log()
    );
}
