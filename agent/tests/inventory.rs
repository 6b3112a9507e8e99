//! The hardware inventory end to end: a fake sysfs tree read into the exact `Inventory` (what
//! is skipped, what is an error), the real `vouch-agent enroll --sysfs-root` putting it and the
//! firmware version into the signed request, and attestation rounds on a real swtpm measuring
//! its digest into the firmware PCR as `vouch:inventory` — the quoted PCR equals the replay of
//! the list sent — re-measured only when the tree changes, and left out (not a failed round)
//! when the tree holds garbage.

// clippy's allow-expect-in-tests covers #[test] functions only, not this file's helpers,
// which should panic loudly too.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use vouch_agent::attester::Attester;
use vouch_agent::config::{DeviceReport, EventLogSource};
use vouch_agent::inventory::{self, CollectError};
use vouch_agent::state::StateDir;
use vouch_agent::tpm::Tcti;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::firmware;
use vouch_protocol::ids::Nonce;
use vouch_protocol::inventory::{
    INVENTORY_PATH, Inventory, Nic, PciDevice, Smbios, TpmInfo, UsbDevice,
};
use vouch_protocol::messages::{Challenge, EnrollmentRequest, Evidence};
use vouch_protocol::tpm::{PcrValues, TpmPublic, verify_quote};
use vouch_protocol::wire;
use vouch_test_kit::process::assert_success;

const BIN: &str = env!("CARGO_BIN_EXE_vouch-agent");
const FIRMWARE_PCR: u8 = 14;

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// A terminal's tree as the kernel lays it out: DMI strings with trailing newlines, two PCI
/// functions, a USB device with its interface entry and the root hub, `eth0` (hardware), `lo`
/// and a bridge without a `device` entry, and an x86 cpuinfo.
fn fake_tree(root: &Path) {
    let dmi = "sys/class/dmi/id";
    write(root, &format!("{dmi}/board_vendor"), "Shenzhen Board Co.\n");
    write(root, &format!("{dmi}/board_name"), "ATT-B2\n");
    write(root, &format!("{dmi}/sys_vendor"), "Acme Terminals\n");
    write(root, &format!("{dmi}/product_name"), "T-100\n");
    write(
        root,
        &format!("{dmi}/bios_vendor"),
        "American Megatrends Inc.\n",
    );
    write(root, &format!("{dmi}/bios_version"), "5.17\n");
    // Listed in reverse: the inventory comes out sorted.
    write(root, "sys/bus/pci/devices/0000:02:00.0/vendor", "0x10ec\n");
    write(root, "sys/bus/pci/devices/0000:02:00.0/device", "0x8168\n");
    write(root, "sys/bus/pci/devices/0000:00:1f.3/vendor", "0x8086\n");
    write(root, "sys/bus/pci/devices/0000:00:1f.3/device", "0x4dc8\n");
    write(root, "sys/bus/usb/devices/1-1/idVendor", "1a86\n");
    write(root, "sys/bus/usb/devices/1-1/idProduct", "7523\n");
    // An interface of 1-1: its own idVendor would be wrong to list (real interfaces have none).
    write(root, "sys/bus/usb/devices/1-1:1.0/idVendor", "ffff\n");
    write(root, "sys/bus/usb/devices/1-1:1.0/idProduct", "ffff\n");
    write(root, "sys/bus/usb/devices/usb1/idVendor", "1d6b\n");
    write(root, "sys/bus/usb/devices/usb1/idProduct", "0002\n");
    write(root, "sys/class/net/eth0/address", "00:E0:4C:68:01:02\n");
    write(root, "sys/class/net/eth0/device/vendor", "0x10ec\n");
    write(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    write(root, "sys/class/net/lo/device/x", "loopback never counts\n");
    write(root, "sys/class/net/br0/address", "02:42:ac:11:00:01\n");
    write(
        root,
        "proc/cpuinfo",
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Celeron(R) J6412 @ 2.00GHz\n\n\
         processor\t: 1\nmodel name\t: Intel(R) Celeron(R) J6412 @ 2.00GHz\n",
    );
}

fn fake_inventory() -> Inventory {
    Inventory {
        smbios: Smbios {
            board_vendor: Some("Shenzhen Board Co.".into()),
            board_name: Some("ATT-B2".into()),
            sys_vendor: Some("Acme Terminals".into()),
            product_name: Some("T-100".into()),
            bios_vendor: Some("American Megatrends Inc.".into()),
            bios_version: Some("5.17".into()),
        },
        cpu_model: Some("Intel(R) Celeron(R) J6412 @ 2.00GHz".into()),
        pci: vec![
            PciDevice {
                slot: "0000:00:1f.3".into(),
                vendor: 0x8086,
                device: 0x4dc8,
            },
            PciDevice {
                slot: "0000:02:00.0".into(),
                vendor: 0x10ec,
                device: 0x8168,
            },
        ],
        usb: vec![
            UsbDevice {
                port: "1-1".into(),
                vendor: 0x1a86,
                product: 0x7523,
            },
            UsbDevice {
                port: "usb1".into(),
                vendor: 0x1d6b,
                product: 0x0002,
            },
        ],
        tpm: None,
        nics: vec![Nic {
            name: "eth0".into(),
            mac: "00:e0:4c:68:01:02".into(),
        }],
    }
}

#[test]
fn a_fake_tree_reads_into_the_exact_inventory() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    assert_eq!(inventory::read(dir.path()).expect("read"), fake_inventory());
}

