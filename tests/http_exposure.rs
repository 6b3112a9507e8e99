//! The loopback rule of the operator API, against the real `vouch-verifier` binary: a
//! non-loopback `--http-listen` without `--http-insecure-remote` stops the verifier at start,
//! with a non-zero exit and a message naming the flag that accepts the risk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use vouch_e2e::bin;

#[test]
fn non_loopback_http_listen_without_insecure_remote_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    // Port 0: even if the check were missing nothing fixed would be taken; the check runs
    // while the configuration is resolved, before any listener or broker exists.
    let out = Command::new(bin("vouch-verifier"))
        .arg("run")
        .arg("--data")
        .arg(data.path())
        .args(["--http-listen", "0.0.0.0:0", "--mqtt-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains("--http-insecure-remote"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
