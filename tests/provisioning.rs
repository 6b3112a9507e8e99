//! Vendor provisioning and the chain of trust end to end (issue 9, §3): software TPMs
//! manufactured with EK certificates by a test TPM manufacturer CA (`swtpm_setup
//! --create-ek-cert` through `swtpm_localca`), a real verifier that trusts that CA's roots
//! (`tpm_roots`) and requires a chaining EK certificate (`require_ek_cert = true`), and the real
//! `vouch-agent`, `vouch-provision` and `vouchctl` binaries. Each test has its own verifier,
//! CA, vendor and devices, so they run in parallel and a failure names one case.
//!
//! The simulated 1,000-terminal batch is in `provisioning_batch.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use vouch_e2e::procs::{BrokerKind, Swtpm, Verifier, swtpm};
use vouch_e2e::provision::{FakeSysfs, ProvTerminal, Station, Vendor, ok, refused, text};
use vouch_e2e::wait_for;
use vouch_protocol::credential::{CredentialResponse, request_digest};
use vouch_test_kit::ekca::{SwtpmWithEkCert, TpmManufacturerCa};

const MODEL: &str = "T-100";
const FW: &str = "1.0";

/// A verifier trusting one TPM manufacturer, and a vendor's factory station it trusts.
struct Factory {
    dir: TempDir,
    maker: TpmManufacturerCa,
    v: Verifier,
    station: Station,
}

/// A terminal on its own manufactured TPM, and its enrollment request.
struct Device {
    _tpm: SwtpmWithEkCert,
    t: ProvTerminal,
    request: PathBuf,
}

fn factory() -> Factory {
    let dir = tempfile::tempdir().unwrap();
    let maker = TpmManufacturerCa::create(&dir.path().join("maker")).unwrap();
    let v = Verifier::start_with(
        dir.path(),
        BrokerKind::Managed,
        &format!(
            "require_ek_cert = true\ntpm_roots = {:?}\n",
            maker.roots_dir().display().to_string()
        ),
    );
    let vendor = Vendor::init(&dir.path().join("vendor"), "acme");
    vendor.trust_on(&v);
    let station = Station::new(vendor, &dir.path().join("pending"));
    Factory {
        dir,
        maker,
        v,
        station,
    }
}