#[test]
fn cpuinfo_without_model_name_gives_the_arm_hardware_or_cpu_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "proc/cpuinfo",
        "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nHardware\t: BCM2711\nModel\t: Raspberry Pi 4\n",
    );
    let got = inventory::read(dir.path()).expect("read");
    assert_eq!(got.cpu_model.as_deref(), Some("BCM2711"));
    write(
        dir.path(),
        "proc/cpuinfo",
        "processor\t: 0\nCPU part\t: 0xd08\n",
    );
    let got = inventory::read(dir.path()).expect("read");
    assert_eq!(got.cpu_model.as_deref(), Some("0xd08"));
}

#[test]
fn a_missing_tree_is_an_empty_inventory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let got = inventory::read(&dir.path().join("nothing here")).expect("read");
    assert_eq!(got, Inventory::default());
    // Devices whose id files are missing are left out, not errors.
    write(
        dir.path(),
        "sys/bus/pci/devices/0000:00:00.0/class",
        "0x060000\n",
    );
    write(dir.path(), "sys/bus/usb/devices/2-1/idVendor", "1a86\n");
    write(dir.path(), "sys/class/net/eth1/device/vendor", "0x8086\n");
    assert_eq!(
        inventory::read(dir.path()).expect("read"),
        Inventory::default()
    );
}

#[test]
fn garbage_ids_strings_and_oversized_files_are_errors_naming_the_file() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "sys/bus/pci/devices/0000:00:1f.3/vendor",
            "0xzz86\n",
            "is not a 16-bit id",
        ),
        (
            "sys/bus/pci/devices/0000:00:1f.3/vendor",
            "8086\n",
            "0x and four hex digits",
        ),
        (
            "sys/bus/usb/devices/1-1/idVendor",
            "0x1a86\n",
            "four hex digits",
        ),
        (
            "sys/class/dmi/id/board_vendor",
            "Acme\u{7}Boards\n",
            "control characters",
        ),
        (
            "sys/class/net/eth0/address",
            "not-a-mac\n",
            "not a hardware address",
        ),
    ];
    for (rel, content, problem) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_tree(dir.path());
        write(dir.path(), rel, content);
        let err = inventory::read(dir.path()).expect_err(rel);
        assert!(
            matches!(err, CollectError::Garbage { .. }),
            "{rel}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join(rel).display().to_string()),
            "{text}"
        );
        assert!(text.contains(problem), "{rel}: {text}");
    }
    // Over the 4 KiB attribute bound.
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = "sys/class/dmi/id/product_name";
    write(dir.path(), rel, &"x".repeat(5000));
    let err = inventory::read(dir.path()).expect_err("oversized");
    assert!(
        err.to_string().contains("over the 4096-byte limit"),
        "{err}"
    );
    assert!(err.to_string().contains(rel), "{err}");
}

