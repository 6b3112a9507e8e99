//! Schema versions and migration on open. The `meta` table holds `schema_version`; a store
//! without one is schema 1 (the layout before versions existed), and a new file without tables
//! is created at the current version. [`open`] brings a store up to [`SCHEMA_VERSION`] in ONE
//! write transaction before anything else reads it: a crash or an error mid-way (a full disk)
//! leaves the store as it was, and the next start migrates again from the beginning. The rows
//! held in memory are bounded: device rows are read and rewritten a page at a time ([`PAGE`]);
//! the pages the transaction dirties are bounded by redb's cache (1 GiB by default), so a large
//! fleet's migration may use a few hundred MB once (the file grows by about the rewritten rows'
//! size until a later commit frees the old pages). A store already
//! at the current version is opened without writing.
//!
//! A store stamped with a newer version than this binary knows is refused before anything is
//! written ([`SchemaError::Newer`]): this binary cannot know what the newer rows mean.
//!
//! The `meta` table's shape (`&str` → `u64`) and the `schema_version` key are the one thing
//! every version keeps, so any binary can read any store's version.
//!
//! Schema 1 → 2:
//! - device rows: the status's reasons (and the quarantine's) become `{code, text}` rows, with
//!   no code (schema 1 stored text only); every other field carries over unchanged;
//! - the verdict expiry index: a schema-1 store that never recorded `verdict_expiry_backfilled`
//!   (written before the index existed) gets an entry for each device's current verdict, and
//!   the flag goes (schema 2 implies the index is complete);
//! - the other tables' rows are the same in both schemas and are left as they are.
//!
//! Schema 2 → 3:
//! - the punch mirror's tables (`punches`, `punch_heads`, `punch_held`, `punch_key`) are
//!   created empty;
//! - audit rows may name three new actions (`punches_rejected`, `punches_exported`,
//!   `punches_reviewed`), which a schema-2 binary cannot read: hence the version, though no
//!   existing row changes.
//!
//! Schema 3 → 4:
//! - the vendor-trust tables (`vendors`, `bundles`, `supply_chain`) are created empty;
//! - enrollment rows may carry `provenance` and `ek_cert_anchor`, measurement rows
//!   `firmware_version` and `inventory`, and audit rows five new actions (`vendor_trusted`,
//!   `vendor_revoked`, `reference_imported`, `reference_revoked`, `supply_chain_set`): none of
//!   which a schema-3 binary can read. The new fields are left out of a row when absent, so a
//!   schema-3 row already is the schema-4 row of the same record: nothing is rewritten.
//!
//! Schema 4 → 5:
//! - every audit row is rewritten, in seq order, with `prev` and `hash` (the hash chain,
//!   `vouch_protocol::audit`), and the chain head is written to the new `audit_head` table,
//!   signed with the verifier's key (see `super::audit` and docs/audit.md);
//! - the webhook outbox tables (`super::outbox`) are created empty.

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::verdict::Verdict;
use vouch_protocol::wire;

use super::rows::v1::DeviceV1;
use super::rows::{self, SCHEMA_VERSION};
use super::{
    AUDIT, DEVICES, EVENTLOGS, META, MODEL_INDEX, NONCE_EXPIRY, NONCES, POLICIES, PUNCH_HEADS,
    PUNCH_HELD, PUNCH_KEY, PUNCHES, VERDICT_EXPIRY,
};

/// The `meta` key holding the schema version.
pub(super) const SCHEMA_KEY: &str = "schema_version";
/// Schema-1 `meta` key set once the verdicts of a store older than the expiry index were
/// indexed; folded into the migration to schema 2.
const VERDICT_EXPIRY_BACKFILLED: &str = "verdict_expiry_backfilled";
/// Device rows migrated per page.
const PAGE: usize = 256;

/// Why a store cannot be used by this binary.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error(
        "store {} was written by a newer vouch (schema {found}, this binary knows up to {known}); upgrade vouch or restore a backup",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: u64,
        known: u64,
    },
    /// No vouch ever wrote this version (schemas start at 1).
    #[error("store {} has schema version {found}, which no vouch writes: the meta table is damaged", path.display())]
    Unknown { path: PathBuf, found: u64 },
}

/// What opening did to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// A new store, created at [`SCHEMA_VERSION`].
    Created,
    /// The store was already at [`SCHEMA_VERSION`].
    Current,
    /// The store was migrated from schema `from`.
    Migrated {
        from: u64,
        /// Device rows rewritten.
        devices: u64,
        /// Device rows left as they were because they did not decode as schema `from`; each
        /// reads as corrupt, naming its key, as it would have before.
        unreadable: u64,
        /// Verdict expiry entries added for a store older than the index.
        indexed: u64,
    },
}

