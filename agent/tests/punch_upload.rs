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
    _proc: Proc,
}

impl Broker {
    fn start(dir: &std::path::Path) -> Self {
        let port = vouch_test_kit::process::free_port().expect("free port");
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
        Self { port, _proc: proc }
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
        let deadline = Instant::now() + Duration::from_secs(20);
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

    fn ack(&self, seq: u64, head: ChainHash) {
        let topic = Topic::new(self.device.clone(), Kind::Ack).to_string();
        let bytes = wire::seal(
            &self.device,
            &PunchAck {
                seq,
                head,
                resend: false,
            },
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
    let twenty = batches
        .iter()
        .find(|b| b.last == 20)
        .expect("a batch ending at 20 (batches of 10)");
    mirror.ack(20, twenty.head);
    wait_for("the acked head", || {
        status_over_socket(&t.socket()).is_some_and(|s| s["acked_seq"] == 20)
    });
    // (The daemon answers status only after the deletions the ack allowed.)
    d.kill9();
    {
        let b = t.buffer();
        let meta = b.meta().expect("meta");
        assert_eq!((meta.acked.seq, meta.acked.hash), (20, twenty.head));
        assert_eq!(
            b.oldest().expect("oldest"),
            Some(21),
            "1..=20 deleted, 21.. kept"
        );
    }
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