/// A terminal (state directory, its own swtpm, the fake tree under `sysfs/`) enrolled with
/// the real `vouch-agent enroll`.
struct Terminal {
    dir: tempfile::TempDir,
    swtpm: vouch_test_kit::swtpm::Swtpm,
}

impl Terminal {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tpm_dir = dir.path().join("tpm");
        std::fs::create_dir(&tpm_dir).expect("mkdir");
        let swtpm = vouch_test_kit::swtpm::Swtpm::start(&tpm_dir).expect("start swtpm");
        fake_tree(&dir.path().join("sysfs"));
        Self { dir, swtpm }
    }

    fn enrolled() -> Self {
        let t = Self::new();
        let out = t.enroll().arg("--sysfs-root").arg(t.sysfs()).output();
        assert_success("enroll", &out.expect("run enroll"));
        t
    }

    /// `vouch-agent enroll` of this terminal (add flags).
    fn enroll(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--state")
            .arg(self.state())
            .arg("--tcti")
            .arg(self.swtpm.tcti())
            .args(["enroll", "--device-id", "term-inv", "--model", "T-100"])
            .arg("--out")
            .arg(self.path("request.cbor"));
        c
    }

    fn request(&self) -> EnrollmentRequest {
        let bytes = std::fs::read(self.path("request.cbor")).expect("request");
        wire::decode_detached(&bytes, wire::DEFAULT_MAX_PAYLOAD)
            .expect("decode")
            .peek_unverified()
            .expect("an enrollment request")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn sysfs(&self) -> PathBuf {
        self.path("sysfs")
    }

    fn attester(&self) -> Attester {
        let state = StateDir::open(&self.state()).expect("state");
        let identity = state.require_identity().expect("identity");
        Attester {
            tpm: Arc::new(Tcti(self.swtpm.tcti())),
            state,
            identity,
            firmware: vec![self.path("firmware.bin")],
            firmware_dir: None,
            firmware_pcr: FIRMWARE_PCR,
            eventlog: EventLogSource {
                path: self.path("no-eventlog"),
                required: false,
            },
            report: DeviceReport {
                sysfs_root: self.sysfs(),
                firmware_version: Some("2.4.1".into()),
            },
        }
    }
}

/// What swtpm (libtpms) says about itself.
fn swtpm_info(t: &Terminal) -> TpmInfo {
    let mut tpm = vouch_agent::tpm::Tpm::open(&t.swtpm.tcti()).expect("open swtpm");
    tpm.tpm_info().expect("tpm_info")
}

