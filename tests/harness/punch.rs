//! The terminal application's side of punch intake, as a test drives it: a client of the agent's
//! punch socket (newline-delimited JSON, requests pipelined in windows, answers in request
//! order), a deterministic stream of varied punches, and the ledger of every punch the agent
//! confirmed with the (seq, hash) it answered — what the mirror must end up holding, unaltered.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vouch_protocol::punch::ChainHash;

/// 2026-11-30T00:00:00Z: the time of [`Punch::nth`]`(0)`.
pub const BASE_TIME: u64 = 1_795_996_800;

const METHODS: [Option<&str>; 5] = [
    None,
    Some("face"),
    Some("fingerprint"),
    Some("card"),
    Some("pin"),
];

/// One punch as the terminal application submits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    pub employee: String,
    pub kind: &'static str,
    pub method: Option<&'static str>,
    /// Unix seconds, sent as RFC 3339 in `at`.
    pub time: u64,
}

impl Punch {
    /// The `i`-th punch of a deterministic stream: employees, kinds, methods (including none)
    /// and times all vary, so a record swapped, shifted or altered on the way shows.
    pub fn nth(i: u64) -> Self {
        Self {
            employee: format!("E{:05}", i % 7919),
            kind: if i.is_multiple_of(2) { "in" } else { "out" },
            method: METHODS[(i % 5) as usize],
            time: BASE_TIME + i,
        }
    }

    /// Punches `from..to` of the stream.
    pub fn range(from: u64, to: u64) -> Vec<Self> {
        (from..to).map(Self::nth).collect()
    }

    /// The socket request for this punch.
    pub fn request(&self) -> serde_json::Value {
        let mut r = serde_json::json!({
            "op": "punch",
            "employee": self.employee,
            "kind": self.kind,
            "at": vouch_common::time::rfc3339(self.time),
        });
        if let Some(m) = self.method {
            r["method"] = m.into();
        }
        r
    }
}

/// The agent's answer to one punch: its place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub seq: u64,
    pub hash: ChainHash,
}

/// `{"op":"status"}` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketStatus {
    pub last_seq: u64,
    pub last_hash: ChainHash,
    pub acked_seq: u64,
    pub unacked: u64,
    pub capacity: u64,
}

/// The answers to one pipelined window, in request order, and what broke the connection if it
/// broke before every answer came (a killed agent): answers read before that are kept.
#[derive(Debug)]
pub struct Window {
    pub answers: Vec<Result<Confirmed, String>>,
    pub broken: Option<io::Error>,
}

/// A connection to the agent's punch socket.
#[derive(Debug)]
pub struct PunchClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl PunchClient {
    pub fn connect(path: &Path) -> io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Connects, retrying until the daemon serves its socket (it is created at start-up).
    pub fn wait_connect(path: &Path) -> Self {
        crate::wait_for(Duration::from_secs(60), "the agent's punch socket", || {
            Self::connect(path).ok()
        })
    }

    /// Sends raw lines at once (pipelined) and reads one answer line per line sent.
    pub fn raw_lines(&mut self, lines: &[String]) -> (Vec<serde_json::Value>, Option<io::Error>) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        if let Err(e) = self.writer.write_all(buf.as_bytes()) {
            return (Vec::new(), Some(e));
        }
        let mut out = Vec::with_capacity(lines.len());
        for _ in lines {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => {
                    return (
                        out,
                        Some(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the agent closed the punch socket",
                        )),
                    );
                }
                Ok(_) => match serde_json::from_str(&line) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        return (
                            out,
                            Some(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("answer is not JSON ({e}): {line:?}"),
                            )),
                        );
                    }
                },
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// One request, one answer; panics if the connection fails.
    pub fn request(&mut self, req: &serde_json::Value) -> serde_json::Value {
        let (mut answers, broken) = self.raw_lines(&[req.to_string()]);
        assert!(broken.is_none(), "punch socket request {req}: {broken:?}");
        answers.remove(0)
    }

    /// Submits `punches` pipelined (all written, then all answers read).
    pub fn submit_window(&mut self, punches: &[Punch]) -> Window {
        let lines: Vec<String> = punches.iter().map(|p| p.request().to_string()).collect();
        let (answers, broken) = self.raw_lines(&lines);
        Window {
            answers: answers.iter().map(parse_confirmed).collect(),
            broken,
        }
    }

    /// `{"op":"status"}`; panics if the agent does not answer it well-formed.
    pub fn status(&mut self) -> SocketStatus {
        let a = self.request(&serde_json::json!({"op": "status"}));
        assert_eq!(a["ok"], true, "status over the punch socket: {a}");
        let n = |k: &str| {
            a[k].as_u64()
                .unwrap_or_else(|| panic!("status answer without {k}: {a}"))
        };
        SocketStatus {
            last_seq: n("last_seq"),
            last_hash: a["last_hash"]
                .as_str()
                .and_then(ChainHash::from_hex)
                .unwrap_or_else(|| panic!("status answer without a last_hash: {a}")),
            acked_seq: n("acked_seq"),
            unacked: n("unacked"),
            capacity: n("capacity"),
        }
    }
}