/// The store's schema version, read without writing: `None` for a new file (no tables at all),
/// 1 for a store without a version. Every vouch store has had a `meta` table since the first
/// version, so a file with other tables but no `meta` is not one (or is damaged) and is refused
/// rather than stamped as new over rows it would then read as corrupt.
fn stored_version(db: &Database) -> Result<Option<u64>> {
    let r = db.begin_read()?;
    match r.open_table(META) {
        Ok(t) => Ok(Some(t.get(SCHEMA_KEY)?.map_or(1, |v| v.value()))),
        Err(redb::TableError::TableDoesNotExist(_)) => {
            let tables: Vec<String> = r.list_tables()?.map(|t| t.name().to_owned()).collect();
            if tables.is_empty() {
                Ok(None)
            } else {
                anyhow::bail!(
                    "the store has tables ({}) but no meta table: it is not a vouch store, or it is damaged; restore a backup",
                    tables.join(", ")
                )
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes sure every table exists and the store is at [`SCHEMA_VERSION`]; see the module.
pub(super) fn open(db: &Database, path: &Path, key: Option<&SigningKey>) -> Result<Migration> {
    let Some(found) = stored_version(db)? else {
        let w = db.begin_write()?;
        create_tables(&w)?;
        w.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        w.commit()?;
        return Ok(Migration::Created);
    };
    let path_buf = || path.to_path_buf();
    match found {
        // Every table of the current schema was created with its version stamp.
        SCHEMA_VERSION => Ok(Migration::Current),
        v if v > SCHEMA_VERSION => Err(SchemaError::Newer {
            path: path_buf(),
            found,
            known: SCHEMA_VERSION,
        }
        .into()),
        0 => Err(SchemaError::Unknown {
            path: path_buf(),
            found,
        }
        .into()),
        _ => migrate(db, found, key).with_context(|| {
            format!(
                "migrating the store {} from schema {found} to {SCHEMA_VERSION} failed; the store is unchanged",
                path.display()
            )
        }),
    }
}

/// Takes a store of schema `from` (older than [`SCHEMA_VERSION`]) to the current one in one
/// write transaction.
fn migrate(db: &Database, from: u64, key: Option<&SigningKey>) -> Result<Migration> {
    let w = db.begin_write()?;
    create_tables(&w)?;
    // Each step takes the store one version up inside this same transaction. 2 → 3 only adds
    // the punch tables and 3 → 4 the vendor-trust tables, which `create_tables` made above.
    let (devices, unreadable, indexed) = if from < 2 { v1_to_v2(&w)? } else { (0, 0, 0) };
    // 4 → 5 chains the audit entries (their rows are the same in schemas 1 to 4).
    super::audit::chain_existing(&w, key)?;
    w.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
    w.commit()?;
    Ok(Migration::Migrated {
        from,
        devices,
        unreadable,
        indexed,
    })
}

fn create_tables(w: &WriteTransaction) -> Result<()> {
    w.open_table(DEVICES)?;
    w.open_table(MODEL_INDEX)?;
    w.open_table(POLICIES)?;
    w.open_table(NONCES)?;
    w.open_table(NONCE_EXPIRY)?;
    w.open_table(AUDIT)?;
    w.open_table(EVENTLOGS)?;
    w.open_table(META)?;
    w.open_table(VERDICT_EXPIRY)?;
    w.open_table(PUNCHES)?;
    w.open_table(PUNCH_HEADS)?;
    w.open_table(PUNCH_HELD)?;
    w.open_table(PUNCH_KEY)?;
    for t in super::vendors::TABLES {
        w.open_table(t)?;
    }
    super::outbox::create_tables(w)?;
    super::tokens::create_tables(w)?;
    w.open_table(super::audit::AUDIT_HEAD)?;
    Ok(())
}

/// The expiry of a stored verdict (the verifier's own signed bytes; see
/// `DeviceRecord::last_verdict`), or `None` if they do not decode.
fn verdict_exp(bytes: &Bytes) -> Option<u64> {
    let v: Verdict = wire::decode_detached(bytes.as_slice(), wire::DEFAULT_MAX_PAYLOAD)
        .ok()?
        .peek_unverified()
        .ok()?;
    Some(v.exp)
}

/// Rewrites every device row in schema 2, a page at a time; returns (rewritten, unreadable,
/// expiry entries added).
fn v1_to_v2(w: &WriteTransaction) -> Result<(u64, u64, u64)> {
    let backfill = w
        .open_table(META)?
        .get(VERDICT_EXPIRY_BACKFILLED)?
        .is_none();
    let (mut devices, mut unreadable, mut indexed) = (0, 0, 0);
    let mut after: Option<String> = None;
    loop {
        let page: Vec<(String, Vec<u8>)> = {
            let t = w.open_table(DEVICES)?;
            let range = match &after {
                Some(a) => t.range::<&str>((
                    std::ops::Bound::Excluded(a.as_str()),
                    std::ops::Bound::Unbounded,
                ))?,
                None => t.range::<&str>(..)?,
            };
            let mut page = Vec::with_capacity(PAGE);
            for item in range.take(PAGE) {
                let (k, v) = item?;
                page.push((k.value().to_owned(), v.value().to_vec()));
            }
            page
        };
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        let mut t = w.open_table(DEVICES)?;
        let mut expiry = w.open_table(VERDICT_EXPIRY)?;
        for (key, bytes) in &page {
            let old: DeviceV1 = match rows::decode(DEVICES.name(), key, bytes) {
                Ok(old) => old,
                Err(e) => {
                    tracing::warn!(device = %key, error = %format!("{e:#}"), "device row left unmigrated");
                    unreadable += 1;
                    continue;
                }
            };
            let row = old.into_v2();
            if backfill && let Some(exp) = row.last_verdict.as_ref().and_then(verdict_exp) {
                expiry.insert((exp, key.as_str()), ())?;
                indexed += 1;
            }
            t.insert(key.as_str(), rows::encode(&row).as_slice())?;
            devices += 1;
        }
    }
    w.open_table(META)?.remove(VERDICT_EXPIRY_BACKFILLED)?;
    Ok((devices, unreadable, indexed))
}