#[test]
fn enroll_puts_the_inventory_of_the_sysfs_root_and_the_firmware_version_into_the_request() {
    let t = Terminal::new();
    let out = t
        .enroll()
        .args(["--firmware-version", "2.4.1", "--sysfs-root"])
        .arg(t.sysfs())
        .output()
        .expect("run enroll");
    assert_success("enroll", &out);
    let info = swtpm_info(&t);
    assert_eq!(info.manufacturer, "IBM", "libtpms reports IBM");
    let mut want = fake_inventory();
    want.tpm = Some(info);
    let request = t.request();
    assert_eq!(request.inventory.as_ref(), Some(&want));
    assert_eq!(request.firmware_version.as_deref(), Some("2.4.1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&want.digest().to_hex()), "{stdout}");
    assert!(stdout.contains("2.4.1"), "{stdout}");

    // The same from the config file's keys; a tree changed since is what the request carries.
    write(&t.sysfs(), "sys/class/dmi/id/bios_version", "5.18\n");
    let config = t.path("agent.toml");
    let toml = format!(
        "sysfs_root = {:?}\nfirmware_version = \"2.5.0\"\n",
        t.sysfs().display().to_string()
    );
    std::fs::write(&config, toml).expect("config");
    let out = t.enroll().arg("--config").arg(&config).output();
    assert_success("enroll --config", &out.expect("run enroll"));
    let request = t.request();
    assert_eq!(request.firmware_version.as_deref(), Some("2.5.0"));
    let inventory = request.inventory.expect("inventory");
    assert_eq!(inventory.smbios.bios_version.as_deref(), Some("5.18"));
}

#[test]
fn enroll_refuses_a_tree_with_garbage_and_a_bad_firmware_version() {
    let t = Terminal::new();
    let out = t
        .enroll()
        .args(["--firmware-version", "2.4@1", "--sysfs-root"])
        .arg(t.sysfs())
        .output()
        .expect("run enroll");
    assert!(!out.status.success(), "a version with '@' is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--firmware-version"), "{stderr}");

    write(&t.sysfs(), "sys/bus/usb/devices/1-1/idProduct", "75 23\n");
    let out = t
        .enroll()
        .arg("--sysfs-root")
        .arg(t.sysfs())
        .output()
        .expect("run enroll");
    assert!(!out.status.success(), "garbage in the tree fails enroll");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1-1/idProduct"), "{stderr}");
    assert!(stderr.contains("--sysfs-root"), "{stderr}");
    assert!(!t.path("request.cbor").exists(), "no request written");
}

fn challenge(byte: u8) -> Challenge {
    Challenge {
        nonce: Nonce::from_bytes([byte; 32]),
        issued_at: 0,
        expires_at: u64::MAX,
        request: 1,
        eventlog_held: None,
    }
}

/// Checks the quote's signature over the PCR values sent and returns the firmware PCR's value.
fn quoted_firmware_pcr(t: &Terminal, nonce: u8, e: &Evidence) -> Sha256Digest {
    let state = StateDir::open(&t.state()).expect("state");
    let identity = state.require_identity().expect("identity");
    let ak = TpmPublic::parse(&identity.ak_public.0).expect("AK public");
    let mut values = PcrValues::new();
    for p in &e.pcrs {
        values
            .insert(HashAlg::Sha256, p.index, p.value.0.to_vec())
            .expect("PCR value");
    }
    verify_quote(&ak, &e.attest.0, &e.signature.0, &[nonce; 32], &values).expect("quote verifies");
    e.pcrs
        .iter()
        .find(|p| p.index == FIRMWARE_PCR)
        .expect("firmware PCR quoted")
        .value
}

fn inventory_entries(e: &Evidence) -> Vec<Sha256Digest> {
    e.firmware
        .iter()
        .filter(|f| f.path == INVENTORY_PATH)
        .filter_map(|f| f.sha256)
        .collect()
}

#[test]
fn each_round_measures_the_inventory_into_the_quoted_pcr_and_again_only_when_it_changes() {
    let t = Terminal::enrolled();
    std::fs::write(t.path("firmware.bin"), b"terminal firmware").expect("firmware");
    let attester = t.attester();
    let info = swtpm_info(&t);
    let mut want = fake_inventory();
    want.tpm = Some(info);

    let first = attester.evidence(&challenge(1)).expect("round 1");
    assert_eq!(first.inventory.as_ref(), Some(&want));
    assert_eq!(first.firmware_version.as_deref(), Some("2.4.1"));
    assert_eq!(inventory_entries(&first), vec![want.digest()]);
    assert_eq!(
        firmware::replay(&first.firmware),
        quoted_firmware_pcr(&t, 1, &first),
        "the quoted PCR is the replay of the list, inventory entry included"
    );
    assert_eq!(
        vouch_protocol::inventory::measured_digest(&first.firmware),
        Some(want.digest())
    );

    // Unchanged tree: nothing new is measured.
    let second = attester.evidence(&challenge(2)).expect("round 2");
    assert_eq!(second.firmware, first.firmware);
    assert_eq!(
        quoted_firmware_pcr(&t, 2, &second),
        quoted_firmware_pcr(&t, 1, &first)
    );

    // A USB device plugged in: a second inventory entry, the newest is the new inventory.
    write(&t.sysfs(), "sys/bus/usb/devices/1-2/idVendor", "0bda\n");
    write(&t.sysfs(), "sys/bus/usb/devices/1-2/idProduct", "8153\n");
    let third = attester.evidence(&challenge(3)).expect("round 3");
    let changed = third.inventory.clone().expect("inventory");
    assert_eq!(changed.usb.len(), 3);
    assert_ne!(changed.digest(), want.digest());
    assert_eq!(
        inventory_entries(&third),
        vec![want.digest(), changed.digest()]
    );
    assert_eq!(
        vouch_protocol::inventory::measured_digest(&third.firmware),
        Some(changed.digest())
    );
    assert_eq!(
        third.firmware.len(),
        3,
        "firmware file, inventory, inventory"
    );
    assert_eq!(
        firmware::replay(&third.firmware),
        quoted_firmware_pcr(&t, 3, &third)
    );
    let status = Command::new(BIN)
        .arg("--state")
        .arg(t.state())
        .args(["status", "--json"])
        .output()
        .expect("status");
    assert_success("status", &status);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(json["inventory_digest"], changed.digest().to_hex());
}

#[test]
fn a_tree_with_garbage_sends_no_inventory_and_measures_nothing_new() {
    let t = Terminal::enrolled();
    std::fs::write(t.path("firmware.bin"), b"terminal firmware").expect("firmware");
    let attester = t.attester();
    let first = attester.evidence(&challenge(1)).expect("round 1");
    assert!(first.inventory.is_some());

    write(
        &t.sysfs(),
        "sys/bus/pci/devices/0000:02:00.0/device",
        "garbage\n",
    );
    let second = attester
        .evidence(&challenge(2))
        .expect("the round still produces evidence");
    assert_eq!(second.inventory, None);
    assert_eq!(second.firmware_version.as_deref(), Some("2.4.1"));
    assert_eq!(second.firmware, first.firmware, "nothing new measured");
    assert_eq!(
        firmware::replay(&second.firmware),
        quoted_firmware_pcr(&t, 2, &second)
    );
}

#[test]
fn an_inventory_recorded_but_not_extended_before_a_crash_is_extended_by_the_next_round() {
    let t = Terminal::enrolled();
    std::fs::write(t.path("firmware.bin"), b"terminal firmware").expect("firmware");
    let attester = t.attester();
    let first = attester.evidence(&challenge(1)).expect("round 1");
    let before = first.inventory.expect("inventory");

    // The tree changes, and an agent records the new inventory's entry, then dies before
    // extending it.
    write(&t.sysfs(), "sys/class/dmi/id/bios_version", "5.18\n");
    let mut tpm = vouch_agent::tpm::Tpm::open(&t.swtpm.tcti()).expect("open swtpm");
    let after = inventory::collect(&t.sysfs(), &mut tpm).expect("collect");
    drop(tpm);
    let state = StateDir::open(&t.state()).expect("state");
    let mut log = state.firmware_log().expect("list");
    let boot = log.reset_count;
    assert_eq!(log.plan(boot, &[after.measurement()]).len(), 1);
    state.save_firmware_log(&log).expect("record");

    // The next round repairs the PCR from the record and measures nothing twice.
    let second = attester.evidence(&challenge(2)).expect("round 2");
    assert_eq!(second.inventory.as_ref(), Some(&after));
    assert_eq!(
        inventory_entries(&second),
        vec![before.digest(), after.digest()]
    );
    assert_eq!(
        firmware::replay(&second.firmware),
        quoted_firmware_pcr(&t, 2, &second)
    );
}
