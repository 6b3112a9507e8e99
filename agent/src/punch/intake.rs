//! The intake socket server: a Unix socket (mode 0660) the terminal application writes punch
//! requests to, one JSON line each, pipelining allowed. Each connection is read by one task
//! that parses and validates lines and hands punches to the committer; a second task writes the
//! answers back strictly in request order, each only once the committer has answered it (that
//! is, after the durable commit). Connections, line length and requests in flight per
//! connection are bounded; an over-long line gets an error answer and the connection closes,
//! and so does a connection that sends no complete line for [`IDLE_TIMEOUT`], so idle clients
//! cannot take every slot. The socket appears at its path with its final mode, and a path
//! another process still serves is never taken over.

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
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
/// A connection that sends no complete request line for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds the socket at `path` with mode 0660. A socket file already there is replaced only if
/// nothing answers on it (a daemon killed without cleaning up); one another process serves (a
/// daemon of another state directory configured with the same path) is refused.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another process serves the punch socket {}; refusing to start (stop it, or \
                     give this agent another --punch-socket)",
                    path.display()
                );
            }
        }
        Ok(_) => anyhow::bail!(
            "--punch-socket {} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(_) => {}
    }
    // Bound under a temporary name in the same directory, given its mode, then renamed into
    // place: at `path` it is never reachable with the umask's mode.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let suffix = vouch_common::keys::random_bytes::<4>()
        .map(|b| hex::encode(*b))
        .unwrap_or_else(|_| std::process::id().to_string());
    let tmp = dir.join(format!(".punch-{suffix}.sock"));
    let l = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("cannot listen on the punch socket {}", tmp.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set mode 0660 on {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move the punch socket to {}", path.display()))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `listener` until the task is dropped or aborted; its connections end with it.
pub async fn serve(listener: UnixListener, committer: Handle) {
    serve_with(listener, committer, IDLE_TIMEOUT).await;
}

/// [`serve`], closing connections idle for `idle`.
pub async fn serve_with(listener: UnixListener, committer: Handle, idle: Duration) {
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
                    connection(stream, committer, idle).await;
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

async fn connection(stream: UnixStream, committer: Handle, idle: Duration) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<oneshot::Receiver<Answer>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_answers(write, rx));
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        let n = match tokio::time::timeout(idle, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) => n,
            Err(_) => {
                let msg = format!(
                    "no complete request line for {} s; closing the connection",
                    idle.as_secs_f32()
                );
                let _ = tx.send(ready(Answer::Error(msg))).await;
                break;
            }
            Ok(Err(e)) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read as _};

    #[test]
    fn a_socket_another_process_serves_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("punch.sock");
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = format!("{:#}", bind(&path).unwrap_err());
        assert!(
            err.contains("another process serves") && err.contains(&path.display().to_string()),
            "{err}"
        );
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_ok(),
            "the other process's socket was left in place"
        );
    }

    #[test]
    fn a_stale_socket_is_replaced_by_one_with_its_final_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("punch.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let _l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["punch.sock"]);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[test]
    fn an_idle_connection_is_closed_so_idle_clients_cannot_hold_every_slot() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Arc::new(
            super::super::buffer::Buffer::open(
                &dir.path().join("p.redb"),
                "term-1".parse().unwrap(),
            )
            .unwrap(),
        );
        let meta = buffer.meta().unwrap();
        let (last, _rx) = tokio::sync::watch::channel(0);
        let settings = super::super::committer::Settings {
            boot: vouch_protocol::punch::BootId([1; 16]),
            capacity: 100,
            retention_secs: 0,
            prune_step: super::super::committer::PRUNE_STEP,
            prune_every: super::super::committer::PRUNE_EVERY,
        };
        let (handle, _thread) =
            super::super::committer::spawn(buffer, meta, settings, last).unwrap();
        let path = dir.path().join("punch.sock");
        let listener = bind(&path).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let idle = Duration::from_millis(300);
        rt.spawn(async move {
            let l = UnixListener::from_std(listener).unwrap();
            serve_with(l, handle, idle).await;
        });
        // Every slot taken by clients that never finish a line (one sent half a line).
        let mut idlers: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        std::io::Write::write_all(&mut idlers[0], b"{\"op\":").unwrap();
        for c in &mut idlers {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).unwrap();
            assert!(got.contains("no complete request line"), "{got}");
        }
        // Their slots are free again: a real client is served.
        let c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut &c, b"{\"op\":\"status\"}\n").unwrap();
        let mut answer = String::new();
        std::io::BufReader::new(&c).read_line(&mut answer).unwrap();
        assert!(answer.contains("\"ok\":true"), "{answer}");
        rt.shutdown_background();
    }
}
