//! The README's main job: `vouch-demo` (what `./scripts/demo` runs), with swtpm-backed terminals
//! and with simulated ones (the agent shell over the simulated TPM), must run to the end, quarantine exactly the two tampered terminals with reasons that
//! name what changed, and leave nothing behind. Both variants run in one test because both want
//! the embedded default ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use vouch_e2e::bin;

fn demo(extra: &[&str]) -> String {
    let out = Command::new(bin("vouch-demo"))
        .args(["--interval", "2"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo {extra:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn check(text: &str) {
    assert_eq!(text.matches("QUARANTINED").count(), 2, "{text}");
    assert!(text.contains("firmware firmware.bin has sha256"), "{text}");
    assert!(
        text.contains("PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION \\EFI\\BOOT\\BOOTX64.EFI digest"),
        "{text}"
    );
    let table = text.rsplit("keep working").next().unwrap();
    assert!(table.contains("term-01  trusted"), "{text}");
    assert!(table.contains("term-02  quarantined"), "{text}");
    assert!(table.contains("term-03  quarantined"), "{text}");
    assert!(text.contains("\ndone:"), "{text}");
    let dir = text
        .split("logs in ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "the demo left {dir} behind"
    );
}

#[test]
fn demo_runs_to_the_end_with_swtpm_and_with_simulated_terminals() {
    let real = demo(&[]);
    assert!(!real.contains("SIMULATED"), "{real}");
    check(&real);
    let simulated = demo(&["--simulated"]);
    assert!(simulated.contains("SIMULATED"), "{simulated}");
    check(&simulated);
}
