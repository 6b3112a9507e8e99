//! The audit trail's hash chain in the store (schema 5): appending links each entry to the
//! head kept in `audit_head` (O(1), no scan), a commit that appended signs the new head with
//! the verifier's key, and [`Store::verify_audit`] / [`verify_offline`] walk the whole chain in
//! one read transaction with `vouch_protocol::audit::ChainCheck`.

use anyhow::{Context, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use redb::{
    ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};
use std::path::Path;
use vouch_protocol::audit::{ChainCheck, Head, Problem, entry_hash};
use vouch_protocol::bytes::Bytes;

use super::rows::{self, AuditHeadRow, AuditRow, AuditRowV4, SCHEMA_VERSION};
use super::{AUDIT, AUDIT_SEQ, AuditRecord, META, Store, Writer};

/// The chain head: one row under [`HEAD_KEY`] (META holds only counters, `&str` → `u64`).
pub(super) const AUDIT_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_head");
const HEAD_KEY: &str = "head";

/// What checking the chain found: the entries and head, or the first problem.
pub type ChainReport = std::result::Result<(u64, Head), Problem>;

fn head_from(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<AuditHeadRow>> {
    t.get(HEAD_KEY)?
        .map(|v| rows::decode(AUDIT_HEAD.name(), HEAD_KEY, v.value()))
        .transpose()
}

fn put_head(w: &WriteTransaction, head: Head, sig: Option<[u8; 64]>) -> Result<()> {
    let row = AuditHeadRow {
        seq: head.seq,
        hash: head.hash,
        sig: sig.map(|s| Bytes::from(s.to_vec())),
    };
    w.open_table(AUDIT_HEAD)?
        .insert(HEAD_KEY, rows::encode(&row).as_slice())?;
    Ok(())
}

impl Writer {
    /// Appends to the audit trail, chained to the current head; returns the entry's sequence
    /// number. The head is signed when the transaction commits.
    pub fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        let prev = head_from(&self.tx.open_table(AUDIT_HEAD)?)?.map_or(Head::EMPTY, |h| Head {
            seq: h.seq,
            hash: h.hash,
        });
        let seq = self.bump(AUDIT_SEQ)?;
        let hash = entry_hash(seq, rec, &prev.hash);
        let mut t = self.tx.open_table(AUDIT)?;
        t.insert(
            seq,
            rows::encode(&AuditRow::from_domain(rec, prev.hash, hash)).as_slice(),
        )?;
        put_head(&self.tx, Head { seq, hash }, None)?;
        self.audit_appended = true;
        Ok(seq)
    }

    /// Signs the head this transaction moved (called by `commit`).
    pub(super) fn sign_audit_head(&mut self) -> Result<()> {
        if !self.audit_appended {
            return Ok(());
        }
        let Some(key) = self.audit_key.clone() else {
            return Ok(());
        };
        let row = head_from(&self.tx.open_table(AUDIT_HEAD)?)?
            .context("an audit entry was appended but the chain head is missing")?;
        let head = Head {
            seq: row.seq,
            hash: row.hash,
        };
        put_head(&self.tx, head, Some(head.sign(&key)))
    }
}

/// Schema 4 → 5: rewrites every audit entry, in seq order, with its link in the chain, and
/// writes the (signed, with `key`) head. Returns the entries chained.
pub(super) fn chain_existing(w: &WriteTransaction, key: Option<&SigningKey>) -> Result<u64> {
    let mut head = Head::EMPTY;
    let mut n = 0;
    let mut after = 0u64;
    loop {
        let page: Vec<(u64, Vec<u8>)> = {
            let t = w.open_table(AUDIT)?;
            let mut page = Vec::with_capacity(256);
            for item in t.range(after.saturating_add(1)..)?.take(256) {
                let (k, v) = item?;
                page.push((k.value(), v.value().to_vec()));
            }
            page
        };
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        let mut t = w.open_table(AUDIT)?;
        for (seq, bytes) in page {
            let old: AuditRowV4 = rows::decode(AUDIT.name(), seq, &bytes)
                .with_context(|| format!("audit entry {seq} cannot be chained"))?;
            let rec = old.into_domain();
            let hash = entry_hash(seq, &rec, &head.hash);
            t.insert(
                seq,
                rows::encode(&AuditRow::from_domain(&rec, head.hash, hash)).as_slice(),
            )?;
            head = Head { seq, hash };
            n += 1;
        }
    }
    put_head(w, head, key.map(|k| head.sign(k)))?;
    Ok(n)
}

/// Walks the chain in one read transaction, streaming, and checks the head against `key`.
fn verify_tx(
    tx: &ReadTransaction,
    key: &VerifyingKey,
    expect: Option<Head>,
) -> Result<ChainReport> {
    let mut check = ChainCheck::new(expect);
    let t = tx.open_table(AUDIT)?;
    for item in t.range(0..)? {
        let (k, v) = item?;
        let seq = k.value();
        let row: AuditRow = match rows::decode(AUDIT.name(), seq, v.value()) {
            Ok(r) => r,
            Err(e) => return Ok(Err(check.unreadable(seq, format!("{e:#}")))),
        };
        let (rec, prev, hash) = row.into_parts();
        if let Err(p) = check.entry(seq, &rec, &prev, &hash) {
            return Ok(Err(p));
        }
    }
    let row = head_from(&tx.open_table(AUDIT_HEAD)?)?;
    let (head, sig) = row.map_or((Head::EMPTY, None), |r| {
        (
            Head {
                seq: r.seq,
                hash: r.hash,
            },
            r.sig,
        )
    });
    Ok(check.finish(head, sig.as_ref().map(Bytes::as_slice), key))
}

impl Store {
    /// Checks the whole audit chain (an explicit audit operation: a full scan, streamed).
    pub fn verify_audit(&self, key: &VerifyingKey, expect: Option<Head>) -> Result<ChainReport> {
        let r = self.read()?;
        verify_tx(&r.tx, key, expect)
    }
}

/// [`Store::verify_audit`] on the store file of a stopped verifier, opened read-only; refuses
/// while a verifier holds it.
pub fn verify_offline(
    path: &Path,
    key: &VerifyingKey,
    expect: Option<Head>,
) -> Result<ChainReport> {
    let db = ReadOnlyDatabase::open(path).map_err(|e| {
        let hint = if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
            " (a running verifier holds it: stop it, or use `vouchctl audit verify` against its API)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot open the store {} read-only{hint}: {e}", path.display())
    })?;
    let tx = db.begin_read()?;
    let version = tx
        .open_table(META)
        .with_context(|| format!("{} is not a vouch store", path.display()))?
        .get(super::migrate::SCHEMA_KEY)?
        .map_or(1, |v| v.value());
    anyhow::ensure!(
        version == SCHEMA_VERSION,
        "store {} has schema {version}; this vouchctl checks schema {SCHEMA_VERSION} (start the verifier once to migrate it)",
        path.display()
    );
    verify_tx(&tx, key, expect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_protocol::device::{Actor, AuditAction};

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            at: i,
            device: None,
            action: AuditAction::PolicyChanged,
            actor: Actor::Operator("ops".into()),
            reason: format!("r{i}"),
        }
    }

    #[test]
    fn appends_chain_and_sign_the_head_and_an_edit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let key = SigningKey::from_bytes(&[5; 32]);
        let pubkey = key.verifying_key();
        {
            let s = Store::open_keyed(&path, key.clone()).unwrap();
            for i in 0..3 {
                let mut w = s.write().unwrap();
                w.append_audit(&rec(i)).unwrap();
                w.append_audit(&rec(i + 10)).unwrap();
                w.commit().unwrap();
            }
            let (n, head) = s.verify_audit(&pubkey, None).unwrap().unwrap();
            assert_eq!((n, head.seq), (6, 6));
            let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
            let e = s.verify_audit(&other, None).unwrap().unwrap_err();
            assert_eq!(e, Problem::HeadSignatureInvalid { head: 6 });
            // Edit entry 4's reason behind the chain's back.
            let w = s.write().unwrap();
            {
                let mut t = w.tx.open_table(AUDIT).unwrap();
                let bytes = t.get(4).unwrap().unwrap().value().to_vec();
                let mut row: AuditRow = rows::decode("audit", 4, &bytes).unwrap();
                row.reason = "nothing".into();
                t.insert(4, rows::encode(&row).as_slice()).unwrap();
            }
            w.commit().unwrap();
        }
        let e = verify_offline(&path, &pubkey, None).unwrap().unwrap_err();
        assert_eq!(e, Problem::HashMismatch { seq: 4 });
        let _held = Store::open(&path).unwrap();
        let e = verify_offline(&path, &pubkey, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a running verifier holds it"), "{e}");
    }
}