impl Factory {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A TPM manufactured by `maker` and a terminal on it, enrolled by its agent (with the
    /// fake board `prepare` leaves in its sysfs): the request, not yet activated.
    fn enrolled(
        &self,
        id: &str,
        maker: &TpmManufacturerCa,
        prepare: impl FnOnce(&FakeSysfs),
    ) -> Device {
        let tpm = SwtpmWithEkCert::start(maker, &self.path(&format!("tpm-{id}"))).unwrap();
        let t = ProvTerminal::new(self.dir.path(), id, tpm.tcti(), &self.v, FW);
        prepare(&t.sysfs);
        let request = t.enroll(MODEL);
        Device {
            _tpm: tpm,
            t,
            request,
        }
    }

    /// challenge → activate → issue --tpm-roots (the verifier's maker): the manifest.
    fn issue(&self, d: &Device) -> PathBuf {
        let challenge = self.station.challenge(&d.request);
        let response = d.t.activate_ok(&challenge);
        let (out, manifest) = self.station.issue(
            &d.request,
            &response,
            MODEL,
            FW,
            Some(&self.maker.roots_dir()),
            &[],
        );
        ok("vouch-provision issue", out);
        manifest
    }

    fn import(&self, manifest: &Path) -> std::process::Output {
        self.v
            .ctl(&["import", "manifest", manifest.to_str().unwrap()])
    }

    /// Enrolled, activated, issued and imported: the device is enrolled from its manifest.
    fn provisioned(&self, id: &str, prepare: impl FnOnce(&FakeSysfs)) -> Device {
        let d = self.enrolled(id, &self.maker, prepare);
        let manifest = self.issue(&d);
        let out = ok("vouchctl import manifest", self.import(&manifest));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
        d
    }

    /// The vendor's reference bundle for MODEL/FW, captured from `t`'s first verified
    /// measurements, imported: `vouchctl measurements ID --out F` → `vouch-provision reference
    /// --evidence F --vendor ...` → `vouchctl import reference B`.
    fn publish_reference(&self, t: &ProvTerminal) {
        let m = self.path(&format!("{}.measurements.json", t.id));
        ok(
            "vouchctl measurements",
            self.v
                .ctl(&["measurements", &t.id, "--out", m.to_str().unwrap()]),
        );
        let bundle = self.station.vendor.bundle_from_evidence(&m, MODEL, FW);
        ok(
            "vouchctl import reference",
            self.v
                .ctl(&["import", "reference", bundle.to_str().unwrap()]),
        );
    }

    /// Provisioned, attested once (pending: no reference values yet), the vendor's bundle
    /// captured from it and imported, attested again: trusted.
    fn trusted(&self, id: &str, prepare: impl FnOnce(&FakeSysfs)) -> Device {
        let d = self.provisioned(id, prepare);
        let out = d.t.attest_expect(4);
        assert!(out.contains("no reference values"), "{out}");
        self.publish_reference(&d.t);
        d.t.attest_expect(0);
        assert_eq!(self.v.device(id)["state"], "trusted");
        d
    }
}

fn has(reasons: &[String], needle: &str) -> bool {
    reasons.iter().any(|r| r.contains(needle))
}

#[test]
fn full_flow_enroll_activate_issue_import_attest_is_trusted_with_ek_anchor_and_provenance() {
    let f = factory();
    let d = f.provisioned("term-full", |_| {});
    let view = f.v.device("term-full");
    assert_eq!(view["state"], "pending", "{view:#}");
    assert_eq!(view["provenance"]["vendor"], "acme", "{view:#}");
    assert_eq!(view["provenance"]["simulated"], false, "{view:#}");
    assert_eq!(view["provenance"]["credential_activated"], true, "{view:#}");
    assert_eq!(view["provenance"]["firmware_version"], FW, "{view:#}");
    assert_eq!(view["simulated"], false, "{view:#}");
    let anchor = view["ek_cert_anchor"].as_str().unwrap_or_default();
    assert!(
        anchor.contains(f.maker.name()),
        "the EK certificate chains to {}: {view:#}",
        f.maker.name()
    );

    let out = d.t.attest_expect(4);
    assert!(out.contains("no reference values"), "{out}");
    f.publish_reference(&d.t);
    let list = f.v.ctl_json(&["reference", "list", "--json"]);
    let listed = list.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|b| b["model"] == MODEL && b["firmware_version"] == FW),
        "{list:#}"
    );
    d.t.attest_expect(0);
    let view = f.v.device("term-full");
    assert_eq!(view["state"], "trusted", "{view:#}");
    assert_eq!(view["verdict_status"], "affirming", "{view:#}");
    assert_eq!(view["firmware_version"], FW, "{view:#}");
    assert_eq!(view["firmware_revoked"], false, "{view:#}");
    assert_eq!(view["ek_cert_anchor"].as_str(), Some(anchor), "{view:#}");
}

