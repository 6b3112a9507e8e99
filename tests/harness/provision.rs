//! Helpers for the vendor-provisioning tests (issue 9): a fake sysfs tree the agent reads its
//! hardware inventory from (`--sysfs-root`), a vendor made by the real `vouch-provision
//! vendor-init`, the factory station's commands (`challenge`, `issue`, `reference`, `batch`),
//! and a terminal driven through the real `vouch-agent` with the provisioning flags
//! (`--sysfs-root`, `--firmware-version`, `activate`).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::bin;
use crate::procs::{Proc, Verifier};

/// Stdout and stderr of `out`, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with the command's output unless it succeeded.
#[track_caller]
pub fn ok(what: &str, out: Output) -> Output {
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    out
}

/// Panics unless the command exited 1 (a refusal, not a crash); returns its stderr.
#[track_caller]
pub fn refused(what: &str, out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should have been refused with exit 1:\n{}",
        text(out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `vouch-provision ARGS`.
pub fn provision<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin("vouch-provision"))
        .args(args)
        .output()
        .unwrap()
}

/// A fake root (`--sysfs-root`) with the files the agent's inventory reader looks at: DMI
/// strings, PCI functions, USB devices, the CPU model and NICs. Each setter rewrites the tree
/// in place, so a running agent sees the change at its next attestation.
#[derive(Debug, Clone)]
pub struct FakeSysfs {
    pub root: PathBuf,
}

impl FakeSysfs {
    /// A terminal board: "Acme Boards" T-100 mainboard, an Intel NIC function and a CH340 USB
    /// serial adapter (with an interface entry, which is no device), one physical NIC (and a
    /// loopback and a virtual interface, which are left out), and a CPU model line.
    pub fn terminal(root: &Path) -> Self {
        let s = Self {
            root: root.to_owned(),
        };
        for (field, value) in [
            ("board_vendor", "Acme Boards"),
            ("board_name", "T-100 mainboard"),
            ("sys_vendor", "Acme Terminals"),
            ("product_name", "T-100"),
            ("bios_vendor", "Acme BIOS"),
            ("bios_version", "1.0.7"),
        ] {
            s.set_dmi(field, value);
        }
        s.set_pci("0000:00:1f.6", 0x8086, 0x15bc);
        s.set_pci("0000:00:14.0", 0x8086, 0xa36d);
        s.set_usb("1-1", 0x1a86, 0x7523);
        s.write("sys/bus/usb/devices/1-1:1.0/bInterfaceClass", "ff\n");
        s.write(
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: Acme T-100 CPU @ 1.6GHz\nflags\t\t: fpu\n\n",
        );
        s.set_nic("eth0", "52:54:00:12:34:56", true);
        s.set_nic("lo", "00:00:00:00:00:00", false);
        s.set_nic("veth0", "aa:aa:aa:aa:aa:aa", false);
        s
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `sys/class/dmi/id/FIELD` = `value`.
    pub fn set_dmi(&self, field: &str, value: &str) {
        self.write(&format!("sys/class/dmi/id/{field}"), &format!("{value}\n"));
    }

    /// A PCI function at `slot` (added, or replacing the one there).
    pub fn set_pci(&self, slot: &str, vendor: u16, device: u16) {
        self.write(
            &format!("sys/bus/pci/devices/{slot}/vendor"),
            &format!("0x{vendor:04x}\n"),
        );
        self.write(
            &format!("sys/bus/pci/devices/{slot}/device"),
            &format!("0x{device:04x}\n"),
        );
    }

    /// A USB device named `port` (added, or replacing the one there).
    pub fn set_usb(&self, port: &str, vendor: u16, product: u16) {
        self.write(
            &format!("sys/bus/usb/devices/{port}/idVendor"),
            &format!("{vendor:04x}\n"),
        );
        self.write(
            &format!("sys/bus/usb/devices/{port}/idProduct"),
            &format!("{product:04x}\n"),
        );
    }

    /// A network interface; `physical` ones have a `device` entry, the rest count as virtual.
    pub fn set_nic(&self, name: &str, mac: &str, physical: bool) {
        self.write(
            &format!("sys/class/net/{name}/address"),
            &format!("{mac}\n"),
        );
        if physical {
            fs::create_dir_all(self.root.join(format!("sys/class/net/{name}/device"))).unwrap();
        }
    }
}

/// A vendor made by `vouch-provision vendor-init --out DIR --name NAME`.
#[derive(Debug, Clone)]
pub struct Vendor {
    pub dir: PathBuf,
    pub name: String,
}

impl Vendor {
    pub fn init(dir: &Path, name: &str) -> Self {
        ok(
            "vouch-provision vendor-init",
            provision([
                OsStr::new("vendor-init"),
                OsStr::new("--out"),
                dir.as_os_str(),
                OsStr::new("--name"),
                OsStr::new(name),
            ]),
        );
        for f in ["vendor.key", "vendor.pub", "vendor.name"] {
            assert!(dir.join(f).exists(), "vendor-init wrote no {f}");
        }
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn public_key(&self) -> PathBuf {
        self.dir.join("vendor.pub")
    }

    /// `vouchctl vendor trust NAME vendor.pub` on `v`.
    pub fn trust_on(&self, v: &Verifier) {
        ok(
            "vouchctl vendor trust",
            v.ctl(&[
                "vendor",
                "trust",
                &self.name,
                self.public_key().to_str().unwrap(),
            ]),
        );
    }

    /// `vouch-provision reference --evidence MEASUREMENTS --vendor DIR --model M
    /// --firmware-version V --out BUNDLE`; returns the bundle.
    pub fn bundle_from_evidence(&self, measurements: &Path, model: &str, fw: &str) -> PathBuf {
        let bundle = measurements.with_extension("bundle.cbor");
        ok(
            "vouch-provision reference --evidence",
            provision([
                OsStr::new("reference"),
                OsStr::new("--evidence"),
                measurements.as_os_str(),
                OsStr::new("--vendor"),
                self.dir.as_os_str(),
                OsStr::new("--model"),
                OsStr::new(model),
                OsStr::new("--firmware-version"),
                OsStr::new(fw),
                OsStr::new("--out"),
                bundle.as_os_str(),
            ]),
        );
        bundle
    }

    /// `vouch-provision batch --count N --model M --vendor DIR --out OUT --firmware-version V
    /// --prefix P`.
    pub fn batch(&self, out: &Path, count: usize, model: &str, fw: &str, prefix: &str) -> Output {
        provision([
            OsStr::new("batch"),
            OsStr::new("--count"),
            OsStr::new(&count.to_string()),
            OsStr::new("--model"),
            OsStr::new(model),
            OsStr::new("--vendor"),
            self.dir.as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new("--firmware-version"),
            OsStr::new(fw),
            OsStr::new("--prefix"),
            OsStr::new(prefix),
        ])
    }
}

/// The factory station: a vendor and the directory of pending credential challenges.
#[derive(Debug, Clone)]
pub struct Station {
    pub vendor: Vendor,
    pub pending: PathBuf,
}

impl Station {
    pub fn new(vendor: Vendor, pending: &Path) -> Self {
        Self {
            vendor,
            pending: pending.to_owned(),
        }
    }

