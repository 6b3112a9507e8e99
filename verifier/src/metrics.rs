//! The verifier's Prometheus metrics (`GET /metrics`) and the per-minute timeline
//! (`GET /api/timeline`), both in memory for this process's life. Every update is an atomic
//! operation on a handle created at start (prometheus-client's lock-free counters, gauges and
//! histograms), so the applier never waits on a scrape; labels come from closed sets (outcome,
//! state, rejection label, message kind, delivery result, error code), never a device id.
//!
//! The terminal and punch gauges are kept up to date incrementally where states change (the
//! engine applies the deltas after the commit that made them); [`Metrics::seed`] sets them from
//! one counting pass at start. Health gauges (MQTT, broker, store) are read from their sources
//! at scrape time ([`Metrics::set_health`]), which costs three atomic loads.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use vouch_protocol::verdict::{DeviceState, Status};

use crate::engine::timeline::{Event, Timeline};

/// One label, from a closed set of values.
type Label = [(&'static str, &'static str); 1];

/// Message kinds `vouch_messages_accepted_total` counts; anything else is `other`.
const ACCEPTED_KINDS: [&str; 5] = [
    "hello",
    "status",
    "evidence",
    "punches",
    "punches_duplicate",
];

/// The content type of the exposition (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a webhook delivery attempt came to (`vouch_webhook_deliveries_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx; the outbox row is deleted.
    Delivered,
    /// Any other answer or a transport error; retried with backoff.
    Failed,
    /// Older than `webhook_max_age_secs`: dropped undelivered.
    Dropped,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

/// The index of a state in the terminal gauges.
fn state_index(s: DeviceState) -> usize {
    match s {
        DeviceState::Trusted => 0,
        DeviceState::Pending => 1,
        DeviceState::Unresponsive => 2,
        DeviceState::Quarantined => 3,
    }
}

const STATES: [&str; 4] = ["trusted", "pending", "unresponsive", "quarantined"];
const OUTCOMES: [&str; 3] = ["affirming", "warning", "contraindicated"];

/// The outcome slot and timeline event of a verdict status; `None` (no verdict yet) has none.
fn outcome(s: Status) -> Option<(usize, Event)> {
    match s {
        Status::None => None,
        Status::Affirming => Some((0, Event::Affirming)),
        Status::Warning => Some((1, Event::Warning)),
        Status::Contraindicated => Some((2, Event::Contraindicated)),
    }
}

