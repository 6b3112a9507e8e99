//! The punch mirror through the real shell: `server::run` with its managed Mosquitto, a terminal
//! enrolled over the HTTP API with its own MQTT identity, a signed batch published on its
//! `punches` topic. Guards the wiring the engine tests cannot see: the verifier subscribes to
//! `punches`, the ack comes back on the terminal's `ack` topic signed by the verifier, and it
//! is retained, so a terminal that reconnects later learns the mirror's head without sending;
//! then the operator's HTTP routes over what was mirrored (device view, both export pages with
//! their cursor rules, review).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;
use vouch_protocol::ids::{DeviceId, Kind, Topic};
use vouch_protocol::punch::{BootId, PunchAck, PunchBatch, PunchInput, PunchRecord};
use vouch_protocol::wire;
use vouch_sim::SimTpm;
use vouch_test_kit::http::http_get;
use vouch_test_kit::process::free_port;
use vouch_verifier::api::{DeviceView, PunchPage, ReviewBody, ReviewView};
use vouch_verifier::config::{RunArgs, ServerConfig};
use vouch_verifier::ctl::client::Client;
use vouch_verifier::server::{self, Listeners};

/// Connects as `user` and subscribes to `filter`; retries while the broker has not yet read
/// a password file that names the user. Returns the client and its event loop.
async fn connect(
    mqtt: SocketAddr,
    user: &str,
    password: &str,
    filter: &str,
) -> (AsyncClient, rumqttc::EventLoop) {
    let start = Instant::now();
    loop {
        let mut o = MqttOptions::new(user, mqtt.ip().to_string(), mqtt.port());
        o.set_credentials(user, password);
        o.set_clean_session(true);
        o.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut events) = AsyncClient::new(o, 16);
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if connected {
            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
            return (client, events);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the broker never accepted {user}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next ack on the event loop, verified with the verifier's key, and its retain flag.
async fn next_ack(
    events: &mut rumqttc::EventLoop,
    topic: &Topic,
    key: &ed25519_dalek::VerifyingKey,
) -> (PunchAck, bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                let ack: PunchAck = wire::decode(topic, &p.payload, wire::DEFAULT_MAX_PAYLOAD)
                    .unwrap()
                    .verify(key)
                    .unwrap()
                    .open()
                    .unwrap();
                return (ack, p.retain);
            }
        }
    })
    .await
    .expect("no ack within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_published_by_a_terminal_is_mirrored_and_its_ack_is_retained_for_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let mut cfg = ServerConfig::resolve(&RunArgs {
        data: Some(data.clone()),
        mqtt_listen: Some(mqtt),
        ..RunArgs::default()
    })
    .unwrap();
    cfg.workers = 2;
    // Simulated terminals have no EK certificate; not what this test is about.
    cfg.engine.require_ek_cert = false;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = http.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server::run(cfg, Listeners { http }, async move {
        let _ = stopped.await;
    }));
    let start = Instant::now();
    let ready = || async move {
        tokio::task::spawn_blocking(move || http_get(api.port(), "/v1/health").1["ready"] == true)
            .await
            .unwrap()
    };
    while !ready().await {
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A terminal with its own MQTT identity, enrolled as an operator does.
    let id: DeviceId = "t1".parse().unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let password = "0123456789abcdef0123456789abcdef";
    let request = SimTpm::from_seed([5; 32]).enrollment_request_with_mqtt(
        "T",
        &key.verifying_key(),
        &vouch_common::mqtt_passwd::hash_generated(password),
    );
    let sealed = wire::seal(&id, &request, &key);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let client = Client::new(&format!("http://{api}"), token.trim().to_owned());
    let client = std::sync::Arc::new(client);
    let c = client.clone();
    tokio::task::spawn_blocking(move || {
        c.post_bytes::<serde_json::Value>("/v1/devices", "application/cbor", &sealed)
    })
    .await
    .unwrap()
    .unwrap();
    let verifier_key = vouch_common::keys::read_public(&data.join("verifier.pub")).unwrap();

    let ack_topic = Topic::new(id.clone(), Kind::Ack);
    let (terminal, mut events) = connect(mqtt, id.as_str(), password, &ack_topic.to_string()).await;
    let mut records: Vec<PunchRecord> = Vec::new();
    for seq in 1..=20u64 {
        let prev = records.last().map(|r| (r.seq, r.hash(&id)));
        let input = PunchInput::parse(&format!("E{seq}"), "in", None, 1_700_000_000 + seq);
        records.push(input.unwrap().chain_after(prev, BootId([3; 16])));
    }
    let head = records[19].hash(&id);
    let batch = PunchBatch::new(&id, records, 20, 1000).unwrap();
    terminal
        .publish(
            Topic::new(id.clone(), Kind::Punches).to_string(),
            QoS::AtLeastOnce,
            false,
            wire::seal(&id, &batch, &key),
        )
        .await
        .unwrap();
    let (ack, _) = next_ack(&mut events, &ack_topic, &verifier_key).await;
    assert_eq!(
        ack,
        PunchAck {
            seq: 20,
            head,
            resend: false
        }
    );
    terminal.disconnect().await.unwrap();
    drop(events);

    // A later connection gets the retained ack without sending anything.
    let (_again, mut events) = connect(mqtt, id.as_str(), password, &ack_topic.to_string()).await;
    let (ack, retained) = next_ack(&mut events, &ack_topic, &verifier_key).await;
    assert!(retained, "the ack is retained");
    assert_eq!((ack.seq, ack.head), (20, head));

    let c = client.clone();
    let (view, page, all, half_cursor, review) = tokio::task::spawn_blocking(move || {
        let v: DeviceView = c.get("/v1/devices/t1").unwrap();
        let p: PunchPage = c.get("/v1/devices/t1/punches?since=18").unwrap();
        let all: PunchPage = c
            .get("/v1/punches?after_device=t1&after_seq=15&limit=3")
            .unwrap();
        let half = c
            .get::<PunchPage>("/v1/punches?after_device=t1")
            .unwrap_err()
            .to_string();
        let body = ReviewBody {
            through: 10,
            reason: "checked".into(),
        };
        let r: ReviewView = c.post_json("/v1/devices/t1/punches/review", &body).unwrap();
        (v, p, all, half, r)
    })
    .await
    .unwrap();
    assert_eq!(
        all.punches.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [16, 17, 18]
    );
    assert_eq!(all.next.map(|n| (n.device, n.seq)), Some(("t1".into(), 18)));
    assert!(
        half_cursor.contains("after_device and after_seq go together")
            && half_cursor.contains("HTTP 400"),
        "{half_cursor}"
    );
    assert_eq!((review.reviewed, review.held_unreviewed), (10, 10));
    assert_eq!(view.punches.head_seq, 20);
    assert_eq!(view.punches.head_hash, head.to_hex());
    assert_eq!(view.punches.held, 20, "a pending device's records are held");
    assert_eq!(
        page.punches.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [19, 20]
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
