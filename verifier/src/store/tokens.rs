//! API tokens (new table of schema 5): only the SHA-256 of each secret is stored, keyed by that
//! hash so authenticating a request is one point lookup; a second table maps the unique token
//! name to its hash for creation (names are never reused, even after revocation) and revoke.

use anyhow::Result;
use redb::{ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use super::rows;
use super::{Reader, Writer};

/// SHA-256 of the secret → CBOR [`TokenRow`].
pub(super) const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// Token name → SHA-256 of its secret.
pub(super) const TOKEN_NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("token_names");

/// Creates the token tables (with the others).
pub(super) fn create_tables(w: &redb::WriteTransaction) -> Result<()> {
    w.open_table(TOKENS)?;
    w.open_table(TOKEN_NAMES)?;
    Ok(())
}

/// One API token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRow {
    pub name: String,
    /// `admin`, `operator`, `viewer` or `auditor`.
    pub role: String,
    pub created_at: u64,
    pub created_by: String,
    pub revoked_at: Option<u64>,
}

fn missing(e: &redb::TableError) -> bool {
    matches!(e, redb::TableError::TableDoesNotExist(_))
}

impl Writer {
    /// Stores a new token; false (nothing written) when the name exists, revoked or not.
    pub fn insert_token(&mut self, hash: &[u8; 32], row: &TokenRow) -> Result<bool> {
        let mut names = self.tx.open_table(TOKEN_NAMES)?;
        if names.get(row.name.as_str())?.is_some() {
            return Ok(false);
        }
        names.insert(row.name.as_str(), hash.as_slice())?;
        let mut t = self.tx.open_table(TOKENS)?;
        t.insert(hash.as_slice(), rows::encode(row).as_slice())?;
        Ok(true)
    }

    /// Marks the token `name` revoked at `at`; returns its row, `None` when no such name.
    pub fn revoke_token(&mut self, name: &str, at: u64) -> Result<Option<TokenRow>> {
        let names = self.tx.open_table(TOKEN_NAMES)?;
        let Some(hash) = names.get(name)?.map(|h| h.value().to_vec()) else {
            return Ok(None);
        };
        let mut t = self.tx.open_table(TOKENS)?;
        let Some(bytes) = t.get(hash.as_slice())?.map(|v| v.value().to_vec()) else {
            anyhow::bail!("token {name:?} has a name row but no token row");
        };
        let mut row: TokenRow = rows::decode(TOKENS.name(), name, &bytes)?;
        if row.revoked_at.is_none() {
            row.revoked_at = Some(at);
            t.insert(hash.as_slice(), rows::encode(&row).as_slice())?;
        }
        Ok(Some(row))
    }
}

impl Reader {
    /// The token whose secret hashes to `hash` (a point lookup).
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>> {
        let t = match self.tx.open_table(TOKENS) {
            Ok(t) => t,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(hash.as_slice())? {
            Some(v) => Ok(Some(rows::decode(TOKENS.name(), "(hash)", v.value())?)),
            None => Ok(None),
        }
    }

    /// Every token, by name (an administrator's listing; the table is small).
    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        let (names, t) = match (self.tx.open_table(TOKEN_NAMES), self.tx.open_table(TOKENS)) {
            (Ok(n), Ok(t)) => (n, t),
            (Err(e), _) | (_, Err(e)) if missing(&e) => return Ok(Vec::new()),
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in names.iter()? {
            let (name, hash) = item?;
            if let Some(v) = t.get(hash.value())? {
                out.push(rows::decode(TOKENS.name(), name.value(), v.value())?);
            }
        }
        Ok(out)
    }
}
