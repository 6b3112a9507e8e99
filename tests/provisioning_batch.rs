//! A simulated fleet from the factory to trusted (issue 9, §3): `vouch-provision batch` makes
//! 1,000 SIMULATED terminals and their vendor-signed manifests, `vouchctl import manifest`
//! enrolls them all in one call, a reference bundle captured from one of them is imported for
//! the batch's model, and `vouch-bench fleet` attests every terminal through the verifier's
//! managed Mosquitto, each as its own MQTT identity.
//!
//! Simulated terminals carry no EK certificate, so under `require_ek_cert = true` they would be
//! `warning` at best; this verifier sets `require_ek_cert = false` (what the demo does) so
//! that they can be trusted, and the device view still says `simulated`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use vouch_e2e::bin;
use vouch_e2e::procs::{BrokerKind, Verifier};
use vouch_e2e::provision::{Vendor, ok, text};

const MODEL: &str = "T-SIM";
const FW: &str = "2.1";
const COUNT: usize = 1000;

fn fleet(v: &Verifier, batch: &Path, timeout: u64) -> Output {
    Command::new(bin("vouch-bench"))
        .arg("fleet")
        .arg(batch)
        .arg("--mqtt")
        .arg(format!("127.0.0.1:{}", v.mqtt_port))
        .arg("--verifier-key")
        .arg(v.verifier_pub())
        .args(["--timeout", &timeout.to_string()])
        .output()
        .unwrap()
}

fn manifests(batch: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(batch.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn a_thousand_terminal_batch_is_imported_and_attests_as_simulated_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start_with(dir.path(), BrokerKind::Managed, "require_ek_cert = false\n");
    let vendor = Vendor::init(&dir.path().join("vendor"), "acme-sim");
    vendor.trust_on(&v);
    let batch = dir.path().join("batch");
    let t = Instant::now();
    ok(
        "vouch-provision batch",
        vendor.batch(&batch, COUNT, MODEL, FW, "sim"),
    );
    eprintln!("batch of {COUNT}: {:.1} s", t.elapsed().as_secs_f64());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch.join("batch.json")).unwrap()).unwrap();
    assert_eq!(summary["count"], COUNT);
    assert_eq!(summary["simulated"], true);
    assert_eq!(summary["ids"].as_array().unwrap().len(), COUNT);
    assert_eq!(summary["ids"][0], "sim-00001");
    let files = manifests(&batch);
    assert_eq!(files.len(), COUNT);

    let mut args = vec!["import", "manifest"];
    args.extend(files.iter().map(String::as_str));
    let t = Instant::now();
    let out = ok("vouchctl import manifest (1,000 files)", v.ctl(&args));
    eprintln!(
        "import of {COUNT} manifests: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let enrolled = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("sim-"))
        .count();
    assert_eq!(enrolled, COUNT, "{}", text(&out));

    // No reference values yet. One terminal attests first (a batch directory of its own):
    // it gets a verdict, not trust, and its verified measurements become the vendor's bundle
    // for the batch's model.
    let one = dir.path().join("one");
    std::fs::create_dir_all(one.join("terminals")).unwrap();
    let mut first = summary.clone();
    first["ids"] = serde_json::json!(["sim-00001"]);
    first["count"] = serde_json::json!(1);
    std::fs::write(one.join("batch.json"), first.to_string()).unwrap();
    std::fs::copy(
        batch.join("terminals/sim-00001.json"),
        one.join("terminals/sim-00001.json"),
    )
    .unwrap();
    let out = ok("vouch-bench fleet (one terminal)", fleet(&v, &one, 120));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("verdicts: 1 of 1"), "{report}");
    assert!(!report.contains("affirming"), "{report}");
    assert_eq!(v.device("sim-00001")["state"], "pending");
    let m = dir.path().join("sim-00001.measurements.json");
    ok(
        "vouchctl measurements",
        v.ctl(&["measurements", "sim-00001", "--out", m.to_str().unwrap()]),
    );
    let bundle = vendor.bundle_from_evidence(&m, MODEL, FW);
    ok(
        "vouchctl import reference",
        v.ctl(&["import", "reference", bundle.to_str().unwrap()]),
    );

    let t = Instant::now();
    let out = ok("vouch-bench fleet", fleet(&v, &batch, 300));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "fleet of {COUNT}: {:.1} s\n{report}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        report.contains(&format!("verdicts: {COUNT} of {COUNT} (affirming {COUNT})")),
        "{report}"
    );
    for id in ["sim-00001", "sim-00500", "sim-01000"] {
        let view = v.device(id);
        assert_eq!(view["state"], "trusted", "{view:#}");
        assert_eq!(view["simulated"], true, "{view:#}");
        assert_eq!(view["provenance"]["simulated"], true, "{view:#}");
        assert_eq!(
            view["provenance"]["credential_activated"], false,
            "{view:#}"
        );
        assert_eq!(view["provenance"]["vendor"], "acme-sim", "{view:#}");
        assert_eq!(view["firmware_version"], FW, "{view:#}");
    }
}

#[test]
fn the_fleet_bench_fails_naming_the_terminals_without_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::start(dir.path(), BrokerKind::Managed);
    let vendor = Vendor::init(&dir.path().join("vendor"), "acme-sim");
    let batch = dir.path().join("batch");
    ok(
        "vouch-provision batch",
        vendor.batch(&batch, 2, MODEL, FW, "lost"),
    );
    // Never imported: the broker refuses them, so no verdict can come.
    let out = fleet(&v, &batch, 10);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 of 2 terminals got no verdict"),
        "{}",
        text(&out)
    );
}
