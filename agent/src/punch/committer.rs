//! The buffer's one writer: a thread that takes every job queued (punches from all
//! connections, pipelined ones included, status questions, acknowledged heads), runs them in ONE
//! durable write transaction, and only then answers each — group commit, so thousands of
//! confirmed punches per second cost one fsync per group rather than one per punch. After a
//! commit it publishes the new last seq (the uploader wakes on it) and deletes acknowledged
//! records whose retention has passed, in bounded steps: at most one step between two groups,
//! so a large backlog of deletions never keeps a punch waiting for more than one step.

use anyhow::Result;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use vouch_protocol::punch::{BootId, PunchInput};

use super::api::Answer;
use super::buffer::{Buffer, Head, Meta};

/// Most jobs one transaction takes.
const MAX_GROUP: usize = 8192;
/// Most records one prune transaction deletes.
pub const PRUNE_STEP: usize = 10_000;
/// How often retention is enforced, busy or idle, besides after each new acked head.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Work for the committer.
#[derive(Debug)]
pub enum Job {
    Punch(PunchInput, oneshot::Sender<Answer>),
    Status(oneshot::Sender<Answer>),
    /// The uploader's acked head grew: persist it, then delete per retention.
    Acked(Head),
    /// The mirror went back below the acked head (restored from a backup) and this terminal
    /// still holds the records after it: persist the lower head, so none of them is deleted
    /// before the mirror has them again.
    Regressed(Head),
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
    /// Most records one prune step deletes ([`PRUNE_STEP`]).
    pub prune_step: usize,
    /// How often retention is enforced ([`PRUNE_EVERY`]).
    pub prune_every: Duration,
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
    // Prune at start (retention may have passed while the agent was down), then on the
    // deadline, and after every new acked head; `backlog` while a step was full.
    let mut prune_at = Instant::now();
    let mut backlog = false;
    loop {
        let wait = if backlog {
            Duration::ZERO
        } else {
            prune_at.saturating_duration_since(Instant::now())
        };
        let first = match rx.recv_timeout(wait) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut stop = false;
        let mut status_replies = Vec::new();
        let mut acked_moved = false;
        if let Some(first) = first {
            stop = matches!(first, Job::Stop);
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
            (meta, status_replies) = commit(buffer, meta, s, jobs);
            if meta.last.seq != before.last.seq {
                last.send_replace(meta.last.seq);
            }
            acked_moved = meta.acked.seq != before.acked.seq;
        }
        // One step at most between groups: the punches queued meanwhile wait for no more.
        if acked_moved || backlog || Instant::now() >= prune_at {
            backlog = prune_step(buffer, &meta, s);
            prune_at = Instant::now() + s.prune_every;
        }
        // Status is answered after the group's deletion step: a caller that sees an acked
        // head also sees the first step it allowed done.
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
    // Acked and regressed heads in the order the uploader sent them.
    let mut target = meta.acked;
    for job in jobs {
        match job {
            Job::Punch(input, reply) => {
                inputs.push(input);
                punch_replies.push(reply);
            }
            Job::Status(reply) => status_replies.push(reply),
            Job::Acked(h) if h.seq > target.seq => target = h,
            Job::Regressed(h) if h.seq < target.seq => target = h,
            Job::Acked(_) | Job::Regressed(_) => {}
            Job::Stop => {}
        }
    }
    let acked = (target != meta.acked).then_some(target);
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

/// Deletes at most one bounded transaction's worth of acknowledged records past their
/// retention; true when it was full (more may be due).
fn prune_step(buffer: &Buffer, meta: &Meta, s: &Settings) -> bool {
    match buffer.prune(meta.acked.seq, now(), s.retention_secs, s.prune_step) {
        Ok(n) => n == s.prune_step,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not delete acknowledged punches");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    fn settings(capacity: u64) -> Settings {
        Settings {
            boot: BootId([1; 16]),
            capacity,
            retention_secs: 0,
            prune_step: PRUNE_STEP,
            prune_every: PRUNE_EVERY,
        }
    }

    fn started(
        dir: &std::path::Path,
        capacity: u64,
    ) -> (Arc<Buffer>, Handle, watch::Receiver<u64>) {
        started_with(dir, settings(capacity))
    }

    fn started_with(
        dir: &std::path::Path,
        settings: Settings,
    ) -> (Arc<Buffer>, Handle, watch::Receiver<u64>) {
        let buffer =
            Arc::new(Buffer::open(&dir.join("p.redb"), "term-1".parse().unwrap()).unwrap());
        let meta = buffer.meta().unwrap();
        let (tx, rx) = watch::channel(meta.last.seq);
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

    fn punched(h: &Handle, employee: &str) -> Head {
        match punch(h, employee).blocking_recv().unwrap() {
            Answer::Punched(head) => head,
            other => panic!("{other:?}"),
        }
    }

    fn status(h: &Handle) -> Meta {
        let (tx, rx) = oneshot::channel();
        h.jobs.send(Job::Status(tx)).unwrap();
        match rx.blocking_recv().unwrap() {
            Answer::Status { meta, .. } => meta,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_punch_is_answered_while_a_large_prune_backlog_is_worked_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(1_000_000);
        s.prune_step = 10;
        let (buffer, h, _last) = started_with(dir.path(), s);
        // 5,000 records acked at once: 500 prune steps due (retention 0).
        let inputs = (0..5000)
            .map(|i| PunchInput::parse(&format!("E{i}"), "in", None, 1).unwrap())
            .collect::<Vec<_>>();
        let mut head = Head::GENESIS;
        for chunk in inputs.chunks(MAX_GROUP) {
            let replies: Vec<_> = chunk
                .iter()
                .map(|input| {
                    let (tx, rx) = oneshot::channel();
                    h.jobs.send(Job::Punch(input.clone(), tx)).unwrap();
                    rx
                })
                .collect();
            for r in replies {
                if let Answer::Punched(hd) = r.blocking_recv().unwrap() {
                    head = hd;
                }
            }
        }
        assert_eq!(head.seq, 5000);
        h.jobs.send(Job::Acked(head)).unwrap();
        let answered = punched(&h, "late");
        assert_eq!(answered.seq, 5001);
        // Before the fix every step ran before the punch was answered.
        let deleted = buffer.oldest().unwrap().unwrap_or(5001) - 1;
        assert!(
            deleted < 2500,
            "the punch waited for {deleted} deletions (steps of 10)"
        );
        // The backlog is still worked off, between groups.
        let deadline = Instant::now() + Duration::from_secs(60);
        while buffer.oldest().unwrap() != Some(5001) {
            assert!(Instant::now() < deadline, "the backlog was not worked off");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn retention_is_enforced_on_its_deadline_while_jobs_keep_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(100);
        s.retention_secs = 1;
        s.prune_every = Duration::from_millis(200);
        let (buffer, h, _last) = started_with(dir.path(), s);
        let head = punched(&h, "E1");
        h.jobs.send(Job::Acked(head)).unwrap();
        assert_eq!(status(&h).acked.seq, 1);
        assert_eq!(buffer.oldest().unwrap(), Some(1), "too young when acked");
        // A steady stream of jobs, never a quiet moment: the retention still passes and the
        // deadline prunes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while buffer.oldest().unwrap().is_some() {
            assert!(Instant::now() < deadline, "never pruned while busy");
            status(&h);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
