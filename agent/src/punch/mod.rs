//! Punch intake and mirroring on the terminal: the durable hash-chained buffer
//! (`STATE/punches.redb`, [`buffer`]), the single committer thread that group-commits every
//! queued request in one durable transaction ([`committer`]), the Unix-socket server the terminal
//! application talks to ([`intake`]) and its line protocol ([`api`]), the client behind
//! `vouch-agent punch` and `status` ([`client`]), and the upload glue the MQTT session drives
//! ([`upload`]). The chain and upload rules themselves are `vouch_protocol::punch`'s.
//!
//! Invariant: a punch is answered `ok` only after the transaction that stores it (and the new
//! last seq and hash) has been durably committed.

pub mod api;
pub mod buffer;
pub mod client;
pub mod committer;
pub mod intake;
pub mod upload;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vouch_protocol::punch::BootId;

/// Default `--punch-capacity`: unacknowledged records the buffer holds before refusing punches.
pub const DEFAULT_CAPACITY: u64 = 1_000_000;
/// Default `--punch-batch`: records per uploaded batch.
pub const DEFAULT_BATCH: u64 = 500;
/// Default `--punch-linger-ms`: how long a partial batch waits for more records.
pub const DEFAULT_LINGER_MS: u64 = 100;
/// Default `--punch-retention`: seconds an acknowledged record is kept before deletion.
pub const DEFAULT_RETENTION_SECS: u64 = 86_400;

/// The buffer file inside the state directory.
pub fn buffer_path(state: &Path) -> PathBuf {
    state.join("punches.redb")
}

/// The default intake socket inside the state directory.
pub fn default_socket(state: &Path) -> PathBuf {
    state.join("punch.sock")
}

/// Validated punch settings of `vouch-agent run` (see `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchConfig {
    pub socket: PathBuf,
    /// Unacknowledged records held at most; beyond it punches are refused, never overwritten.
    pub capacity: u64,
    /// Records per batch, 1..=`MAX_BATCH_RECORDS`.
    pub batch: u64,
    pub linger: Duration,
    /// How long an acknowledged record stays in the buffer before it is deleted.
    pub retention: Duration,
}

impl PunchConfig {
    /// The defaults for the state directory `state`.
    pub fn defaults(state: &Path) -> Self {
        Self {
            socket: default_socket(state),
            capacity: DEFAULT_CAPACITY,
            batch: DEFAULT_BATCH,
            linger: Duration::from_millis(DEFAULT_LINGER_MS),
            retention: Duration::from_secs(DEFAULT_RETENTION_SECS),
        }
    }
}

/// The kernel's id of the current boot, read once when the daemon starts.
pub fn current_boot_id() -> Result<BootId> {
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    let text = std::fs::read_to_string(PATH).with_context(|| format!("cannot read {PATH}"))?;
    BootId::parse_uuid(&text).with_context(|| format!("{PATH} holds no boot id"))
}
