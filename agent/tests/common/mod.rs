//! Test harness shared by the agent's integration tests: a private swtpm per test (the test
//! kit's, on a free loopback port pair, ended by pid) whose directory is removed on drop, plus a
//! minimal reader for the TPM structures the tests inspect.

// clippy's allow-expect-in-tests covers #[test] functions only, not these
// helpers, which should panic loudly too.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vouch_agent::tpm::Tpm;

/// A running swtpm (the test kit's, ended by its pid) in its own temporary directory, removed
/// on drop after the TPM has stopped.
pub struct Swtpm {
    // Declared first, so it is dropped (stopped) before its directory is removed.
    tpm: vouch_test_kit::swtpm::Swtpm,
    dir: tempfile::TempDir,
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
        vouch_test_kit::swtpm::provision(dir.path()).expect("swtpm_setup");
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> Self {
        let tpm = vouch_test_kit::swtpm::Swtpm::start(dir.path()).expect("start swtpm");
        Self { tpm, dir }
    }

    pub fn tcti(&self) -> String {
        self.tpm.tcti()
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
        self.tpm.tpm2(tool, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A TPM reset as on a reboot: `TPM2_Init` via the control channel, then
    /// `TPM2_Startup(CLEAR)` as firmware would send.
    pub fn reboot(&self) {
        self.tpm.reboot().unwrap_or_else(|e| panic!("{e}"));
    }
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
