//! The terminal's side of mirroring, without I/O: which records to send next, what an ack
//! allows it to delete, and when to start again from the acknowledged head. The agent shell
//! owns the buffer and the clock; it asks this state machine and carries out its answers.
//!
//! Rules: a record is deletable only once a verifier-signed ack covers it *and* the ack's head
//! hash equals the terminal's own hash for that seq. After a (re)connect, a resend request or
//! silence for `resend_after`, sending restarts from the acked head + 1; the mirror treats what
//! it already holds as a duplicate, so resending is always safe. Each silence in a row doubles
//! the wait before the next restart (up to [`MAX_RESEND_WAIT_MS`]) and an ack that advances
//! resets it: when the verifier is behind, a fleet of terminals re-sending their windows at a
//! fixed period would only lengthen its backlog.

use super::batch::PunchAck;
use super::record::ChainHash;

/// The longest wait without an ack before sending restarts from the acked head (the silence
/// backoff's cap).
pub const MAX_RESEND_WAIT_MS: u64 = 60_000;

/// Tunables of the uploader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRules {
    /// Records per batch.
    pub batch: u64,
    /// Records sent but not yet acknowledged, at most.
    pub window: u64,
    /// How long a partial batch waits for more records, in milliseconds.
    pub linger_ms: u64,
    /// Without an ack for this long while records are outstanding, start again from the head
    /// (doubled after each silence in a row, up to [`MAX_RESEND_WAIT_MS`]).
    pub resend_after_ms: u64,
}

/// What an ack meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The mirror holds everything through `seq` durably: records up to it may be deleted
    /// (after the retention). Persist the new acked head before deleting anything.
    Advanced { seq: u64, head: ChainHash },
    /// Nothing new (an older or repeated ack).
    Unchanged,
    /// The mirror asks for everything after its head again; sending restarts there. The ack
    /// may also have advanced the acked head: the caller persists [`Uploader::acked`] whenever
    /// it grew, whatever the outcome.
    Resend { from: u64 },
    /// The mirror asks for a resend from below the terminal's acked head (its store went back,
    /// a restore from a backup, say) and this terminal still holds that record with the same
    /// hash: the acked head moves back to `seq` (persist it, so nothing the mirror lacks is
    /// deleted) and sending restarts after it.
    Regressed { seq: u64, head: ChainHash },
    /// The ack names a seq this terminal never wrote, or a hash that is not this terminal's
    /// record at that seq: nothing is deleted, and the terminal keeps sending from its own
    /// acked head (an operator must look: the mirror and the terminal disagree).
    Disagrees { seq: u64, reason: &'static str },
}

/// The uploader's state: the acked head, the next seq to send and the newest seq held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploader {
    rules: UploadRules,
    acked: u64,
    acked_hash: ChainHash,
    next: u64,
    last: u64,
    /// When the oldest unsent record became available (for the linger).
    unsent_since: Option<u64>,
    /// When the last ack (or the start of sending) happened, while records are outstanding.
    waiting_since: Option<u64>,
    /// The head a resend last restarted from, so a burst of resend requests restarts once.
    last_rewind: Option<(u64, u64)>,
    /// The current wait for an ack before restarting (`resend_after_ms`, doubled per silence).
    resend_wait: u64,
}