#[test]
fn activation_answered_by_a_different_swtpm_is_refused_by_issue() {
    let f = factory();
    let a = f.enrolled("term-a", &f.maker, |_| {});
    let b = f.enrolled("term-b", &f.maker, |_| {});
    let challenge_a = f.station.challenge(&a.request);
    let challenge_b = f.station.challenge(&b.request);

    // B's TPM cannot open a credential made for A's EK and AK.
    let (out, _) = b.t.activate(&challenge_a);
    assert!(
        !out.status.success(),
        "term-b's TPM answered term-a's challenge:\n{}",
        text(&out)
    );

    // What a station gets when another TPM answered: B's TPM's secret, presented for A.
    let response_b = b.t.activate_ok(&challenge_b);
    let mut forged = CredentialResponse::from_cbor(&std::fs::read(&response_b).unwrap()).unwrap();
    forged.device = "term-a".parse().unwrap();
    forged.request_digest = request_digest(&std::fs::read(&a.request).unwrap());
    let forged_path = f.path("term-a-answered-by-b.response");
    std::fs::write(&forged_path, forged.to_cbor()).unwrap();
    let roots = f.maker.roots_dir();
    let (out, manifest) = f
        .station
        .issue(&a.request, &forged_path, MODEL, FW, Some(&roots), &[]);
    let err = refused("issue with another TPM's answer", &out);
    assert!(err.contains("wrong secret"), "{err}");
    assert!(!manifest.exists(), "a refused issue wrote {manifest:?}");

    // B's answer to A's challenge as it is (bound to B's request) is refused too.
    let (out, _) = f
        .station
        .issue(&a.request, &response_b, MODEL, FW, Some(&roots), &[]);
    let err = refused("issue with a response to another request", &out);
    assert!(err.contains("different enrollment request"), "{err}");

    // A's own answer is accepted: the refusals above were for the answers, not the request.
    let response_a = a.t.activate_ok(&challenge_a);
    let (out, manifest) = f
        .station
        .issue(&a.request, &response_a, MODEL, FW, Some(&roots), &[]);
    ok("issue with term-a's own answer", out);
    assert!(manifest.exists());
}

#[test]
fn ek_certificate_from_an_untrusted_manufacturer_is_refused_by_issue() {
    let f = factory();
    let other = TpmManufacturerCa::create(&f.path("other-maker")).unwrap();
    let d = f.enrolled("term-other", &other, |_| {});
    let challenge = f.station.challenge(&d.request);
    let response = d.t.activate_ok(&challenge);

    let (out, manifest) = f.station.issue(
        &d.request,
        &response,
        MODEL,
        FW,
        Some(&f.maker.roots_dir()),
        &[],
    );
    let err = refused("issue against another manufacturer's roots", &out);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!manifest.exists(), "a refused issue wrote {manifest:?}");
    // Even "--allow-no-ek-cert" does not wave through a certificate that fails to chain.
    let (out, _) = f.station.issue(
        &d.request,
        &response,
        MODEL,
        FW,
        Some(&f.maker.roots_dir()),
        &["--allow-no-ek-cert"],
    );
    refused(
        "issue --allow-no-ek-cert with an untrusted certificate",
        &out,
    );

    // Its own manufacturer's roots accept it: the refusal was the chain, nothing else.
    let (out, manifest) = f.station.issue(
        &d.request,
        &response,
        MODEL,
        FW,
        Some(&other.roots_dir()),
        &[],
    );
    ok("issue against its own manufacturer's roots", out);
    // The verifier checks the chain itself: imported, but anchored to none of its roots.
    ok("vouchctl import manifest", f.import(&manifest));
    let view = f.v.device("term-other");
    assert!(view["ek_cert_anchor"].is_null(), "{view:#}");
}

