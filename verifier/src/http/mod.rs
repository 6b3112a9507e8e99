//! The operator HTTP API (axum): thin handlers that authenticate, parse the request into typed
//! values, run the engine call on the blocking pool (store writes fsync) and map errors to status
//! codes. Every error body is `{"error": "...", "code": "..."}` naming what was wrong. The API is
//! served under `/api/` and, for older scripts, the same router again under `/v1/`. Every route
//! is a row of [`routes::ROUTES`]; `auth::authorize` checks each request against it (fail
//! closed). Area files expose `pub(super) fn routes() -> Router<AppState>`. `/api/health` says ok only
//! when the broker and the verifier's MQTT client are up and the store's last write committed
//! (503 naming what is down otherwise); its `ready` says the verifier takes messages. The
//! vendor-trust routes (vendors, manifests, references, supply chain) are admin routes like
//! the rest, with the body limits of their documents.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use vouch_protocol::device::Actor;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};

mod auth;
mod compare;
mod dashboard;
mod ear;
mod metrics;
pub mod openapi;
pub mod routes;
mod tokens;

pub use auth::Principal;

use crate::api::{ErrorBody, HealthView, ReasonBody, ReviewBody, VendorTrustBody};
use crate::broker::BrokerHealth;
use crate::broker::passwd::PasswordFile;
use crate::engine::{ApiError, Engine, MAX_PUNCH_PAGE};

/// Largest accepted request body (enrollment requests, policies and vendor manifests are
/// small: a manifest is at most 256 KiB, `DeviceManifest::MAX_LEN`).
const MAX_BODY: usize = 256 * 1024;

/// Largest reference bundle accepted (`ReferenceBundle::MAX_LEN`).
const MAX_BUNDLE_BODY: usize = 4 << 20;

/// Shared state of every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    engine: Arc<Engine>,
    /// The bootstrap admin bearer token (`admin.token`).
    token: Arc<str>,
    broker: Arc<BrokerHealth>,
    /// The broker's password file, given each enrolled device's MQTT identity.
    passwd: Option<Arc<PasswordFile>>,
    /// When each (token, route) last had an `access_denied` audit entry.
    denied: Arc<auth::DeniedLog>,
}

/// The routes under the `/api` (and `/v1`) prefix. Each area merges its router here (one line).
fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(core_routes())
        .route("/timeline", get(metrics::timeline))
        .merge(tokens::routes())
        .route("/openapi.json", get(openapi::openapi))
        .merge(ear::routes())
        .merge(compare::routes())
        .merge(dashboard::routes())
    // obs: .merge(webhooks/timeline routes)
}

/// Routes outside the prefix: `/metrics` (Read) and the dashboard (Public).
fn unprefixed_routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::public_routes())
}

fn core_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/verifier-key", get(verifier_key))
        .route("/devices", post(enroll).get(dashboard::devices))
        .route("/devices/{id}", get(device))
        .route("/devices/{id}/quarantine", post(quarantine))
        .route("/devices/{id}/release", post(release))
        .route("/devices/{id}/policy/capture", post(capture))
        .route("/devices/{id}/measurements", get(measurements))
        .route("/vendors", post(trust_vendor).get(vendors))
        .route("/vendors/{name}/revoke", post(revoke_vendor))
        .route("/manifests", post(import_manifest))
        .route(
            "/references",
            post(import_reference)
                .layer(DefaultBodyLimit::max(MAX_BUNDLE_BODY))
                .get(references),
        )
        .route(
            "/references/{model}/{version}/revoke",
            post(revoke_reference),
        )
        .route("/supply-chain", put(set_supply_chain).get(supply_chain))
        .route(
            "/policies/device/{id}",
            put(set_device_policy).get(get_device_policy),
        )
        .route(
            "/policies/model/{model}",
            put(set_model_policy).get(get_model_policy),
        )
        .route("/devices/{id}/punches", get(device_punches))
        .route("/devices/{id}/punches/review", post(review_punches))
        .route("/punches", get(all_punches))
        .route("/audit", get(audit))
        .route("/stats", get(stats))
}

