//! `GET /metrics` (Prometheus exposition, Read) and `GET /api/timeline` (the dashboard's
//! per-minute chart, Read): thin handlers over the engine's in-memory [`Metrics`]. A scrape
//! costs three atomic loads for the health gauges and the encoding; it never reads the store.
//!
//! [`Metrics`]: crate::metrics::Metrics

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::engine::timeline::TimelineView;
use crate::metrics::CONTENT_TYPE;

/// `GET /metrics`.
pub(super) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let (broker, _) = s.broker.view();
    let m = s.engine.metrics();
    m.set_health(
        broker.mqtt_connected,
        broker.running,
        s.engine.store_health().ok,
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode())
}

/// `GET /api/timeline`.
pub(super) async fn timeline(State(s): State<AppState>) -> Json<TimelineView> {
    Json(s.engine.metrics().timeline().view(s.engine.now()))
}
