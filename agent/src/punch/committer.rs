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
    /// Finish the jobs queued before this one, then end the thread (and close the buffer).
    Stop,
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
/// committed seq after each commit. The thread ends on [`Job::Stop`] or when every [`Handle`]
/// is dropped; join it to know the buffer is closed.
pub fn spawn(
    buffer: Arc<Buffer>,
    meta: Meta,
    settings: Settings,
    last: watch::Sender<u64>,
) -> Result<(Handle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("punch-commit".into())
        .spawn(move || run(&buffer, meta, &settings, &last, &rx))?;
    Ok((Handle { jobs: tx }, thread))
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
        let mut stop = matches!(first, Job::Stop);
        let mut jobs = vec![first];
        while !stop && jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => {
                    stop = matches!(job, Job::Stop);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let before = meta;
        let status_replies;
        (meta, status_replies) = commit(buffer, meta, s, jobs);
        if meta.last.seq != before.last.seq {
            last.send_replace(meta.last.seq);
        }
        if meta.acked.seq != before.acked.seq {
            prune(buffer, &meta, s);
        }
        // Status is answered after the group's deletions: a caller that sees an acked head
        // also sees what it allowed to be deleted gone.
        for r in status_replies {
            let _ = r.send(Answer::Status {
                meta,
                capacity: s.capacity,
            });
        }
        if stop {
            return;
        }
    }
}

/// One group: one transaction, then the punches' answers (status questions are returned, for
/// the caller to answer). A storage failure answers every punch of the group with the error
/// (nothing of it was stored) and keeps the old meta.
fn commit(
    buffer: &Buffer,
    meta: Meta,
    s: &Settings,
    jobs: Vec<Job>,
) -> (Meta, Vec<oneshot::Sender<Answer>>) {
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
            Job::Stop => {}
        }
    }
    match buffer.commit_group(meta, acked, inputs, s.boot, s.capacity, now()) {
        Ok((meta, results)) => {
            for (reply, result) in punch_replies.into_iter().zip(results) {
                let _ = reply.send(match result {
                    Ok(head) => Answer::Punched(head),
                    Err(refused) => Answer::Error(refused.to_string()),
                });
            }
            (meta, status_replies)
        }
        Err(e) => {
            let msg = format!("could not store the punch: {e:#}; nothing was stored");
            tracing::error!(error = %msg, "punch commit failed");
            for r in punch_replies {
                let _ = r.send(Answer::Error(msg.clone()));
            }
            (meta, status_replies)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    fn started(
        dir: &std::path::Path,
        capacity: u64,
    ) -> (Arc<Buffer>, Handle, watch::Receiver<u64>) {
        let buffer =
            Arc::new(Buffer::open(&dir.join("p.redb"), "term-1".parse().unwrap()).unwrap());
        let meta = buffer.meta().unwrap();
        let (tx, rx) = watch::channel(meta.last.seq);
        let settings = Settings {
            boot: BootId([1; 16]),
            capacity,
            retention_secs: 0,
        };
        let (h, _thread) = spawn(buffer.clone(), meta, settings, tx).unwrap();
        (buffer, h, rx)
    }

    fn punch(h: &Handle, employee: &str) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let input = PunchInput::parse(employee, "in", None, 1).unwrap();
        h.jobs.send(Job::Punch(input, tx)).unwrap();
        rx
    }

    #[test]
    fn no_punch_is_answered_before_its_transaction_has_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (buffer, h, last) = started(dir.path(), 100);
        // Hold the database's write lock: the committer cannot even begin its transaction.
        let blocker = buffer.db().begin_write().unwrap();
        let mut answers: Vec<_> = (0..3).map(|i| punch(&h, &format!("E{i}"))).collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        for a in &mut answers {
            assert_eq!(
                a.try_recv(),
                Err(TryRecvError::Empty),
                "answered before the commit"
            );
        }
        assert_eq!(*last.borrow(), 0);
        drop(blocker);
        for (i, a) in answers.into_iter().enumerate() {
            let Answer::Punched(head) = a.blocking_recv().unwrap() else {
                panic!("punch {i} refused")
            };
            assert_eq!(head.seq, i as u64 + 1);
            // Committed: visible to a fresh read transaction, with the answered hash.
            assert_eq!(buffer.hash_at(head.seq).unwrap(), Some(head.hash));
        }
        assert_eq!(buffer.meta().unwrap().last.seq, 3);
    }

    #[test]
    fn an_acked_head_is_persisted_before_status_reports_it_and_deletions_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let (buffer, h, _last) = started(dir.path(), 100);
        let heads: Vec<Head> = (0..4)
            .map(
                |i| match punch(&h, &format!("E{i}")).blocking_recv().unwrap() {
                    Answer::Punched(head) => head,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        h.jobs.send(Job::Acked(heads[2])).unwrap();
        let (tx, rx) = oneshot::channel();
        h.jobs.send(Job::Status(tx)).unwrap();
        let Answer::Status { meta, .. } = rx.blocking_recv().unwrap() else {
            panic!("status")
        };
        assert_eq!(meta.acked, heads[2]);
        assert_eq!(buffer.meta().unwrap().acked, heads[2], "persisted");
        // Retention 0: 1..=3 went once acknowledged, 4 (unacked) stays.
        assert_eq!(buffer.oldest().unwrap(), Some(4));
    }
}