    /// `vouch-provision challenge REQUEST --out CHALLENGE --pending DIR`; returns CHALLENGE.
    pub fn challenge(&self, request: &Path) -> PathBuf {
        let challenge = request.with_extension("challenge");
        ok(
            "vouch-provision challenge",
            provision([
                OsStr::new("challenge"),
                request.as_os_str(),
                OsStr::new("--out"),
                challenge.as_os_str(),
                OsStr::new("--pending"),
                self.pending.as_os_str(),
            ]),
        );
        challenge
    }

    /// `vouch-provision issue REQUEST RESPONSE --vendor DIR --model M --firmware-version V
    /// --out MANIFEST --pending DIR [--tpm-roots ROOTS] EXTRA...`; the output and MANIFEST.
    pub fn issue(
        &self,
        request: &Path,
        response: &Path,
        model: &str,
        fw: &str,
        roots: Option<&Path>,
        extra: &[&str],
    ) -> (Output, PathBuf) {
        let manifest = request.with_extension("manifest.cbor");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("issue"),
            request.as_os_str(),
            response.as_os_str(),
            OsStr::new("--vendor"),
            self.vendor.dir.as_os_str(),
            OsStr::new("--model"),
            OsStr::new(model),
            OsStr::new("--firmware-version"),
            OsStr::new(fw),
            OsStr::new("--out"),
            manifest.as_os_str(),
            OsStr::new("--pending"),
            self.pending.as_os_str(),
        ];
        if let Some(r) = roots {
            args.push(OsStr::new("--tpm-roots"));
            args.push(r.as_os_str());
        }
        args.extend(extra.iter().map(OsStr::new));
        (provision(args), manifest)
    }
}

/// A terminal on a (software) TPM, driven through the real `vouch-agent` with the inventory
/// read from its own [`FakeSysfs`] and a reported firmware version.
#[derive(Debug)]
pub struct ProvTerminal {
    pub id: String,
    pub dir: PathBuf,
    pub state: PathBuf,
    pub sysfs: FakeSysfs,
    pub firmware_version: String,
    pub firmware: PathBuf,
    tcti: String,
    mqtt_url: String,
    verifier_pub: PathBuf,
}

impl ProvTerminal {
    /// A terminal `id` under `dir/id` with the default fake board and one firmware file.
    pub fn new(dir: &Path, id: &str, tcti: String, v: &Verifier, fw: &str) -> Self {
        let root = dir.join(id);
        fs::create_dir_all(&root).unwrap();
        let firmware = root.join("app.bin");
        fs::write(&firmware, format!("terminal application {fw}")).unwrap();
        Self {
            id: id.to_owned(),
            state: root.join("state"),
            sysfs: FakeSysfs::terminal(&root.join("sysfs")),
            firmware_version: fw.to_owned(),
            firmware,
            dir: root,
            tcti,
            mqtt_url: v.mqtt_url(),
            verifier_pub: v.verifier_pub(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(bin("vouch-agent"));
        c.arg("--state")
            .arg(&self.state)
            .arg("--tcti")
            .arg(&self.tcti)
            .env("TSS2_LOG", "all+NONE")
            .env("RUST_LOG", "info");
        c
    }

    fn inventory_args(&self, c: &mut Command) {
        c.arg("--sysfs-root")
            .arg(&self.sysfs.root)
            .arg("--firmware-version")
            .arg(&self.firmware_version);
    }

    fn run_args(&self, c: &mut Command) {
        c.arg("--mqtt-url")
            .arg(&self.mqtt_url)
            .arg("--verifier-key")
            .arg(&self.verifier_pub)
            .arg("--firmware")
            .arg(&self.firmware);
        self.inventory_args(c);
    }

    /// `vouch-agent enroll --device-id ID --model M --sysfs-root R --firmware-version V`;
    /// returns the request file.
    pub fn enroll(&self, model: &str) -> PathBuf {
        let request = self.dir.join("enroll.cbor");
        let mut c = self.cmd();
        c.args(["enroll", "--device-id", &self.id, "--model", model, "--out"])
            .arg(&request);
        self.inventory_args(&mut c);
        ok("vouch-agent enroll", c.output().unwrap());
        request
    }

    /// `vouch-agent activate CHALLENGE --out RESPONSE` on this terminal's TPM.
    pub fn activate(&self, challenge: &Path) -> (Output, PathBuf) {
        let response = self.dir.join("activate.response");
        let out = self
            .cmd()
            .arg("activate")
            .arg(challenge)
            .arg("--out")
            .arg(&response)
            .output()
            .unwrap();
        (out, response)
    }

    /// `vouch-agent activate`, which must succeed; returns the response file.
    pub fn activate_ok(&self, challenge: &Path) -> PathBuf {
        let (out, response) = self.activate(challenge);
        ok("vouch-agent activate", out);
        response
    }

    /// `vouch-agent attest --once` with the inventory flags; panics with its output unless it
    /// exits `want` (0 trusted, 3 quarantined, 4 pending); returns its output text.
    #[track_caller]
    pub fn attest_expect(&self, want: i32) -> String {
        let mut c = self.cmd();
        c.args(["attest", "--once", "--timeout", "60"]);
        self.run_args(&mut c);
        let out = c.output().unwrap();
        let t = text(&out);
        assert_eq!(
            out.status.code(),
            Some(want),
            "attest --once of {} should exit {want}:\n{t}",
            self.id
        );
        t
    }

    /// `vouch-agent run --interval SECS` with the inventory flags.
    pub fn spawn_daemon(&self, interval_secs: u64) -> Proc {
        let mut c = self.cmd();
        c.args(["run", "--interval", &interval_secs.to_string()]);
        self.run_args(&mut c);
        Proc::spawn(
            &format!("vouch-agent {}", self.id),
            &mut c,
            self.dir.join("daemon.log"),
        )
    }
}
