//! EAR tokens for relying parties: the claims set of `protocol::ear` signed as a JWT (JWS
//! compact serialisation, `alg` EdDSA) with the verifier's Ed25519 key, and the JWK set that
//! verifies them. Written by hand over ed25519-dalek, base64 and serde_json (all already
//! dependencies): a JWS with one fixed algorithm is a header, a payload and one signature, and
//! a JWT crate would bring a second crypto backend for it (docs/ear.md).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use serde_json::{Value, json};
use vouch_protocol::ear::EarClaims;

/// The media type of a response holding one EAR JWT.
pub const CONTENT_TYPE: &str = "application/eat+jwt; eat_profile=\"tag:ietf.org,2026:rats/ear#04\"";

/// The JWK `kid` of the verifier's key: a fingerprint of it.
pub fn kid(key: &VerifyingKey) -> String {
    format!("vouch-verifier-{}", vouch_common::keys::fingerprint(key))
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Signs `claims` as a JWT.
pub fn sign(claims: &EarClaims, key: &SigningKey) -> Result<String, serde_json::Error> {
    let kid = kid(&key.verifying_key());
    let header = Header {
        alg: "EdDSA",
        typ: "JWT",
        kid: &kid,
    };
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header)?),
        B64.encode(serde_json::to_vec(claims)?)
    );
    let sig = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", B64.encode(sig.to_bytes())))
}

/// The JWK set (RFC 7517, OKP keys of RFC 8037) with the verifier's public key.
pub fn jwks(key: &VerifyingKey) -> Value {
    json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "x": B64.encode(key.as_bytes()),
        "kid": kid(key),
        "alg": "EdDSA",
        "use": "sig",
    }]})
}

/// Why a token did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a JWS compact serialisation (three base64url parts)")]
    Shape,
    #[error("header: {0}")]
    Header(String),
    #[error("the signature does not verify with the verifier's key")]
    Signature,
    #[error("payload: {0}")]
    Payload(String),
}

/// Verifies a token signed by [`sign`] with `key` and returns its claims (for `vouchctl ear
/// --json`; relying parties use their own JWT library with the JWK set).
pub fn verify(token: &str, key: &VerifyingKey) -> Result<Value, VerifyError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Shape);
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| VerifyError::Header("not base64url JSON".into()))?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(VerifyError::Header("alg is not EdDSA".into()));
    }
    let sig = B64
        .decode(s)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(VerifyError::Signature)?;
    key.verify_strict(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| VerifyError::Signature)?;
    let payload = B64
        .decode(p)
        .map_err(|e| VerifyError::Payload(e.to_string()))?;
    serde_json::from_slice(&payload).map_err(|e| VerifyError::Payload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_protocol::verdict::DeviceState;

    fn claims() -> EarClaims {
        let id = "T1".parse().unwrap();
        vouch_protocol::ear::claims(&id, DeviceState::Quarantined, None, 1_000, 900, "0.1.0")
    }

    #[test]
    fn signed_tokens_verify_and_carry_the_claims() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let token = sign(&claims(), &key).unwrap();
        let c = verify(&token, &key.verifying_key()).unwrap();
        assert_eq!(c["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
        assert_eq!(c["submods"]["terminal"]["ear_status"], "contraindicated");
    }

    #[test]
    fn another_key_or_an_edited_payload_fails() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let token = sign(&claims(), &key).unwrap();
        assert_eq!(
            verify(&token, &other.verifying_key()),
            Err(VerifyError::Signature)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"eat_profile":"x"}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), &key.verifying_key()),
            Err(VerifyError::Signature)
        );
        assert_eq!(verify("a.b", &key.verifying_key()), Err(VerifyError::Shape));
    }

    #[test]
    fn the_jwks_holds_the_public_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let set = jwks(&key.verifying_key());
        let x = set["keys"][0]["x"].as_str().unwrap();
        assert_eq!(B64.decode(x).unwrap(), key.verifying_key().as_bytes());
        assert_eq!(set["keys"][0]["kid"], kid(&key.verifying_key()));
    }
}
