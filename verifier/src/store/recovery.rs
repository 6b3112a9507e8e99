//! How the store survives I/O errors: the shared state behind [`super::Store`] (the redb
//! handle, a "failed" latch and the health record), reopening the database after redb latched
//! an error, and turning redb's errors into causes an operator can act on ("no space left on
//! device"). The store's read and write paths call into this; nothing else does.

use anyhow::{Context, Result};
use redb::Database;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What a [`super::Store`] and its writers share: a writer records its commit's outcome here.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    /// `None` only while a reopen has failed (the next operation tries again).
    pub(super) db: RwLock<Option<Arc<Database>>>,
    /// Set when an I/O error latched the handle: the next operation reopens it first.
    pub(super) failed: AtomicBool,
    pub(super) health: Mutex<StoreHealth>,
}

/// Whether the store can write, for `/v1/health` and operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The last write transaction committed (false after a failed commit or reopen, until a
    /// later commit succeeds).
    pub ok: bool,
    /// The most recent write failure, kept after recovery so an operator can see what happened.
    pub last_error: Option<String>,
    /// How often the database was reopened after an I/O error since the verifier started.
    pub reopens: u64,
}

/// Poisoned locks only mean another thread panicked while holding them; the data they guard
/// (a handle, a health record) stays meaningful, so keep going.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_cause(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::StorageFull => "no space left on device".to_string(),
        _ => io.to_string(),
    }
}

fn storage_cause(e: &redb::StorageError) -> String {
    match e {
        redb::StorageError::Io(io) => io_cause(io),
        other => other.to_string(),
    }
}

/// A short, operator-readable cause of a storage error: "no space left on device" rather than
/// redb's wrapping of it. redb's errors do not expose their I/O cause as `source()`, so each
/// wrapper is looked into.
pub(super) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_cause(io);
        }
        if let Some(s) = err.downcast_ref::<redb::StorageError>() {
            return storage_cause(s);
        }
        let storage = if let Some(redb::CommitError::Storage(s)) = err.downcast_ref() {
            Some(s)
        } else if let Some(redb::TransactionError::Storage(s)) = err.downcast_ref() {
            Some(s)
        } else if let Some(redb::DatabaseError::Storage(s)) = err.downcast_ref() {
            Some(s)
        } else {
            None
        };
        if let Some(s) = storage {
            return storage_cause(s);
        }
        cur = err.source();
    }
    e.to_string()
}

/// Whether `e` means the handle is unusable until reopened (an I/O error now or earlier).
pub(super) fn is_io(e: &redb::StorageError) -> bool {
    matches!(
        e,
        redb::StorageError::Io(_)
            | redb::StorageError::PreviousIo
            | redb::StorageError::DatabaseClosed
    )
}

pub(super) fn tx_is_io(e: &redb::TransactionError) -> bool {
    matches!(e, redb::TransactionError::Storage(s) if is_io(s))
}

impl Shared {
    pub(super) fn record_failure(&self, what: &str, cause: String) -> anyhow::Error {
        let msg = format!("store {what} failed: {cause}");
        let mut h = lock(&self.health);
        h.ok = false;
        h.last_error = Some(msg.clone());
        anyhow::anyhow!(msg)
    }

    pub(super) fn record_success(&self) {
        lock(&self.health).ok = true;
    }

    /// Drops the failed handle and opens the file again (if `failed` is still set once the
    /// handle is ours: another thread may have reopened it meanwhile). The tables exist since
    /// the first open, so reopening writes nothing: it works on a disk that is still full.
    pub(super) fn reopen(&self) -> Result<()> {
        let mut db = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.failed.load(Ordering::Acquire) && db.is_some() {
            return Ok(());
        }
        // The old handle must be closed before the file can be opened again (redb locks it).
        // Another thread may be inside a begin on it; then leave it and let a later call
        // reopen (that thread's begin fails on the latched error and drops its reference).
        if let Some(old) = db.take() {
            match Arc::try_unwrap(old) {
                Ok(old) => drop(old),
                Err(in_use) => {
                    *db = Some(in_use);
                    return Err(self.record_failure(
                        "reopen",
                        "the failed handle is still in use; retry".to_string(),
                    ));
                }
            }
        }
        let opened = Database::create(&self.path)
            .with_context(|| format!("cannot reopen the store {}", self.path.display()));
        match opened {
            Ok(new) => {
                *db = Some(Arc::new(new));
                self.failed.store(false, Ordering::Release);
                lock(&self.health).reopens += 1;
                tracing::warn!(path = %self.path.display(), "store reopened after an I/O error");
                Ok(())
            }
            Err(e) => {
                let cause = describe(e.as_ref());
                Err(self.record_failure("reopen", cause))
            }
        }
    }

    pub(super) fn reopen_if_failed(&self) -> Result<()> {
        let missing = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none();
        if missing || self.failed.load(Ordering::Acquire) {
            self.reopen()?;
        }
        Ok(())
    }

    /// The open handle. A clone, so no lock is held while a begin waits for another write
    /// transaction to end (a reopen could otherwise wait on it forever).
    pub(super) fn handle(&self) -> Result<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                anyhow::anyhow!("store unavailable: it could not be reopened after an I/O error")
            })
    }
}
