//! `POST/GET /api/tokens` and `POST /api/tokens/{name}/revoke` (ManageTokens: admin only).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};

use super::{AppState, Principal, actor, blocking, json_body};
use crate::api::TokenCreateBody;
use crate::engine::ApiError;
use crate::roles::Role;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", post(create).get(list))
        .route("/tokens/{name}/revoke", post(revoke))
}

async fn create(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TokenCreateBody = json_body(&body, "token request")?;
    let role: Role = b
        .role
        .parse()
        .map_err(|e: crate::roles::UnknownRole| ApiError::BadRequest(e.to_string()))?;
    let v = blocking(move || s.engine.create_token(&b.name, role, &actor(&p))).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.tokens()).await?;
    Ok(Json(v).into_response())
}

async fn revoke(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let v = blocking(move || s.engine.revoke_token(&name, &actor(&p))).await?;
    Ok(Json(v).into_response())
}
