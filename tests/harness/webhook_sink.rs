//! A local HTTP sink for alert webhooks: it records every POST (event, delivery id,
//! timestamp, `X-Vouch-Signature`, body), answers with a scripted sequence of statuses, and
//! checks signatures as a receiver would (HMAC-SHA256 over `timestamp.body`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SECRET: &str = "webhook-test-secret";

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub delivery: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

/// `X-Vouch-Signature` as a receiver checks it.
pub fn signature_ok(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&sig).is_ok()
}

impl Received {
    pub fn valid(&self) -> bool {
        signature_ok(
            SECRET.as_bytes(),
            &self.timestamp,
            self.body.as_bytes(),
            &self.signature,
        )
    }
}

/// A local HTTP sink on `port` answering with `statuses` in turn (the last one repeated).
#[derive(Debug)]
pub struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    pub fn start(port: u16, statuses: Vec<u16>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let Some(r) = read_request(&mut s) else {
                    continue;
                };
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                g.lock().unwrap().push(r);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Self { got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(s: &mut std::net::TcpStream) -> Option<Received> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST "), "a webhook is a POST: {line}");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let len: usize = header("content-length").parse().ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        event: header("x-vouch-event"),
        delivery: header("x-vouch-delivery"),
        timestamp: header("x-vouch-timestamp"),
        signature: header("x-vouch-signature"),
        body: String::from_utf8(body).ok()?,
    })
}

/// A `[[webhook]]` section for the verifier's config: the sink on `port`, for `events`, with
/// [`SECRET`] in a 0600 file under `dir`.
pub fn webhook_config(dir: &Path, port: u16, events: &[&str]) -> String {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[[webhook]]\nurl = \"http://127.0.0.1:{port}/vouch\"\nsecret_file = \"{}\"\nevents = {events:?}\n",
        secret.display()
    )
}

impl Sink {
    /// Waits for the first delivery of `event`, checks its signature, and returns it with its
    /// parsed body.
    pub fn wait_event(&self, event: &str) -> (Received, serde_json::Value) {
        let r = crate::wait_for(
            Duration::from_secs(60),
            &format!("the {event} alert"),
            || self.received().into_iter().find(|r| r.event == event),
        );
        assert!(r.valid(), "signature of {r:?}");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["event"], event, "{body}");
        (r, body)
    }
}
