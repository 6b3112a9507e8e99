//! The dashboard in a real browser (issue 10 §2): Debian's chromium driven through chromedriver
//! by a minimal W3C WebDriver client over loopback HTTP, against the real verifier with a real
//! agent on swtpm whose PCR 4 is extended behind its back, so the appraisal quarantines it.
//! Logs in, finds the quarantined terminal and its reason in the fleet table, sees PCR 4
//! `differs` in its measured-vs-reference table; a viewer token (vouchctl) sees no actions and
//! is refused 403 on a quarantine; an operator token releases it (reason + confirmation);
//! switches to zh-TW; saves screenshots of the fleet, the comparison and the terminal page under
//! target/test-artifacts/. A wrong token shows the login error. Fails when chromium or
//! chromedriver is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vouch_e2e::agent::Terminal;
use vouch_e2e::free_port;
use vouch_e2e::procs::{BrokerKind, Proc, Verifier, swtpm};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One WebDriver session on a chromedriver this test started.
struct Browser {
    port: u16,
    session: String,
}

/// One HTTP/1.1 request to chromedriver; the JSON `value` of its answer.
fn wd(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the HTTP head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head}"))?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let rest = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    let v: Value = serde_json::from_str(&rest).map_err(|e| format!("{e}: {rest}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{method} {path}: {}", v["value"]));
    }
    Ok(v["value"].clone())
}

