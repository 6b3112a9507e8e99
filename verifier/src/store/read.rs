//! Lookups in a consistent snapshot ([`Reader`]): the workers' and the API's reads. Each
//! converts the stored row into the domain type at this boundary.

use anyhow::Result;
use redb::{ReadTransaction, TableHandle};
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::nonce::IssuedNonce;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};

use super::rows::{self, AuditRow, DeviceRow, LogRow, NonceRow};
use super::{
    AUDIT, AuditRecord, AuditSlice, DEVICES, DeviceRecord, EVENTLOGS, NONCES, POLICIES, StoredLog,
    VERDICT_EXPIRY, expired_entries, policy_key,
};

/// A consistent snapshot for lookups (workers, API reads).
#[allow(missing_debug_implementations)] // wraps a redb transaction, which has no Debug
pub struct Reader {
    pub(super) tx: ReadTransaction,
}

impl Reader {
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>> {
        let t = self.tx.open_table(DEVICES)?;
        t.get(id.as_str())?
            .map(|v| device_from(id.as_str(), v.value()))
            .transpose()
    }

    pub fn nonce(&self, n: &Nonce) -> Result<Option<IssuedNonce>> {
        let t = self.tx.open_table(NONCES)?;
        t.get(n.as_bytes())?
            .map(|v| nonce_from(n, v.value()))
            .transpose()
    }

    pub fn eventlog(&self, id: &DeviceId) -> Result<Option<StoredLog>> {
        let t = self.tx.open_table(EVENTLOGS)?;
        t.get(id.as_str())?
            .map(|v| {
                rows::decode::<LogRow>(EVENTLOGS.name(), id, v.value()).map(LogRow::into_domain)
            })
            .transpose()
    }

    /// The reference values at `scope`; a firmware scope's are its imported bundle's.
    pub fn policy(&self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        if let PolicyScope::Firmware { model, version } = scope {
            return Ok(self.bundle(model, version)?.map(|b| b.reference));
        }
        let t = self.tx.open_table(POLICIES)?;
        let key = policy_key(scope);
        t.get(key.as_str())?
            .map(|v| policy_from(&key, v.value()))
            .transpose()
    }

    /// Up to `limit` devices with ids after `after`, in id order, and the cursor for the next page.
    pub fn devices(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeviceRecord>, Option<String>)> {
        let t = self.tx.open_table(DEVICES)?;
        let mut out = Vec::new();
        let iter = match after {
            Some(a) => {
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        for item in iter {
            let (k, v) = item?;
            if out.len() == limit {
                let next = out.last().map(|d: &DeviceRecord| d.id().to_string());
                return Ok((out, next));
            }
            out.push(device_from(k.value(), v.value())?);
        }
        Ok((out, None))
    }

    /// Up to `limit` devices with ids from `from` on (inclusive), in id order, and the cursor
    /// for the next page (the device list's id-prefix search starts here).
    pub fn devices_from(
        &self,
        from: &str,
        limit: usize,
    ) -> Result<(Vec<DeviceRecord>, Option<String>)> {
        let t = self.tx.open_table(DEVICES)?;
        let mut out = Vec::new();
        for item in t.range::<&str>(from..)? {
            let (k, v) = item?;
            if out.len() == limit {
                let next = out.last().map(|d: &DeviceRecord| d.id().to_string());
                return Ok((out, next));
            }
            out.push(device_from(k.value(), v.value())?);
        }
        Ok((out, None))
    }

    /// Up to `limit` audit entries after sequence number `after`, oldest first.
    pub fn audit(&self, after: Option<u64>, limit: usize) -> Result<AuditSlice> {
        let t = self.tx.open_table(AUDIT)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for item in t.range(start..)? {
            let (k, v) = item?;
            if out.len() == limit {
                let next = out.last().map(|(s, _): &(u64, AuditRecord)| *s);
                return Ok((out, next));
            }
            let seq = k.value();
            let row: AuditRow = rows::decode(AUDIT.name(), seq, v.value())?;
            out.push((seq, row.into_domain()));
        }
        Ok((out, None))
    }

    /// Up to `limit` entries of verdicts that expired before `now` (a cheap peek before the
    /// sweep takes the write lock).
    pub fn verdicts_expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        expired_entries(&t, now, limit)
    }

    /// Entries in the expiry index (one per device with a verdict).
    pub fn verdict_expiry_len(&self) -> Result<u64> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        Ok(redb::ReadableTableMetadata::len(&t)?)
    }
}

/// A device row stored under `key`, as the domain record.
pub(super) fn device_from(key: &str, bytes: &[u8]) -> Result<DeviceRecord> {
    rows::decode::<DeviceRow>(DEVICES.name(), key, bytes)?
        .into_domain()
        .map_err(|e| {
            anyhow::anyhow!(
                "stored row {key} of table {} is corrupt: {e}",
                DEVICES.name()
            )
        })
}

pub(super) fn nonce_from(n: &Nonce, bytes: &[u8]) -> Result<IssuedNonce> {
    rows::decode::<NonceRow>(NONCES.name(), n.to_hex(), bytes).map(NonceRow::into_domain)
}

/// Policies are stored in the operator's reference-values format (see `rows`).
pub(super) fn policy_from(key: &str, bytes: &[u8]) -> Result<ReferenceValues> {
    rows::decode(POLICIES.name(), key, bytes)
}
