//! A software TPM (swtpm) child process on free loopback ports, for the demo and the tests, plus
//! the tpm2-tools operations they perform on it (extend a PCR, simulate a reboot). Production
//! terminals use their hardware TPM (`device:/dev/tpmrm0`) instead.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{Proc, wait_for_port};

/// A running swtpm.
#[derive(Debug)]
pub struct Swtpm {
    port: u16,
    dir: PathBuf,
    proc: Proc,
}

/// Two consecutive free loopback ports: swtpm's control port must be its server port + 1.
fn free_port_pair() -> io::Result<u16> {
    for _ in 0..200 {
        let p = crate::process::free_port()?;
        if p < u16::MAX
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            return Ok(p);
        }
    }
    Err(io::Error::other("no two consecutive free loopback ports"))
}

/// Manufactures a TPM in `dir/tpm` as a vendor would, for [`Swtpm::start`] to run: `swtpm_setup`
/// with an RSA-2048 and an ECC P-384 EK, each with an EK certificate, and a platform certificate,
/// signed by a throwaway `swtpm_localca` whose CA files stay in `dir/ca` (so nothing is written
/// to /var/lib). Only the sha256 PCR bank is active.
pub fn provision(dir: &Path) -> io::Result<()> {
    for sub in ["tpm", "ca"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let d = dir.display();
    std::fs::write(
        dir.join("swtpm_setup.conf"),
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\n\
             create_certs_tool_config = {d}/swtpm-localca.conf\n\
             create_certs_tool_options = {d}/swtpm-localca.options\n\
             active_pcr_banks = sha256\n"
        ),
    )?;
    std::fs::write(
        dir.join("swtpm-localca.conf"),
        format!(
            "statedir = {d}/ca\nsigningkey = {d}/ca/signkey.pem\n\
             issuercert = {d}/ca/issuercert.pem\ncertserial = {d}/ca/certserial\n"
        ),
    )?;
    std::fs::write(
        dir.join("swtpm-localca.options"),
        "--platform-manufacturer vouch-test\n--platform-version 2.1\n--platform-model swtpm\n",
    )?;
    let mut c = Command::new("swtpm_setup");
    c.arg("--tpm2")
        .arg("--tpmstate")
        .arg(dir.join("tpm"))
        .arg("--config")
        .arg(dir.join("swtpm_setup.conf"))
        .args(["--create-ek-cert", "--create-platform-cert"])
        .args(["--pcr-banks", "sha256"]);
    Swtpm::run(c, "swtpm_setup").map(|_| ())
}

impl Swtpm {
    /// Starts swtpm with its state in `dir/tpm` (fresh, or as [`provision`] left it) and its log
    /// in `dir/swtpm.log`.
    pub fn start(dir: &Path) -> io::Result<Self> {
        let state = dir.join("tpm");
        std::fs::create_dir_all(&state)?;
        let port = free_port_pair()?;
        let proc = Proc::spawn(
            "swtpm",
            Command::new("swtpm").args([
                "socket",
                "--tpm2",
                "--tpmstate",
                &format!("dir={}", state.display()),
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                "--flags",
                "not-need-init,startup-clear",
            ]),
            &dir.join("swtpm.log"),
        )?;
        if !wait_for_port(port, Duration::from_secs(20)) {
            return Err(io::Error::other("swtpm did not start listening"));
        }
        Ok(Self {
            port,
            dir: dir.to_owned(),
            proc,
        })
    }

    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+NONE");
        c
    }

    fn run(mut c: Command, what: &str) -> io::Result<Output> {
        let out = c.output()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(io::Error::other(format!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Runs the tpm2-tools program `tool` with `args` against this swtpm; its output, or an error
    /// carrying what it printed when it fails. Nothing else may be connected meanwhile: swtpm
    /// serves one client connection at a time.
    pub fn tpm2(&self, tool: &str, args: &[&str]) -> io::Result<Output> {
        let mut c = self.tool(tool);
        c.args(args);
        Self::run(c, tool)
    }

    /// `tpm2_pcrextend PCR:sha256=DIGEST` (what an attacker with TPM access would do).
    pub fn pcr_extend(&self, pcr: u8, digest_hex: &str) -> io::Result<()> {
        let mut c = self.tool("tpm2_pcrextend");
        c.arg(format!("{pcr}:sha256={digest_hex}"));
        Self::run(c, "tpm2_pcrextend").map(|_| ())
    }

    /// A simulated reboot: TPM reset plus TPM2_Startup(CLEAR); PCRs come back zeroed.
    pub fn reboot(&self) -> io::Result<()> {
        let mut c = Command::new("swtpm_ioctl");
        c.args(["--tcp", &format!("127.0.0.1:{}", self.port + 1), "-i"]);
        Self::run(c, "swtpm_ioctl -i")?;
        let mut c = self.tool("tpm2_startup");
        c.arg("-c");
        Self::run(c, "tpm2_startup -c").map(|_| ())
    }
}
