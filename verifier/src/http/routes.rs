//! The one route table: every route the verifier serves, with the permission it needs. The
//! authorization middleware looks each matched route up here and refuses (403) any route that is
//! missing, so a handler cannot be reachable without a row. Paths are axum templates without the
//! `/api` (or legacy `/v1`) prefix; `/metrics`, `/` and `/assets/{*file}` are served outside it.

use crate::roles::Permission;
use axum::http::Method;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    /// Axum template without prefix, e.g. `/devices/{id}/ear`.
    pub path: &'static str,
    pub permission: Permission,
    pub summary: &'static str,
}

/// Whether a route lives outside the `/api` prefix.
pub fn is_unprefixed(path: &str) -> bool {
    path == "/metrics" || path == "/" || path.starts_with("/assets/")
}

const fn r(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        permission,
        summary,
    }
}

use Permission::{Audit, ExportPunches, ManageTokens, Operate, Public, Read};

/// Every route. Add a row with each new handler.
pub const ROUTES: &[RouteSpec] = &[
    r(
        "GET",
        "/health",
        Public,
        "Liveness and readiness of the verifier",
    ),
    r(
        "GET",
        "/verifier-key",
        Public,
        "The verifier's public key (PEM)",
    ),
    r(
        "GET",
        "/",
        Public,
        "The dashboard (a login form until a token is given)",
    ),
    r(
        "GET",
        "/assets/{*file}",
        Public,
        "The dashboard's scripts, styles and strings",
    ),
    r(
        "GET",
        "/whoami",
        Read,
        "The token's name, role and permissions",
    ),
    r("GET", "/fleet", Read, "Terminal counts by state"),
    r(
        "GET",
        "/jwks.json",
        Public,
        "The verifier's public key as a JWK set (verifies EAR tokens)",
    ),
    r(
        "GET",
        "/devices/{id}/ear",
        Read,
        "The device's latest attestation result as a signed EAR JWT",
    ),
    r(
        "POST",
        "/devices",
        Operate,
        "Enroll a device (CBOR enrollment request)",
    ),
    r("GET", "/devices", Read, "List devices, paged"),
    r("GET", "/devices/{id}", Read, "One device"),
    r(
        "GET",
        "/devices/{id}/comparison",
        Read,
        "A device's last measurements against the reference values governing it",
    ),
    r(
        "POST",
        "/devices/{id}/quarantine",
        Operate,
        "Quarantine a device",
    ),
    r(
        "POST",
        "/devices/{id}/release",
        Operate,
        "Release a device from quarantine",
    ),
    r(
        "POST",
        "/devices/{id}/policy/capture",
        Operate,
        "Capture a device's current measurements as its policy",
    ),
    r(
        "GET",
        "/devices/{id}/measurements",
        Read,
        "A device's last measurements",
    ),
    r("POST", "/vendors", Operate, "Trust a vendor key"),
    r("GET", "/vendors", Read, "List trusted vendors"),
    r("POST", "/vendors/{name}/revoke", Operate, "Revoke a vendor"),
    r(
        "POST",
        "/manifests",
        Operate,
        "Import a vendor-signed device manifest",
    ),
    r("POST", "/references", Operate, "Import a reference bundle"),
    r("GET", "/references", Read, "List reference values"),
    r(
        "POST",
        "/references/{model}/{version}/revoke",
        Operate,
        "Revoke a reference",
    ),
    r(
        "PUT",
        "/supply-chain",
        Operate,
        "Set the supply-chain policy",
    ),
    r("GET", "/supply-chain", Read, "The supply-chain policy"),
    r(
        "PUT",
        "/policies/device/{id}",
        Operate,
        "Set a device's policy",
    ),
    r("GET", "/policies/device/{id}", Read, "A device's policy"),
    r(
        "PUT",
        "/policies/model/{model}",
        Operate,
        "Set a model's policy",
    ),
    r("GET", "/policies/model/{model}", Read, "A model's policy"),
    r(
        "GET",
        "/devices/{id}/punches",
        ExportPunches,
        "Export one device's punches (audited)",
    ),
    r(
        "POST",
        "/devices/{id}/punches/review",
        Operate,
        "Mark punches as reviewed",
    ),
    r(
        "GET",
        "/punches",
        ExportPunches,
        "Export every device's punches (audited)",
    ),
    r("GET", "/audit", Audit, "The audit trail, paged"),
    r("GET", "/stats", Read, "Fleet statistics"),
    r(
        "GET",
        "/timeline",
        Read,
        "Per-minute outcome counts of the last 24 h",
    ),
    r("GET", "/metrics", Read, "Prometheus metrics"),
    r(
        "POST",
        "/tokens",
        ManageTokens,
        "Create an API token (secret shown once)",
    ),
    r(
        "GET",
        "/tokens",
        ManageTokens,
        "List API tokens (never secrets)",
    ),
    r(
        "POST",
        "/tokens/{name}/revoke",
        ManageTokens,
        "Revoke an API token",
    ),
    r("GET", "/openapi.json", Public, "This OpenAPI 3.1 document"),
];

/// The row for a matched route template (prefix already stripped) and method.
pub fn lookup(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}

/// Strips the `/api` or `/v1` prefix from a matched route template.
pub fn strip_prefix(matched: &str) -> &str {
    matched
        .strip_prefix("/api")
        .or_else(|| matched.strip_prefix("/v1"))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{a:?}");
            }
        }
    }

    #[test]
    fn prefix_stripping() {
        assert_eq!(strip_prefix("/api/devices/{id}"), "/devices/{id}");
        assert_eq!(strip_prefix("/v1/devices"), "/devices");
        assert_eq!(strip_prefix("/metrics"), "/metrics");
        assert_eq!(strip_prefix("/apiary"), "/apiary");
        assert!(lookup(&Method::GET, "/devices").is_some());
        assert!(lookup(&Method::DELETE, "/devices").is_none());
    }
}
