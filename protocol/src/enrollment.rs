//! Enrollment: turning a terminal's signed enrollment request into the record the verifier
//! trusts from then on (device key, EK, AK). Every field is checked here, once, so the rest of
//! the verifier can rely on an `Enrollment` being well-formed.
//!
//! Two ways in. A terminal's own request (`vouchctl enroll`) proves only that it was signed by
//! the device key it carries and that the AK has the attributes of a TPM attestation key and the
//! Name it claims: the operator's act of enrolling is the trust anchor. A vendor manifest
//! (`vouchctl import manifest`, [`Enrollment::from_manifest`]) adds what the vendor's station
//! proved — the AK lives in the TPM holding the EK (credential activation) — and the hardware
//! inventory at provisioning, kept as the enrollment's [`Provenance`]. Either way the verifier
//! records whether the EK certificate chains to one of its trusted TPM-manufacturer roots
//! (`ek_cert_anchor`), and every quote must name the enrolled AK under the enrolled EK as its
//! qualified signer (see `appraisal`).

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bytes::Bytes;
use crate::error::WireError;
use crate::ids::DeviceId;
use crate::inventory::Inventory;
use crate::messages::EnrollmentRequest;
use crate::tpm::{Name, TPM_RH_ENDORSEMENT, TpmPublic};
use crate::vendor::VendorName;
use crate::vendor::manifest::{DeviceManifest, MAX_EK_CHAIN};
use crate::wire;

/// Largest enrollment request accepted (an EK certificate is the only sizeable part).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest EK certificate accepted.
pub const MAX_EK_CERT: usize = 16 * 1024;

/// A validated, enrolled terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub id: DeviceId,
    pub model: String,
    pub ek_public: Bytes,
    pub ek_certificate: Option<Bytes>,
    pub ak_public: Bytes,
    pub ak_name: Bytes,
    /// Ed25519 public key of the device.
    pub device_key: Bytes,
    pub enrolled_at: u64,
    /// The Mosquitto password-file hash of the device's MQTT password (see
    /// [`check_mqtt_password_hash`]). `None` only for records enrolled before MQTT identities
    /// existed; such a device cannot connect to a broker that requires authentication.
    #[serde(default)]
    pub mqtt_password_hash: Option<String>,
    /// The vendor manifest the device was enrolled from (`None` for a terminal's own request).
    #[serde(default)]
    pub provenance: Option<Provenance>,
    /// The subject of the trusted TPM-manufacturer root the EK certificate chained to when the
    /// device was enrolled; `None` when it has no certificate or it did not chain (with
    /// `require_ek_cert` such a device is at best `warning`).
    #[serde(default)]
    pub ek_cert_anchor: Option<String>,
}

