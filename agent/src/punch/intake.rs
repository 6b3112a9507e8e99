//! The intake socket server: a Unix socket (mode 0660) the terminal application writes punch
//! requests to, one JSON line each, pipelining allowed. Each connection is read by one task
//! that parses and validates lines and hands punches to the committer; a second task writes the
//! answers back strictly in request order, each only once the committer has answered it (that
//! is, after the durable commit). Connections, line length and requests in flight per
//! connection are bounded; an over-long line gets an error answer and the connection closes.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::api::{Answer, MAX_LINE, Request, parse_request};
use super::committer::{Handle, Job};

/// Connections served at once; more are told so and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests one connection may have in flight (read, not yet answered).
const MAX_IN_FLIGHT: usize = 4096;

/// Binds the socket at `path`, replacing a stale socket file (the state directory's session
/// lock guarantees no other daemon serves it), with mode 0660.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "--punch-socket {} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(_) => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on the punch socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set mode 0660 on {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `listener` until the task is dropped or aborted; its connections end with it.
pub async fn serve(listener: UnixListener, committer: Handle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "punch socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let committer = committer.clone();
                connections.spawn(async move {
                    connection(stream, committer).await;
                    drop(permit);
                });
            }
            Err(_) => {
                connections.spawn(async move {
                    let mut stream = stream;
                    let msg = format!(
                        "too many connections to the punch socket (at most {MAX_CONNECTIONS}); retry"
                    );
                    let _ = stream
                        .write_all(Answer::Error(msg).to_line().as_bytes())
                        .await;
                });
            }
        }
    }
}

async fn connection(stream: UnixStream, committer: Handle) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<oneshot::Receiver<Answer>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_answers(write, rx));
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "punch socket read failed");
                break;
            }
        };
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            let msg = if line.len() >= MAX_LINE {
                format!("request line longer than {MAX_LINE} bytes; closing the connection")
            } else {
                "request line not terminated by a newline".to_owned()
            };
            let _ = tx.send(ready(Answer::Error(msg))).await;
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let answer = match parse_request(text, vouch_common::time::now_unix()) {
            Ok(Request::Punch(input)) => submit(&committer, |r| Job::Punch(input, r)),
            Ok(Request::Status) => submit(&committer, Job::Status),
            Err(e) => ready(Answer::Error(e)),
        };
        if tx.send(answer).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn ready(a: Answer) -> oneshot::Receiver<Answer> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(a);
    rx
}

fn submit(
    committer: &Handle,
    job: impl FnOnce(oneshot::Sender<Answer>) -> Job,
) -> oneshot::Receiver<Answer> {
    let (tx, rx) = oneshot::channel();
    if let Err(std::sync::mpsc::SendError(job)) = committer.jobs.send(job(tx)) {
        // The committer is gone: the receiver below reports it; nothing was stored.
        drop(job);
    }
    rx
}

/// Writes each answer as it becomes ready, in request order; flushes when no further answer is
/// ready, so a pipelined burst goes out in few writes.
async fn write_answers(
    write: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::Receiver<oneshot::Receiver<Answer>>,
) {
    let mut out = BufWriter::new(write);
    while let Some(mut pending) = rx.recv().await {
        let answer = match pending.try_recv() {
            Ok(a) => Ok(a),
            Err(oneshot::error::TryRecvError::Empty) => {
                // Answers already written go out before waiting for the next commit.
                if out.flush().await.is_err() {
                    return;
                }
                pending.await.map_err(|_| ())
            }
            Err(oneshot::error::TryRecvError::Closed) => Err(()),
        }
        .unwrap_or_else(|()| {
            Answer::Error("the punch buffer is not available; nothing was stored".to_owned())
        });
        if out.write_all(answer.to_line().as_bytes()).await.is_err() {
            return;
        }
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
}