#[test]
fn tampered_manifest_unknown_and_revoked_vendors_are_refused_by_import() {
    let f = factory();
    let acme = &f.station.vendor;
    let batch = f.path("acme-batch");
    ok("batch", acme.batch(&batch, 2, MODEL, FW, "acme"));
    let genuine = batch.join("manifests/acme-00001.cbor");
    let bytes = std::fs::read(&genuine).unwrap();

    // One byte of the signed payload changed: the device id it names.
    let at = bytes
        .windows(b"acme-00001".len())
        .position(|w| w == b"acme-00001")
        .unwrap();
    let mut flipped = bytes.clone();
    flipped[at + b"acme-0000".len()] = b'9';
    let flipped_path = f.path("flipped.cbor");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let err = refused(
        "import of a manifest with a flipped byte",
        &f.import(&flipped_path),
    );
    assert!(err.to_lowercase().contains("signature"), "{err}");
    // And one flipped bit in the signature itself.
    let mut sig = bytes.clone();
    *sig.last_mut().unwrap() ^= 1;
    std::fs::write(&flipped_path, &sig).unwrap();
    let err = refused(
        "import of a manifest with a flipped signature bit",
        &f.import(&flipped_path),
    );
    assert!(err.to_lowercase().contains("signature"), "{err}");
    for id in ["acme-00001", "acme-00009"] {
        assert!(
            !f.v.ctl(&["device", id, "--json"]).status.success(),
            "{id} was enrolled from a tampered manifest"
        );
    }

    // A vendor the operator never trusted.
    let shadow = Vendor::init(&f.path("shadow"), "shadow");
    ok(
        "batch",
        shadow.batch(&f.path("shadow-batch"), 1, MODEL, FW, "shadow"),
    );
    let err = refused(
        "import from an unknown vendor",
        &f.import(&f.path("shadow-batch/manifests/shadow-00001.cbor")),
    );
    assert!(err.contains("shadow"), "{err}");

    // A vendor that was trusted, then revoked.
    let former = Vendor::init(&f.path("former"), "former");
    former.trust_on(&f.v);
    ok(
        "batch",
        former.batch(&f.path("former-batch"), 1, MODEL, FW, "former"),
    );
    ok(
        "vouchctl vendor revoke",
        f.v.ctl(&[
            "vendor",
            "revoke",
            "former",
            "--reason",
            "signing key leaked",
        ]),
    );
    let err = refused(
        "import from a revoked vendor",
        &f.import(&f.path("former-batch/manifests/former-00001.cbor")),
    );
    assert!(err.contains("former") && err.contains("revoked"), "{err}");
    let vendors = f.v.ctl_json(&["vendor", "list", "--json"]);
    assert!(
        vendors.to_string().contains("signing key leaked"),
        "{vendors:#}"
    );

    // The untouched manifest is accepted: the refusals were the tampering and the vendors.
    let out = ok("import of the genuine manifest", f.import(&genuine));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "acme-00001");
    assert_eq!(f.v.device("acme-00001")["simulated"], true);
}

#[test]
fn denied_pci_vendor_is_quarantined_naming_the_device_and_the_rule() {
    let f = factory();
    let d = f.trusted("term-sc", |s| s.set_pci("0000:02:00.0", 0x10ec, 0x8168));
    let policy = f.path("supply-chain.json");
    std::fs::write(
        &policy,
        r#"{"mode":"deny","deny":{"pci_vendors":["10ec"]}}"#,
    )
    .unwrap();
    ok(
        "vouchctl supply-chain set",
        f.v.ctl(&["supply-chain", "set", policy.to_str().unwrap()]),
    );
    let shown = ok(
        "vouchctl supply-chain show",
        f.v.ctl(&["supply-chain", "show"]),
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("10ec"));

    d.t.attest_expect(3);
    let reasons = f.v.reasons("term-sc");
    assert!(
        f.v.reason_codes("term-sc")
            .contains(&"supply_chain_denied".to_owned()),
        "{reasons:?}"
    );
    assert!(
        has(&reasons, "PCI device 10ec:8168 at 0000:02:00.0"),
        "{reasons:?}"
    );
    assert!(has(&reasons, "deny.pci_vendors 10ec"), "{reasons:?}");
    // Only that device: the board's Intel functions pass.
    assert!(!has(&reasons, "8086"), "{reasons:?}");
}

