//! Helpers for the simulated batch's tests: running the real `vouch-provision-sim` (what
//! `vouch-provision batch` runs), making a vendor directory with the provisioning library's own
//! `vendor-init`, and reading the vendor's public key the way an operator would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::VerifyingKey;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `vouch-provision ARGS` for `batch` (the only command this crate's binary serves).
pub fn run(args: &[&str]) -> Output {
    assert_eq!(args.first(), Some(&"batch"), "only batch is served here");
    Command::new(env!("CARGO_BIN_EXE_vouch-provision-sim"))
        .args(&args[1..])
        .output()
        .unwrap()
}

/// Runs it and asserts success, returning stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    vouch_test_kit::process::assert_success(&format!("vouch-provision {}", args.join(" ")), &out);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs it, asserts exit code 1, returns stderr.
pub fn refused(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "vouch-provision {} should have been refused; stdout:\n{}\nstderr:\n{stderr}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// `vendor-init --out DIR/NAME --name NAME`; returns the directory.
pub fn vendor(dir: &Path, name: &str) -> PathBuf {
    let v = dir.join(name);
    vouch_provisioning::vendor::init(&vouch_provisioning::vendor::InitArgs {
        out: v.clone(),
        name: Some(name.to_owned()),
    })
    .unwrap();
    v
}

/// The vendor's public key, parsed from vendor.pub as `vouchctl vendor trust` does.
pub fn vendor_key(dir: &Path) -> VerifyingKey {
    let text = std::fs::read_to_string(dir.join("vendor.pub")).unwrap();
    vouch_protocol::vendor::parse_public_key(&text).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}
