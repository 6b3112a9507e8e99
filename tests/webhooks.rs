//! Alert webhooks end to end (issue 10 §4, §6): a local HTTP sink checks every HMAC and counts
//! deliveries per `X-Vouch-Delivery`. A quarantine raised while the sink is down survives a
//! verifier stop (SIGTERM, and kill -9) in the durable outbox and arrives after the restart with
//! a valid signature; a sink answering 500 is retried until it answers 200.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};
use vouch_e2e::{free_port, wait_for};

const SECRET: &str = "webhook-test-secret";

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// `X-Vouch-Signature` as a receiver checks it.
fn signature_ok(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
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
    fn valid(&self) -> bool {
        signature_ok(
            SECRET.as_bytes(),
            &self.timestamp,
            self.body.as_bytes(),
            &self.signature,
        )
    }
}

/// A local HTTP sink on `port` answering with `statuses` in turn (the last one repeated).
struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    fn start(port: u16, statuses: Vec<u16>) -> Self {
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

    fn received(&self) -> Vec<Received> {
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

fn webhook_config(dir: &Path, port: u16) -> String {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[[webhook]]\nurl = \"http://127.0.0.1:{port}/vouch\"\nsecret_file = \"{}\"\nevents = [\"quarantine\", \"release\"]\n",
        secret.display()
    )
}

fn quarantine(v: &Verifier) {
    let out = v.ctl(&["quarantine", "term-1", "--reason", "stolen"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for a quarantine delivery; checks it and returns it.
fn delivered_quarantine(sink: &Sink) -> Received {
    let r = wait_for(Duration::from_secs(30), "the quarantine alert", || {
        sink.received()
            .into_iter()
            .find(|r| r.event == "quarantine")
    });
    assert!(r.valid(), "signature of {r:?}");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["event"], "quarantine");
    assert_eq!(body["device"], "term-1");
    assert_eq!(body["reason"], "stolen", "{body}");
    assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["at"].as_str().is_some_and(|s| s.contains('T')));
    assert!(body["reason_codes"].is_array());
    assert!(body["actor"].is_string());
    // The checker is real: a changed body or timestamp fails it.
    let mut forged = r.clone();
    forged.body = forged.body.replace("stolen", "found!");
    assert!(!forged.valid(), "a tampered body must fail the HMAC check");
    let mut late = r.clone();
    late.timestamp.push('0');
    assert!(
        !late.valid(),
        "a changed timestamp must fail the HMAC check"
    );
    r
}

/// Quarantine while the sink is down; stop the verifier (`kill`: SIGKILL, else SIGTERM); start
/// the sink and the verifier: the alert arrives, signed, under one delivery id.
fn alert_survives_restart(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let port = free_port();
    let mut v = Verifier::start_with(
        dir.path(),
        BrokerKind::Mosquitto,
        &webhook_config(dir.path(), port),
    );
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    quarantine(&v);
    // The worker tries (connection refused) and backs off; the row stays in the outbox.
    std::thread::sleep(Duration::from_secs(2));
    if kill {
        v.kill9();
    } else {
        v.stop();
    }
    let sink = Sink::start(port, vec![200]);
    v.start_again();
    let r = delivered_quarantine(&sink);
    // Nothing else comes for it: the delivered row is gone (give a retry the chance to show).
    std::thread::sleep(Duration::from_secs(3));
    let all = sink.received();
    assert!(all.iter().all(|x| x.delivery == r.delivery), "{all:?}");
    assert!(all.iter().all(Received::valid));
}

#[test]
fn quarantine_alert_survives_a_sigterm_restart_while_the_sink_is_down() {
    alert_survives_restart(false);
}

#[test]
fn quarantine_alert_survives_kill_9_while_the_sink_is_down() {
    alert_survives_restart(true);
}

/// A sink answering 500 gets the same delivery again (backoff 1 s, then 2 s) until it answers
/// 200; then it stops. A release raises its own alert.
#[test]
fn a_failed_delivery_is_retried_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let port = free_port();
    let sink = Sink::start(port, vec![500, 500, 200]);
    let v = Verifier::start_with(
        dir.path(),
        BrokerKind::Mosquitto,
        &webhook_config(dir.path(), port),
    );
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    quarantine(&v);
    wait_for(Duration::from_secs(30), "three attempts", || {
        (sink.received().len() >= 3).then_some(())
    });
    let r = delivered_quarantine(&sink);
    let got = sink.received();
    assert!(
        got[..3]
            .iter()
            .all(|x| x.delivery == r.delivery && x.valid()),
        "{got:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.received().len(), 3, "no attempt after the 200");

    let out = v.ctl(&["release", "term-1", "--reason", "returned"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rel = wait_for(Duration::from_secs(30), "the release alert", || {
        sink.received().into_iter().find(|r| r.event == "release")
    });
    assert!(rel.valid());
    assert_ne!(rel.delivery, r.delivery);
    let body: serde_json::Value = serde_json::from_str(&rel.body).unwrap();
    assert_eq!(body["reason"], "returned", "{body}");
}