/// What a vendor manifest said about a device, kept with its enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub vendor: VendorName,
    /// The firmware version the vendor provisioned.
    pub firmware_version: String,
    /// The inventory at provisioning: every attestation's inventory must equal it.
    pub inventory: Inventory,
    /// The manifest's issue time (Unix seconds).
    pub issued_at: u64,
    pub credential_activated: bool,
    pub simulated: bool,
    /// The manifest's EK certificate chain (leaf first).
    pub ek_certificates: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnrollError {
    #[error("enrollment request: {0}")]
    Wire(#[from] WireError),
    #[error("device key is not a valid Ed25519 public key")]
    DeviceKey,
    #[error("model must be 1 to 128 printable characters")]
    Model,
    #[error("attestation key public area: {0}")]
    AkPublic(String),
    #[error("attestation key attributes: {0}")]
    AkAttributes(String),
    #[error("attestation key name does not match its public area")]
    AkName,
    #[error("endorsement key public area: {0}")]
    EkPublic(String),
    #[error("EK certificate of {len} bytes exceeds the {max}-byte limit")]
    EkCertificateSize { len: usize, max: usize },
    #[error("MQTT password hash: {0}")]
    MqttPasswordHash(&'static str),
    #[error("manifest: {0}")]
    Manifest(String),
}

/// Longest MQTT password hash accepted (a 101-iteration `$7$` line is 115 characters).
pub const MAX_MQTT_PASSWORD_HASH: usize = 256;

/// Most PBKDF2 iterations accepted in a password hash. Mosquitto verifies passwords
/// synchronously on its single event loop, before the client is authenticated: every CONNECT
/// naming a user costs that user's iteration count, whatever password it carries, so a huge
/// count lets anyone stall the broker for all terminals (10,000,000 took ~6 s per CONNECT on
/// Mosquitto 2.0.11). vouch and `mosquitto_passwd` write 101.
pub const MAX_MQTT_HASH_ITERATIONS: u32 = 1000;

/// The only salt length Mosquitto 2.0 decodes; it drops a line with any other from the file.
pub const MQTT_HASH_SALT_LEN: usize = 12;

/// Checks that `hash` is a Mosquitto `$7$` password-file hash: `$7$<iterations>$<salt>$<hash>`,
/// iterations 1 to [`MAX_MQTT_HASH_ITERATIONS`], a standard base64 salt of 12 bytes and a
/// 64-byte PBKDF2-SHA512 output, bounded in length, with nothing that could break a
/// password-file line (no `:`, whitespace or control characters: the base64 alphabet has none).
pub fn check_mqtt_password_hash(hash: &str) -> Result<(), EnrollError> {
    let err = EnrollError::MqttPasswordHash;
    if hash.len() > MAX_MQTT_PASSWORD_HASH {
        return Err(err("longer than 256 characters"));
    }
    let rest = hash
        .strip_prefix("$7$")
        .ok_or(err("must start with $7$ (PBKDF2-SHA512)"))?;
    let mut parts = rest.split('$');
    let (Some(iterations), Some(salt), Some(digest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err("must be $7$<iterations>$<salt>$<hash>"));
    };
    match iterations.parse::<u32>() {
        Ok(1..=MAX_MQTT_HASH_ITERATIONS) if !iterations.starts_with('0') => {}
        _ => return Err(err("iterations must be a number from 1 to 1000")),
    }
    if base64_len(salt) != Some(MQTT_HASH_SALT_LEN) {
        return Err(err("salt must be 12 bytes of standard base64"));
    }
    if base64_len(digest) != Some(64) {
        return Err(err("hash must be 64 bytes (SHA-512) of standard base64"));
    }
    Ok(())
}

/// Decoded length of padded standard base64 text, or `None` if it is not that.
fn base64_len(s: &str) -> Option<usize> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    if pad > 2
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    Some(s.len() / 4 * 3 - pad)
}

impl Enrollment {
    /// Validates a request received at `now`.
    pub fn from_request(bytes: &[u8], now: u64) -> Result<Enrollment, EnrollError> {
        let msg = wire::decode_detached(bytes, MAX_REQUEST)?;
        let req: EnrollmentRequest = msg.peek_unverified()?;
        let key = device_key(&req.device_key)?;
        let id = msg.device().clone();
        msg.verify(&key)?;
        let certs: Vec<&Bytes> = req.ek_certificate.iter().collect();
        check_identity(&Identity {
            model: &req.model,
            ek_public: &req.ek_public,
            ek_certificates: &certs,
            ak_public: &req.ak_public,
            ak_name: &req.ak_name,
            device_key: &req.device_key,
            mqtt_password_hash: &req.mqtt_password_hash,
        })?;
        Ok(Enrollment {
            id,
            model: req.model,
            ek_public: req.ek_public,
            ek_certificate: req.ek_certificate,
            ak_public: req.ak_public,
            ak_name: req.ak_name,
            device_key: req.device_key,
            enrolled_at: now,
            mqtt_password_hash: Some(req.mqtt_password_hash),
            provenance: None,
            ek_cert_anchor: None,
        })
    }

    /// The enrollment a vendor manifest describes, once the caller verified the vendor's
    /// signature (`vendor::decode` → `verify` with the key trusted for `vendor`). The same
    /// checks as a request's, plus the manifest's own: a chain of at most [`MAX_EK_CHAIN`]
    /// certificates, a valid inventory, model and firmware-version labels.
    pub fn from_manifest(
        vendor: VendorName,
        m: DeviceManifest,
        now: u64,
    ) -> Result<Enrollment, EnrollError> {
        if m.ek_certificates.len() > MAX_EK_CHAIN {
            return Err(EnrollError::Manifest(format!(
                "{} EK certificates (limit {MAX_EK_CHAIN})",
                m.ek_certificates.len()
            )));
        }
        crate::vendor::bundle::check_label("firmware version", &m.firmware_version)
            .map_err(EnrollError::Manifest)?;
        m.inventory
            .check()
            .map_err(|e| EnrollError::Manifest(e.to_string()))?;
        device_key(&m.device_key)?;
        let certs: Vec<&Bytes> = m.ek_certificates.iter().collect();
        check_identity(&Identity {
            model: &m.model,
            ek_public: &m.ek_public,
            ek_certificates: &certs,
            ak_public: &m.ak_public,
            ak_name: &m.ak_name,
            device_key: &m.device_key,
            mqtt_password_hash: &m.mqtt_password_hash,
        })?;
        Ok(Enrollment {
            id: m.device,
            model: m.model,
            ek_public: m.ek_public,
            ek_certificate: m.ek_certificates.first().cloned(),
            ak_public: m.ak_public,
            ak_name: m.ak_name,
            device_key: m.device_key,
            enrolled_at: now,
            mqtt_password_hash: Some(m.mqtt_password_hash),
            provenance: Some(Provenance {
                vendor,
                firmware_version: m.firmware_version,
                inventory: m.inventory,
                issued_at: m.issued_at,
                credential_activated: m.credential_activated,
                simulated: m.simulated,
                ek_certificates: m.ek_certificates,
            }),
            ek_cert_anchor: None,
        })
    }

    /// The device's Ed25519 key.
    pub fn device_key(&self) -> Result<VerifyingKey, EnrollError> {
        device_key(&self.device_key)
    }

    /// True when `other` names the same keys and MQTT credential (re-enrolling the same request
    /// is idempotent; a changed MQTT password hash is a conflict, like a changed key, so an
    /// enrolled terminal's broker identity cannot be taken over by a new request).
    pub fn same_keys(&self, other: &Enrollment) -> bool {
        self.id == other.id
            && self.model == other.model
            && self.ak_public == other.ak_public
            && self.ek_public == other.ek_public
            && self.device_key == other.device_key
            && self.mqtt_password_hash == other.mqtt_password_hash
    }

    /// The `qualifiedSigner` every quote of this device must carry: the AK's qualified Name
    /// under the enrolled EK.
    pub fn expected_signer(&self) -> Option<Name> {
        let ek = TpmPublic::parse(self.ek_public.as_slice()).ok()?;
        let ak = TpmPublic::parse(self.ak_public.as_slice()).ok()?;
        let ek_qn = ek.qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes());
        Some(ak.qualified_name(ek_qn.as_bytes()))
    }
}

