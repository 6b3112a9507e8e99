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
    let Some(principal) = resolve(&s, presented).await else {
        s.engine.metrics().denied("unauthorized");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (see admin.token in the verifier's data directory)"
                .into(),
        );
    };
    if !principal.role.allows(spec.permission) {
        let reason = format!("role {} lacks {}", principal.role, spec.permission);
        let target = format!("{} /api{path}", spec.method);
        if s.denied
            .should_audit(&principal.name, &target, s.engine.now())
        {
            let engine = s.engine.clone();
            let (who, t, r) = (principal.name.clone(), target.clone(), reason.clone());
            let res =
                tokio::task::spawn_blocking(move || engine.audit_access_denied(&who, &t, &r)).await;
            if !matches!(res, Ok(Ok(()))) {
                tracing::error!(%target, "could not audit a refused request");
            }
        }
        s.engine.metrics().denied("forbidden");
        let msg = format!("{reason} (needed by {target})");
        return refuse(StatusCode::FORBIDDEN, "forbidden", msg);
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal a bearer token stands for, if any: the bootstrap admin token, else a live
/// token found by the SHA-256 of the secret (one point lookup, so a revoke takes effect on the
/// next request).
async fn resolve(s: &AppState, presented: &str) -> Option<Principal> {
    if presented.is_empty() {
        return None;
    }
    if constant_time_eq(presented.as_bytes(), s.token.as_bytes()) {
        return Some(Principal {
            name: "admin".into(),
            role: Role::Admin,
        });
    }
    let engine = s.engine.clone();
    let secret = presented.to_owned();
    match tokio::task::spawn_blocking(move || engine.token_principal(&secret)).await {
        Ok(Ok(Some((name, role)))) => Some(Principal { name, role }),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "token lookup failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "token lookup task failed");
            None
        }
    }
}

/// At most one `access_denied` audit entry per (token, route) per [`DENIED_WINDOW`] seconds;
/// the rest are only counted. Bounded: past [`DENIED_MAX`] keys the log is cleared.
#[derive(Default)]
pub(super) struct DeniedLog {
    last: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
    pub(super) suppressed: std::sync::atomic::AtomicU64,
}

const DENIED_WINDOW: u64 = 60;
const DENIED_MAX: usize = 10_000;

impl DeniedLog {
    /// Whether this refusal gets an audit entry (and notes it).
    pub(super) fn should_audit(&self, who: &str, target: &str, now: u64) -> bool {
        let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (who.to_owned(), target.to_owned());
        if let Some(at) = m.get(&key)
            && now < at.saturating_add(DENIED_WINDOW)
        {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        if m.len() >= DENIED_MAX {
            m.clear();
        }
        m.insert(key, now);
        true
    }
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
    use super::{DeniedLog, constant_time_eq};

    #[test]
    fn denied_log_limits_per_window() {
        let d = DeniedLog::default();
        assert!(d.should_audit("v", "POST /api/x", 100));
        assert!(!d.should_audit("v", "POST /api/x", 159));
        assert!(d.should_audit("v", "POST /api/y", 159));
        assert!(d.should_audit("v", "POST /api/x", 160));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
