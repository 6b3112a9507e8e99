//! `GET /api/devices/{id}/ear` (Read): the device's latest verdict as a signed EAR JWT, and
//! `GET /api/jwks.json` (Public): the JWK set relying parties verify it with.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, blocking};
use crate::engine::ApiError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices/{id}/ear", get(ear))
        .route("/jwks.json", get(jwks))
}

async fn ear(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let token = blocking(move || s.engine.ear(&id)).await?;
    Ok(([(header::CONTENT_TYPE, crate::ear::CONTENT_TYPE)], token).into_response())
}

async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    Json(crate::ear::jwks(&s.engine.verifier_key()))
}
