//! The buffer's one writer: a thread that takes every job queued (punches from all
//! connections, pipelined ones included, status questions, acknowledged heads), runs them in ONE
//! durable write transaction, and only then answers each — group commit, so thousands of
//! confirmed punches per second cost one fsync per group rather than one per punch. After a
//! commit it publishes the new last seq (the uploader wakes on it) and deletes acknowledged
//! records whose retention has passed, in bounded steps.

use anyhow::Result;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use vouch_protocol::punch::{BootId, PunchInput};

use super::api::Answer;
use super::buffer::{Buffer, Head, Meta};

/// Most jobs one transaction takes.
const MAX_GROUP: usize = 8192;
/// Most records one prune transaction deletes.
const PRUNE_STEP: usize = 10_000;
/// How often retention is enforced when nothing else happens.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Work for the committer.
#[derive(Debug)]
pub enum Job {
    Punch(PunchInput, oneshot::Sender<Answer>),
    Status(oneshot::Sender<Answer>),
    /// The uploader's acked head grew: persist it, then delete per retention.
    Acked(Head),
}

/// The running committer: send jobs, watch the last seq.
#[derive(Debug, Clone)]
pub struct Handle {
    pub jobs: Sender<Job>,
}

/// What the committer works with.
#[derive(Debug)]
pub struct Settings {
    pub boot: BootId,
    pub capacity: u64,
    pub retention_secs: u64,
}

/// Starts the committer thread over `buffer`, whose meta is `meta`. `last` receives the newest
/// committed seq after each commit. The thread ends when every [`Handle`] is dropped.
pub fn spawn(
    buffer: Arc<Buffer>,
    meta: Meta,
    settings: Settings,
    last: watch::Sender<u64>,
) -> Result<Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("punch-commit".into())
        .spawn(move || run(&buffer, meta, &settings, &last, &rx))?;
    Ok(Handle { jobs: tx })
}

fn now() -> u64 {
    vouch_common::time::now_unix()
}

fn run(
    buffer: &Buffer,
    mut meta: Meta,
    s: &Settings,
    last: &watch::Sender<u64>,
    rx: &Receiver<Job>,
) {
    loop {
        let first = match rx.recv_timeout(PRUNE_EVERY) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                prune(buffer, &meta, s);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let before = meta;
        meta = commit(buffer, meta, s, jobs);
        if meta.last.seq != before.last.seq {
            last.send_replace(meta.last.seq);
        }
        if meta.acked.seq != before.acked.seq {
            prune(buffer, &meta, s);
        }
    }
}

/// One group: one transaction, then the answers. A storage failure answers every punch of the
/// group with the error (nothing of it was stored) and keeps the old meta.
fn commit(buffer: &Buffer, meta: Meta, s: &Settings, jobs: Vec<Job>) -> Meta {
    let mut inputs = Vec::new();
    let mut punch_replies = Vec::new();
    let mut status_replies = Vec::new();
    let mut acked: Option<Head> = None;
    for job in jobs {
        match job {
            Job::Punch(input, reply) => {
                inputs.push(input);
                punch_replies.push(reply);
            }
            Job::Status(reply) => status_replies.push(reply),
            Job::Acked(h) => {
                if acked.is_none_or(|a| h.seq > a.seq) {
                    acked = Some(h);
                }
            }
        }
    }
    let (meta, results) = match buffer.commit_group(meta, acked, inputs, s.boot, s.capacity, now())
    {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("could not store the punch: {e:#}; nothing was stored");
            tracing::error!(error = %msg, "punch commit failed");
            for r in punch_replies {
                let _ = r.send(Answer::Error(msg.clone()));
            }
            for r in status_replies {
                let _ = r.send(Answer::Status {
                    meta,
                    capacity: s.capacity,
                });
            }
            return meta;
        }
    };
    for (reply, result) in punch_replies.into_iter().zip(results) {
        let _ = reply.send(match result {
            Ok(head) => Answer::Punched(head),
            Err(refused) => Answer::Error(refused.to_string()),
        });
    }
    for r in status_replies {
        let _ = r.send(Answer::Status {
            meta,
            capacity: s.capacity,
        });
    }
    meta
}

/// Deletes acknowledged records past their retention, one bounded transaction at a time
/// (each starts at the oldest record held, so this is cheap when there is nothing to do).
fn prune(buffer: &Buffer, meta: &Meta, s: &Settings) {
    loop {
        match buffer.prune(meta.acked.seq, now(), s.retention_secs, PRUNE_STEP) {
            Ok(n) if n == PRUNE_STEP => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not delete acknowledged punches");
                return;
            }
        }
    }
}