/// Every metric of the verifier and the timeline, shared by the engine and the HTTP shell.
pub struct Metrics {
    registry: Registry,
    attestations: [Counter; 3],
    verification: Histogram,
    terminals: [Gauge; 4],
    rejected: Family<Label, Counter>,
    accepted: [Counter; 6],
    mirror_lag: Histogram,
    punches_held: Gauge,
    punches_pending: Gauge,
    mqtt_connected: Gauge,
    broker_up: Gauge,
    store_ok: Gauge,
    deliveries: [Counter; 3],
    outbox_pending: Gauge,
    denied: Family<Label, Counter>,
    timeline: Timeline,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let attestations_f = Family::<Label, Counter>::default();
        let attestations = OUTCOMES.map(|o| attestations_f.get_or_create_owned(&[("outcome", o)]));
        registry.register(
            "vouch_attestations",
            "Appraised evidence committed, by the signed verdict's status",
            attestations_f,
        );
        // 1 ms .. ~16 s.
        let verification = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "vouch_verification",
            "Evidence taken by a worker to its verdict committed",
            Unit::Seconds,
            verification.clone(),
        );
        let terminals_f = Family::<Label, Gauge>::default();
        let terminals = STATES.map(|s| terminals_f.get_or_create_owned(&[("state", s)]));
        registry.register(
            "vouch_terminals",
            "Enrolled terminals by state",
            terminals_f,
        );
        let rejected = Family::<Label, Counter>::default();
        registry.register(
            "vouch_messages_rejected",
            "MQTT messages refused, by rejection label",
            rejected.clone(),
        );
        let accepted_f = Family::<Label, Counter>::default();
        let kinds = [
            ACCEPTED_KINDS[0],
            ACCEPTED_KINDS[1],
            ACCEPTED_KINDS[2],
            ACCEPTED_KINDS[3],
            ACCEPTED_KINDS[4],
            "other",
        ];
        let accepted = kinds.map(|k| accepted_f.get_or_create_owned(&[("kind", k)]));
        registry.register(
            "vouch_messages_accepted",
            "MQTT messages accepted, by kind",
            accepted_f,
        );
        // 1 s .. ~3 days.
        let mirror_lag = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register_with_unit(
            "vouch_punch_mirror_lag",
            "A punch record's own time to its mirror commit (terminal clock vs verifier clock)",
            Unit::Seconds,
            mirror_lag.clone(),
        );
        let punches_held = Gauge::default();
        registry.register(
            "vouch_punches_held",
            "Punch records mirrored while their terminal was not trusted, fleet-wide",
            punches_held.clone(),
        );
        let punches_pending = Gauge::default();
        registry.register(
            "vouch_punches_pending_on_devices",
            "Punch records terminals said they hold that the mirror does not have yet",
            punches_pending.clone(),
        );
        let mqtt_connected = Gauge::default();
        registry.register(
            "vouch_mqtt_connected",
            "1 while the verifier's MQTT client is connected to the broker",
            mqtt_connected.clone(),
        );
        let broker_up = Gauge::default();
        registry.register(
            "vouch_broker_up",
            "1 while the broker runs (managed) or is reachable (external)",
            broker_up.clone(),
        );
        let store_ok = Gauge::default();
        registry.register(
            "vouch_store_ok",
            "1 while the store's last write committed",
            store_ok.clone(),
        );
        let deliveries_f = Family::<Label, Counter>::default();
        let deliveries = [Delivery::Delivered, Delivery::Failed, Delivery::Dropped]
            .map(|d| deliveries_f.get_or_create_owned(&[("result", d.as_str())]));
        registry.register(
            "vouch_webhook_deliveries",
            "Webhook delivery attempts, by result",
            deliveries_f,
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "vouch_webhook_outbox_pending",
            "Webhook deliveries waiting in the durable outbox",
            outbox_pending.clone(),
        );
        let denied = Family::<Label, Counter>::default();
        registry.register(
            "vouch_http_requests_denied",
            "HTTP API requests refused by authentication or authorization, by error code",
            denied.clone(),
        );
        Self {
            registry,
            attestations,
            verification,
            terminals,
            rejected,
            accepted,
            mirror_lag,
            punches_held,
            punches_pending,
            mqtt_connected,
            broker_up,
            store_ok,
            deliveries,
            outbox_pending,
            denied,
            timeline: Timeline::new(),
        }
    }

    /// The exposition text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The per-minute timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// An appraisal committed at `at` with verdict `status`, `secs` after its evidence was taken.
    pub fn attested(&self, status: Status, secs: f64, at: u64) {
        let Some((slot, event)) = outcome(status) else {
            return;
        };
        self.attestations[slot].inc();
        self.verification.observe(secs);
        self.timeline.record(at, event);
    }

    /// A device's state changed from `from` to `to` (`None`: not enrolled) in a committed write.
    pub fn state_changed(&self, from: Option<DeviceState>, to: Option<DeviceState>) {
        if from == to {
            return;
        }
        if let Some(f) = from {
            self.terminals[state_index(f)].dec();
        }
        if let Some(t) = to {
            self.terminals[state_index(t)].inc();
        }
    }

    /// A quarantine or release committed at `at`, for the timeline.
    pub fn quarantined(&self, at: u64) {
        self.timeline.record(at, Event::Quarantine);
    }

    pub fn released(&self, at: u64) {
        self.timeline.record(at, Event::Release);
    }

    pub fn rejected(&self, label: &'static str) {
        self.rejected.get_or_create(&[("reason", label)]).inc();
    }

    pub fn accepted(&self, kind: &str) {
        let i = ACCEPTED_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(ACCEPTED_KINDS.len());
        if let Some(c) = self.accepted.get(i) {
            c.inc();
        }
    }

    /// Changes of the fleet-wide punch counts by one committed head update.
    pub fn punches(&self, held: i64, pending_on_device: i64) {
        if held != 0 {
            self.punches_held.inc_by(held);
        }
        if pending_on_device != 0 {
            self.punches_pending.inc_by(pending_on_device);
        }
    }

    /// A punch record mirrored `secs` after its own time.
    pub fn mirrored(&self, secs: f64) {
        self.mirror_lag.observe(secs.max(0.0));
    }

    /// The health gauges, read from their sources before each scrape.
    pub fn set_health(&self, mqtt_connected: bool, broker_up: bool, store_ok: bool) {
        self.mqtt_connected.set(i64::from(mqtt_connected));
        self.broker_up.set(i64::from(broker_up));
        self.store_ok.set(i64::from(store_ok));
    }

    pub fn delivery(&self, d: Delivery) {
        self.deliveries[d as usize].inc();
    }

    pub fn set_outbox_pending(&self, n: u64) {
        self.outbox_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// An HTTP request refused with error `code` (`unauthorized`, `forbidden`), for the API's
    /// authorization layer to call.
    pub fn denied(&self, code: &'static str) {
        self.denied.get_or_create(&[("code", code)]).inc();
    }

    /// Sets the terminal and punch gauges from one counting pass at start.
    pub fn seed(&self, by_state: [u64; 4], held: u64, pending_on_device: u64) {
        for (g, n) in self.terminals.iter().zip(by_state) {
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.punches_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.punches_pending
            .set(i64::try_from(pending_on_device).unwrap_or(i64::MAX));
    }

    /// Enrolled terminals by state (trusted, pending, unresponsive, quarantined), as the gauges
    /// hold them: the dashboard's fleet counts, without a store scan.
    pub fn terminal_counts(&self) -> [(&'static str, u64); 4] {
        let mut out = [("", 0u64); 4];
        for ((o, name), g) in out.iter_mut().zip(STATES).zip(&self.terminals) {
            *o = (name, u64::try_from(g.get()).unwrap_or(0));
        }
        out
    }

    /// The counting pass's slot of a state in [`Metrics::seed`]'s array.
    pub fn seed_slot(s: DeviceState) -> usize {
        state_index(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_and_gauges_show_in_the_exposition() {
        let m = Metrics::new();
        m.attested(Status::Warning, 0.01, 120);
        m.state_changed(None, Some(DeviceState::Pending));
        m.state_changed(Some(DeviceState::Pending), Some(DeviceState::Trusted));
        m.rejected("replay");
        m.accepted("hello");
        m.accepted("something else");
        let t = m.encode();
        assert_eq!(
            value(&t, r#"vouch_attestations_total{outcome="warning"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&t, r#"vouch_attestations_total{outcome="affirming"}"#),
            Some(0.0)
        );
        assert_eq!(value(&t, r#"vouch_terminals{state="trusted"}"#), Some(1.0));
        assert_eq!(value(&t, r#"vouch_terminals{state="pending"}"#), Some(0.0));
        assert_eq!(
            value(&t, r#"vouch_messages_rejected_total{reason="replay"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&t, r#"vouch_messages_accepted_total{kind="other"}"#),
            Some(1.0)
        );
        assert_eq!(value(&t, "vouch_verification_seconds_count"), Some(1.0));
        assert!(
            t.contains("# TYPE vouch_verification_seconds histogram"),
            "{t}"
        );
        assert!(t.contains("# HELP vouch_terminals "), "{t}");
    }
}
