//! The intake socket's line protocol: one JSON request per line, one JSON answer per line, in
//! request order. Parsing turns a line into a validated [`Request`] (or the error answer that
//! names what was wrong); answers are built here too, so the server and the client agree.
//!
//! ```text
//! {"op":"punch","employee":"E1","kind":"in","method":"card","at":"2026-12-02T08:00:00Z"}
//!   → {"ok":true,"seq":N,"hash":"<64 hex>"}
//! {"op":"status"} → {"ok":true,"last_seq":N,"last_hash":"<hex>","acked_seq":N,"unacked":N,"capacity":N}
//! failure → {"ok":false,"error":"<message>"}
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vouch_protocol::punch::PunchInput;

use super::buffer::{Head, Meta};

/// Longest request line accepted, newline included.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum RawRequest {
    Punch {
        employee: String,
        kind: String,
        method: Option<String>,
        at: Option<String>,
    },
    Status {},
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Punch(PunchInput),
    Status,
}

/// Parses one request line; `now` (Unix s) is the time of a punch without `at`.
pub fn parse_request(line: &[u8], now: u64) -> Result<Request, String> {
    let raw: RawRequest = serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))?;
    match raw {
        RawRequest::Status {} => Ok(Request::Status),
        RawRequest::Punch {
            employee,
            kind,
            method,
            at,
        } => {
            let time = match at {
                Some(at) => parse_at(&at)?,
                None => now,
            };
            PunchInput::parse(&employee, &kind, method.as_deref(), time)
                .map(Request::Punch)
                .map_err(|e| e.to_string())
        }
    }
}

/// An RFC 3339 time as Unix seconds (not before 1970).
pub fn parse_at(at: &str) -> Result<u64, String> {
    let shown: String = at.chars().take(40).collect();
    let t = OffsetDateTime::parse(at, &Rfc3339).map_err(|e| {
        format!("\"at\" must be an RFC 3339 time like 2026-12-02T08:00:00Z, got \"{shown}\": {e}")
    })?;
    u64::try_from(t.unix_timestamp()).map_err(|_| format!("\"at\" is before 1970: \"{shown}\""))
}

/// What `{"op":"status"}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferStatus {
    pub last_seq: u64,
    pub last_hash: String,
    pub acked_seq: u64,
    pub unacked: u64,
    pub capacity: u64,
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Punched(Head),
    Status { meta: Meta, capacity: u64 },
    Error(String),
}

impl Answer {
    /// The answer as one JSON line, newline included.
    pub fn to_line(&self) -> String {
        let v = match self {
            Answer::Punched(h) => serde_json::json!({
                "ok": true, "seq": h.seq, "hash": h.hash.to_hex(),
            }),
            Answer::Status { meta, capacity } => serde_json::json!({
                "ok": true,
                "last_seq": meta.last.seq,
                "last_hash": meta.last.hash.to_hex(),
                "acked_seq": meta.acked.seq,
                "unacked": meta.unacked(),
                "capacity": capacity,
            }),
            Answer::Error(e) => serde_json::json!({ "ok": false, "error": e }),
        };
        let mut s = v.to_string();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_punch_line_parses_with_and_without_at() {
        let r = parse_request(br#"{"op":"punch","employee":"E1","kind":"in","method":"card","at":"2026-12-02T08:00:00Z"}"#, 5).unwrap();
        let Request::Punch(p) = r else {
            panic!("{r:?}")
        };
        assert_eq!(p.time, 1_796_198_400);
        let r = parse_request(br#"{"op":"punch","employee":"E1","kind":"out"}"#, 5).unwrap();
        assert!(matches!(r, Request::Punch(p) if p.time == 5 && p.method.is_none()));
        assert_eq!(
            parse_request(br#"{"op":"status"}"#, 5).unwrap(),
            Request::Status
        );
    }

    #[test]
    fn unknown_fields_bad_kinds_and_bad_times_are_refused_naming_the_problem() {
        let e = parse_request(
            br#"{"op":"punch","employee":"E1","kind":"in","face":"x"}"#,
            5,
        )
        .unwrap_err();
        assert!(e.contains("unknown field `face`"), "{e}");
        let e = parse_request(br#"{"op":"status","x":1}"#, 5).unwrap_err();
        assert!(e.contains("unknown field `x`"), "{e}");
        let e =
            parse_request(br#"{"op":"punch","employee":"E1","kind":"sideways"}"#, 5).unwrap_err();
        assert!(e.contains("sideways"), "{e}");
        let e = parse_request(
            br#"{"op":"punch","employee":"E1","kind":"in","at":"yesterday"}"#,
            5,
        )
        .unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        let e = parse_request(br#"{"op":"fly"}"#, 5).unwrap_err();
        assert!(e.contains("bad request"), "{e}");
    }
}
