//! Credential activation end to end on swtpm: a terminal enrolled with the real `vouch-agent
//! enroll`, a challenge made in pure Rust by the provisioning library (what `vouch-provision
//! challenge` runs), answered by the real `vouch-agent activate`, and the response checked as
//! `vouch-provision issue` checks it. With the default P-256 EK and with the P-384 EK that
//! `swtpm_setup --create-ek-cert` certifies; a credential made for another TPM's EK is refused
//! by the TPM, and another terminal's response does not pass. The RSA-2048 path of
//! MakeCredential (which the agent never uses) is checked with tpm2-tools'
//! `tpm2_activatecredential` against swtpm's RSA EK, and the agent opens a credential that
//! tpm2-tools' `tpm2_makecredential` made.

// clippy's allow-expect-in-tests covers #[test] functions only, not these helpers.
#![allow(clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::SeedableRng;
use rand::rngs::StdRng;
use vouch_protocol::bytes::Bytes;
use vouch_protocol::credential::{ActivationError, CredentialChallenge, CredentialResponse};
use vouch_protocol::messages::EnrollmentRequest;
use vouch_protocol::tpm::TpmPublic;
use vouch_protocol::wire;
use vouch_provisioning::credential::{challenge_for_request, make_credential};
use vouch_provisioning::pending::{self, Pending};
use vouch_test_kit::process::assert_success;

const BIN: &str = env!("CARGO_BIN_EXE_vouch-agent");
/// The challenges' "now": the agent checks expiry by its own clock, so use the real one.
fn now() -> u64 {
    vouch_common::time::now_unix()
}

/// A terminal enrolled on its own swtpm (fresh, or manufactured with EK certificates).
struct Terminal {
    // Declared first, so swtpm stops before its directory is removed.
    swtpm: vouch_test_kit::swtpm::Swtpm,
    dir: tempfile::TempDir,
    device: &'static str,
}

impl Terminal {
    fn enrolled(device: &'static str, with_ek_certs: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        if with_ek_certs {
            vouch_test_kit::swtpm::provision(dir.path()).expect("swtpm_setup");
        }
        let swtpm = vouch_test_kit::swtpm::Swtpm::start(dir.path()).expect("start swtpm");
        let t = Self { swtpm, dir, device };
        let out = t
            .agent()
            .args(["enroll", "--device-id", device, "--model", "T-100", "--out"])
            .arg(t.request_path())
            .output()
            .expect("run enroll");
        assert_success("enroll", &out);
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request_path(&self) -> PathBuf {
        self.path("request.cbor")
    }

    fn request_bytes(&self) -> Vec<u8> {
        std::fs::read(self.request_path()).expect("read request")
    }

    fn request(&self) -> EnrollmentRequest {
        wire::decode_detached(&self.request_bytes(), 1 << 16)
            .expect("decode request")
            .peek_unverified()
            .expect("request body")
    }

    fn agent(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--state")
            .arg(self.path("state"))
            .arg("--tcti")
            .arg(self.swtpm.tcti());
        c
    }

    /// The station's step for this terminal's request: the challenge file and the pending
    /// record (stored and loaded back through the station's pending directory).
    fn challenge(&self, seed: u64) -> (PathBuf, Pending) {
        let (challenge, pending) = challenge_for_request(
            &self.request_bytes(),
            now(),
            600,
            &mut StdRng::seed_from_u64(seed),
        )
        .expect("challenge");
        let file = self.path(&format!("challenge-{seed}.cbor"));
        std::fs::write(&file, challenge.to_cbor()).expect("write challenge");
        let dir = self.path("pending");
        pending::store(&dir, &pending).expect("store pending");
        let loaded = pending::load(&dir, &pending.request_digest).expect("load pending");
        (file, loaded)
    }

    /// `vouch-agent activate CHALLENGE --out RESPONSE`.
    fn activate(&self, challenge: &Path, response: &Path) -> Output {
        self.agent()
            .arg("activate")
            .arg(challenge)
            .arg("--out")
            .arg(response)
            .output()
            .expect("run activate")
    }
}

