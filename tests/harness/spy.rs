//! An MQTT test client: records what is published on the topics it subscribes to, and publishes
//! arbitrary bytes (captured messages, garbage, oversized payloads) as an attacker would.

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait_for;

#[derive(Debug, Default)]
struct Seen {
    messages: Vec<(String, Vec<u8>)>,
    subacks: usize,
    connected: bool,
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
    pub fn connect(port: u16, name: &str) -> Self {
        let mut o = MqttOptions::new(format!("spy-{name}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(8 << 20, 8 << 20);
        let (client, connection) = Client::new(o, 64);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || drive(connection, s));
        let spy = Self { client, seen };
        wait_for(Duration::from_secs(30), "the spy to connect", || {
            spy.seen.lock().unwrap().connected.then_some(())
        });
        spy
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
            Ok(Event::Incoming(Packet::SubAck(_))) => seen.lock().unwrap().subacks += 1,
            Ok(Event::Incoming(Packet::Publish(p))) => {
                seen.lock()
                    .unwrap()
                    .messages
                    .push((p.topic.clone(), p.payload.to_vec()));
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
