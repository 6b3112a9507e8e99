//! The punch service as the MQTT session sees it: opened with the session (buffer, committer
//! thread, bound socket), the intake started on the session's runtime, and the upload glue —
//! feed the protocol's [`Uploader`] with commits, connections, time and acks, read the batches it
//! asks for from the buffer, and hand acknowledged heads to the committer to persist before
//! anything is deleted.

use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use vouch_protocol::ids::DeviceId;
use vouch_protocol::punch::{AckOutcome, PunchAck, PunchBatch, UploadRules, Uploader};

use super::PunchConfig;
use super::buffer::{Buffer, Head};
use super::committer::{self, Handle, Job};
use super::intake;

/// Batches in flight at most (sent, not yet acknowledged).
pub const WINDOW_BATCHES: u64 = 4;
/// Without an ack for this long while batches are outstanding, send again from the acked head.
const RESEND_AFTER_MS: u64 = 10_000;

/// The daemon's punch side.
pub struct PunchService {
    buffer: Arc<Buffer>,
    committer: Handle,
    /// Joined on drop, so the buffer is closed when the service is gone (the demo restarts a
    /// terminal's session in-process on the same state directory).
    thread: Option<std::thread::JoinHandle<()>>,
    listener: Option<std::os::unix::net::UnixListener>,
    last: Option<watch::Receiver<u64>>,
    uploader: Uploader,
    capacity: u64,
    start: Instant,
    connected: bool,
}

impl std::fmt::Debug for PunchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PunchService")
            .field("uploader", &self.uploader)
            .finish_non_exhaustive()
    }
}

impl PunchService {
    /// Opens the buffer at `path` for `device`, starts the committer and binds the socket.
    pub fn open(path: &std::path::Path, device: DeviceId, cfg: &PunchConfig) -> Result<Self> {
        let boot = super::current_boot_id()?;
        let buffer = Arc::new(Buffer::open(path, device)?);
        let meta = buffer.meta()?;
        let (last_tx, last_rx) = watch::channel(meta.last.seq);
        let listener = intake::bind(&cfg.socket)?;
        let (committer, thread) = committer::spawn(
            buffer.clone(),
            meta,
            committer::Settings {
                boot,
                capacity: cfg.capacity,
                retention_secs: cfg.retention.as_secs(),
                prune_step: committer::PRUNE_STEP,
                prune_every: committer::PRUNE_EVERY,
            },
            last_tx,
        )
        .context("starting the punch committer")?;
        let rules = UploadRules {
            batch: cfg.batch,
            window: cfg.batch * WINDOW_BATCHES,
            linger_ms: cfg.linger.as_millis() as u64,
            resend_after_ms: RESEND_AFTER_MS,
        };
        tracing::info!(
            socket = %cfg.socket.display(),
            last_seq = meta.last.seq,
            acked_seq = meta.acked.seq,
            "punch intake ready"
        );
        Ok(Self {
            buffer,
            committer,
            thread: Some(thread),
            listener: Some(listener),
            last: Some(last_rx),
            uploader: Uploader::new(rules, meta.acked.seq, meta.acked.hash, meta.last.seq, 0),
            capacity: cfg.capacity,
            start: Instant::now(),
            connected: false,
        })
    }

    /// Messages the MQTT client's request channel must hold beyond the session's own.
    pub fn channel_room() -> usize {
        WINDOW_BATCHES as usize + 4
    }

    /// Starts serving the socket on the current tokio runtime; the task ends when the returned
    /// handle is aborted (or the runtime stops).
    pub fn start_intake(&mut self) -> Result<tokio::task::JoinHandle<()>> {
        let std = self
            .listener
            .take()
            .context("the punch intake was already started")?;
        let listener = tokio::net::UnixListener::from_std(std)?;
        Ok(tokio::spawn(intake::serve(
            listener,
            self.committer.clone(),
        )))
    }

