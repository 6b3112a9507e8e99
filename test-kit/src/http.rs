//! A plain HTTP/1.0 GET on loopback for tests that wait on the verifier's `/v1/health` (or read
//! any JSON endpoint) without an HTTP client dependency: one request, the status code and the
//! body as JSON.

use std::time::Duration;

/// A plain HTTP/1.0 GET on loopback `port`: the status code and the body as JSON (`Null` when
/// the body is not JSON or nothing answered; status 0 when the connection failed).
pub fn http_get(port: u16, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, serde_json::Value::Null);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return (0, serde_json::Value::Null);
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (code, body)
}