/// The fields a request and a manifest share, checked once by [`check_identity`].
struct Identity<'a> {
    model: &'a str,
    ek_public: &'a Bytes,
    ek_certificates: &'a [&'a Bytes],
    ak_public: &'a Bytes,
    ak_name: &'a Bytes,
    device_key: &'a Bytes,
    mqtt_password_hash: &'a str,
}

fn check_identity(id: &Identity<'_>) -> Result<(), EnrollError> {
    device_key(id.device_key)?;
    if id.model.is_empty() || id.model.len() > 128 || id.model.chars().any(char::is_control) {
        return Err(EnrollError::Model);
    }
    let ak = TpmPublic::parse(id.ak_public.as_slice())
        .map_err(|e| EnrollError::AkPublic(e.to_string()))?;
    ak.check_vouch_attestation_key()
        .map_err(|e| EnrollError::AkAttributes(e.to_string()))?;
    ak.p256_verifying_key()
        .map_err(|e| EnrollError::AkPublic(e.to_string()))?;
    if ak.name().as_bytes() != id.ak_name.as_slice() {
        return Err(EnrollError::AkName);
    }
    TpmPublic::parse(id.ek_public.as_slice()).map_err(|e| EnrollError::EkPublic(e.to_string()))?;
    if let Some(cert) = id.ek_certificates.iter().find(|c| c.0.len() > MAX_EK_CERT) {
        return Err(EnrollError::EkCertificateSize {
            len: cert.0.len(),
            max: MAX_EK_CERT,
        });
    }
    check_mqtt_password_hash(id.mqtt_password_hash)
}

