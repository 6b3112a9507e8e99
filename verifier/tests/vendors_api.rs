//! The operator surface for vendor trust against a real `vouch-verifier run` process (with its
//! managed Mosquitto) driven by the real `vouchctl` binary: vendor trust, list and revoke;
//! manifest import (good, idempotent, flipped byte, unknown vendor, revoked vendor, EK
//! certificates that chain to the configured TPM roots and ones that do not); reference bundle
//! import, list, the older-bundle and other-vendor refusals, revocation and the REVOKED-FW
//! marker `vouchctl devices` shows before the next attestation; the supply-chain policy with a
//! malformed one refused naming the rule; and a roots directory holding a non-CA certificate
//! stopping the verifier with the file named. Manifests and bundles are signed here with
//! `vendor::seal` over simulated TPMs' real TPM-format keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use vouch_protocol::bytes::{Bytes, Sha256Digest};
use vouch_protocol::inventory::Inventory;
use vouch_protocol::policy::ReferenceValues;
use vouch_protocol::vendor::bundle::ReferenceBundle;
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_protocol::vendor::{self, VendorName};
use vouch_sim::SimTpm;
use vouch_test_kit::http::http_get;
use vouch_test_kit::process::{Proc, free_port};

const MODEL: &str = "T-100";

/// The EK certificate fixtures (protocol/tests/vectors/ekcert/README.md).
fn ekcert_vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/vectors/ekcert")
        .join(name)
}