impl Uploader {
    /// A terminal whose durable acked head is `acked` (`acked_hash` its hash) and whose newest
    /// record is `last`, at time `now_ms`.
    pub fn new(
        rules: UploadRules,
        acked: u64,
        acked_hash: ChainHash,
        last: u64,
        now_ms: u64,
    ) -> Self {
        let rules = UploadRules {
            batch: rules.batch.max(1),
            window: rules.window.max(rules.batch.max(1)),
            ..rules
        };
        Self {
            rules,
            acked,
            acked_hash,
            next: acked + 1,
            last,
            unsent_since: (last > acked).then_some(now_ms),
            waiting_since: None,
            last_rewind: None,
            resend_wait: rules.resend_after_ms,
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn acked_hash(&self) -> ChainHash {
        self.acked_hash
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    /// Records not yet acknowledged.
    pub fn unacked(&self) -> u64 {
        self.last - self.acked
    }

    /// A record `seq` was committed to the buffer at `now_ms`.
    pub fn appended(&mut self, seq: u64, now_ms: u64) {
        if seq > self.last {
            if self.next > self.last {
                self.unsent_since = Some(now_ms);
            }
            self.last = seq;
        }
    }

    /// The connection to the broker is (re)established: everything after the acked head is
    /// sent again. A retained ack asking for a resend (a gap the mirror saw before) may then
    /// restart the window once more: a few duplicate batches, which the mirror acks again.
    /// Telling that ack apart from a fresh resend request for a batch lost on this connection
    /// is not possible (neither names the batch), and missing the fresh one would cost a whole
    /// resend wait.
    pub fn connected(&mut self, now_ms: u64) {
        self.rewind(now_ms);
    }

    /// The batch starting at `from` that [`Uploader::next_batch`] returned could not be handed
    /// to the connection (its queue was full): it and everything after it count as unsent.
    pub fn not_sent(&mut self, from: u64, now_ms: u64) {
        if from > self.acked && from < self.next {
            self.next = from;
            self.unsent_since.get_or_insert(now_ms);
            if self.next == self.acked + 1 {
                self.waiting_since = None;
            }
        }
    }

    fn rewind(&mut self, now_ms: u64) {
        self.next = self.acked + 1;
        self.waiting_since = None;
        self.unsent_since = (self.last > self.acked).then_some(now_ms);
    }

    /// The next batch to send at `now_ms`, as an inclusive seq range, or `None` (nothing
    /// unsent, the window is full, or a partial batch is still lingering). The caller sends it
    /// and calls again until `None`.
    pub fn next_batch(&mut self, now_ms: u64) -> Option<(u64, u64)> {
        if self.next > self.last {
            return None;
        }
        let in_flight = self.next - self.acked - 1;
        if in_flight >= self.rules.window {
            return None;
        }
        let available = self.last - self.next + 1;
        let room = self.rules.window - in_flight;
        let size = available.min(self.rules.batch).min(room);
        let lingered = self
            .unsent_since
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.rules.linger_ms);
        if size < self.rules.batch && size == available && !lingered {
            return None;
        }
        let from = self.next;
        let to = from + size - 1;
        self.next = to + 1;
        self.unsent_since = (self.next <= self.last).then_some(now_ms);
        self.waiting_since.get_or_insert(now_ms);
        Some((from, to))
    }

    /// When [`Uploader::poll`] should next be called (ms), if anything is pending. A full
    /// window sets no linger wake: nothing can be sent until an ack (or the resend timer), and a
    /// linger time already past would wake the shell again at once, in a busy loop.
    pub fn wake_at(&self) -> Option<u64> {
        let window_open = self.next.saturating_sub(self.acked + 1) < self.rules.window;
        let linger = self
            .unsent_since
            .filter(|_| self.next <= self.last && window_open)
            .map(|t| t + self.rules.linger_ms);
        let resend = self
            .waiting_since
            .filter(|_| self.next > self.acked + 1)
            .map(|t| t + self.resend_wait);
        match (linger, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The wait for an ack before sending restarts from the acked head, as it now stands.
    pub fn resend_wait_ms(&self) -> u64 {
        self.resend_wait
    }

    /// Time passes: without an ack for the resend wait while records are outstanding, start
    /// again from the acked head, and wait twice as long before the next restart. Returns
    /// whether it restarted.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        let outstanding = self.next > self.acked + 1;
        match self.waiting_since {
            Some(t) if outstanding && now_ms.saturating_sub(t) >= self.resend_wait => {
                self.rewind(now_ms);
                self.resend_wait = self
                    .resend_wait
                    .saturating_mul(2)
                    .min(MAX_RESEND_WAIT_MS.max(self.rules.resend_after_ms));
                true
            }
            _ => false,
        }
    }

    /// An ack whose signature the caller verified. `own_hash(seq)` is this terminal's chain
    /// hash of record `seq` (`None` if it no longer holds it).
    pub fn on_ack(
        &mut self,
        ack: &PunchAck,
        now_ms: u64,
        own_hash: impl FnOnce(u64) -> Option<ChainHash>,
    ) -> AckOutcome {
        if ack.seq > self.last {
            return AckOutcome::Disagrees {
                seq: ack.seq,
                reason: "the mirror acknowledges a seq this terminal never wrote",
            };
        }
        if ack.seq < self.acked {
            if !ack.resend {
                // An older acknowledgement: the mirror has moved on since.
                return AckOutcome::Unchanged;
            }
            // The mirror lost what it had acknowledged. Sending again is possible only while
            // this terminal still holds the record at its head (pruning deletes oldest first,
            // so everything after it is held too).
            if own_hash(ack.seq).or((ack.seq == 0).then_some(ChainHash::GENESIS)) != Some(ack.head)
            {
                return AckOutcome::Disagrees {
                    seq: ack.seq,
                    reason: "the mirror went back to a head this terminal no longer holds or                              never had: records it had acknowledged are lost from the mirror",
                };
            }
            self.acked = ack.seq;
            self.acked_hash = ack.head;
            self.last_rewind = Some((ack.seq, now_ms));
            self.resend_wait = self.rules.resend_after_ms;
            self.rewind(now_ms);
            return AckOutcome::Regressed {
                seq: ack.seq,
                head: ack.head,
            };
        }
        let own = if ack.seq == self.acked {
            Some(self.acked_hash)
        } else if ack.seq == 0 {
            Some(ChainHash::GENESIS)
        } else {
            own_hash(ack.seq)
        };
        if own != Some(ack.head) {
            return AckOutcome::Disagrees {
                seq: ack.seq,
                reason: "the mirror's head hash is not this terminal's record at that seq",
            };
        }
        let advanced = ack.seq > self.acked;
        if advanced {
            self.acked = ack.seq;
            self.acked_hash = ack.head;
            self.next = self.next.max(self.acked + 1);
            self.waiting_since = (self.next > self.acked + 1).then_some(now_ms);
            self.resend_wait = self.rules.resend_after_ms;
        }
        if ack.resend {
            // One rewind per head and resend period: every batch after a gap draws its own
            // resend request, and each must not restart the stream again.
            let recent = self.last_rewind.is_some_and(|(seq, at)| {
                seq == ack.seq && now_ms.saturating_sub(at) < self.rules.resend_after_ms
            });
            if !recent {
                self.last_rewind = Some((ack.seq, now_ms));
                self.rewind(now_ms);
                return AckOutcome::Resend { from: ack.seq + 1 };
            }
        }
        if advanced {
            AckOutcome::Advanced {
                seq: ack.seq,
                head: ack.head,
            }
        } else {
            AckOutcome::Unchanged
        }
    }
}
