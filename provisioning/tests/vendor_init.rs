//! `vouch-provision vendor-init`: the files it writes, their modes and formats, and the
//! refusals that protect a vendor key (never overwritten, never read when others can read it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn vendor_init_writes_a_private_key_and_the_public_key_operators_trust() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("acme");
    let out = ok(&["vendor-init", "--out", s(&dir), "--name", "acme"]);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("vendor.key")), 0o600);
    assert_eq!(mode(&dir.join("vendor.pub")), 0o644);
    assert_eq!(
        std::fs::read_to_string(dir.join("vendor.name")).unwrap(),
        "acme\n"
    );
    let key_text = std::fs::read_to_string(dir.join("vendor.key")).unwrap();
    assert_eq!(key_text.len(), 65, "64 hex characters and a newline");
    assert!(key_text.ends_with('\n'));
    let seed: [u8; 32] = hex::decode(key_text.trim()).unwrap().try_into().unwrap();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let pub_text = std::fs::read_to_string(dir.join("vendor.pub")).unwrap();
    assert_eq!(pub_text, format!("{}\n", hex::encode(public.as_bytes())));
    assert_eq!(vendor_key(&dir), public);
    // The fingerprint is printed, the key is not.
    assert!(
        out.contains(&vouch_protocol::vendor::fingerprint(&public)),
        "{out}"
    );
    assert!(!out.contains(key_text.trim()), "the key was printed: {out}");
}

#[test]
fn the_name_defaults_to_the_directory_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("globex-terminals");
    ok(&["vendor-init", "--out", s(&dir)]);
    assert_eq!(
        std::fs::read_to_string(dir.join("vendor.name")).unwrap(),
        "globex-terminals\n"
    );
    let err = refused(&[
        "vendor-init",
        "--out",
        s(&tmp.path().join("x")),
        "--name",
        "a b",
    ]);
    assert!(err.contains("vendor name"), "{err}");
    assert!(!tmp.path().join("x").join("vendor.key").exists());
}

#[test]
fn an_existing_vendor_key_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = vendor(tmp.path(), "acme");
    let before = std::fs::read(dir.join("vendor.key")).unwrap();
    let err = refused(&["vendor-init", "--out", s(&dir), "--name", "acme"]);
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(dir.join("vendor.key")).unwrap(), before);
}

#[test]
fn a_vendor_key_others_can_read_is_refused_by_the_signing_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = vendor(tmp.path(), "acme");
    let key = dir.join("vendor.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tmp.path().join("b");
    let err = refused(&[
        "batch",
        "--count",
        "1",
        "--model",
        "T-100",
        "--vendor",
        s(&dir),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("vendor.key") && err.contains("0640"), "{err}");
    // A public key that is not the private key's half is refused too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = vendor(tmp.path(), "other");
    std::fs::copy(other.join("vendor.pub"), dir.join("vendor.pub")).unwrap();
    let err = refused(&[
        "batch",
        "--count",
        "1",
        "--model",
        "T-100",
        "--vendor",
        s(&dir),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("vendor.pub"), "{err}");
}
