//! The README's main job: `vouch-demo` (what `./scripts/demo` runs), with swtpm-backed terminals
//! provisioned through the factory flow (EK certificates from a demo TPM manufacturer,
//! credential activation, vendor-signed manifests) and with simulated ones (`vouch-provision
//! batch`, the agent shell over the simulated TPM), must run to the end: the fleet trusted
//! under the vendor's reference bundle, exactly the three tampered terminals quarantined with
//! reasons that name what changed — the firmware file, the boot event, and the hidden board's
//! SMBIOS vendor refused by the supply-chain policy — the untouched terminals still trusted,
//! and nothing left behind. Both variants run in one test because both want the embedded
//! default ports.

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

/// The lines between the headline containing `from` and the next headline (a line starting
/// with `[`).
fn section<'a>(text: &'a str, from: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in:\n{text}"));
    let rest = &text[start..];
    let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn check(text: &str) {
    // Trust from the roots: the vendor is trusted, its manifests imported, the bundle imported.
    for command in [
        "$ vouch-provision vendor-init",
        "$ vouchctl vendor trust acme-terminals vendor/vendor.pub",
        "$ vouchctl import manifest",
        "$ vouchctl measurements term-00001",
        "$ vouch-provision reference --evidence term-00001.measurements.json",
        "$ vouchctl import reference T-100-1.0.bundle",
        "$ vouchctl supply-chain set supply-chain.json",
    ] {
        assert!(text.contains(command), "{command:?} missing:\n{text}");
    }
    let trusted = section(text, "the whole fleet is trusted");
    for n in 1..=5 {
        assert!(
            trusted.contains(&format!("term-0000{n}  trusted")),
            "{text}"
        );
    }

    assert_eq!(text.matches("QUARANTINED").count(), 3, "{text}");
    assert!(text.contains("firmware firmware.bin has sha256"), "{text}");
    assert!(
        text.contains("PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION \\EFI\\BOOT\\BOOTX64.EFI digest"),
        "{text}"
    );
    // The hidden board: quarantined naming the component and the rule, and the change.
    let hidden = section(text, "term-00003 QUARANTINED");
    assert!(
        hidden.contains(
            "SMBIOS board_vendor \"Hidden Board Co\" is refused by the supply-chain policy"
        ),
        "{hidden}"
    );
    assert!(
        hidden.contains("hardware changed since provisioning: smbios.board_vendor was"),
        "{hidden}"
    );
    // The rest of the fleet is untouched.
    let table = section(text, "the rest of the fleet is untouched");
    assert!(table.contains("term-00001  trusted"), "{text}");
    assert!(table.contains("term-00002  quarantined"), "{text}");
    assert!(table.contains("term-00003  quarantined"), "{text}");
    assert!(table.contains("term-00004  quarantined"), "{text}");
    assert!(table.contains("term-00005  trusted"), "{text}");
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
    assert!(real.contains("$ vouch-provision challenge"), "{real}");
    assert!(
        real.contains("$ vouch-agent --state state --tcti"),
        "{real}"
    );
    assert!(real.contains("EK certificate chains to"), "{real}");
    assert!(real.contains("require_ek_cert = true"), "{real}");
    check(&real);
    let simulated = demo(&["--simulated"]);
    assert!(simulated.contains("require_ek_cert = false"), "{simulated}");
    assert!(simulated.contains("$ vouch-provision batch"), "{simulated}");
    assert!(
        simulated.contains("SIMULATED, no EK certificate"),
        "{simulated}"
    );
    check(&simulated);
}
