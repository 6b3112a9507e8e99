//! Vendor-signed documents: the device manifest ([`manifest`]) a vendor issues for each terminal
//! it provisions, and the reference bundle ([`bundle`]) it publishes per model and firmware
//! version. Both are a tagged COSE_Sign1 (EdDSA, the vendor's Ed25519 key) whose payload is the
//! CBOR map `{v: 1, type, vendor, doc}`; the external AAD `vouch/v1/vendor` keeps these
//! signatures apart from every other use of a key, and `type` keeps a manifest from being read
//! as a bundle. Decoding mirrors [`crate::wire`]: size bound first, the envelope read as
//! borrowed slices, the body pre-scanned within limits, the vendor name parsed, then the
//! signature checked with the key the operator trusts for that name, and only then the document
//! built ([`decode`], then [`Unverified::verify`]).

pub mod bundle;
pub mod manifest;
pub mod trust;

use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::cbor_scan;
use crate::cose;
use crate::error::WireError;
use crate::wire::from_cbor_exact;

/// Version of the document body.
pub const VERSION: u64 = 1;

/// External AAD of every vendor signature.
const AAD: &[u8] = b"vouch/v1/vendor";

/// A vendor's name as operators trust it (`vouchctl vendor trust NAME`): `[A-Za-z0-9._-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VendorName(String);

/// Why a string is not a vendor name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vendor name {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
pub struct BadVendorName(pub String);

impl VendorName {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VendorName {
    type Err = BadVendorName;

    fn from_str(s: &str) -> Result<Self, BadVendorName> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadVendorName(crate::ids::truncate_for_display(s)))
        }
    }
}

impl TryFrom<String> for VendorName {
    type Error = BadVendorName;

    fn try_from(s: String) -> Result<Self, BadVendorName> {
        s.parse()
    }
}

impl From<VendorName> for String {
    fn from(v: VendorName) -> String {
        v.0
    }
}

impl fmt::Display for VendorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a vendor document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    /// A device manifest ([`manifest::DeviceManifest`]).
    Manifest,
    /// Reference values for one model and firmware version ([`bundle::ReferenceBundle`]).
    ReferenceBundle,
}

impl fmt::Display for DocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocType::Manifest => "manifest",
            DocType::ReferenceBundle => "reference bundle",
        })
    }
}

/// A document body of one [`DocType`].
pub trait Document: Serialize + DeserializeOwned {
    const TYPE: DocType;
    /// The largest signed file of this type accepted.
    const MAX_LEN: usize;
}

/// Why a vendor document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("{0}")]
    Envelope(WireError),
    #[error("unsupported vendor document version {0}")]
    Version(u64),
    #[error(transparent)]
    Vendor(#[from] BadVendorName),
    #[error("this is a {found}, not a {expected}")]
    WrongType { expected: DocType, found: DocType },
    #[error("signature does not verify with the key trusted for vendor {vendor}")]
    BadSignature { vendor: VendorName },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: DocType, reason: String },
}

#[derive(Serialize)]
struct BodyOut<'a, T> {
    v: u64,
    #[serde(rename = "type")]
    ty: DocType,
    vendor: &'a VendorName,
    doc: &'a T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyHead {
    v: u64,
    #[serde(rename = "type")]
    ty: DocType,
    vendor: String,
    #[allow(dead_code)] // walked to check it is well-formed CBOR, deliberately not kept
    doc: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyTyped<T> {
    #[allow(dead_code)] // checked by `BodyHead`
    v: u64,
    #[serde(rename = "type")]
    #[allow(dead_code)] // checked by `BodyHead`
    ty: DocType,
    #[allow(dead_code)] // checked by `BodyHead`
    vendor: String,
    doc: T,
}

/// Signs `doc` as `vendor` with `key`: the tagged COSE_Sign1 bytes of the file.
pub fn seal<T: Document>(vendor: &VendorName, doc: &T, key: &SigningKey) -> Vec<u8> {
    let body = BodyOut {
        v: VERSION,
        ty: T::TYPE,
        vendor,
        doc,
    };
    let payload = crate::wire::to_cbor(&body);
    let protected = HeaderBuilder::new()
        .algorithm(coset::iana::Algorithm::EdDSA)
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(AAD, |tbs| key.sign(tbs).to_bytes().to_vec())
        .build();
    match sign1.to_tagged_vec() {
        Ok(v) => v,
        Err(e) => unreachable!("COSE encoding of a {} failed: {e}", T::TYPE),
    }
}

/// A structurally valid document whose signature has not been checked.
#[derive(Debug)]
pub struct Unverified {
    vendor: VendorName,
    ty: DocType,
    protected: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// Decodes a file that must be a `T`: size, envelope, body structure, version, type, vendor.
pub fn decode<T: Document>(bytes: &[u8]) -> Result<Unverified, DocError> {
    if bytes.len() > T::MAX_LEN {
        return Err(DocError::Envelope(WireError::Oversized {
            len: bytes.len(),
            max: T::MAX_LEN,
        }));
    }
    let sign1 = cose::parse_sign1(bytes).map_err(DocError::Envelope)?;
    let payload = sign1.payload;
    cbor_scan::scan(payload, &cbor_scan::Limits::for_body(payload.len())).map_err(|e| {
        DocError::Envelope(WireError::BodyMalformed {
            reason: e.to_string(),
        })
    })?;
    let head: BodyHead = from_cbor_exact(payload)
        .map_err(|reason| DocError::Envelope(WireError::BodyMalformed { reason }))?;
    if head.v != VERSION {
        return Err(DocError::Version(head.v));
    }
    if head.ty != T::TYPE {
        return Err(DocError::WrongType {
            expected: T::TYPE,
            found: head.ty,
        });
    }
    Ok(Unverified {
        vendor: head.vendor.parse()?,
        ty: head.ty,
        protected: sign1.protected.to_vec(),
        payload: payload.to_vec(),
        signature: sign1.signature.to_vec(),
    })
}

impl Unverified {
    /// The vendor the document claims to be from: look its key up by this name.
    pub fn vendor(&self) -> &VendorName {
        &self.vendor
    }

