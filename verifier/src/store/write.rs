//! One write transaction ([`Writer`]): the engine's reads-for-update and every change it
//! commits, converted to rows at this boundary, and the verdict expiry index kept in the same
//! transaction as the verdict it indexes. Nothing is visible or durable before
//! [`Writer::commit`].

use anyhow::Result;
use ed25519_dalek::SigningKey;
use redb::{ReadableTable, WriteTransaction};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vouch_protocol::ids::{DeviceId, Nonce};
use vouch_protocol::nonce::IssuedNonce;
use vouch_protocol::policy::{PolicyScope, ReferenceValues};

use super::read::{device_from, nonce_from, policy_from};
use super::recovery::{Shared, describe, is_io};
use super::rows::{self, DeviceRow, LogRow, NonceRow};
use super::{
    DEVICES, DeviceRecord, EVENTLOGS, META, MODEL_INDEX, NONCE_EXPIRY, NONCES, POLICIES, SEQ,
    StoredLog, VERDICT_EXPIRY, expired_entries, policy_key,
};

/// One write transaction; nothing is visible to readers or durable until [`Writer::commit`].
#[allow(missing_debug_implementations)] // wraps a redb transaction, which has no Debug
pub struct Writer {
    pub(super) tx: WriteTransaction,
    pub(super) shared: Arc<Shared>,
    /// In-memory effects of this transaction (metrics, timeline), run only once it committed.
    pub(super) after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// The key the audit chain head is signed with (`super::audit`).
    pub(super) audit_key: Option<Arc<SigningKey>>,
    /// Whether this transaction appended audit entries (its head is signed at commit).
    pub(super) audit_appended: bool,
}

impl Writer {
    /// Runs `f` once this transaction has committed; never if it is dropped or fails. For
    /// in-memory state that must describe only what is durable (metrics, the timeline).
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>> {
        let t = self.tx.open_table(DEVICES)?;
        let r = t.get(id.as_str())?;
        r.map(|v| device_from(id.as_str(), v.value())).transpose()
    }

    pub fn put_device(&mut self, rec: &DeviceRecord) -> Result<()> {
        let mut t = self.tx.open_table(DEVICES)?;
        let row = rows::encode(&DeviceRow::from_domain(rec));
        t.insert(rec.id().as_str(), row.as_slice())?;
        let mut idx = self.tx.open_table(MODEL_INDEX)?;
        idx.insert((rec.enrollment.model.as_str(), rec.id().as_str()), ())?;
        Ok(())
    }

    /// Ids of the devices of `model`, via the model index (no scan of all devices).
    pub fn devices_of_model(&self, model: &str) -> Result<Vec<DeviceId>> {
        let idx = self.tx.open_table(MODEL_INDEX)?;
        let mut out = Vec::new();
        for item in idx.range((model, "")..)? {
            let (k, _) = item?;
            let (m, id) = k.value();
            if m != model {
                break;
            }
            if let Ok(id) = id.parse() {
                out.push(id);
            }
        }
        Ok(out)
    }

    pub fn put_eventlog(&mut self, id: &DeviceId, log: &StoredLog) -> Result<()> {
        let mut t = self.tx.open_table(EVENTLOGS)?;
        t.insert(
            id.as_str(),
            rows::encode(&LogRow::from_domain(log)).as_slice(),
        )?;
        Ok(())
    }

    /// The reference values at `scope`; a firmware scope's are its imported bundle's.
    pub fn policy(&self, scope: &PolicyScope) -> Result<Option<ReferenceValues>> {
        if let PolicyScope::Firmware { model, version } = scope {
            return Ok(self.bundle(model, version)?.map(|b| b.reference));
        }
        let t = self.tx.open_table(POLICIES)?;
        let key = policy_key(scope);
        let r = t.get(key.as_str())?;
        r.map(|v| policy_from(&key, v.value())).transpose()
    }

    /// Stores the operator's reference values at a device or model scope (a firmware scope's
    /// come from an imported bundle: [`Writer::put_bundle`]).
    pub fn put_policy(&mut self, scope: &PolicyScope, rv: &ReferenceValues) -> Result<()> {
        if let PolicyScope::Firmware { .. } = scope {
            anyhow::bail!(
                "reference values for {} come from an imported bundle",
                scope.label()
            );
        }
        let mut t = self.tx.open_table(POLICIES)?;
        t.insert(policy_key(scope).as_str(), rows::encode(rv).as_slice())?;
        Ok(())
    }