fn read_response(path: &Path) -> CredentialResponse {
    CredentialResponse::from_cbor(&std::fs::read(path).expect("read response"))
        .expect("decode response")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn activation_round_trip(t: &Terminal) {
    let (challenge, pending) = t.challenge(1);
    let response = t.path("response.cbor");
    let out = t.activate(&challenge, &response);
    assert_success("activate", &out);
    let mode = std::fs::metadata(&response)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the response holds the secret");
    let resp = read_response(&response);
    assert_eq!(resp.device.as_str(), t.device);
    assert_eq!(pending.check(&resp, now()), Ok(()));
    // Activating the same challenge again gives the same secret (the TPM holds the keys).
    assert_success("activate again", &t.activate(&challenge, &response));
    assert_eq!(pending.check(&read_response(&response), now()), Ok(()));
}

#[test]
fn p256_ek_activation_answers_the_station() {
    let t = Terminal::enrolled("term-a", false);
    let ek = TpmPublic::parse(t.request().ek_public.as_slice()).expect("EK");
    assert_eq!(ek.name_alg().name(), "sha256", "default P-256 EK");
    activation_round_trip(&t);
}

#[test]
fn p384_ek_from_swtpm_setup_activation_answers_the_station() {
    let t = Terminal::enrolled("term-384", true);
    let req = t.request();
    assert!(req.ek_certificate.is_some(), "swtpm_setup made an EK cert");
    let ek = TpmPublic::parse(req.ek_public.as_slice()).expect("EK");
    assert_eq!(ek.name_alg().name(), "sha384", "the certified P-384 EK");
    activation_round_trip(&t);
}

#[test]
fn another_tpm_cannot_activate_and_another_terminals_response_does_not_pass() {
    let a = Terminal::enrolled("term-a", false);
    let b = Terminal::enrolled("term-b", false);
    let (a_challenge, a_pending) = a.challenge(1);
    let (b_challenge, b_pending) = b.challenge(2);

    // A's challenge handed to terminal B: refused before the TPM is asked.
    let out = b.activate(&a_challenge, &b.path("r.cbor"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is for device term-a, but this terminal is term-b"),
        "{}",
        stderr(&out)
    );

    // A request pairing A's EK with B's AK (an AK that is not in the EK's TPM) gets a
    // credential for A's EK bound to B's AK Name; B's TPM, which holds the AK but not that EK,
    // refuses to activate it.
    let b_req = b.request();
    let (id_object, encrypted_secret) = make_credential(
        a.request().ek_public.as_slice(),
        b_req.ak_name.as_slice(),
        &[7; 32],
        &mut StdRng::seed_from_u64(3),
    )
    .expect("make credential");
    let forged = CredentialChallenge {
        id_object: Bytes(id_object),
        encrypted_secret: Bytes(encrypted_secret),
        ..CredentialChallenge::from_cbor(&std::fs::read(&b_challenge).expect("read"))
            .expect("decode")
    };
    let forged_path = b.path("forged.cbor");
    std::fs::write(&forged_path, forged.to_cbor()).expect("write");
    let response = b.path("forged-response.cbor");
    let out = b.activate(&forged_path, &response);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "this TPM does not hold the EK the challenge was made for, or the AK is not this TPM's"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!response.exists(), "no response is written on failure");

    // B answers its own challenge; that response does not pass A's check.
    let b_response = b.path("b-response.cbor");
    assert_success("activate B", &b.activate(&b_challenge, &b_response));
    let resp = read_response(&b_response);
    assert_eq!(b_pending.check(&resp, now()), Ok(()));
    assert!(matches!(
        a_pending.check(&resp, now()),
        Err(ActivationError::OtherRequest { .. })
    ));
    // Relabelled as a response to A's request, its secret is still not A's.
    let relabelled = CredentialResponse {
        request_digest: a_pending.request_digest,
        device: a_pending.device.clone(),
        ..resp
    };
    assert_eq!(
        a_pending.check(&relabelled, now()),
        Err(ActivationError::WrongSecret)
    );
    // A itself still answers its own challenge.
    let a_response = a.path("a-response.cbor");
    assert_success("activate A", &a.activate(&a_challenge, &a_response));
    assert_eq!(a_pending.check(&read_response(&a_response), now()), Ok(()));
}

#[test]
fn expired_and_malformed_challenges_are_refused_with_the_reason() {
    let t = Terminal::enrolled("term-a", false);
    let (challenge, _) = t.challenge(1);
    let mut c =
        CredentialChallenge::from_cbor(&std::fs::read(&challenge).expect("read")).expect("decode");
    c.issued_at = 1_000;
    c.expires_at = 2_000;
    let expired = t.path("expired.cbor");
    std::fs::write(&expired, c.to_cbor()).expect("write");
    let out = t.activate(&expired, &t.path("r.cbor"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    let mut c =
        CredentialChallenge::from_cbor(&std::fs::read(&challenge).expect("read")).expect("decode");
    c.ak_name.0[5] ^= 1;
    let other_ak = t.path("other-ak.cbor");
    std::fs::write(&other_ak, c.to_cbor()).expect("write");
    let out = t.activate(&other_ak, &t.path("r.cbor"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not this terminal's"),
        "{}",
        stderr(&out)
    );

    let junk = t.path("junk.cbor");
    std::fs::write(&junk, b"not cbor").expect("write");
    let out = t.activate(&junk, &t.path("r.cbor"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a credential challenge"),
        "{}",
        stderr(&out)
    );
}

/// tpm2-tools' credential file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET.
fn tpm2_tools_credential(id_object: &[u8], encrypted_secret: &[u8]) -> Vec<u8> {
    let mut out = 0xBADC_C0DEu32.to_be_bytes().to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    for part in [id_object, encrypted_secret] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn rsa_2048_credential_activates_with_tpm2_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let swtpm = vouch_test_kit::swtpm::Swtpm::start(dir.path()).expect("start swtpm");
    let p = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let tpm2 = |tool: &str, args: &[&str]| swtpm.tpm2(tool, args).unwrap_or_else(|e| panic!("{e}"));
    // The TCG default RSA-2048 EK, persisted so the AK and the activation can name it.
    tpm2(
        "tpm2_createek",
        &["-c", "0x81010001", "-G", "rsa", "-u", &p("ek.pub")],
    );
    tpm2(
        "tpm2_createak",
        &[
            "-C",
            "0x81010001",
            "-c",
            &p("ak.ctx"),
            "-G",
            "ecc",
            "-g",
            "sha256",
            "-s",
            "ecdsa",
            "-u",
            &p("ak.pub"),
            "-n",
            &p("ak.name"),
        ],
    );
    tpm2("tpm2_flushcontext", &["-t"]);
    let ek = TpmPublic::from_tpm2b(&std::fs::read(p("ek.pub")).expect("ek.pub")).expect("EK");
    assert!(matches!(
        ek.parameters(),
        vouch_protocol::tpm::PublicParameters::Rsa(r) if r.key_bits == 2048
    ));
    let ak_name = std::fs::read(p("ak.name")).expect("ak.name");
    let secret = [0x42u8; 32];
    let (id_object, encrypted_secret) = make_credential(
        ek.as_tpmt_bytes(),
        &ak_name,
        &secret,
        &mut StdRng::seed_from_u64(9),
    )
    .expect("make credential");
    assert_eq!(encrypted_secret.len(), 256, "RSA-2048 OAEP block");
    std::fs::write(
        p("cred.bin"),
        tpm2_tools_credential(&id_object, &encrypted_secret),
    )
    .expect("write credential");

    let activate = |cred: &str, out: &str| {
        tpm2(
            "tpm2_startauthsession",
            &["--policy-session", "-S", &p("session.ctx")],
        );
        tpm2("tpm2_policysecret", &["-S", &p("session.ctx"), "-c", "e"]);
        let result = swtpm.tpm2(
            "tpm2_activatecredential",
            &[
                "-c",
                &p("ak.ctx"),
                "-C",
                "0x81010001",
                "-i",
                cred,
                "-o",
                out,
                "-P",
                &format!("session:{}", p("session.ctx")),
            ],
        );
        tpm2("tpm2_flushcontext", &[&p("session.ctx")]);
        tpm2("tpm2_flushcontext", &["-t"]);
        result
    };
    activate(&p("cred.bin"), &p("secret.out")).expect("tpm2_activatecredential");
    assert_eq!(std::fs::read(p("secret.out")).expect("secret"), secret);

    // Bound to another Name, the TPM refuses it.
    let mut other_name = ak_name.clone();
    other_name[4] ^= 1;
    let (id_object, encrypted_secret) = make_credential(
        ek.as_tpmt_bytes(),
        &other_name,
        &secret,
        &mut StdRng::seed_from_u64(10),
    )
    .expect("make credential");
    std::fs::write(
        p("other.bin"),
        tpm2_tools_credential(&id_object, &encrypted_secret),
    )
    .expect("write credential");
    assert!(activate(&p("other.bin"), &p("other.out")).is_err());
}

#[test]
fn a_credential_made_by_tpm2_makecredential_activates_too() {
    // The agent's activation checked against an independent MakeCredential (tpm2-tools,
    // computed without a TPM), not only against the provisioning library's.
    let t = Terminal::enrolled("term-a", false);
    let req = t.request();
    let ek = TpmPublic::parse(req.ek_public.as_slice()).expect("EK");
    std::fs::write(t.path("ek.pub"), ek.to_tpm2b_bytes()).expect("write ek.pub");
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37)).collect();
    std::fs::write(t.path("secret"), &secret).expect("write secret");
    let out = Command::new("tpm2_makecredential")
        .args(["-T", "none", "-u"])
        .arg(t.path("ek.pub"))
        .arg("-s")
        .arg(t.path("secret"))
        .args(["-n", &hex::encode(req.ak_name.as_slice()), "-o"])
        .arg(t.path("cred.bin"))
        .output()
        .expect("run tpm2_makecredential (tpm2-tools must be installed)");
    assert_success("tpm2_makecredential", &out);
    let cred = std::fs::read(t.path("cred.bin")).expect("read credential");
    assert_eq!(
        &cred[..8],
        &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1],
        "tpm2-tools header"
    );
    let take = |b: &[u8]| {
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        (b[2..2 + len].to_vec(), b[2 + len..].to_vec())
    };
    let (id_object, rest) = take(&cred[8..]);
    let (encrypted_secret, rest) = take(&rest);
    assert!(rest.is_empty());
    let challenge = CredentialChallenge {
        v: 1,
        device: t.device.parse().expect("device id"),
        request_digest: vouch_protocol::credential::request_digest(&t.request_bytes()),
        ak_name: req.ak_name.clone(),
        id_object: Bytes(id_object),
        encrypted_secret: Bytes(encrypted_secret),
        issued_at: now(),
        expires_at: now() + 600,
    };
    let file = t.path("tools-challenge.cbor");
    std::fs::write(&file, challenge.to_cbor()).expect("write challenge");
    let response = t.path("tools-response.cbor");
    assert_success("activate", &t.activate(&file, &response));
    assert_eq!(read_response(&response).secret.0, secret);
}
