//! The authorization matrix (issue 10 §1) against the real verifier binary: every row of the
//! route table × {no token, wrong token, revoked token, viewer, operator, auditor, admin} gets
//! exactly the 401 / 403 / allowed answer its permission says; tokens are created and revoked
//! with vouchctl, and a viewer's refused quarantine leaves an `access_denied` audit entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vouch_e2e::procs::{BrokerKind, Verifier};
use vouch_verifier::http::routes::{ROUTES, is_unprefixed};
use vouch_verifier::roles::{Permission, Role};

fn create(v: &Verifier, role: &str, name: &str) -> String {
    let out = v.ctl(&["token", "create", "--role", role, "--name", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        secret.starts_with("vouch_") && secret.len() > 40,
        "{secret}"
    );
    secret
}

#[test]
fn every_route_answers_each_principal_as_its_permission_says() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let admin = std::fs::read_to_string(v.data.join("admin.token")).unwrap();
    let admin = admin.trim().to_owned();
    let viewer = create(&v, "viewer", "v1");
    let operator = create(&v, "operator", "op1");
    let auditor = create(&v, "auditor", "au1");
    let revoked = create(&v, "viewer", "gone");

    // Listing never shows a secret; a name is never reused; revoke applies to the next request.
    let list = v.ctl(&["token", "list", "--json"]);
    let text = String::from_utf8(list.stdout).unwrap();
    for s in [&viewer, &operator, &auditor, &revoked] {
        assert!(!text.contains(s.as_str()), "list shows a secret: {text}");
    }
    assert!(text.contains("\"op1\""), "{text}");
    let again = v.ctl(&["token", "create", "--role", "viewer", "--name", "v1"]);
    assert!(!again.status.success());
    assert_eq!(v.http("GET", "/api/devices", Some(&revoked)).0, 200);
    assert!(v.ctl(&["token", "revoke", "gone"]).status.success());
    let (code, body) = v.http("GET", "/api/devices", Some(&revoked));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");

    let principals: [(&str, Option<&str>, Option<Role>); 7] = [
        ("no token", None, None),
        ("wrong token", Some("vouch_wrong"), None),
        ("revoked token", Some(&revoked), None),
        ("viewer", Some(&viewer), Some(Role::Viewer)),
        ("operator", Some(&operator), Some(Role::Operator)),
        ("auditor", Some(&auditor), Some(Role::Auditor)),
        ("admin", Some(&admin), Some(Role::Admin)),
    ];
    let mut failures = Vec::new();
    for r in ROUTES {
        // Revoking a real token would change the matrix under the test's feet.
        let concrete: String = r
            .path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-x"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let prefixes: &[&str] = if is_unprefixed(r.path) {
            &[""]
        } else {
            &["/api", "/v1"]
        };
        for prefix in prefixes {
            let path = format!("{prefix}{concrete}");
            for (who, token, role) in &principals {
                let (code, body) = v.http(r.method, &path, *token);
                let ok = match (r.permission, role) {
                    (Permission::Public, _) => code != 401 && code != 403,
                    (_, None) => code == 401,
                    (p, Some(role)) if role.allows(p) => code != 401 && code != 403,
                    _ => code == 403 && body.contains("\"code\":\"forbidden\""),
                };
                if !ok {
                    failures.push(format!("{} {path} as {who}: {code} {body}", r.method));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The viewer's refused quarantine is in the audit trail, naming the viewer and the route.
    let audit = v.ctl_json(&["audit", "--json"]);
    let denied = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e.to_string().contains("access_denied")
                && e.to_string().contains("v1")
                && e.to_string().contains("/api/devices/{id}/quarantine")
        })
        .cloned();
    assert!(denied.is_some(), "no access_denied entry for v1: {audit}");
    assert!(audit.to_string().contains("token_created"), "{audit}");
    assert!(audit.to_string().contains("token_revoked"), "{audit}");
}

#[test]
fn errors_carry_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let (code, body) = v.http("GET", "/api/nope", None);
    assert_eq!(code, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");
    let (code, body) = v.http("GET", "/api/openapi.json", None);
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    for r in ROUTES.iter().filter(|r| !is_unprefixed(r.path)) {
        let op = &doc["paths"][format!("/api{}", r.path)][r.method.to_ascii_lowercase()];
        assert_eq!(op["x-vouch-permission"], r.permission.as_str(), "{r:?}");
    }
}
