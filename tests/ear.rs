//! EAR tokens end to end (issue 10 §3), checked by an independent implementation: the `ear`
//! crate 0.6 (Veraison's reference implementation of draft-ietf-rats-ear) verifies the tokens
//! the real verifier serves, with the key from its JWK set. A trusted terminal (a real agent on
//! swtpm) is affirming, a quarantined one contraindicated; another key or an edited token fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ear::{Algorithm, Ear, TrustTier};
use vouch_e2e::agent::Terminal;
use vouch_e2e::procs::{BrokerKind, Verifier, swtpm};

const PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";

/// The one JWK of the verifier's public JWK set, as the bytes `Ear::from_jwt_jwk` takes.
fn jwk(v: &Verifier) -> Vec<u8> {
    let (code, body) = v.http("GET", "/api/jwks.json", None);
    assert_eq!(code, 200, "{body}");
    let set: serde_json::Value = serde_json::from_str(&body).unwrap();
    serde_json::to_vec(&set["keys"][0]).unwrap()
}

fn ear_of(v: &Verifier, id: &str) -> String {
    let (code, body) = v.http(
        "GET",
        &format!("/api/devices/{id}/ear"),
        Some(&v.admin_token()),
    );
    assert_eq!(code, 200, "{body}");
    body.trim().to_owned()
}

fn status(token: &str, key: &[u8]) -> TrustTier {
    let ear = Ear::from_jwt_jwk(token, Algorithm::EdDSA, key).expect("the ear crate verifies it");
    assert_eq!(ear.profile, PROFILE);
    ear.validate().expect("a valid EAR");
    assert_eq!(ear.vid.developer, "vouch");
    let sub = ear.submods.get("terminal").expect("submodule terminal");
    sub.status
}

#[test]
fn ear_tokens_verify_with_the_ear_crate_and_follow_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = swtpm(dir.path());
    let v = Verifier::start(dir.path(), BrokerKind::Mosquitto);
    let t = Terminal::new(dir.path(), "term-1", &tpm, &v, "firmware v1");
    t.enroll(&v, "T-100");
    let key = jwk(&v);

    // Enrolled, not yet attested against reference values: not affirming.
    let pending = ear_of(&v, "term-1");
    assert_ne!(status(&pending, &key), TrustTier::Affirming);

    t.attest_expect(4);
    v.capture("term-1");
    t.attest_expect(0);
    let token = ear_of(&v, "term-1");
    assert_eq!(status(&token, &key), TrustTier::Affirming);
    let ear = Ear::from_jwt_jwk(&token, Algorithm::EdDSA, &key).unwrap();
    let sub = &ear.submods["terminal"];
    assert!(!sub.policy_ids.is_empty(), "the governing policy is named");
    assert!(ear.exp.is_some(), "an EAR expires");

    // vouchctl ear prints the same kind of token, and --json checks it with the served key.
    let out = v.ctl(&["ear", "term-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(status(printed.trim(), &key), TrustTier::Affirming);
    let claims = v.ctl_json(&["ear", "term-1", "--json"]);
    assert_eq!(claims["submods"]["terminal"]["ear_status"], "affirming");
    assert_eq!(claims["submods"]["terminal"]["vouch_device"], "term-1");

    // Quarantined: contraindicated, whatever its last verdict said.
    let out = v.ctl(&["quarantine", "term-1", "--reason", "tamper report #12"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = ear_of(&v, "term-1");
    assert_eq!(status(&q, &key), TrustTier::Contraindicated);

    // The crate's check is real: another key, or an edited payload, fails.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let other_jwk = serde_json::to_vec(&serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
        "x": base64_url(other.verifying_key().as_bytes()),
    }))
    .unwrap();
    assert!(Ear::from_jwt_jwk(&q, Algorithm::EdDSA, &other_jwk).is_err());
    let parts: Vec<&str> = q.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        parts[1].replacen('e', "f", 1),
        parts[2]
    );
    assert!(Ear::from_jwt_jwk(&edited, Algorithm::EdDSA, &key).is_err());
    // Splicing the trusted token's payload onto the quarantined token's signature fails too.
    let trusted_payload = token.split('.').nth(1).unwrap();
    let spliced = format!("{}.{trusted_payload}.{}", parts[0], parts[2]);
    assert!(Ear::from_jwt_jwk(&spliced, Algorithm::EdDSA, &key).is_err());

    // Authorization and errors.
    assert_eq!(v.http("GET", "/api/devices/term-1/ear", None).0, 401);
    let (code, body) = v.http("GET", "/api/devices/nobody/ear", Some(&v.admin_token()));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not enrolled"), "{body}");
}

fn base64_url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
