//! Issue 7 §3: production binaries carry production code only. `vouch-verifier` and
//! `vouch-agent` must not depend on the simulated TPM (`vouch-sim`, whose keys derive from
//! seeds anyone can recompute), the test kit, or the demo crate, nor switch on the protocol's
//! event-log builder; and their built executables must not contain the simulator's key-derivation
//! domain string. The same string is found in `vouch-demo`, which shows the byte check can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use vouch_e2e::bin;

/// Crates that must never be a normal (shipped) dependency of a production binary.
const NOT_IN_PRODUCTION: [&str; 3] = ["vouch-sim", "vouch-test-kit", "vouch-demo"];

/// The simulated TPM's key-derivation domain (`vouch_sim::tpm`): present in any executable
/// that can derive a simulated TPM's keys.
const SIM_MARKER: &[u8] = b"vouch-sim-v1\0";

/// `cargo tree` of `package`'s normal dependencies, with features, one crate per line.
fn tree(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--locked", "--offline", "-p", package])
        .args(["-e", "normal,features", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn verifier_and_agent_do_not_depend_on_the_simulator_the_test_kit_or_the_demo() {
    // The check can fail: the demo's tree does list the simulator.
    assert!(
        tree("vouch-demo")
            .lines()
            .any(|l| l.starts_with("vouch-sim ")),
        "the tree of vouch-demo does not list vouch-sim, so this check would prove nothing"
    );
    for package in ["vouch-verifier", "vouch-agent", "vouch-provisioning"] {
        let tree = tree(package);
        assert!(
            tree.lines().any(|l| l.starts_with("vouch-protocol ")),
            "the tree of {package} does not list vouch-protocol: is this `cargo tree` output?\n{tree}"
        );
        for line in tree.lines() {
            for krate in NOT_IN_PRODUCTION {
                assert!(
                    !line.starts_with(&format!("{krate} ")),
                    "{package} depends on {krate}: {line}"
                );
            }
            assert!(
                !line.contains("feature \"eventlog-builder\""),
                "{package} enables the protocol's event-log builder: {line}"
            );
        }
    }
}

#[test]
fn verifier_and_agent_executables_contain_no_simulated_tpm() {
    let demo = std::fs::read(bin("vouch-demo")).unwrap();
    assert!(
        contains(&demo, SIM_MARKER),
        "vouch-demo links the simulator, so its marker must be found (else this check proves nothing)"
    );
    for name in [
        "vouch-verifier",
        "vouch-agent",
        "vouchctl",
        "vouch-provision",
    ] {
        let exe = std::fs::read(bin(name)).unwrap();
        assert!(
            !contains(&exe, SIM_MARKER),
            "{name} contains the simulated TPM's key-derivation domain"
        );
    }
}