/// Builds the router. `token` is the admin bearer token.
pub fn router(
    engine: Arc<Engine>,
    token: String,
    broker: Arc<BrokerHealth>,
    passwd: Option<Arc<PasswordFile>>,
) -> Router {
    let state = AppState {
        engine,
        token: token.into(),
        broker,
        passwd,
        denied: Arc::default(),
    };
    Router::new()
        .nest("/api", api_routes())
        .nest("/v1", api_routes())
        .merge(unprefixed_routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(ErrorBody::new("not_found", "no such API route")),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// The stable code of a status axum produced itself.
fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// Turns the plain-text error responses axum produces itself (a malformed query, a body over
/// the limit, a wrong method) into the API's `{"error": ..., "code": ...}` shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    (
        status,
        Json(ErrorBody::new(status_code_name(status), error)),
    )
        .into_response()
}

/// Serves until `shutdown` flips to true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        (status, Json(ErrorBody::new(code, self.to_string()))).into_response()
    }
}

/// The engine's actor for the authenticated principal.
fn actor(p: &Principal) -> Actor {
    Actor::Operator(p.name.clone())
}

/// Runs a blocking engine call off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("worker task failed: {e}")))?
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))
}

async fn verifier_key(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        s.engine.verifier_key_pem(),
    )
}

async fn health(State(s): State<AppState>) -> Response {
    let (broker, mut down) = s.broker.view();
    let store = s.engine.store_health();
    if !store.ok {
        down.push(format!(
            "store: {}",
            store
                .last_error
                .as_deref()
                .unwrap_or("the last write failed")
        ));
    }
    let ready = broker.mqtt_connected && broker.mqtt_subscribed;
    let ok = down.is_empty();
    let view = HealthView {
        ok,
        ready,
        error: (!ok).then(|| down.join("; ")),
        broker,
        store,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(view)).into_response()
}

async fn enroll(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let passwd = s.passwd.clone();
    let v = blocking(move || {
        let v = s.engine.enroll(&body, &actor(&p))?;
        // After the commit: the store is the source of truth, and the password file is rebuilt
        // from it on every start, so a crash between the two heals itself.
        if let Some(passwd) = passwd {
            grant_mqtt_identity(&passwd, &body)?;
        }
        Ok(v)
    })
    .await?;
    let status = if v.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

/// Adds the enrolled device's MQTT identity (user = device id) to the broker's password file.
fn grant_mqtt_identity(passwd: &PasswordFile, request: &[u8]) -> Result<(), ApiError> {
    // The engine accepted this request a moment ago; parsing it again only reads it.
    let e = vouch_protocol::enrollment::Enrollment::from_request(request, 0)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(hash) = &e.mqtt_password_hash {
        passwd
            .upsert(e.id.as_str(), hash)
            .map_err(|e| ApiError::Internal(e.context("updating the broker password file")))?;
    }
    Ok(())
}

/// 201 when something was created or changed, else 200 (the same request again).
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn measurements(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let m = blocking(move || s.engine.measurements(&id)).await?;
    Ok(Json(m).into_response())
}

async fn trust_vendor(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: VendorTrustBody = json_body(&body, "vendor")?;
    let v = blocking(move || s.engine.trust_vendor(&b.name, &b.key, actor(&p))).await?;
    Ok((created_or_ok(v.changed), Json(v)).into_response())
}

async fn vendors(State(s): State<AppState>) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.vendors()).await?;
    Ok(Json(v).into_response())
}

async fn revoke_vendor(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ReasonBody = json_body(&body, "revocation")?;
    let v = blocking(move || s.engine.revoke_vendor(&name, &r.reason, actor(&p))).await?;
    Ok(Json(v).into_response())
}

/// Enrolls the device of a vendor-signed manifest, then gives it its broker identity, as
/// `enroll` does.
async fn import_manifest(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let passwd = s.passwd.clone();
    let v = blocking(move || {
        let imported = s.engine.import_manifest(&body, &actor(&p))?;
        if let (Some(passwd), Some(hash)) = (passwd, &imported.mqtt_password_hash) {
            passwd
                .upsert(&imported.view.id, hash)
                .map_err(|e| ApiError::Internal(e.context("updating the broker password file")))?;
        }
        Ok(imported.view)
    })
    .await?;
    Ok((created_or_ok(v.created), Json(v)).into_response())
}