fn device_key(b: &Bytes) -> Result<VerifyingKey, EnrollError> {
    let arr: [u8; 32] = b
        .as_slice()
        .try_into()
        .map_err(|_| EnrollError::DeviceKey)?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| EnrollError::DeviceKey)?;
    if key.is_weak() {
        return Err(EnrollError::DeviceKey);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const AK_TPMT: &[u8] = include_bytes!("../tests/vectors/tpm/ak.tpmt");
    const AK_NAME: &[u8] = include_bytes!("../tests/vectors/tpm/ak.name");
    const AK_QNAME: &[u8] = include_bytes!("../tests/vectors/tpm/ak.qname");
    const EK_TPM2B: &[u8] = include_bytes!("../tests/vectors/tpm/ek.pub");

    fn request(key: &SigningKey) -> EnrollmentRequest {
        EnrollmentRequest {
            model: "T-100".into(),
            ek_public: Bytes(EK_TPM2B[2..].to_vec()),
            ek_certificate: None,
            ak_public: Bytes(AK_TPMT.to_vec()),
            ak_name: Bytes(AK_NAME.to_vec()),
            device_key: Bytes(key.verifying_key().to_bytes().to_vec()),
            mqtt_password_hash: HASH.into(),
            firmware_version: None,
            inventory: None,
        }
    }

    /// `mosquitto_passwd` output for the password "pw1".
    const HASH: &str = "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==";

    #[test]
    fn enrollment_carries_the_mqtt_password_hash() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let e = Enrollment::from_request(&seal(&request(&key), &key), 100).unwrap();
        assert_eq!(e.mqtt_password_hash.as_deref(), Some(HASH));
    }

    #[test]
    fn malformed_mqtt_password_hashes_are_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let long = format!("$7$101$wAYrhYI0sy/Kr09q${}", "A".repeat(300));
        for bad in [
            "",
            "pw1",
            "$6$101$wAYrhYI0sy/Kr09q$Gz3F",
            "$7$0$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==",
            "$7$101$wAYr$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==",
            "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4R",
            "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==\nt2:x",
            "$7$101$wAYrhYI0sy/Kr09q$Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==$x",
            &long,
        ] {
            let mut r = request(&key);
            r.mqtt_password_hash = bad.into();
            assert!(
                matches!(
                    Enrollment::from_request(&seal(&r, &key), 1),
                    Err(EnrollError::MqttPasswordHash(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn mqtt_hashes_that_stall_or_silently_drop_in_mosquitto_are_refused() {
        // Mosquitto checks passwords synchronously in its single event loop: a 10,000,000
        // iteration hash in the password file let any unauthenticated CONNECT with that user
        // name (and any password) freeze the broker for every terminal for ~6 s (measured with
        // Mosquitto 2.0.11). And 2.0.11 decodes only 12-byte salts: a longer one is "removed"
        // from the password file on load, so the terminal is enrolled yet can never connect.
        let key = SigningKey::from_bytes(&[3; 32]);
        let digest = "Gz3FBqER4IbB4vdN6Pqm4i3pNkRLjmyASs5JnGO+MTVFFcguGwJUZUPY1gjeDtYULDrKDdnUimago4n4sSJ4Rg==";
        let slow = format!("$7$10000000$wAYrhYI0sy/Kr09q${digest}");
        let salt16 = format!("$7$101$wAYrhYI0sy/Kr09qwAYrhA==${digest}");
        let salt64 = format!("$7$101${}${digest}", "A".repeat(88));
        for bad in [&slow, &salt16, &salt64] {
            let mut r = request(&key);
            r.mqtt_password_hash = bad.clone();
            assert!(
                matches!(
                    Enrollment::from_request(&seal(&r, &key), 1),
                    Err(EnrollError::MqttPasswordHash(_))
                ),
                "{bad:?} was accepted"
            );
        }
        // What vouch and `mosquitto_passwd` write by default still enrolls.
        assert!(check_mqtt_password_hash(HASH).is_ok());
    }

    #[test]
    fn a_changed_mqtt_password_hash_is_not_the_same_enrollment() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let a = Enrollment::from_request(&seal(&request(&key), &key), 1).unwrap();
        let mut r = request(&key);
        r.mqtt_password_hash = r.mqtt_password_hash.replace("Gz3F", "Hz3F");
        let b = Enrollment::from_request(&seal(&r, &key), 1).unwrap();
        assert!(a.same_keys(&a.clone()));
        assert!(!a.same_keys(&b));
    }

    fn seal(req: &EnrollmentRequest, key: &SigningKey) -> Vec<u8> {
        wire::seal(&"t1".parse().unwrap(), req, key)
    }

    #[test]
    fn real_swtpm_identity_enrolls_and_binds_ak_to_ek() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let e = Enrollment::from_request(&seal(&request(&key), &key), 100).unwrap();
        assert_eq!(e.id.as_str(), "t1");
        assert_eq!(e.enrolled_at, 100);
        assert_eq!(e.expected_signer().unwrap().as_bytes(), AK_QNAME);
    }

    #[test]
    fn request_signed_by_another_key_is_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let err = Enrollment::from_request(&seal(&request(&key), &other), 1).unwrap_err();
        assert_eq!(err, EnrollError::Wire(WireError::BadSignature));
    }

    #[test]
    fn wrong_ak_name_and_non_ak_keys_are_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut r = request(&key);
        r.ak_name.0[5] ^= 1;
        assert_eq!(
            Enrollment::from_request(&seal(&r, &key), 1),
            Err(EnrollError::AkName)
        );
        let mut r = request(&key);
        r.ak_public = r.ek_public.clone();
        assert!(matches!(
            Enrollment::from_request(&seal(&r, &key), 1),
            Err(EnrollError::AkAttributes(_))
        ));
        let mut r = request(&key);
        r.model = String::new();
        assert_eq!(
            Enrollment::from_request(&seal(&r, &key), 1),
            Err(EnrollError::Model)
        );
    }

    #[test]
    fn garbage_and_truncated_requests_are_errors() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let bytes = seal(&request(&key), &key);
        for n in (0..bytes.len()).step_by(7) {
            assert!(Enrollment::from_request(&bytes[..n], 1).is_err());
        }
        assert!(Enrollment::from_request(b"junk", 1).is_err());
    }
}
