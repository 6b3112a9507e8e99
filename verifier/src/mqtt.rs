//! The verifier's MQTT shell: one authenticated client (to the managed broker or an external
//! one) whose event loop only moves bytes, and which reports its connection and subscriptions to
//! the broker health `/v1/health` shows. Inbound publishes go to the worker pool through bounded channels, one
//! per worker, chosen by device, so one device's messages are checked in the order they arrived
//! (a full channel pushes back on the broker instead of growing memory); outbound messages come
//! from the engine through another channel and are published by a separate task, because
//! rumqttc's event loop must keep being polled while `publish` waits.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use vouch_common::mqtt_url::BrokerAddr;
use vouch_protocol::ids::{Kind, Topic};

use crate::broker::BrokerHealth;
use crate::broker::conf::PACKET_HEADROOM;

/// A message received on one of the verifier's subscriptions (the payload is shared, not copied).
#[derive(Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: bytes::Bytes,
}

/// The worker shard for a topic: a hash of its device level, so every message of one device goes
/// to the same worker and keeps its order.
pub fn shard(topic: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let device = topic.split('/').nth(2).unwrap_or(topic);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    device.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// A message the engine wants published (after its state change was committed).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The largest MQTT packet the broker accepts for payloads of at most `protocol_max` bytes.
pub fn max_packet_size(protocol_max: usize) -> usize {
    protocol_max.saturating_add(PACKET_HEADROOM)
}

/// Client options for the verifier. Client id = user name (the broker enforces it), and the
/// session is persistent, so messages agents publish while the verifier restarts are delivered
/// when it comes back.
pub fn options(
    addr: &BrokerAddr,
    user: &str,
    password: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    protocol_max: usize,
) -> MqttOptions {
    let mut o = MqttOptions::new(user, addr.host.clone(), addr.port);
    o.set_credentials(user, password);
    if let Some(tls) = tls {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(false);
    // Accept anything the broker forwards (it bounds packets itself) so a message a little over
    // the protocol limit is counted as a rejection instead of tearing down the connection.
    let limit = max_packet_size(protocol_max).saturating_add(64 * 1024);
    o.set_max_packet_size(limit, limit);
    o.set_inflight(200);
    o.set_request_channel_capacity(1024);
    o
}

/// The topic filters the verifier subscribes to: every agent-to-verifier kind of every device.
pub fn subscriptions() -> Vec<String> {
    [Kind::Hello, Kind::Evidence, Kind::Status, Kind::Punches]
        .into_iter()
        .map(Topic::filter_all)
        .collect()
}

/// Runs until `shutdown` flips to true (then `Ok`), or until the workers are gone (an error:
/// nothing would check what arrives). Reconnects with backoff on broker errors. On every CONNACK
/// it (re)subscribes, also when the broker kept the session: only a SUBACK granting every filter
/// on this connection marks the subscriptions in place (`/v1/health` `ready`), so a session
/// whose subscriptions were refused or lost is never taken for ready. Re-subscribing to a
/// filter a session already holds replaces it; queued messages are kept.
pub async fn run(
    opts: MqttOptions,
    inbound: Vec<mpsc::Sender<Inbound>>,
    mut outbound: mpsc::Receiver<Outgoing>,
    health: Arc<BrokerHealth>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    // Aborted when this function returns or is itself aborted (dropped), so the publisher
    // never outlives the shell.
    let mut publisher = {
        let client = client.clone();
        AbortOnDrop(tokio::spawn(async move {
            while let Some(m) = outbound.recv().await {
                if let Err(e) = client
                    .publish(m.topic.clone(), QoS::AtLeastOnce, m.retain, m.payload)
                    .await
                {
                    tracing::warn!(topic = %m.topic, error = %e, "publish failed");
                }
            }
        }))
    };
    let mut backoff = Duration::from_millis(200);
    let ended = loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(200);
                health.set_connected(true);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to MQTT broker"
                );
                let filters = subscriptions()
                    .into_iter()
                    .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    // QoS 1 as asked (or more): a downgrade to QoS 0 could lose evidence and
                    // hellos across a reconnect, so it does not count as subscribed.
                    .all(|c| {
                        matches!(
                            c,
                            SubscribeReasonCode::Success(QoS::AtLeastOnce | QoS::ExactlyOnce)
                        )
                    })
                {
                    health.set_subscribed();
                } else {
                    tracing::error!(codes = ?ack.return_codes, "the broker refused or downgraded the verifier's subscriptions (check its ACL)");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(tx) = inbound.get(shard(&p.topic, inbound.len())) else {
                    break Err(anyhow::anyhow!("no worker to check messages"));
                };
                let msg = Inbound {
                    topic: p.topic,
                    payload: p.payload,
                };
                if tx.send(msg).await.is_err() {
                    break Err(anyhow::anyhow!("a worker thread is gone"));
                }
            }
            Ok(_) => {}
            Err(e) => {
                health.set_connected(false);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection error");
                tokio::select! {
                    _ = shutdown.changed() => break Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    health.set_connected(false);
    // No DISCONNECT: the event loop is not polled any more (polling it would read, and acknowledge,
    // publishes nobody would check), so the connection just closes and what the broker has not
    // delivered yet stays in the verifier's persistent session for the next start.
    drop(eventloop);
    publisher.0.abort();
    let _ = (&mut publisher.0).await;
    ended
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn a_devices_messages_share_a_shard() {
        for n in [1, 2, 7] {
            let s = shard("vouch/v1/term-1/hello", n);
            assert!(s < n);
            assert_eq!(shard("vouch/v1/term-1/evidence", n), s);
            assert_eq!(shard("vouch/v1/term-1/status", n), s);
        }
        assert_eq!(shard("garbage", 0), 0);
    }
}
