//! The intake socket's client, behind `vouch-agent punch` and `vouch-agent status`: sends one
//! request line and reads its answer (blocking; these are one-shot commands).

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::api::BufferStatus;

/// How long the client waits for the daemon's answer (a durable commit takes milliseconds).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a daemon is listening on `socket`.
pub fn connect(socket: &Path) -> Result<UnixStream> {
    let s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the punch socket {} (is `vouch-agent run` running on this state \
             directory?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(s)
}

/// Sends `request` (one JSON object) and returns the answer object when `ok` is true, or the
/// daemon's error message as the error.
pub fn ask(mut stream: UnixStream, request: &serde_json::Value) -> Result<serde_json::Value> {
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("cannot send to the punch socket")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("no answer from the punch socket")?;
    if answer.is_empty() {
        bail!("the punch socket closed without answering");
    }
    let v: serde_json::Value =
        serde_json::from_str(&answer).context("the punch socket's answer is not JSON")?;
    if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
        return Ok(v);
    }
    let msg = v
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("the daemon refused the request without saying why");
    Err(anyhow!("{msg}"))
}

/// Submits one punch; returns its seq.
pub fn punch(
    socket: &Path,
    employee: &str,
    kind: &str,
    method: Option<&str>,
    at: Option<&str>,
) -> Result<u64> {
    let mut req = serde_json::json!({ "op": "punch", "employee": employee, "kind": kind });
    if let Some(m) = method {
        req["method"] = m.into();
    }
    if let Some(a) = at {
        req["at"] = a.into();
    }
    let v = ask(connect(socket)?, &req)?;
    v.get("seq")
        .and_then(|s| s.as_u64())
        .context("the punch socket's answer carries no seq")
}

/// The running daemon's buffer status.
pub fn status(stream: UnixStream) -> Result<BufferStatus> {
    let v = ask(stream, &serde_json::json!({ "op": "status" }))?;
    let mut v = v;
    if let Some(o) = v.as_object_mut() {
        o.remove("ok");
    }
    serde_json::from_value(v).context("the punch socket's status answer is malformed")
}
