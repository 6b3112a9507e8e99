//! An MQTT test client: records what is published on the topics it subscribes to, and publishes
//! arbitrary bytes (captured messages, garbage, oversized payloads) as an attacker would.
//! `Spy::connect` logs in with one of the harness's all-topics spy accounts (an attacker who
//! owns the broker); `Spy::connect_as` with any credentials (a terminal, a wrong password, none),
//! reporting a refused connection instead of retrying.

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait_for;

#[derive(Debug, Default)]
struct Seen {
    messages: Vec<(String, Vec<u8>)>,
    subacks: usize,
    /// Return codes of every SUBACK, in order (true = granted).
    granted: Vec<bool>,
    connected: bool,
    /// The connection ended after it was up (e.g. someone took this client id).
    disconnects: usize,
    /// The broker refused the connection (CONNACK with an error code), with the reason.
    refused: Option<String>,
    /// QoS 1 publishes the broker acknowledged.
    pubacks: usize,
}

pub struct Spy {
    client: Client,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for Spy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spy")
    }
}

impl Spy {
    /// Connects with a spy account of its own (client id = user name, so spies connected at
    /// the same time must not share one).
    pub fn connect(port: u16, name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let _ = name;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let user = crate::procs::spy_user(n);
        Self::connect_as(port, &user, Some(crate::procs::SPY_PASSWORD))
            .unwrap_or_else(|e| panic!("spy {user} could not connect: {e}"))
    }

    /// Connects as `user` (also the client id) with `password` (`None`: anonymous). Err with
    /// the broker's reason when it refuses the connection.
    pub fn connect_as(port: u16, user: &str, password: Option<&str>) -> Result<Self, String> {
        let mut o = MqttOptions::new(user, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(8 << 20, 8 << 20);
        if let Some(p) = password {
            o.set_credentials(user, p);
        }
        let (client, connection) = Client::new(o, 512);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || drive(connection, s));
        let spy = Self { client, seen };
        wait_for(Duration::from_secs(30), "the spy's CONNACK", || {
            let s = spy.seen.lock().unwrap();
            if s.connected {
                Some(Ok(()))
            } else {
                s.refused.clone().map(Err)
            }
        })?;
        Ok(spy)
    }

    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        self.seen.lock().unwrap().connected
    }

    /// How often the connection dropped after being up.
    pub fn disconnects(&self) -> usize {
        self.seen.lock().unwrap().disconnects
    }

    /// Subscribes and returns whether the broker granted it (per its SUBACK).
    pub fn subscribe_granted(&self, filter: &str) -> bool {
        let before = self.seen.lock().unwrap().subacks;
        self.client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        wait_for(Duration::from_secs(30), "SUBACK", || {
            let s = self.seen.lock().unwrap();
            (s.subacks > before).then(|| s.granted.last().copied().unwrap_or(false))
        })
    }

    /// Publishes with the retain flag and waits for the broker's PUBACK (Mosquitto acks even a
    /// publish its ACL drops: MQTT 3.1.1 has no negative acknowledgement).
    pub fn publish_retained_acked(&self, topic: &str, payload: Vec<u8>) {
        let before = self.seen.lock().unwrap().pubacks;
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .unwrap();
        wait_for(Duration::from_secs(30), "PUBACK", || {
            (self.seen.lock().unwrap().pubacks > before).then_some(())
        });
    }

    /// Publishes and waits for the broker's PUBACK.
    pub fn publish_acked(&self, topic: &str, payload: Vec<u8>) {
        let before = self.seen.lock().unwrap().pubacks;
        self.publish(topic, payload);
        wait_for(Duration::from_secs(30), "PUBACK", || {
            (self.seen.lock().unwrap().pubacks > before).then_some(())
        });
    }

    /// Subscribes and waits for the broker's acknowledgement.
    pub fn subscribe(&self, filter: &str) {
        let before = self.seen.lock().unwrap().subacks;
        self.client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        wait_for(Duration::from_secs(30), "SUBACK", || {
            (self.seen.lock().unwrap().subacks > before).then_some(())
        });
    }

    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    /// Messages seen so far on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Waits for at least one message on `topic` and returns the last.
    pub fn wait_on(&self, topic: &str) -> Vec<u8> {
        wait_for(Duration::from_secs(60), topic, || self.on(topic).pop())
    }
}

fn drive(mut connection: Connection, seen: Arc<Mutex<Seen>>) {
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => seen.lock().unwrap().connected = true,
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                let mut s = seen.lock().unwrap();
                s.subacks += 1;
                s.granted.extend(
                    a.return_codes
                        .iter()
                        .map(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                );
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => seen.lock().unwrap().pubacks += 1,
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                let mut s = seen.lock().unwrap();
                s.refused = Some(format!("{code:?}"));
                // A refused client does not retry: tests observe the refusal, not a loop.
                return;
            }
            Err(_) => {
                {
                    let mut s = seen.lock().unwrap();
                    if s.connected {
                        s.connected = false;
                        s.disconnects += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                seen.lock()
                    .unwrap()
                    .messages
                    .push((p.topic.clone(), p.payload.to_vec()));
            }
            Ok(_) => {}
        }
    }
}
