//! The operator dashboard: the static page and its assets (embedded in the binary, served with
//! a strict Content-Security-Policy, no inline script, nothing fetched from elsewhere) and the
//! small JSON routes the page needs besides the device API: `GET /api/whoami`, `GET /api/fleet`
//! (counts by state from the in-memory gauges, never a store scan) and the filtered device list
//! `GET /api/devices?state=&q=&after=&limit=`.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router, routing::get};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vouch_protocol::verdict::DeviceState;

use super::{AppState, Principal, blocking};
use crate::engine::{ApiError, DeviceFilter};

/// Headers on every dashboard file: only this origin's scripts, styles and API.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
    (
        "terminal.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/terminal.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/i18n.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
];

const INDEX: &str = include_str!("../../assets/index.html");

/// The public routes: the page and its assets.
pub(super) fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
}

/// The authenticated routes (behind the bearer-token layer).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/fleet", get(fleet))
}

fn file(content_type: &str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => file(ct, body),
        None => ApiError::NotFound(format!("no dashboard asset named {name:?}")).into_response(),
    }
}

/// `GET /api/whoami`: the token's name, role and permissions (the page shows only what the
/// role may do; the server refuses the rest anyway).
#[derive(Debug, Serialize)]
struct Whoami {
    name: String,
    role: &'static str,
    permissions: Vec<&'static str>,
}

async fn whoami(Extension(p): Extension<Principal>) -> Json<Whoami> {
    use crate::roles::Permission as P;
    let permissions = [
        P::Read,
        P::Operate,
        P::Audit,
        P::ExportPunches,
        P::ManageTokens,
    ]
    .into_iter()
    .filter(|perm| p.role.allows(*perm))
    .map(P::as_str)
    .collect();
    Json(Whoami {
        name: p.name,
        role: p.role.as_str(),
        permissions,
    })
}

/// `GET /api/fleet`.
#[derive(Debug, Serialize)]
struct Fleet {
    counts: BTreeMap<&'static str, u64>,
    total: u64,
}

async fn fleet(State(s): State<AppState>) -> Json<Fleet> {
    let counts: BTreeMap<_, _> = s.engine.metrics().terminal_counts().into_iter().collect();
    let total = counts.values().sum();
    Json(Fleet { counts, total })
}

#[derive(Debug, Deserialize)]
pub(super) struct DeviceListQuery {
    state: Option<String>,
    q: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// The `?state=` of the device list.
fn parse_state(s: &str) -> Result<DeviceState, ApiError> {
    match s {
        "trusted" => Ok(DeviceState::Trusted),
        "pending" => Ok(DeviceState::Pending),
        "unresponsive" => Ok(DeviceState::Unresponsive),
        "quarantined" => Ok(DeviceState::Quarantined),
        other => Err(ApiError::BadRequest(format!(
            "state {other:?} is not one of trusted, pending, unresponsive, quarantined"
        ))),
    }
}

/// `GET /v1/devices` and `/api/devices`: one page of the fleet, filtered.
pub(super) async fn devices(
    State(s): State<AppState>,
    Query(q): Query<DeviceListQuery>,
) -> Result<Response, ApiError> {
    let filter = DeviceFilter {
        state: q
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_state)
            .transpose()?,
        prefix: q.q.filter(|p| !p.is_empty()),
    };
    let page = blocking(move || {
        s.engine
            .devices_matching(&filter, q.after.as_deref(), q.limit.unwrap_or(1000))
    })
    .await?;
    Ok((StatusCode::OK, Json(page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_state("quarantined").ok(),
            Some(DeviceState::Quarantined)
        );
        let Err(e) = parse_state("gone") else {
            panic!("accepted a state that does not exist")
        };
        assert!(e.to_string().contains("\"gone\""), "{e}");
    }

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        for name in ["app.js", "terminal.js", "i18n.js", "app.css"] {
            assert!(INDEX.contains(&format!("/assets/{name}")), "{name}");
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
        }
        assert!(
            !INDEX.contains("<script>"),
            "no inline script under the CSP"
        );
    }
}
