//! `GET /api/openapi.json` (Public): an OpenAPI 3.1 document generated from the route table, so
//! it cannot drift from what is served: every row with its method, path, summary, required
//! permission (`x-vouch-permission`, and the roles granting it) and bearer security.

use axum::Json;
use serde_json::{Map, Value, json};

use super::routes::{ROUTES, is_unprefixed};
use crate::roles::{Permission, Role};

/// The document (pure).
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let full = if is_unprefixed(r.path) {
            r.path.to_owned()
        } else {
            format!("/api{}", r.path)
        };
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|n| {
                json!({"name": n.trim_start_matches('*'), "in": "path", "required": true,
                       "schema": {"type": "string"}})
            })
            .collect();
        let roles: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|role| role.allows(r.permission))
            .map(Role::as_str)
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "x-vouch-permission": r.permission.as_str(),
            "x-vouch-roles": roles,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "default": {"description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if r.permission == Permission::Public {
            op["security"] = json!([]);
        }
        let entry = paths.entry(full).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vouch verifier API", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "code"],
                "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}}
        }
    })
}

pub(super) async fn openapi() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_documented_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut ops = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                ops += 1;
                let bare = path.strip_prefix("/api").unwrap_or(path);
                let row = ROUTES
                    .iter()
                    .find(|r| r.path == bare && r.method.eq_ignore_ascii_case(method))
                    .unwrap_or_else(|| panic!("{method} {path} not in the table"));
                assert_eq!(op["x-vouch-permission"], row.permission.as_str());
                assert_eq!(op["summary"], row.summary);
            }
        }
        assert_eq!(ops, ROUTES.len());
    }
}