/// An answer to a punch: `Ok` with its (seq, hash), or `Err` with the agent's error text.
fn parse_confirmed(a: &serde_json::Value) -> Result<Confirmed, String> {
    if a["ok"] != true {
        return Err(a["error"].as_str().map_or_else(
            || format!("refused without an error text: {a}"),
            str::to_owned,
        ));
    }
    let seq = a["seq"].as_u64();
    let hash = a["hash"].as_str().and_then(ChainHash::from_hex);
    match (seq, hash) {
        (Some(seq), Some(hash)) => Ok(Confirmed { seq, hash }),
        _ => panic!("a confirmation without a seq and a 64-hex hash: {a}"),
    }
}

/// Every punch the agent confirmed, by seq, with the hash it answered.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub confirmed: BTreeMap<u64, (Punch, ChainHash)>,
}

impl Ledger {
    pub fn len(&self) -> usize {
        self.confirmed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confirmed.is_empty()
    }

    /// The highest confirmed seq (0: none).
    pub fn last_seq(&self) -> u64 {
        self.confirmed.keys().next_back().copied().unwrap_or(0)
    }

    /// Records the answers of a window to `punches`; panics on a refusal (these are valid) or
    /// on a seq answered twice.
    pub fn record(&mut self, punches: &[Punch], w: &Window) {
        for (p, a) in punches.iter().zip(&w.answers) {
            match a {
                Ok(c) => {
                    let prev = self.confirmed.insert(c.seq, (p.clone(), c.hash));
                    assert!(prev.is_none(), "seq {} was confirmed twice", c.seq);
                }
                Err(e) => panic!("a valid punch {p:?} was refused: {e}"),
            }
        }
    }

    /// Submits `punches` through `client` in pipelined windows of `window`, recording each
    /// confirmation; panics if the connection breaks.
    pub fn submit(&mut self, client: &mut PunchClient, punches: &[Punch], window: usize) {
        for chunk in punches.chunks(window) {
            let w = client.submit_window(chunk);
            self.record(chunk, &w);
            if let Some(e) = w.broken {
                panic!("the punch socket broke after seq {}: {e}", self.last_seq());
            }
        }
    }
}

/// What a [`Submitter`] got done: the confirmations, and when the socket broke (a killed
/// agent), the punches of the broken window that were sent but never answered — the agent may
/// or may not have committed them — and what broke.
#[derive(Debug)]
pub struct Submitted {
    pub ledger: Ledger,
    pub unanswered: Vec<Punch>,
    pub broken: Option<String>,
}

/// Submits a range of the punch stream from a thread of its own, in pipelined windows, so the
/// test can break things while punches flow.
#[derive(Debug)]
pub struct Submitter {
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: std::thread::JoinHandle<Submitted>,
}

impl Submitter {
    /// Submits punches `from..to` of the stream through `socket`. With `stop_on_break`, a
    /// broken connection ends the submission (see [`Submitted`]); without, it fails the test.
    pub fn spawn(
        socket: std::path::PathBuf,
        from: u64,
        to: u64,
        window: usize,
        stop_on_break: bool,
    ) -> Self {
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = progress.clone();
        let handle = std::thread::spawn(move || {
            let mut client = PunchClient::wait_connect(&socket);
            let mut ledger = Ledger::default();
            let mut next = from;
            while next < to {
                let end = (next + window as u64).min(to);
                let punches = Punch::range(next, end);
                let w = client.submit_window(&punches);
                ledger.record(&punches, &w);
                p.store(ledger.len() as u64, std::sync::atomic::Ordering::SeqCst);
                if let Some(e) = w.broken {
                    assert!(
                        stop_on_break,
                        "the punch socket broke after seq {}: {e}",
                        ledger.last_seq()
                    );
                    return Submitted {
                        unanswered: punches[w.answers.len()..].to_vec(),
                        ledger,
                        broken: Some(e.to_string()),
                    };
                }
                next = end;
            }
            Submitted {
                ledger,
                unanswered: Vec::new(),
                broken: None,
            }
        });
        Self { progress, handle }
    }

    /// How many punches were confirmed so far.
    pub fn confirmed(&self) -> u64 {
        self.progress.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` punches were confirmed.
    pub fn wait_confirmed(&self, n: u64, timeout: Duration) {
        crate::wait_for(timeout, &format!("{n} punches confirmed"), || {
            assert!(
                !self.handle.is_finished() || self.confirmed() >= n,
                "the submitter ended after {} confirmations, before {n}",
                self.confirmed()
            );
            (self.confirmed() >= n).then_some(())
        });
    }

    /// Waits for the submission to end; a panic in it fails the test with its message.
    pub fn join(self) -> Submitted {
        match self.handle.join() {
            Ok(s) => s,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}
