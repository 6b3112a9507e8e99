//! API tokens: create (the secret is returned once, only its SHA-256 is stored), list, revoke,
//! and the per-request lookup by hash. Creation and revocation are audited, and so is a
//! request refused for a missing permission (`access_denied`).

use sha2::{Digest, Sha256};
use vouch_protocol::device::{Actor, AuditAction};

use super::{ApiError, Engine};
use crate::api::{TokenCreatedView, TokenView};
use crate::roles::Role;
use crate::store::{AuditRecord, TokenRow};

/// Names reserved for the verifier itself and the bootstrap token.
const RESERVED: [&str; 3] = ["admin", "system", "verifier"];

/// Checks a token name: 1–64 of `[A-Za-z0-9._-]`, not a reserved name.
pub fn check_token_name(name: &str) -> Result<(), ApiError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(ApiError::BadRequest(format!(
            "token name {name:?}: expected 1 to 64 of A-Z a-z 0-9 . _ -"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(ApiError::BadRequest(format!(
            "token name {name:?} is reserved"
        )));
    }
    Ok(())
}

/// SHA-256 of a presented secret.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn view(r: TokenRow) -> TokenView {
    TokenView {
        name: r.name,
        role: r.role,
        created_at: vouch_common::time::rfc3339(r.created_at),
        created_by: r.created_by,
        revoked_at: r.revoked_at.map(vouch_common::time::rfc3339),
    }
}

fn actor_name(a: &Actor) -> String {
    match a {
        Actor::Verifier => "system".into(),
        Actor::Operator(n) => n.clone(),
    }
}

impl Engine {
    /// Creates token `name` with `role`; 409 when the name exists (even revoked).
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<TokenCreatedView, ApiError> {
        check_token_name(name)?;
        let random = vouch_common::keys::random_bytes::<32>()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("token randomness: {e}")))?;
        let secret = format!("vouch_{}", hex::encode(*random));
        let now = self.now();
        let row = TokenRow {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            created_at: now,
            created_by: actor_name(actor),
            revoked_at: None,
        };
        let mut w = self.store.write()?;
        if !w.insert_token(&token_hash(&secret), &row)? {
            return Err(ApiError::Conflict(format!(
                "a token named {name:?} exists already (names are never reused)"
            )));
        }
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::TokenCreated,
            actor: actor.clone(),
            reason: format!("token {name}: role {role}"),
        })?;
        w.commit()?;
        Ok(TokenCreatedView {
            token: secret,
            info: view(row),
        })
    }

    /// Every token (never a secret or hash).
    pub fn tokens(&self) -> Result<Vec<TokenView>, ApiError> {
        Ok(self.store.read()?.tokens()?.into_iter().map(view).collect())
    }

    /// Revokes token `name`; 404 when there is none.
    pub fn revoke_token(&self, name: &str, actor: &Actor) -> Result<TokenView, ApiError> {
        let now = self.now();
        let mut w = self.store.write()?;
        let Some(row) = w.revoke_token(name, now)? else {
            return Err(ApiError::NotFound(format!("no token named {name:?}")));
        };
        w.append_audit(&AuditRecord {
            at: now,
            device: None,
            action: AuditAction::TokenRevoked,
            actor: actor.clone(),
            reason: format!("token {name}: role {}", row.role),
        })?;
        w.commit()?;
        Ok(view(row))
    }

    /// The (name, role) of the live token whose secret is `secret`.
    pub fn token_principal(&self, secret: &str) -> Result<Option<(String, Role)>, ApiError> {
        let Some(row) = self.store.read()?.token_by_hash(&token_hash(secret))? else {
            return Ok(None);
        };
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        let role = row
            .role
            .parse::<Role>()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("token {}: {e}", row.name)))?;
        Ok(Some((row.name, role)))
    }

    /// Records a refused request (`target` = "METHOD /api/path", `reason` = what was missing).
    pub fn audit_access_denied(
        &self,
        who: &str,
        target: &str,
        reason: &str,
    ) -> Result<(), ApiError> {
        let mut w = self.store.write()?;
        w.append_audit(&AuditRecord {
            at: self.now(),
            device: None,
            action: AuditAction::AccessDenied,
            actor: Actor::Operator(who.to_owned()),
            reason: format!("{target}: {reason}"),
        })?;
        w.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_token_name;

    #[test]
    fn names() {
        assert!(check_token_name("ops-1.a_b").is_ok());
        assert!(check_token_name(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "admin",
            "system",
            "verifier",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