impl Browser {
    fn start(port: u16, profile: &Path) -> Self {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--disable-quic",
                         "--window-size=1400,1000", "--lang=en-US",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = wd(port, "POST", "/session", Some(&caps)).expect("starting a chromium session");
        let session = v["sessionId"].as_str().expect("a session id").to_owned();
        Self { port, session }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let p = format!("/session/{}{path}", self.session);
        wd(self.port, method, &p, body.as_ref())
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).unwrap();
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap()
    }

    fn async_js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap()
    }

    fn find(&self, css: &str) -> Result<String, String> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        let id = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .ok_or("no element id")?;
        Ok(id.to_owned())
    }

    /// Waits (10 s) until `css` matches a displayed element; its id.
    fn wait(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(id) = self.find(css) {
                let shown = self.cmd("GET", &format!("/element/{id}/displayed"), None);
                if shown == Ok(Value::Bool(true)) {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "{css} never showed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (10 s) until `css`'s text contains `want`.
    fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text(css);
            if text.contains(want) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {want:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        let q = serde_json::to_string(css).unwrap();
        self.js(&format!(
            "const e = document.querySelector({q}); return e ? e.textContent : '';"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.wait(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .unwrap();
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.wait(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})))
            .unwrap();
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .unwrap();
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.len() > 1000, "a {}-byte screenshot", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        std::fs::write(path, &png).unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000);
    }

    fn login(&self, token: &str) {
        self.type_into("#token", token);
        self.click("#login");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_chromedriver(dir: &Path) -> (Proc, u16) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing (Debian package chromium)"
    );
    assert!(
        Path::new(CHROMEDRIVER).exists(),
        "{CHROMEDRIVER} is missing (Debian package chromium-driver)"
    );
    let port = free_port();
    let proc = Proc::spawn(
        "chromedriver",
        Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
        dir.join("chromedriver.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while wd(port, "GET", "/status", None).map_or(true, |v| v["ready"] != true) {
        assert!(Instant::now() < deadline, "chromedriver never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (proc, port)
}

/// A role token made with vouchctl; its secret.
fn token(v: &Verifier, role: &str, name: &str) -> String {
    let out = v.ctl(&["token", "create", "--role", role, "--name", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The comparison row for `name` on the terminal page: its status, waiting (10 s) for it.
fn comparison_status(b: &Browser, name: &str) -> String {
    let q = serde_json::to_string(&format!("#t-comparison tbody tr[data-name='{name}']")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = b.js(&format!(
            "const e = document.querySelector({q}); return e ? e.dataset.status : ''"
        ));
        if s != "" {
            return s.as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "no comparison row {name}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn operator_releases_a_quarantined_terminal_from_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let (_driver, port) = start_chromedriver(dir.path());
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    // Nothing to compare before the first attestation: 404 saying so.
    let (code, body) = v.http(
        "GET",
        "/api/devices/term-1/comparison",
        Some(&v.admin_token()),
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no verified measurements yet") && body.contains("\"code\":\"not_found\""),
        "{body}"
    );
    t.attest_expect(4);
    v.capture("term-1");
    t.attest_expect(0);
    // A boot PCR extended behind the agent's back: the appraisal fails on PCR 4 for real.
    tpm.pcr_extend(4, &"ab".repeat(32)).unwrap();
    let out = t.attest_expect(3);
    assert!(out.contains("PCR 4 "), "{out}");
    let admin = v.admin_token();
    let viewer = token(&v, "viewer", "vera");
    let operator = token(&v, "operator", "otto");
    let base = format!("http://127.0.0.1:{}", v.http_port);

    let profile = dir.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let b = Browser::start(port, &profile);
    b.goto(&format!("{base}/"));
    b.wait("#login-form");
    assert!(b.find("#fleet-view").is_ok());
    assert_eq!(
        b.js("return document.getElementById('fleet-view').hidden"),
        true,
        "the fleet is hidden before login"
    );

    // A wrong token: the login error, still on the login form.
    b.login("not-the-token");
    b.wait_text("#login-error", "not accepted");
    assert_eq!(
        b.js("return document.getElementById('fleet-view').hidden"),
        true
    );

    // The admin sees the fleet: the quarantined terminal and its reason, naming the PCR.
    b.login(&admin);
    b.wait("#fleet-view");
    let row = b.wait_text("#fleet-table tbody tr[data-id='term-1']", "PCR 4");
    assert!(row.contains("quarantined"), "{row}");
    b.wait_text("#counts", "1");
    b.wait("#chart svg polyline[data-series='quarantines']");
    // Filters: the quarantined state keeps it, another state or prefix does not.
    b.js("document.getElementById('state-filter').value='trusted'");
    b.click("#filter-form button[type=submit]");
    b.wait_text("#fleet-table thead", "Id");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        b.find("#fleet-table tbody tr[data-id='term-1']").is_err(),
        "trusted filter"
    );
    b.js("document.getElementById('state-filter').value='quarantined'");
    b.type_into("#search", "term-");
    b.click("#filter-form button[type=submit]");
    b.wait("#fleet-table tbody tr[data-id='term-1']");
    b.screenshot(&artifacts().join("dashboard-fleet.png"));

    // Its page: measured vs reference names PCR 4 as differing, first and highlighted; the
    // other captured PCRs match.
    b.click("#fleet-table tbody tr[data-id='term-1'] a");
    b.wait_text("#t-reasons", "PCR 4");
    assert_eq!(comparison_status(&b, "PCR 4"), "differs");
    assert_eq!(comparison_status(&b, "PCR 0"), "match");
    assert_eq!(
        b.js("return document.querySelector('#t-comparison tbody tr').dataset.name"),
        "PCR 4",
        "the differing row comes first"
    );
    assert_eq!(
        b.js(
            "return document.querySelector(\"#t-comparison tbody tr[data-name='PCR 4']\").className"
        ),
        "bad"
    );
    b.wait_text("#t-comparison-source", "device:term-1@");
    b.screenshot(&artifacts().join("dashboard-comparison.png"));
    b.click("#logout");
    b.wait("#login-form");
    // Back to the fleet's address, so the link below changes the hash again.
    b.js("location.hash = '#/'");

    // The viewer: the same page, no quarantine or release buttons, and the API refuses the
    // viewer's quarantine with 403 `forbidden`.
    b.login(&viewer);
    b.wait("#fleet-view");
    b.js("location.hash = '#/devices/term-1'");
    b.wait_text("#t-reasons", "PCR 4");
    assert_eq!(comparison_status(&b, "PCR 4"), "differs");
    assert_eq!(
        b.js("return document.getElementById('actions').hidden"),
        true,
        "a viewer sees no actions"
    );
    assert!(b.find("#release-btn").is_ok());
    let shown = b.cmd(
        "GET",
        &format!("/element/{}/displayed", b.find("#release-btn").unwrap()),
        None,
    );
    assert_eq!(
        shown,
        Ok(Value::Bool(false)),
        "the release button is not shown"
    );
    let r = b.async_js(
        "const done = arguments[0]; fetch('/api/devices/term-1/quarantine', {method: 'POST', \
         headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('vouch.token'), \
         'Content-Type': 'application/json'}, body: JSON.stringify({reason: 'x'})}) \
         .then(r => r.json().then(j => done([r.status, j.code])));",
    );
    assert_eq!(r, json!([403, "forbidden"]), "the viewer's quarantine");
    b.click("#logout");
    b.wait("#login-form");
    b.js("location.hash = '#/'");

    // The operator (an operator token, not admin) releases it: reason required, then the
    // confirmation step.
    b.login(&operator);
    b.wait("#fleet-view");
    b.wait_text("#who", "otto (operator)");
    b.click("#fleet-table tbody tr[data-id='term-1'] a");
    b.wait_text("#t-reasons", "PCR 4");
    b.click("#release-btn");
    b.wait_text("#action-error", "reason is required");
    b.type_into("#reason", "found and checked");
    b.click("#release-btn");
    b.wait("#confirm-yes");
    b.screenshot(&artifacts().join("dashboard-terminal.png"));
    b.click("#confirm-yes");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = b.js(
            "const e = document.querySelector('#t-state .state'); return e ? e.dataset.state : ''",
        );
        // No agent runs now: the release waits for the next attestation.
        if s == "release_pending" || s == "trusted" {
            break;
        }
        assert!(Instant::now() < deadline, "state after release: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dev = v.ctl_json(&["device", "term-1", "--json"]);
    assert!(
        dev["release_pending"] == true || dev["state"] == "trusted",
        "{dev}"
    );
    let audit = v.ctl_json(&["audit", "--json"]).to_string();
    assert!(
        audit.contains("found and checked") && audit.contains("otto"),
        "the release is audited with the operator's name: {audit}"
    );

    // zh-TW: a translated label, and the choice is remembered.
    b.js("const s = document.getElementById('lang'); s.value = 'zh-TW'; s.dispatchEvent(new Event('change'));");
    b.wait_text("label[for=reason]", "原因");
    b.wait_text("#release-btn", "釋放");
    b.wait_text("#t-comparison thead", "參考值");
    assert_eq!(comparison_status(&b, "PCR 4"), "differs");
    b.goto(&format!("{base}/"));
    b.wait_text("label[for=lang]", "語言");

    // The API behind the page refuses a call without a valid token.
    let r = b.async_js(
        "const done = arguments[0]; fetch('/api/devices/term-1/quarantine', {method: 'POST', \
         headers: {'Authorization': 'Bearer nope', 'Content-Type': 'application/json'}, \
         body: JSON.stringify({reason: 'x'})}).then(r => done(r.status));",
    );
    assert_eq!(r, 401);

    // Log out: back to the login form, the token gone.
    b.click("#logout");
    b.wait("#login-form");
    assert_eq!(
        b.js("return sessionStorage.getItem('vouch.token')"),
        Value::Null
    );

    // Headers: the strict CSP and nosniff on the page.
    let page = b.async_js(
        "const done = arguments[0]; fetch('/').then(r => done([r.headers.get('content-security-policy'), \
         r.headers.get('x-content-type-options')]));",
    );
    assert!(
        page[0].as_str().unwrap().starts_with("default-src 'self'"),
        "{page}"
    );
    assert_eq!(page[1], "nosniff");
}
