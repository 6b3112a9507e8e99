//! Harness for vouch's end-to-end tests: starts real processes (swtpm, Mosquitto, the
//! vouch-verifier and vouch-agent binaries) on free loopback ports in a private temporary
//! directory, and ends exactly the processes it started, by pid, when dropped.
//!
//! The binaries are the ones `cargo test` built for this workspace (`target/<profile>/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod mirror;
pub mod procs;
pub mod provision;
pub mod punch;
pub mod punch_fleet;
pub mod raw;
pub mod spy;
pub mod tls;
pub mod webhook_sink;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of a workspace binary, built fresh for this test run.
///
/// `cargo test` rebuilds only the binaries of the package under test, so a test of this crate
/// alone (`cargo test -p vouch-e2e`) would otherwise run stale vouch binaries. The first call
/// runs `cargo build --bins` for the binary packages (a no-op when they are up to date).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "vouch-agent",
            "-p",
            "vouch-verifier",
            "-p",
            "vouch-demo",
            "-p",
            "vouch-provisioning",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Cargo runs this test with the package's own variables set (CARGO_MANIFEST_DIR,
        // CARGO_PKG_*, ...). Build scripts that track one of them (ring's tracks
        // CARGO_MANIFEST_DIR) would see it change between this build and the outer `cargo
        // test`, so each would rebuild ring and all that depends on it, every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo_for_the_test = [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
                || name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_");
            if set_by_cargo_for_the_test {
                cmd.env_remove(name.as_ref());
            }
        }
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "building the vouch binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing after building", p.display());
    p
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    wait_for(Duration::from_secs(60), what, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}

pub use vouch_test_kit::http::http_get;