async fn import_reference(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.import_reference(&body, actor(&p))).await?;
    Ok((created_or_ok(v.created), Json(v)).into_response())
}

async fn references(State(s): State<AppState>) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.references()).await?;
    Ok(Json(v).into_response())
}

async fn revoke_reference(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((model, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ReasonBody = json_body(&body, "revocation")?;
    let v = blocking(move || {
        s.engine
            .revoke_reference(&model, &version, &r.reason, actor(&p))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn set_supply_chain(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("supply-chain policy: not UTF-8 JSON".into()))?;
    let p = blocking(move || s.engine.set_supply_chain(&text, actor(&p))).await?;
    Ok(Json(p).into_response())
}

async fn supply_chain(State(s): State<AppState>) -> Result<Response, ApiError> {
    let p = blocking(move || s.engine.supply_chain()).await?;
    Ok(Json(p).into_response())
}

async fn device(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.device(&id)).await?;
    Ok(Json(v).into_response())
}

async fn quarantine(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ReasonBody = json_body(&body, "quarantine request")?;
    let v = blocking(move || s.engine.quarantine(&id, &r.reason, actor(&p))).await?;
    Ok(Json(v).into_response())
}

async fn release(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ReasonBody = json_body(&body, "release request")?;
    let v = blocking(move || s.engine.release(&id, &r.reason, actor(&p))).await?;
    Ok(Json(v).into_response())
}

async fn capture(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.capture_policy(&id, actor(&p))).await?;
    Ok(Json(v).into_response())
}

async fn set_policy(
    s: AppState,
    p: Principal,
    scope: PolicyScope,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rv: ReferenceValues = json_body(&body, "reference values")?;
    let v = blocking(move || s.engine.set_policy(scope, rv, actor(&p))).await?;
    Ok(Json(v).into_response())
}

async fn set_device_policy(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_policy(s, p, PolicyScope::Device(id), body).await
}

async fn set_model_policy(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_policy(s, p, PolicyScope::Model(model), body).await
}

async fn get_policy(s: AppState, scope: PolicyScope) -> Result<Response, ApiError> {
    let rv = blocking(move || s.engine.policy(&scope)).await?;
    Ok(Json(rv).into_response())
}

async fn get_device_policy(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    get_policy(s, PolicyScope::Device(id)).await
}

async fn get_model_policy(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    get_policy(s, PolicyScope::Model(model)).await
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let page = blocking(move || s.engine.audit(q.after, q.limit.unwrap_or(1000))).await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicePunchQuery {
    /// Records with seq above this one [default: 0, from the first].
    since: Option<u64>,
    limit: Option<usize>,
}

/// An export page of one device's punches; audited.
async fn device_punches(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DevicePunchQuery>,
) -> Result<Response, ApiError> {
    let page = blocking(move || {
        s.engine.punches_of(
            &id,
            q.since.unwrap_or(0),
            q.limit.unwrap_or(MAX_PUNCH_PAGE),
            &actor(&p),
        )
    })
    .await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllPunchQuery {
    /// The cursor (`next` of the previous page): device and seq, both or neither.
    after_device: Option<String>,
    after_seq: Option<u64>,
    limit: Option<usize>,
}

/// An export page of every device's punches in (device, seq) order; audited.
async fn all_punches(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AllPunchQuery>,
) -> Result<Response, ApiError> {
    let after = match (q.after_device, q.after_seq) {
        (Some(d), Some(seq)) => Some((d, seq)),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "after_device and after_seq go together (the `next` cursor of a page)".into(),
            ));
        }
    };
    let page = blocking(move || {
        s.engine.punches_all(
            after.as_ref().map(|(d, seq)| (d.as_str(), *seq)),
            q.limit.unwrap_or(MAX_PUNCH_PAGE),
            &actor(&p),
        )
    })
    .await?;
    Ok(Json(page).into_response())
}

async fn review_punches(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ReviewBody = json_body(&body, "review request")?;
    let v = blocking(move || {
        s.engine
            .review_punches(&id, r.through, &r.reason, &actor(&p))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn stats(State(s): State<AppState>) -> Response {
    Json(s.engine.stats()).into_response()
}