#[test]
fn inventory_changed_while_the_agent_runs_is_quarantined_naming_the_change() {
    let f = factory();
    let d = f.trusted("term-hw", |_| {});
    let mut daemon = d.t.spawn_daemon(2);
    // The swapped mainboard: another board vendor, and another NIC function in the same slot.
    d.t.sysfs.set_dmi("board_vendor", "Hidden Board Co");
    d.t.sysfs.set_pci("0000:00:1f.6", 0x10ec, 0x8168);
    let board = "smbios.board_vendor was Acme Boards, is now Hidden Board Co";
    let nic = "PCI 0000:00:1f.6 was 8086:15bc, is now 10ec:8168";
    let reasons = wait_for(
        Duration::from_secs(90),
        "quarantine naming both hardware changes",
        || {
            let view = f.v.device("term-hw");
            let reasons = f.v.reasons("term-hw");
            (view["state"] == "quarantined" && has(&reasons, board) && has(&reasons, nic))
                .then_some(reasons)
        },
    );
    assert!(
        f.v.reason_codes("term-hw")
            .iter()
            .any(|c| c == "hardware_changed"),
        "{reasons:?}"
    );
    assert!(daemon.stop(), "the agent did not exit on SIGTERM");
}

#[test]
fn revoked_firmware_is_flagged_before_and_quarantined_at_the_next_attestation() {
    let f = factory();
    let d = f.trusted("term-rev", |_| {});
    ok(
        "vouchctl reference revoke",
        f.v.ctl(&[
            "reference",
            "revoke",
            MODEL,
            FW,
            "--reason",
            "CVE-2026-0042 remote unlock",
        ]),
    );
    // Before its next attestation: still trusted, but marked as running revoked firmware.
    let view = f.v.device("term-rev");
    assert_eq!(view["state"], "trusted", "{view:#}");
    assert_eq!(view["firmware_revoked"], true, "{view:#}");
    let devices = ok("vouchctl devices", f.v.ctl(&["devices"]));
    let listing = String::from_utf8_lossy(&devices.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.contains("term-rev"))
        .unwrap_or_else(|| panic!("term-rev not listed:\n{listing}"));
    assert!(line.contains("REVOKED-FW"), "{listing}");
    let list = f.v.ctl_json(&["reference", "list", "--json"]);
    assert!(list.to_string().contains("CVE-2026-0042"), "{list:#}");

    d.t.attest_expect(3);
    let reasons = f.v.reasons("term-rev");
    assert!(
        f.v.reason_codes("term-rev")
            .contains(&"firmware_revoked".to_owned()),
        "{reasons:?}"
    );
    assert!(has(&reasons, "CVE-2026-0042 remote unlock"), "{reasons:?}");
}

#[test]
fn without_a_chaining_ek_certificate_the_best_verdict_is_warning() {
    let f = factory();
    // A TPM with no EK certificate at all (a raw swtpm state): the factory must opt in.
    let tpm: Swtpm = swtpm(&f.path("tpm-nocert"));
    let t = ProvTerminal::new(f.dir.path(), "term-nocert", tpm.tcti(), &f.v, FW);
    let request = t.enroll(MODEL);
    let challenge = f.station.challenge(&request);
    let response = t.activate_ok(&challenge);
    let roots = f.maker.roots_dir();
    let (out, manifest) = f
        .station
        .issue(&request, &response, MODEL, FW, Some(&roots), &[]);
    refused("issue of a TPM without an EK certificate", &out);
    assert!(!manifest.exists());
    let (out, manifest) = f.station.issue(
        &request,
        &response,
        MODEL,
        FW,
        Some(&roots),
        &["--allow-no-ek-cert"],
    );
    ok("issue --allow-no-ek-cert", out);
    ok("vouchctl import manifest", f.import(&manifest));
    let view = f.v.device("term-nocert");
    assert!(view["ek_cert_anchor"].is_null(), "{view:#}");
    assert_eq!(view["provenance"]["credential_activated"], true, "{view:#}");

    t.attest_expect(4);
    f.publish_reference(&t);
    // Reference values match and the quote checks, but require_ek_cert caps it at warning.
    let out = t.attest_expect(4);
    let view = f.v.device("term-nocert");
    assert_eq!(view["verdict_status"], "warning", "{view:#}\n{out}");
    assert_eq!(view["state"], "pending", "{view:#}");
    assert_eq!(
        f.v.reason_codes("term-nocert"),
        ["ek_cert_untrusted"],
        "{:?}",
        f.v.reasons("term-nocert")
    );
}
