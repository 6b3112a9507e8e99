//! The verifier's MQTT broker side: the managed Mosquitto (generated configuration and ACL,
//! supervised child process), the broker password file every client authenticates against, and
//! the broker's health as `/v1/health` reports it.
//!
//! - `conf`: the mosquitto.conf and ACL text (pure).
//! - `passwd`: the password file, rebuilt from enrollments and extended on each one.
//! - `setup`: the verifier's identity and the files, from the validated config.
//! - `supervisor`: starting, restarting and stopping the Mosquitto child by pid.

pub mod conf;
pub mod passwd;
pub mod setup;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

pub use conf::{BrokerSettings, TlsFiles, VERIFIER_USER};

use crate::api::BrokerHealthView;

/// What is known about the broker: the managed child's pid (if managed) and whether the
/// verifier's own MQTT client is connected and subscribed. Shared by the supervisor, the MQTT
/// shell and the HTTP API.
#[derive(Debug, Default)]
pub struct BrokerHealth {
    managed: bool,
    /// 0 = no child running.
    pid: AtomicU32,
    restarts: AtomicU64,
    connected: AtomicBool,
    subscribed: AtomicBool,
}

impl BrokerHealth {
    pub fn new(managed: bool) -> Self {
        Self {
            managed,
            ..Self::default()
        }
    }

    pub fn broker_pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            p => Some(p),
        }
    }

    pub fn set_broker_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn note_restart(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }

    /// The MQTT client got a CONNACK (`true`) or lost the connection (`false`). Either way
    /// `subscribed` is cleared: a new connection is subscribed only once its own SUBACK came.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
        self.subscribed.store(false, Ordering::SeqCst);
    }

    /// The broker granted every subscription (SUBACK) on the current connection.
    pub fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::SeqCst);
    }

    /// The health view and, when not healthy, what is down.
    pub fn view(&self) -> (BrokerHealthView, Vec<String>) {
        let pid = self.broker_pid();
        let connected = self.connected.load(Ordering::SeqCst);
        let subscribed = self.subscribed.load(Ordering::SeqCst);
        let mut down = Vec::new();
        if self.managed && pid.is_none() {
            down.push("managed broker (Mosquitto) is not running".to_owned());
        }
        if !connected {
            down.push("the verifier's MQTT client is not connected to the broker".to_owned());
        } else if !subscribed {
            down.push("the verifier's MQTT subscriptions are not in place yet".to_owned());
        }
        let view = BrokerHealthView {
            managed: self.managed,
            running: if self.managed {
                pid.is_some()
            } else {
                connected
            },
            pid,
            restarts: self.restarts.load(Ordering::SeqCst),
            mqtt_connected: connected,
            mqtt_subscribed: subscribed,
        };
        (view, down)
    }
}

/// Raises this process's soft open-file limit to its hard limit (the managed broker inherits
/// it: one descriptor per connected terminal) and returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Descriptors the broker keeps for itself (listeners, persistence, log, password files).
const RESERVED_FDS: u64 = 64;

/// The broker's `max_connections`: the configured value, lowered (with a warning) to what the
/// open-file limit allows.
pub fn connection_limit(configured: u64, nofile: u64) -> u64 {
    let allowed = nofile.saturating_sub(RESERVED_FDS).max(16);
    if configured > allowed {
        tracing::warn!(
            configured,
            open_file_limit = nofile,
            using = allowed,
            "mqtt_max_connections exceeds what the open-file limit allows; raise it \
             (ulimit -n, or LimitNOFILE= in the systemd unit)"
        );
        allowed
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_not_ok_until_child_connection_and_subscriptions_are_up() {
        let h = BrokerHealth::new(true);
        assert_eq!(h.view().1.len(), 2);
        h.set_broker_pid(Some(42));
        h.set_connected(true);
        let (v, down) = h.view();
        assert!(v.running && v.mqtt_connected && !v.mqtt_subscribed);
        assert_eq!(down.len(), 1, "{down:?}");
        h.set_subscribed();
        assert!(h.view().1.is_empty());
        h.set_broker_pid(None);
        assert!(h.view().1[0].contains("not running"));
        h.set_broker_pid(Some(43));
        h.set_connected(false);
        assert!(!h.view().0.mqtt_subscribed);
        assert!(!h.view().1.is_empty());
    }

    #[test]
    fn a_reconnection_is_not_subscribed_until_its_own_suback() {
        let h = BrokerHealth::new(false);
        h.set_connected(true);
        h.set_subscribed();
        assert!(h.view().1.is_empty());
        // A CONNACK without the error in between (the client reconnected at once).
        h.set_connected(true);
        let (v, down) = h.view();
        assert!(v.mqtt_connected && !v.mqtt_subscribed, "{v:?}");
        assert_eq!(down.len(), 1, "{down:?}");
    }

    #[test]
    fn connection_limit_stays_below_the_open_file_limit() {
        assert_eq!(connection_limit(1000, 1_048_576), 1000);
        assert_eq!(connection_limit(200_000, 1024), 960);
    }
}