/// A `vouch-verifier run` process on free loopback ports, its data and logs in a temp dir.
struct Verifier {
    proc: Proc,
    http: u16,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl Verifier {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (mqtt, http) = (free_port().unwrap(), free_port().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vouch-verifier"));
        cmd.args(["run", "--data"])
            .arg(&data)
            .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(extra)
            .env("RUST_LOG", "info");
        let mut proc = Proc::spawn("vouch-verifier", &mut cmd, &dir.path().join("v.log")).unwrap();
        let start = Instant::now();
        while http_get(http, "/v1/health").1["ready"] != true {
            assert!(proc.alive(), "the verifier exited:\n{}", proc.log());
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the verifier never became ready:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            proc,
            http,
            data,
            dir,
        }
    }

    fn vouchctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vouchctl"))
            .args(["--api", &format!("http://127.0.0.1:{}", self.http)])
            .arg("--token-file")
            .arg(self.data.join("admin.token"))
            .args(args)
            .env_remove("VOUCH_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs vouchctl and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.vouchctl(args);
        assert!(
            out.status.success(),
            "vouchctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs vouchctl and expects exit 1; returns stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.vouchctl(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "vouchctl {args:?} should have been refused; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Writes `bytes` into the test's directory; returns the path as a string.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

struct Vendor {
    name: VendorName,
    key: SigningKey,
}

impl Vendor {
    fn new(name: &str, seed: u8) -> Self {
        Self {
            name: name.parse().unwrap(),
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn pubkey(&self) -> String {
        format!("{}\n", hex::encode(self.key.verifying_key().as_bytes()))
    }

    fn seal<T: vendor::Document>(&self, doc: &T) -> Vec<u8> {
        vendor::seal(&self.name, doc, &self.key)
    }
}

/// A manifest for device `id` on a simulated TPM, provisioned with `firmware`; `ek` replaces
/// the EK public area and certificate chain (a fixture's).
fn manifest(
    id: &str,
    seed: u8,
    firmware: &str,
    ek: Option<(Vec<u8>, Vec<Vec<u8>>)>,
) -> DeviceManifest {
    let tpm = SimTpm::from_seed([seed; 32]);
    let device = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
    let (ek_public, certs) = ek.unwrap_or_else(|| (tpm.ek_public(), Vec::new()));
    DeviceManifest {
        device: id.parse().unwrap(),
        model: MODEL.into(),
        firmware_version: firmware.into(),
        ek_public: Bytes(ek_public),
        ek_certificates: certs.into_iter().map(Bytes).collect(),
        ak_public: Bytes(tpm.ak_public()),
        ak_name: Bytes(tpm.ak_name()),
        device_key: Bytes(device.verifying_key().to_bytes().to_vec()),
        mqtt_password_hash: vouch_common::mqtt_passwd::hash_random_salt("pw").unwrap(),
        inventory: Inventory::default(),
        issued_at: 1_700_000_000,
        credential_activated: ek_public_is_fixture(seed),
        simulated: !ek_public_is_fixture(seed),
    }
}

/// Seeds above 200 stand for real (fixture) TPMs in these tests.
fn ek_public_is_fixture(seed: u8) -> bool {
    seed > 200
}

fn bundle(firmware: &str, issued_at: u64, byte: u8) -> ReferenceBundle {
    ReferenceBundle {
        model: MODEL.into(),
        firmware_version: firmware.into(),
        issued_at,
        reference: ReferenceValues {
            pcrs: [(0, Sha256Digest([byte; 32]))].into(),
            ..ReferenceValues::default()
        },
    }
}

fn device(v: &Verifier, id: &str) -> serde_json::Value {
    v.json(&["device", id, "--json"])
}

#[test]
fn vendors_manifests_references_and_supply_chain_through_vouchctl() {
    let roots = tempfile::tempdir().unwrap();
    for f in ["swtpm-root.pem", "swtpm-intermediate.pem"] {
        std::fs::copy(ekcert_vector(f), roots.path().join(f)).unwrap();
    }
    let v = Verifier::start(&[
        "--require-ek-cert",
        "false",
        "--tpm-roots",
        roots.path().to_str().unwrap(),
    ]);
    let acme = Vendor::new("acme", 9);
    let globex = Vendor::new("globex", 8);
    let acme_pub = v.file("acme.pub", acme.pubkey().as_bytes());
    let globex_pub = v.file("globex.pub", globex.pubkey().as_bytes());

    // The vendor routes are admin routes.
    assert_eq!(http_get(v.http, "/v1/vendors").0, 401);

    // Trust: new, idempotent, another key under the same name refused.
    let out = v.ok(&["vendor", "trust", "acme", &acme_pub]);
    let fp = vendor::fingerprint(&acme.key.verifying_key());
    assert!(
        out.contains("vendor acme trusted") && out.contains(&fp),
        "{out}"
    );
    let out = v.ok(&["vendor", "trust", "acme", &acme_pub]);
    assert!(out.contains("already trusted with this key"), "{out}");
    let err = v.refused(&["vendor", "trust", "acme", &globex_pub]);
    assert!(err.contains("already trusted with another key"), "{err}");
    let list = v.json(&["vendor", "list", "--json"]);
    assert_eq!(list[0]["name"], "acme");
    assert_eq!(list[0]["fingerprint"], fp.as_str());
    assert!(list[0]["revoked"].is_null());

    // A simulated terminal's manifest: enrolled, with provenance; importing it again is a no-op.
    let m1 = v.file("t1.cbor", &acme.seal(&manifest("t1", 1, "2.1.0", None)));
    let m2 = v.file("t2.cbor", &acme.seal(&manifest("t2", 2, "2.2.0", None)));
    let out = v.ok(&["import", "manifest", &m1, &m2]);
    assert_eq!(out, "t1\nt2\n");
    assert_eq!(v.ok(&["import", "manifest", &m1]), "t1\n");
    let d = device(&v, "t1");
    assert_eq!(d["provenance"]["vendor"], "acme");
    assert_eq!(d["provenance"]["firmware_version"], "2.1.0");
    assert_eq!(d["simulated"], true);
    assert_eq!(d["ek_cert_problem"], "no EK certificate");
    assert!(d["ek_cert_anchor"].is_null());
    let text = v.ok(&["device", "t1"]);
    assert!(text.contains("manifest of vendor acme"), "{text}");
    // The broker learned the terminal's MQTT identity.
    let passwd = std::fs::read_to_string(v.data.join("broker/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("t1:$7$")), "{passwd}");

    // A flipped byte anywhere is refused; in the signature it is named as such.
    let good = acme.seal(&manifest("t5", 5, "2.1.0", None));
    let mut sig = good.clone();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    let err = v.refused(&["import", "manifest", &v.file("sig.cbor", &sig)]);
    assert!(
        err.contains("signature does not verify with the key trusted for vendor acme"),
        "{err}"
    );
    let mut body = good.clone();
    body[good.len() / 2] ^= 1;
    let err = v.refused(&["import", "manifest", &v.file("body.cbor", &body)]);
    assert!(err.contains("manifest refused"), "{err}");
    // Unknown vendor: named, with the command that would trust it.
    let err = v.refused(&[
        "import",
        "manifest",
        &v.file("g.cbor", &globex.seal(&manifest("t6", 6, "2.1.0", None))),
    ]);
    assert!(
        err.contains("vendor globex is not trusted (vouchctl vendor trust globex KEYFILE)"),
        "{err}"
    );
    assert!(
        v.ok(&["devices"])
            .lines()
            .all(|l| !l.starts_with("t5") && !l.starts_with("t6"))
    );

    // EK certificates: one chaining to the configured roots, one from another maker (enrolled,
    // but the answer and the view say why it does not count).
    let p384 = std::fs::read(ekcert_vector("p384-ek.tpmt")).unwrap();
    let leaf = std::fs::read(ekcert_vector("p384-ek.der")).unwrap();
    let other = vouch_protocol::ekcert::parse_pem_certificates(
        &std::fs::read_to_string(ekcert_vector("p384-ek-othervendor.pem")).unwrap(),
    )
    .unwrap();
    let m3 = v.file(
        "t3.cbor",
        &acme.seal(&manifest(
            "t3",
            203,
            "2.1.0",
            Some((p384.clone(), vec![leaf])),
        )),
    );
    assert_eq!(v.ok(&["import", "manifest", &m3]), "t3\n");
    let d = device(&v, "t3");
    assert!(
        d["ek_cert_anchor"]
            .as_str()
            .unwrap()
            .contains("swtpm-localca"),
        "{d}"
    );
    assert!(d["ek_cert_problem"].is_null(), "{d}");
    let m4 = v.file(
        "t4.cbor",
        &acme.seal(&manifest("t4", 204, "2.1.0", Some((p384, other)))),
    );
    let out = v.vouchctl(&["import", "manifest", &m4]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "t4\n");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("warning: t4: EK certificate refused"),
        "{warning}"
    );
    assert!(
        warning.contains("does not chain to a trusted TPM manufacturer root"),
        "{warning}"
    );
    let d = device(&v, "t4");
    assert!(d["ek_cert_anchor"].is_null());
    assert!(
        d["ek_cert_problem"]
            .as_str()
            .unwrap()
            .contains("does not chain"),
        "{d}"
    );

    // A terminal's own request (`vouchctl enroll`) has its EK certificate checked too.
    let tpm = SimTpm::from_seed([210; 32]);
    let key = SigningKey::from_bytes(&[211; 32]);
    let mut req = tpm.enrollment_request_with_mqtt(
        MODEL,
        &key.verifying_key(),
        &vouch_common::mqtt_passwd::hash_random_salt("pw").unwrap(),
    );
    req.ek_public = Bytes(std::fs::read(ekcert_vector("p384-ek.tpmt")).unwrap());
    req.ek_certificate = Some(Bytes(std::fs::read(ekcert_vector("p384-ek.der")).unwrap()));
    let r8 = v.file(
        "t8.req",
        &vouch_protocol::wire::seal(&"t8".parse().unwrap(), &req, &key),
    );
    assert_eq!(v.ok(&["enroll", &r8]), "t8\n");
    let d = device(&v, "t8");
    assert!(
        d["ek_cert_anchor"]
            .as_str()
            .unwrap()
            .contains("swtpm-localca"),
        "{d}"
    );
    assert!(d["provenance"].is_null(), "{d}");

    // Reference bundles: import, list, an older one refused, another vendor's for the model
    // refused.
    let b = v.file("b.cbor", &acme.seal(&bundle("2.1.0", 2000, 7)));
    let out = v.ok(&["import", "reference", &b]);
    assert!(
        out.contains("T-100 firmware 2.1.0 from vendor acme imported"),
        "{out}"
    );
    assert!(
        v.ok(&["import", "reference", &b])
            .contains("already imported")
    );
    let list = v.json(&["reference", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["firmware_version"], "2.1.0");
    let old = v.file("old.cbor", &acme.seal(&bundle("2.1.0", 1000, 8)));
    let err = v.refused(&["import", "reference", &old]);
    assert!(
        err.contains("before the one already imported for T-100@2.1.0"),
        "{err}"
    );
    v.ok(&["vendor", "trust", "globex", &globex_pub]);
    let theirs = v.file("theirs.cbor", &globex.seal(&bundle("2.2.0", 3000, 9)));
    let err = v.refused(&["import", "reference", &theirs]);
    assert!(
        err.contains("reference values for model T-100 come from vendor acme"),
        "{err}"
    );

    // Revoking a firmware version marks the terminals running it before they attest again.
    let before = v.ok(&["devices"]);
    assert!(!before.contains("REVOKED-FW"), "{before}");
    assert!(before.contains("SIM"), "{before}");
    let out = v.ok(&[
        "reference",
        "revoke",
        MODEL,
        "2.1.0",
        "--reason",
        "CVE-2026-0001",
    ]);
    assert!(out.contains("revoked"), "{out}");
    let after = v.ok(&["devices"]);
    let line = |id: &str| {
        after
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no line for {id}:\n{after}"))
            .to_owned()
    };
    assert!(line("t1").contains("REVOKED-FW"), "{after}");
    assert!(!line("t2").contains("REVOKED-FW"), "{after}");
    assert_eq!(device(&v, "t1")["firmware_revoked"], true);
    assert_eq!(device(&v, "t2")["firmware_revoked"], false);
    let newer = v.file("newer.cbor", &acme.seal(&bundle("2.1.0", 5000, 9)));
    let err = v.refused(&["import", "reference", &newer]);
    assert!(
        err.contains("firmware T-100@2.1.0 was revoked") && err.contains("CVE-2026-0001"),
        "{err}"
    );
    let err = v.refused(&["reference", "revoke", MODEL, "9.9", "--reason", "x"]);
    assert!(
        err.contains("no reference bundle was imported for model T-100 firmware 9.9"),
        "{err}"
    );

    // Supply chain: set and show; a malformed rule refused, naming it.
    let policy = v.file(
        "sc.json",
        br#"{"mode": "deny", "deny": {"pci_vendors": ["10ec"], "smbios_manufacturers": ["Hidden Board"]}}"#,
    );
    assert!(v.ok(&["supply-chain", "set", &policy]).contains("deny"));
    let shown = v.json(&["supply-chain", "show"]);
    assert_eq!(shown["deny"]["pci_vendors"][0], "10ec");
    assert_eq!(shown["deny"]["smbios_manufacturers"][0], "Hidden Board");
    let bad = v.file("bad.json", br#"{"deny": {"tpm_manufacturers": ["  "]}}"#);
    let err = v.refused(&["supply-chain", "set", &bad]);
    assert!(
        err.contains("supply-chain rule") && err.contains("in deny"),
        "{err}"
    );
    let bad = v.file("bad2.json", br#"{"allow": {"pci_vendors": ["8086"]}}"#);
    let err = v.refused(&["supply-chain", "set", &bad]);
    assert!(err.contains("mode is \"deny\""), "{err}");
    assert_eq!(
        v.json(&["supply-chain", "show"]),
        shown,
        "a refused policy changes nothing"
    );

    // Measurements of a device that never attested: 404 naming it.
    let err = v.refused(&["measurements", "t1"]);
    assert!(
        err.contains("device t1 has no verified measurements yet"),
        "{err}"
    );

    // Revoking a vendor: its manifests are refused naming the revocation; its name stays revoked.
    let out = v.ok(&["vendor", "revoke", "acme", "--reason", "signing key leaked"]);
    assert!(out.contains("vendor acme revoked"), "{out}");
    let err = v.refused(&[
        "import",
        "manifest",
        &v.file("t7.cbor", &acme.seal(&manifest("t7", 7, "2.1.0", None))),
    ]);
    assert!(
        err.contains("vendor acme was revoked at") && err.contains("signing key leaked"),
        "{err}"
    );
    let err = v.refused(&["vendor", "trust", "acme", &acme_pub]);
    assert!(err.contains("a revoked name stays revoked"), "{err}");
    let list = v.json(&["vendor", "list", "--json"]);
    assert_eq!(list[0]["revoked"]["reason"], "signing key leaked");

    // Body limits: a manifest route takes at most 256 KiB, the bundle route 4 MiB.
    let token = std::fs::read_to_string(v.data.join("admin.token")).unwrap();
    let api = vouch_verifier::ctl::client::Client::new(
        &format!("http://127.0.0.1:{}", v.http),
        token.trim().to_owned(),
    );
    let junk = vec![0u8; 300 * 1024];
    let err = api
        .post_bytes::<serde_json::Value>("/v1/manifests", "application/cbor", &junk)
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 413"), "{err}");
    let err = api
        .post_bytes::<serde_json::Value>("/v1/references", "application/cbor", &junk)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("reference bundle refused") && err.contains("HTTP 400"),
        "{err}"
    );

    // Every change is in the audit trail.
    let audit = v.ok(&["audit"]);
    for action in [
        "vendor_trusted",
        "vendor_revoked",
        "reference_imported",
        "reference_revoked",
        "supply_chain_set",
    ] {
        assert!(audit.contains(action), "{action} missing:\n{audit}");
    }
    assert!(audit.contains("manifest of vendor acme"), "{audit}");
}

#[test]
fn a_tpm_roots_directory_with_a_certificate_that_is_not_a_ca_stops_the_verifier_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::copy(ekcert_vector("swtpm-root.pem"), roots.join("a-root.pem")).unwrap();
    std::fs::copy(
        ekcert_vector("p384-ek-othervendor.pem"),
        roots.join("b-leaf.pem"),
    )
    .unwrap();
    // Refused while the config is validated, before anything is started; a verifier that
    // started anyway is stopped after 30 s and fails the test.
    let run = |roots: &Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vouch-verifier"))
            .args(["run", "--data"])
            .arg(dir.path().join("data"))
            .arg("--tpm-roots")
            .arg(roots)
            .args([
                "--http-listen",
                &format!("127.0.0.1:{}", free_port().unwrap()),
            ])
            .args([
                "--mqtt-listen",
                &format!("127.0.0.1:{}", free_port().unwrap()),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                let _ = child.wait();
                panic!("the verifier started despite its tpm_roots");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let out = run(&roots);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b-leaf.pem") && err.contains("not a CA"),
        "{err}"
    );
    let out = run(&dir.path().join("missing"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("cannot read the directory"),
        "{err}"
    );
}