    pub fn doc_type(&self) -> DocType {
        self.ty
    }

    /// Checks the signature with the key trusted for [`Unverified::vendor`] (strict Ed25519),
    /// then decodes the document (every field present, known and well-typed).
    pub fn verify<T: Document>(self, key: &VerifyingKey) -> Result<(VendorName, T), DocError> {
        let bad = || DocError::BadSignature {
            vendor: self.vendor.clone(),
        };
        let sig = Signature::from_slice(&self.signature).map_err(|_| bad())?;
        let tbs = cose::sig_structure(&self.protected, AAD, &self.payload);
        key.verify_strict(&tbs, &sig).map_err(|_| bad())?;
        if self.ty != T::TYPE {
            return Err(DocError::WrongType {
                expected: T::TYPE,
                found: self.ty,
            });
        }
        let body: BodyTyped<T> =
            from_cbor_exact(&self.payload).map_err(|reason| DocError::Malformed {
                what: T::TYPE,
                reason,
            })?;
        Ok((self.vendor, body.doc))
    }
}

/// The vendor key file format shared by `vouch-provision vendor-init` and `vouchctl vendor
/// trust`: the 32-byte Ed25519 public key as 64 hex characters on one line.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let t = text.trim();
    let bytes = hex::decode(t).map_err(|_| "vendor public key is not hex".to_owned())?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("vendor public key is {} bytes, not 32", bytes.len()))?;
    let key = VerifyingKey::from_bytes(&arr)
        .map_err(|_| "vendor public key is not an Ed25519 point".to_owned())?;
    if key.is_weak() {
        return Err("vendor public key is a weak (small-order) key".to_owned());
    }
    Ok(key)
}

/// A short fingerprint operators compare out of band: the first 8 bytes of SHA-256 of the key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&crate::digest::sha256(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::bundle::ReferenceBundle;
    use super::manifest::DeviceManifest;
    use super::*;
    use crate::bytes::Bytes;
    use crate::inventory::Inventory;
    use crate::policy::ReferenceValues;

    fn manifest() -> DeviceManifest {
        DeviceManifest {
            device: "t1".parse().unwrap(),
            model: "T-100".into(),
            firmware_version: "2.1.0".into(),
            ek_public: Bytes(vec![1, 2, 3]),
            ek_certificates: vec![],
            ak_public: Bytes(vec![4]),
            ak_name: Bytes(vec![5]),
            device_key: Bytes(vec![6; 32]),
            mqtt_password_hash: "$7$x".into(),
            inventory: Inventory::default(),
            issued_at: 1,
            credential_activated: true,
            simulated: false,
        }
    }

    fn acme() -> (VendorName, SigningKey) {
        ("acme".parse().unwrap(), SigningKey::from_bytes(&[9; 32]))
    }

    #[test]
    fn a_sealed_manifest_verifies_with_the_vendor_key_only() {
        let (vendor, key) = acme();
        let bytes = seal(&vendor, &manifest(), &key);
        let u = decode::<DeviceManifest>(&bytes).unwrap();
        assert_eq!(u.vendor().as_str(), "acme");
        let (v, m) = u.verify::<DeviceManifest>(&key.verifying_key()).unwrap();
        assert_eq!((v, m), (vendor, manifest()));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let e = decode::<DeviceManifest>(&bytes)
            .unwrap()
            .verify::<DeviceManifest>(&other)
            .unwrap_err();
        assert!(matches!(e, DocError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (vendor, key) = acme();
        let bytes = seal(&vendor, &manifest(), &key);
        let vk = key.verifying_key();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = decode::<DeviceManifest>(&b).and_then(|u| u.verify::<DeviceManifest>(&vk));
            assert!(ok.is_err(), "flipping byte {i} was accepted");
        }
    }

    #[test]
    fn a_bundle_is_not_a_manifest() {
        let (vendor, key) = acme();
        let bundle = ReferenceBundle {
            model: "T-100".into(),
            firmware_version: "2.1.0".into(),
            issued_at: 1,
            reference: ReferenceValues {
                pcrs: [(0, crate::bytes::Sha256Digest([7; 32]))].into(),
                ..ReferenceValues::default()
            },
        };
        let bytes = seal(&vendor, &bundle, &key);
        let e = decode::<DeviceManifest>(&bytes).unwrap_err();
        assert!(matches!(e, DocError::WrongType { .. }), "{e}");
        let (_, back) = decode::<ReferenceBundle>(&bytes)
            .unwrap()
            .verify::<ReferenceBundle>(&key.verifying_key())
            .unwrap();
        assert_eq!(back, bundle);
        assert!(decode::<DeviceManifest>(b"junk").is_err());
        let big = vec![0u8; DeviceManifest::MAX_LEN + 1];
        assert!(matches!(
            decode::<DeviceManifest>(&big),
            Err(DocError::Envelope(WireError::Oversized { .. }))
        ));
    }

    #[test]
    fn vendor_names_and_public_keys_are_checked() {
        for bad in ["", ".", "a/b", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<VendorName>().is_err(), "{bad:?}");
        }
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let text = format!("{}\n", hex::encode(key.as_bytes()));
        assert_eq!(parse_public_key(&text).unwrap(), key);
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"00".repeat(32)).is_err());
        assert_eq!(fingerprint(&key).len(), 16);
    }
}
