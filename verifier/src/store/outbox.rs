//! The webhook outbox (schema 5): one row per (alert, webhook) still to be delivered, written in
//! the write transaction of the state change that raised the alert, so a committed quarantine
//! always has its alert and an uncommitted one never does. The delivery worker reads the rows
//! due through a (next attempt, id) index — a range read, never a scan — and deletes a row once
//! delivered or too old, or moves it to its next attempt.

use anyhow::Result;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use super::rows;
use super::{Reader, Writer};

/// Deliveries by id (increasing).
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_outbox");
/// (next attempt at, id) of every row in [`OUTBOX`].
pub(super) const OUTBOX_DUE: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("webhook_outbox_due");

/// Creates the outbox's tables (with the others, and by the migration to schema 5).
pub(super) fn create_tables(w: &redb::WriteTransaction) -> Result<()> {
    w.open_table(OUTBOX)?;
    w.open_table(OUTBOX_DUE)?;
    Ok(())
}

/// One delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxEntry {
    /// `X-Vouch-Delivery`: unique per (alert, webhook), the same on every attempt.
    pub delivery: String,
    /// The webhook's URL (rows of a webhook no longer configured are dropped at delivery).
    pub url: String,
    /// `X-Vouch-Event`.
    pub event: String,
    /// The JSON body, exactly as signed and sent on every attempt.
    pub body: String,
    /// When the alert was raised (Unix seconds); past the maximum age it is dropped.
    pub created_at: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds).
    pub next_at: u64,
}

fn entry_from(id: u64, bytes: &[u8]) -> Result<OutboxEntry> {
    rows::decode(OUTBOX.name(), id, bytes)
}

impl Writer {
    /// Adds `e` to the outbox; returns its id.
    pub fn enqueue_delivery(&mut self, e: &OutboxEntry) -> Result<u64> {
        let mut t = self.tx.open_table(OUTBOX)?;
        let id = match t.last()? {
            Some((k, _)) => k.value().saturating_add(1),
            None => 1,
        };
        t.insert(id, rows::encode(e).as_slice())?;
        self.tx
            .open_table(OUTBOX_DUE)?
            .insert((e.next_at, id), ())?;
        Ok(id)
    }

    /// Removes delivery `id` (delivered, or dropped); false when it was not there.
    pub fn remove_delivery(&mut self, id: u64) -> Result<bool> {
        let mut t = self.tx.open_table(OUTBOX)?;
        let old = t.remove(id)?.map(|v| entry_from(id, v.value()));
        let Some(old) = old else {
            return Ok(false);
        };
        // A corrupt row is removed all the same; its index entry cannot be named, so it stays
        // and is skipped (no row) when it comes due.
        if let Ok(old) = old {
            self.tx.open_table(OUTBOX_DUE)?.remove((old.next_at, id))?;
        }
        Ok(true)
    }

    /// Stores delivery `id` as `e` (its attempt count and next attempt moved on).
    pub fn reschedule_delivery(&mut self, id: u64, e: &OutboxEntry) -> Result<()> {
        let mut t = self.tx.open_table(OUTBOX)?;
        let old = t
            .insert(id, rows::encode(e).as_slice())?
            .map(|v| entry_from(id, v.value()));
        let mut due = self.tx.open_table(OUTBOX_DUE)?;
        if let Some(Ok(old)) = old {
            due.remove((old.next_at, id))?;
        }
        due.insert((e.next_at, id), ())?;
        Ok(())
    }

    /// Removes the index entry of a row that is gone (see [`Reader::deliveries_due`]).
    pub fn forget_due(&mut self, next_at: u64, id: u64) -> Result<()> {
        self.tx.open_table(OUTBOX_DUE)?.remove((next_at, id))?;
        Ok(())
    }
}

/// A due delivery: its index key and its row (`None`: the row is gone or unreadable).
pub type Due = ((u64, u64), Option<OutboxEntry>);

/// Whether the outbox exists yet: a store created before it (schema 4, opened as current) gets
/// its tables with the first alert written, and until then has nothing to deliver.
fn exists(r: &Reader) -> Result<bool> {
    match r.tx.open_table(OUTBOX) {
        Ok(_) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Reader {
    /// Up to `limit` deliveries due at `now`, earliest first.
    pub fn deliveries_due(&self, now: u64, limit: usize) -> Result<Vec<Due>> {
        if !exists(self)? {
            return Ok(Vec::new());
        }
        let due = self.tx.open_table(OUTBOX_DUE)?;
        let rows = self.tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for item in due.range((0, 0)..=(now, u64::MAX))? {
            if out.len() == limit {
                break;
            }
            let (k, _) = item?;
            let (next_at, id) = k.value();
            let entry = match rows.get(id)? {
                Some(v) => match entry_from(id, v.value()) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::error!(id, error = %format!("{e:#}"), "webhook outbox row unreadable; dropped");
                        None
                    }
                },
                None => None,
            };
            out.push(((next_at, id), entry));
        }
        Ok(out)
    }

    /// Deliveries waiting in the outbox (a table's stored length, not a scan).
    pub fn outbox_len(&self) -> Result<u64> {
        if !exists(self)? {
            return Ok(0);
        }
        Ok(self.tx.open_table(OUTBOX)?.len()?)
    }
}