    pub fn nonce(&self, n: &Nonce) -> Result<Option<IssuedNonce>> {
        let t = self.tx.open_table(NONCES)?;
        let r = t.get(n.as_bytes())?;
        r.map(|v| nonce_from(n, v.value())).transpose()
    }

    pub fn put_nonce(&mut self, n: &Nonce, rec: &IssuedNonce) -> Result<()> {
        let mut t = self.tx.open_table(NONCES)?;
        t.insert(
            n.as_bytes(),
            rows::encode(&NonceRow::from_domain(rec)).as_slice(),
        )?;
        let mut e = self.tx.open_table(NONCE_EXPIRY)?;
        e.insert((rec.expires_at, n.as_bytes()), ())?;
        Ok(())
    }

    pub fn remove_nonce(&mut self, n: &Nonce) -> Result<()> {
        let mut t = self.tx.open_table(NONCES)?;
        let old = t.remove(n.as_bytes())?.map(|v| nonce_from(n, v.value()));
        if let Some(Ok(rec)) = old {
            let mut e = self.tx.open_table(NONCE_EXPIRY)?;
            e.remove((rec.expires_at, n.as_bytes()))?;
        }
        Ok(())
    }

    /// Deletes nonce records that expired before `cutoff`; returns how many.
    pub fn prune_nonces(&mut self, cutoff: u64) -> Result<usize> {
        let mut expired = Vec::new();
        {
            let e = self.tx.open_table(NONCE_EXPIRY)?;
            for item in e.range(..(cutoff, &[0u8; 32]))? {
                let (k, _) = item?;
                let (at, n) = k.value();
                expired.push((at, *n));
            }
        }
        let mut t = self.tx.open_table(NONCES)?;
        let mut e = self.tx.open_table(NONCE_EXPIRY)?;
        for (at, n) in &expired {
            t.remove(n)?;
            e.remove((*at, n))?;
        }
        Ok(expired.len())
    }

    /// The next verifier-wide sequence number for verdicts and commands.
    pub fn next_seq(&mut self) -> Result<u64> {
        self.bump(SEQ)
    }

    pub(super) fn bump(&mut self, key: &str) -> Result<u64> {
        let mut t = self.tx.open_table(META)?;
        let next = t.get(key)?.map_or(0, |v| v.value()) + 1;
        t.insert(key, next)?;
        Ok(next)
    }

    /// Commits durably. A failure is reported as `store write failed: <cause>` and recorded in
    /// [`super::Store::health`]; after an I/O error the next operation reopens the database.
    pub fn commit(mut self) -> Result<()> {
        self.sign_audit_head()?;
        match self.tx.commit() {
            Ok(()) => {
                self.shared.record_success();
                for f in self.after_commit {
                    f();
                }
                Ok(())
            }
            Err(e) => {
                if matches!(&e, redb::CommitError::Storage(s) if is_io(s)) {
                    self.shared.failed.store(true, Ordering::Release);
                }
                let cause = describe(&e);
                tracing::error!(error = %cause, "store commit failed; the transaction was dropped");
                Err(self.shared.record_failure("write", cause))
            }
        }
    }
}

/// The verdict expiry index: one entry (expires at, device) per device's current verdict, changed
/// in the transaction that stores the verdict, so the expiry sweep range-reads the entries due
/// instead of scanning devices.
impl Writer {
    /// Moves `id`'s entry from the expiry of its previous verdict (if any) to `exp`.
    pub fn index_verdict_expiry(
        &mut self,
        id: &DeviceId,
        old: Option<u64>,
        exp: u64,
    ) -> Result<()> {
        let mut t = self.tx.open_table(VERDICT_EXPIRY)?;
        if let Some(old) = old {
            t.remove((old, id.as_str()))?;
        }
        t.insert((exp, id.as_str()), ())?;
        Ok(())
    }

    /// Removes one entry (the sweep took it).
    pub fn unindex_verdict_expiry(&mut self, exp: u64, id: &str) -> Result<()> {
        let mut t = self.tx.open_table(VERDICT_EXPIRY)?;
        t.remove((exp, id))?;
        Ok(())
    }

    /// Up to `limit` entries of verdicts that expired before `now`, earliest first.
    pub fn verdicts_expired(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let t = self.tx.open_table(VERDICT_EXPIRY)?;
        expired_entries(&t, now, limit)
    }
}
