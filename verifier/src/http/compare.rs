//! `GET /api/devices/{id}/comparison` (Read): the device's last measurements item by item
//! against the reference values that govern it (docs/api.md), for the terminal page.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, blocking};
use crate::engine::ApiError;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/devices/{id}/comparison", get(comparison))
}

async fn comparison(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = blocking(move || s.engine.comparison(&id)).await?;
    Ok(Json(c).into_response())
}
