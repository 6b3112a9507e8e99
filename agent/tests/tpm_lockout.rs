//! Issue 6, case 10: the TPM's dictionary-attack (DA) lockout must not stop quotes. The AK is
//! created with noDA; here a swtpm is driven into lockout the way an attacker or a run of
//! unclean power cuts would (failed authorizations on a DA-protected object until
//! TPM_RC_LOCKOUT), and the AK still quotes, while an AK made the old way (without noDA, as
//! AKs enrolled before this change are) is refused — which also shows the lockout is real.

#![allow(clippy::expect_used)]

#[allow(dead_code)] // helpers shared by the agent test files; this one uses a few
mod common;

use std::process::{Command, Output};
use std::str::FromStr;

use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ak, ek};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use vouch_agent::tpm::{AkBlobs, ak_exempt_from_lockout};
use vouch_protocol::tpm::TpmPublic;

use common::Swtpm;

const QUOTE_PCRS: [u8; 3] = [0, 7, 14];

/// Runs a tpm2-tools command, successful or not (no `Tpm` may be open meanwhile).
fn tpm2_any(swtpm: &Swtpm, tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("TPM2TOOLS_TCTI", swtpm.tcti())
        .output()
        .expect("run tpm2-tools")
}

fn in_lockout(swtpm: &Swtpm) -> bool {
    let out = swtpm.tpm2("tpm2_getcap", &["properties-variable"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().eq(["inLockout:", "1"]))
}

/// Puts the TPM into DA lockout: a password-protected primary key (DA-protected, as every
/// object without noDA is), then wrong passwords until the TPM answers TPM_RC_LOCKOUT.
fn force_lockout(swtpm: &Swtpm) {
    // maxTries 3, recoveryTime and lockoutRecovery 1000 s (the TPM reference defaults), set
    // explicitly so the test does not depend on swtpm's.
    swtpm.tpm2(
        "tpm2_dictionarylockout",
        &["--setup-parameters", "-n", "3", "-t", "1000", "-l", "1000"],
    );
    let primary = swtpm.path("da-primary.ctx");
    let primary = primary.to_str().expect("utf-8 path");
    swtpm.tpm2(
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc", "-p", "right", "-c", primary],
    );
    swtpm.tpm2("tpm2_flushcontext", &["-t"]);
    let (public, private) = (swtpm.path("k.pub"), swtpm.path("k.priv"));
    let mut answers = Vec::new();
    for _ in 0..10 {
        let out = tpm2_any(
            swtpm,
            "tpm2_create",
            &[
                "-C",
                primary,
                "-P",
                "wrong",
                "-G",
                "ecc",
                "-u",
                public.to_str().expect("utf-8 path"),
                "-r",
                private.to_str().expect("utf-8 path"),
            ],
        );
        assert!(!out.status.success(), "a wrong password was accepted");
        let _ = tpm2_any(swtpm, "tpm2_flushcontext", &["-t"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let locked = stderr.contains("0x921") || stderr.to_lowercase().contains("lockout");
        answers.push(stderr);
        if locked {
            break;
        }
    }
    assert!(in_lockout(swtpm), "the TPM is not in lockout: {answers:#?}");
}

/// An AK as vouch created it before noDA: `create_ak_2` with its default attributes, under
/// the same default ECC P-256 EK the agent derives on a TPM without EK certificates.
fn legacy_ak(swtpm: &Swtpm) -> AkBlobs {
    let conf = TctiNameConf::from_str(&swtpm.tcti()).expect("tcti");
    let mut ctx = tss_esapi::Context::new(conf).expect("context");
    let ek = ek::create_ek_object_2(
        &mut ctx,
        AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        DefaultKey,
    )
    .expect("create EK");
    let created = ak::create_ak_2(
        &mut ctx,
        ek,
        HashingAlgorithm::Sha256,
        AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        SignatureSchemeAlgorithm::EcDsa,
        None,
        DefaultKey,
    )
    .expect("create legacy AK");
    ctx.flush_context(ek.into()).expect("flush EK");
    AkBlobs {
        private: created.out_private.value().to_vec(),
        public: created.out_public.marshall().expect("marshal AK public"),
    }
}

#[test]
fn ak_is_created_with_no_da() {
    let swtpm = Swtpm::start();
    let (identity, blobs) = swtpm.open().load_or_create_identity(None).expect("create");
    // `load_or_create_identity` has already checked these bytes equal the public area the
    // TPM reports for the loaded AK (TPM2_ReadPublic).
    let public = TpmPublic::parse(&identity.ak_public).expect("AK public parses");
    assert!(
        public.attributes().no_da(),
        "AK attributes {:#x}",
        public.attributes().0
    );
    assert_eq!(public.check_vouch_attestation_key(), Ok(()));
    assert_eq!(ak_exempt_from_lockout(&blobs.public), Some(true));

    // tpm2-tools' decoding of the same public area agrees.
    let pub_file = swtpm.path("ak.pub");
    let mut tpm2b_public = (blobs.public.len() as u16).to_be_bytes().to_vec();
    tpm2b_public.extend_from_slice(&blobs.public);
    std::fs::write(&pub_file, &tpm2b_public).expect("write AK public");
    let out = swtpm.tpm2(
        "tpm2_print",
        &["-t", "TPM2B_PUBLIC", pub_file.to_str().expect("utf-8 path")],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("noda"), "{printed}");

    // An AK made the way vouch did before reads as subject to lockout.
    let legacy = legacy_ak(&swtpm);
    assert_eq!(ak_exempt_from_lockout(&legacy.public), Some(false));
}

#[test]
fn quotes_keep_working_in_da_lockout() {
    let swtpm = Swtpm::start();
    let (_, blobs) = swtpm.open().load_or_create_identity(None).expect("create");
    let legacy = legacy_ak(&swtpm);
    // Both quote before the lockout.
    {
        let mut tpm = swtpm.open();
        tpm.quote(&blobs, b"before", &QUOTE_PCRS)
            .expect("noDA AK quotes");
        tpm.quote(&legacy, b"before", &QUOTE_PCRS)
            .expect("legacy AK quotes");
    }

    force_lockout(&swtpm);

    let mut tpm = swtpm.open();
    let quote = tpm
        .quote(&blobs, b"during lockout", &QUOTE_PCRS)
        .expect("the noDA AK must quote while the TPM is in lockout");
    assert!(!quote.attest.is_empty());
    // Loading and re-creating the identity (enroll) work in lockout too.
    tpm.load_or_create_identity(Some(&blobs))
        .expect("load the identity in lockout");
    let err = tpm
        .quote(&legacy, b"during lockout", &QUOTE_PCRS)
        .expect_err("a DA-protected AK is refused in lockout");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(
        text.contains("0x921") || text.to_lowercase().contains("lockout"),
        "{text}"
    );
    drop(tpm);
    assert!(in_lockout(&swtpm), "the lockout ended during the test");
}

#[test]
fn status_says_whether_the_ak_is_subject_to_lockout() {
    use vouch_agent::state::{StateDir, StoredIdentity};
    use vouch_agent::status;

    let swtpm = Swtpm::start();
    let (identity, blobs) = swtpm.open().load_or_create_identity(None).expect("create");
    let legacy = legacy_ak(&swtpm);
    for (ak, want) in [(&blobs, true), (&legacy, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state dir");
        state
            .save_identity(&StoredIdentity {
                device_id: "term-1".parse().expect("device id"),
                model: "T-100".into(),
                ek_public: identity.ek_public.clone().into(),
                ek_certificate: None,
                ak_public: ak.public.clone().into(),
                ak_name: identity.ak_name.clone().into(),
                ak_private: ak.private.clone().into(),
            })
            .expect("save identity");
        let view = status::view(&state).expect("status");
        // `vouch-agent status --json` prints this view.
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["ak_no_da"], want, "{json}");
        let text = status::render(&view);
        assert_eq!(
            text.contains("re-create it by enrolling again"),
            !want,
            "{text}"
        );
    }
}
