//! Authentication and authorization middleware: resolves `Authorization: Bearer <token>` to a
//! [`Principal`], looks the matched route up in the route table and refuses a request whose
//! role lacks the route's permission. Fails closed: a route missing from the table is 403.

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::routes;
use crate::api::ErrorBody;
use crate::roles::{Permission, Role};

/// Who is acting: inserted into the request extensions of every authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

fn refuse(status: StatusCode, code: &str, msg: String) -> Response {
    (status, Json(ErrorBody::new(code, msg))).into_response()
}

/// The middleware (layered on the whole app with `from_fn_with_state`).
pub(super) async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(matched) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        // No route matched: the fallback answers 404 (or 405) and nothing is reachable.
        return next.run(req).await;
    };
    let path = routes::strip_prefix(&matched);
    let Some(spec) = routes::lookup(req.method(), path) else {
        let msg = format!("{} {path} is not in the route table: refused", req.method());
        tracing::error!("{msg}");
        return refuse(StatusCode::FORBIDDEN, "forbidden", msg);
    };
    if spec.permission == Permission::Public {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(principal) = resolve(&s, presented) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (see admin.token in the verifier's data directory)"
                .into(),
        );
    };
    if !principal.role.allows(spec.permission) {
        let msg = format!(
            "role {} lacks {} (needed by {} {path})",
            principal.role, spec.permission, spec.method
        );
        return refuse(StatusCode::FORBIDDEN, "forbidden", msg);
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal a bearer token stands for, if any.
fn resolve(s: &AppState, presented: &str) -> Option<Principal> {
    if !presented.is_empty() && constant_time_eq(presented.as_bytes(), s.token.as_bytes()) {
        return Some(Principal {
            name: "admin".into(),
            role: Role::Admin,
        });
    }
    None
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
