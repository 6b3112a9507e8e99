//! Test harness shared by the integration tests: a private swtpm per test on
//! a free loopback port pair, killed by pid and its state directory removed
//! on drop, plus a minimal reader for the TPM structures the tests inspect.

// clippy's allow-expect-in-tests covers #[test] functions only, not these
// helpers, which should panic loudly too.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vouch_agent::tpm::Tpm;

/// A running swtpm, killed and its state removed on drop.
pub struct Swtpm {
    dir: tempfile::TempDir,
    port: u16,
    pid: u32,
}

impl Swtpm {
    /// A fresh swtpm with no EK certificates.
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"))
    }

    /// A swtpm manufactured by `swtpm_setup` with EK and platform certificates
    /// signed by a throwaway swtpm_localca, all inside the temporary directory.
    pub fn start_provisioned() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["state", "ca"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        let write = |name: &str, text: String| std::fs::write(d.join(name), text).expect("write");
        write(
            "swtpm_setup.conf",
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\n\
                 create_certs_tool_config = {0}/swtpm-localca.conf\n\
                 create_certs_tool_options = {0}/swtpm-localca.options\n\
                 active_pcr_banks = sha256\n",
                d.display()
            ),
        );
        write(
            "swtpm-localca.conf",
            format!(
                "statedir = {0}/ca\nsigningkey = {0}/ca/signkey.pem\n\
                 issuercert = {0}/ca/issuercert.pem\ncertserial = {0}/ca/certserial\n",
                d.display()
            ),
        );
        write(
            "swtpm-localca.options",
            "--platform-manufacturer vouch-test\n--platform-version 2.1\n--platform-model swtpm\n"
                .to_owned(),
        );
        let out = Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(d.join("state"))
            .arg("--config")
            .arg(d.join("swtpm_setup.conf"))
            .args(["--create-ek-cert", "--create-platform-cert"])
            .args(["--pcr-banks", "sha256"])
            .output()
            .expect("run swtpm_setup");
        assert_success("swtpm_setup", &out);
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> Self {
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("mkdir state");
        let pid_file = state.join("swtpm.pid");
        for _ in 0..10 {
            let port = free_port_pair();
            let out = Command::new("swtpm")
                .args(["socket", "--tpm2", "--daemon"])
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .arg("--pid")
                .arg(format!("file={}", pid_file.display()))
                .output()
                .expect("run swtpm");
            if !out.status.success() {
                continue; // lost a race for the port pair; try another
            }
            let pid = std::fs::read_to_string(&pid_file)
                .expect("swtpm pid file")
                .trim()
                .parse()
                .expect("swtpm pid");
            return Self { dir, port, pid };
        }
        panic!("could not start swtpm");
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn open(&self) -> Tpm {
        Tpm::open(&self.tcti()).expect("open swtpm")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools command against this swtpm. No `Tpm` may be open:
    /// swtpm serves one client connection at a time.
    pub fn tpm2(&self, tool: &str, args: &[&str]) -> Output {
        let out = Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .expect("run tpm2-tools");
        assert_success(tool, &out);
        out
    }

    /// A TPM reset as on a reboot: `TPM2_Init` via the control channel, then
    /// `TPM2_Startup(CLEAR)` as firmware would send.
    pub fn reboot(&self) {
        let out = Command::new("swtpm_ioctl")
            .args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-i"])
            .output()
            .expect("run swtpm_ioctl");
        assert_success("swtpm_ioctl -i", &out);
        self.tpm2("tpm2_startup", &["-c"]);
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_running(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_running(self.pid) {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
        }
    }
}

/// Whether `pid` is alive (a zombie awaiting its reaper counts as gone).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A loopback port P such that P and P+1 were both free a moment ago.
pub fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A minimal big-endian reader for TPM structures.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "structure truncated");
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    pub fn tpm2b(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
}

/// The fields of a quote's TPMS_ATTEST the tests look at.
#[derive(Debug)]
pub struct ParsedQuote {
    pub extra_data: Vec<u8>,
    pub reset_count: u32,
    /// (hash algorithm, PCR bitmap) per selection.
    pub selections: Vec<(u16, Vec<u8>)>,
    pub pcr_digest: Vec<u8>,
}

pub fn parse_quote_attest(bytes: &[u8]) -> ParsedQuote {
    let mut r = Reader(bytes);
    assert_eq!(r.u32(), 0xff54_4347, "magic TPM_GENERATED_VALUE");
    assert_eq!(r.u16(), 0x8018, "type TPM_ST_ATTEST_QUOTE");
    let _qualified_signer = r.tpm2b();
    let extra_data = r.tpm2b().to_vec();
    let _clock = r.u64();
    let reset_count = r.u32();
    let _restart_count = r.u32();
    let _safe = r.u8();
    let _firmware_version = r.u64();
    let selections = (0..r.u32())
        .map(|_| {
            let alg = r.u16();
            let size = r.u8() as usize;
            (alg, r.take(size).to_vec())
        })
        .collect();
    let pcr_digest = r.tpm2b().to_vec();
    assert!(r.0.is_empty(), "trailing bytes after TPMS_ATTEST");
    ParsedQuote {
        extra_data,
        reset_count,
        selections,
        pcr_digest,
    }
}

/// The unique point (x, y) of an ECC TPMT_PUBLIC; also checks its header.
pub fn ecc_public_point(public: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut r = Reader(public);
    assert_eq!(r.u16(), 0x0023, "type TPM_ALG_ECC");
    let _name_alg = r.u16();
    let _attributes = r.u32();
    let _auth_policy = r.tpm2b();
    if r.u16() != 0x0010 {
        let _key_bits_and_mode = r.take(4); // symmetric
    }
    if r.u16() != 0x0010 {
        let _hash = r.u16(); // scheme
    }
    let _curve = r.u16();
    if r.u16() != 0x0010 {
        let _hash = r.u16(); // kdf
    }
    let x = r.tpm2b().to_vec();
    let y = r.tpm2b().to_vec();
    assert!(r.0.is_empty(), "trailing bytes after TPMT_PUBLIC");
    (x, y)
}

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}
