//! A test "TPM manufacturer": a certificate authority that issues EK certificates to software
//! TPMs the way a vendor's factory does, so end-to-end tests can exercise EK certificate
//! validation (`vouch_protocol::ekcert`) with real `swtpm_setup --create-ek-cert` output.
//!
//! [`TpmManufacturerCa::create`] makes a root CA (RSA-3072, SHA-384) and an EK-issuing
//! intermediate (ECDSA P-384) with openssl, each CA named after the manufacturer so that two
//! CAs never share a subject, and writes a `swtpm_localca` configuration that signs with that
//! intermediate — all inside its directory: nothing goes to /var/lib or /etc.
//! [`SwtpmWithEkCert::start`] manufactures a TPM with it (RSA-2048 and ECC P-384 EKs, each with
//! its certificate in NV, plus a platform certificate) and runs it as the kit's [`Swtpm`].
//! [`TpmManufacturerCa::roots_dir`] is the directory of PEM files to pass as `--tpm-roots`: the
//! root and the intermediate (TPMs carry only the leaf, so the intermediate is an anchor too).
//! A second `TpmManufacturerCa` is an untrusted manufacturer for the first one's roots.
//!
//! The CA is made with openssl rather than left to swtpm_localca's own first-use creation so
//! that the CAs' names are distinct (swtpm_localca names every CA it makes `swtpm-localca`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::swtpm::Swtpm;

/// A TPM manufacturer's CA in its own directory.
#[derive(Debug)]
pub struct TpmManufacturerCa {
    dir: PathBuf,
    name: String,
}

fn run(c: &mut Command, what: &str) -> io::Result<()> {
    let out = c
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn openssl(args: &[&str], what: &str) -> io::Result<()> {
    run(Command::new("openssl").args(args), what)
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("path {} is not UTF-8", p.display())))
}

impl TpmManufacturerCa {
    /// A CA named "vouch test TPM manufacturer N" (N unique within the process) in `dir`.
    pub fn create(dir: &Path) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self::create_named(dir, &format!("vouch test TPM manufacturer {n}"))
    }

    /// A CA whose root is `CN=<name> Root` and whose EK-issuing intermediate is `CN=<name> EK CA`.
    pub fn create_named(dir: &Path, name: &str) -> io::Result<Self> {
        let ca = dir.join("ca");
        let roots = dir.join("roots");
        std::fs::create_dir_all(&ca)?;
        std::fs::create_dir_all(&roots)?;
        let p = |f: &str| ca.join(f);
        let (root_key, root_pem) = (p("root.key"), roots.join("root.pem"));
        let (sign_key, csr, issuer) = (p("signkey.pem"), p("issuer.csr"), p("issuercert.pem"));
        let ext = p("issuer.ext");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:TRUE,pathlen:0\n\
             keyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )?;
        let root_subject = format!("/O=vouch tests/CN={name} Root");
        let issuer_subject = format!("/O=vouch tests/CN={name} EK CA");
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
            ]
            .into_iter()
            .chain(["-out", path_str(&root_key)?])
            .collect::<Vec<_>>(),
            "openssl genpkey (root CA key)",
        )?;
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-sha384",
                "-days",
                "36500",
                "-key",
                path_str(&root_key)?,
                "-subj",
                &root_subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                path_str(&root_pem)?,
            ],
            "openssl req (root CA certificate)",
        )?;
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                path_str(&sign_key)?,
            ],
            "openssl genpkey (EK CA key)",
        )?;
        openssl(
            &[
                "req",
                "-new",
                "-key",
                path_str(&sign_key)?,
                "-subj",
                &issuer_subject,
                "-out",
                path_str(&csr)?,
            ],
            "openssl req (EK CA request)",
        )?;
        openssl(
            &[
                "x509",
                "-req",
                "-sha384",
                "-days",
                "36500",
                "-set_serial",
                "1",
                "-in",
                path_str(&csr)?,
                "-CA",
                path_str(&root_pem)?,
                "-CAkey",
                path_str(&root_key)?,
                "-extfile",
                path_str(&ext)?,
                "-out",
                path_str(&issuer)?,
            ],
            "openssl x509 (EK CA certificate)",
        )?;
        std::fs::copy(&issuer, roots.join("intermediate.pem"))?;
        std::fs::write(p("certserial"), "1\n")?;
        let d = ca.display();
        std::fs::write(
            dir.join("swtpm-localca.conf"),
            format!(
                "statedir = {d}\nsigningkey = {d}/signkey.pem\n\
                 issuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n"
            ),
        )?;
        std::fs::write(
            dir.join("swtpm-localca.options"),
            "--platform-manufacturer vouch-test\n--platform-version 2.1\n--platform-model swtpm\n",
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The manufacturer's name (the CAs' subjects are derived from it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A directory of PEM files, `root.pem` and `intermediate.pem`: what an operator who trusts
    /// this manufacturer passes as `--tpm-roots`.
    pub fn roots_dir(&self) -> PathBuf {
        self.dir.join("roots")
    }

    /// The root CA certificate (PEM).
    pub fn root_cert(&self) -> PathBuf {
        self.roots_dir().join("root.pem")
    }

    /// The EK-issuing intermediate's certificate (PEM).
    pub fn intermediate_cert(&self) -> PathBuf {
        self.roots_dir().join("intermediate.pem")
    }

    fn localca_conf(&self) -> PathBuf {
        self.dir.join("swtpm-localca.conf")
    }

    fn localca_options(&self) -> PathBuf {
        self.dir.join("swtpm-localca.options")
    }
}

/// A running swtpm manufactured by a [`TpmManufacturerCa`]: RSA-2048 EK (certificate at NV
/// 0x01c00002), ECC P-384 EK (0x01c00016), platform certificate, sha256 PCR bank only.
#[derive(Debug)]
pub struct SwtpmWithEkCert {
    swtpm: Swtpm,
}

impl SwtpmWithEkCert {
    /// Manufactures a TPM in `dir/tpm` with `ca` (`swtpm_setup --tpm2 --config dir/...
    /// --create-ek-cert --create-platform-cert --pcr-banks sha256`), then starts it on a free
    /// loopback port pair as [`Swtpm::start`] does. Ended by its pid when dropped.
    pub fn start(ca: &TpmManufacturerCa, dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("tpm"))?;
        let conf = dir.join("swtpm_setup.conf");
        std::fs::write(
            &conf,
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\n\
                 create_certs_tool_config = {}\n\
                 create_certs_tool_options = {}\n\
                 active_pcr_banks = sha256\n",
                ca.localca_conf().display(),
                ca.localca_options().display()
            ),
        )?;
        run(
            Command::new("swtpm_setup")
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(dir.join("tpm"))
                .arg("--config")
                .arg(&conf)
                .args(["--create-ek-cert", "--create-platform-cert"])
                .args(["--pcr-banks", "sha256"]),
            "swtpm_setup",
        )?;
        Ok(Self {
            swtpm: Swtpm::start(dir)?,
        })
    }

    /// The TCTI string for tss-esapi, tpm2-tools and `vouch-agent --tcti`.
    pub fn tcti(&self) -> String {
        self.swtpm.tcti()
    }

    /// The running swtpm (tpm2-tools, reboot, PCR extends).
    pub fn swtpm(&self) -> &Swtpm {
        &self.swtpm
    }
}
