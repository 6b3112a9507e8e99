//! The embedded MQTT broker (rumqttd) for single-process deployments and the demo. It runs on
//! its own thread because `Broker::start` blocks. Plain TCP only: rumqttd's TLS stack lags on
//! security fixes, so TLS deployments use an external broker (see README).
//!
//! The broker does no per-topic authorization; vouch does not rely on topics for trust: every
//! message is signed and bound to its device and kind.

use anyhow::{Context, Result, bail};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

/// Broker-side payload bound: twice the protocol limit, so payloads a little over the limit
/// still reach the verifier to be counted and logged as oversized, while absurd ones are cut off
/// by the broker before they are buffered.
pub fn broker_payload_limit(protocol_max: usize) -> usize {
    protocol_max.saturating_mul(2)
}

/// Starts the broker on `listen` and returns once its thread is running.
pub fn start(listen: SocketAddr, protocol_max: usize, max_connections: usize) -> Result<()> {
    // rumqttd binds inside its own thread and only logs a failure there; probe first so a port
    // already in use is a clear startup error instead of a verifier talking to someone else's
    // broker.
    TcpListener::bind(listen).with_context(|| {
        format!("cannot listen for MQTT on {listen} (is another broker running?)")
    })?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: broker_payload_limit(protocol_max),
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "vouch-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = RouterConfig {
        max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: 100 * 1024 * 1024,
        max_segment_count: 10,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let config = Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    let handle = std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("cannot start the embedded broker thread")?;
    // Wait until the listener accepts connections (or the thread died).
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(());
        }
        if handle.is_finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bail!("embedded MQTT broker did not start listening on {listen}")
}