    /// The receiver of the newest committed seq (taken once by the session loop).
    pub fn take_last(&mut self) -> Option<watch::Receiver<u64>> {
        self.last.take()
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// When the session should call [`PunchService::poll`] next.
    pub fn wake_at(&self) -> Option<Instant> {
        if !self.connected {
            return None;
        }
        self.uploader
            .wake_at()
            .map(|ms| self.start + std::time::Duration::from_millis(ms))
    }

    /// Record `seq` was committed.
    pub fn appended(&mut self, seq: u64) {
        let now = self.now_ms();
        self.uploader.appended(seq, now);
    }

    /// Subscribed on a (re)connected session: send everything after the acked head again.
    pub fn connected(&mut self) {
        self.connected = true;
        let now = self.now_ms();
        self.uploader.connected(now);
    }

    /// The batch starting at `from` could not be queued on the connection: it and what follows
    /// count as unsent.
    pub fn not_sent(&mut self, from: u64) {
        let now = self.now_ms();
        self.uploader.not_sent(from, now);
    }

    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// Time passed (linger or resend timers).
    pub fn poll(&mut self) {
        let now = self.now_ms();
        if self.uploader.poll(now) {
            tracing::warn!(
                acked_seq = self.uploader.acked(),
                "no punch ack in time; sending again from the acked head"
            );
        }
    }

    /// The batches due now, built from the buffer; the caller seals and publishes each.
    pub fn due_batches(&mut self) -> Vec<PunchBatch> {
        let mut out = Vec::new();
        if !self.connected {
            return out;
        }
        let now = self.now_ms();
        while let Some((from, to)) = self.uploader.next_batch(now) {
            let records = match off_the_runtime(|| self.buffer.read_range(from, to)) {
                Ok(r) => r,
                Err(e) => {
                    // The resend timer restarts from the acked head.
                    tracing::error!(from, to, error = %format!("{e:#}"), "cannot read punches to send");
                    break;
                }
            };
            let complete = records.len() as u64 == to - from + 1;
            match PunchBatch::new(
                self.buffer.device(),
                records,
                self.uploader.last(),
                self.capacity,
            ) {
                Some(b) if complete => out.push(b),
                _ => {
                    tracing::error!(
                        from,
                        to,
                        "punch buffer lacks records it has not had acknowledged"
                    );
                    break;
                }
            }
        }
        out
    }

    /// A verifier-signed ack: advance, persist (through the committer, before any deletion),
    /// or log why it is not believed.
    pub fn on_ack(&mut self, ack: &PunchAck) {
        let now = self.now_ms();
        let before = self.uploader.acked();
        let buffer = &self.buffer;
        let outcome = self.uploader.on_ack(ack, now, |seq| {
            match off_the_runtime(|| buffer.hash_at(seq)) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(seq, error = %format!("{e:#}"), "cannot read own punch hash");
                    None
                }
            }
        });
        match outcome {
            AckOutcome::Disagrees { seq, reason } => tracing::error!(
                seq,
                head = %ack.head,
                reason,
                "the mirror's punch ack disagrees with this terminal's chain; nothing deleted"
            ),
            AckOutcome::Resend { from } => {
                tracing::info!(from, "the mirror asks for punches again")
            }
            AckOutcome::Regressed { seq, head } => {
                tracing::warn!(
                    seq,
                    was = before,
                    "the mirror went back below this terminal's acked head; sending again from it"
                );
                let head = Head { seq, hash: head };
                if self.committer.jobs.send(Job::Regressed(head)).is_err() {
                    tracing::error!("the punch committer is gone; the acked head is not persisted");
                }
                return;
            }
            AckOutcome::Advanced { .. } | AckOutcome::Unchanged => {}
        }
        if self.uploader.acked() > before {
            let head = Head {
                seq: self.uploader.acked(),
                hash: self.uploader.acked_hash(),
            };
            if self.committer.jobs.send(Job::Acked(head)).is_err() {
                tracing::error!("the punch committer is gone; the acked head is not persisted");
            }
        }
    }
}

impl Drop for PunchService {
    fn drop(&mut self) {
        // Jobs queued before the stop are still committed and answered.
        let _ = self.committer.jobs.send(Job::Stop);
        if let Some(t) = self.thread.take()
            && off_the_runtime(|| t.join()).is_err()
        {
            tracing::error!("the punch committer thread panicked");
        }
    }
}

/// Runs blocking work (buffer reads, joining the committer) so it does not stall a tokio worker:
/// through `block_in_place` on a multi-thread runtime (the daemon's), inline elsewhere — a
/// current-thread runtime (the demo's in-process terminals) or no runtime at all, where
/// `block_in_place` is not available.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
