//! The v1 envelope: every message is a tagged COSE_Sign1 (EdDSA) whose payload is a CBOR map
//! `{v: 1, device, kind, msg}`. Signing the device and the kind binds a message to one topic, so a
//! captured message cannot be moved to another device's topic or re-labelled as another kind.
//!
//! Decoding is split in two so the cheap checks run first and crypto can run off the MQTT loop:
//! [`decode`] bounds the size and checks structure, version, kind and topic; [`Unverified::verify`]
//! then checks the signature with the key the caller looked up for `device`. Before any of it
//! decodes a value, a bounded pre-scan ([`crate::cbor_scan`]) refuses CBOR deeper, longer or
//! denser than any message, so unauthenticated bytes cost a small constant each.

use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::ids::{DeviceId, Kind, Topic, truncate_for_display};
use crate::{cbor_scan, cose};

/// Protocol version carried in every signed body.
pub const VERSION: u64 = 1;

/// Default upper bound on an MQTT payload, checked before any decoding.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// External AAD of every signature: separates vouch v1 signatures from any other use of the key.
const AAD: &[u8] = b"vouch/v1";

/// A typed message body for one [`Kind`].
pub trait Message: Serialize + DeserializeOwned {
    const KIND: Kind;
}

#[derive(Serialize)]
struct BodyOut<'a, T> {
    v: u64,
    device: &'a DeviceId,
    kind: Kind,
    msg: &'a T,
}

/// The body as checked before the signature: strings stay strings so each field's failure gets
/// its own named error, and `msg` is only walked, never built (an unauthenticated sender must
/// not make the verifier allocate a value tree many times the payload's size).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyHead {
    v: u64,
    device: String,
    kind: String,
    #[allow(dead_code)] // walked to check it is well-formed CBOR, deliberately not kept
    msg: serde::de::IgnoredAny,
}

/// The body decoded into its kind's type, after the signature verified.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyTyped<T> {
    #[allow(dead_code)] // checked by `BodyHead`
    v: u64,
    #[allow(dead_code)] // checked by `BodyHead`
    device: String,
    #[allow(dead_code)] // checked by `BodyHead`
    kind: String,
    msg: T,
}

/// Signs `msg` for `device` with `key` and returns the tagged COSE_Sign1 bytes.
pub fn seal<T: Message>(device: &DeviceId, msg: &T, key: &SigningKey) -> Vec<u8> {
    let body = BodyOut {
        v: VERSION,
        device,
        kind: T::KIND,
        msg,
    };
    let mut payload = Vec::new();
    // Serializing our own in-memory types to a Vec cannot fail: every field is a plain
    // serde-derived value and Vec<u8> writes are infallible.
    if let Err(e) = ciborium::into_writer(&body, &mut payload) {
        unreachable!("CBOR encoding of a {} body failed: {e}", T::KIND);
    }
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
        Err(e) => unreachable!("COSE encoding of a signed {} failed: {e}", T::KIND),
    }
}

/// A structurally valid message whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified {
    device: DeviceId,
    kind: Kind,
    /// The serialized protected header as received: the signature covers these bytes.
    protected: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Unverified {
    /// The device the signed body names (equal to the topic's device when decoded by [`decode`]).
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Interprets the body as `T` *before* the signature is checked. Only for self-signed
    /// messages (an enrollment request carries the key that signs it); everything else must
    /// go through [`Unverified::verify`] first.
    pub fn peek_unverified<T: Message>(&self) -> Result<T, WireError> {
        interpret(self.kind, &self.payload)
    }

    /// Checks the EdDSA signature with `key` (strict verification: no malleable signatures, no
    /// small-order keys).
    pub fn verify(self, key: &VerifyingKey) -> Result<Authenticated, WireError> {
        let sig = Signature::from_slice(&self.signature).map_err(|_| WireError::BadSignature)?;
        let tbs = cose::sig_structure(&self.protected, AAD, &self.payload);
        key.verify_strict(&tbs, &sig)
            .map_err(|_| WireError::BadSignature)?;
        Ok(Authenticated {
            device: self.device,
            kind: self.kind,
            payload: self.payload,
        })
    }
}

/// A message whose signature verified with the key the caller chose.
#[derive(Debug)]
pub struct Authenticated {
    device: DeviceId,
    kind: Kind,
    payload: Vec<u8>,
}

impl Authenticated {
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Interprets the body as `T`; fails if the kind differs or a field is missing, unknown or
    /// ill-typed.
    pub fn open<T: Message>(self) -> Result<T, WireError> {
        interpret(self.kind, &self.payload)
    }
}

/// Interprets a body of kind `kind` as `T`: the kinds must agree and every field must be present,
/// known and well-typed.
fn interpret<T: Message>(kind: Kind, payload: &[u8]) -> Result<T, WireError> {
    if kind != T::KIND {
        return Err(WireError::KindMismatch {
            expected: T::KIND,
            found: kind,
        });
    }
    from_cbor_exact::<BodyTyped<T>>(payload)
        .map(|b| b.msg)
        .map_err(|reason| WireError::MessageMalformed {
            kind: T::KIND,
            reason,
        })
}

/// Decodes a payload received on `topic`: size bound, COSE structure, algorithm, version, kind
/// and device must all match the topic. The signature is checked later by [`Unverified::verify`].
pub fn decode(topic: &Topic, bytes: &[u8], max_len: usize) -> Result<Unverified, WireError> {
    let msg = decode_detached(bytes, max_len)?;
    if msg.kind != topic.kind {
        return Err(WireError::KindMismatch {
            expected: topic.kind,
            found: msg.kind,
        });
    }
    if msg.device != topic.device {
        return Err(WireError::DeviceMismatch {
            topic: topic.device.clone(),
            payload: msg.device,
        });
    }
    Ok(msg)
}

/// Decodes a message that did not arrive on a topic (an enrollment request file, a stored
/// verdict): the same checks as [`decode`] minus the topic comparison.
pub fn decode_detached(bytes: &[u8], max_len: usize) -> Result<Unverified, WireError> {
    if bytes.len() > max_len {
        return Err(WireError::Oversized {
            len: bytes.len(),
            max: max_len,
        });
    }
    // Nothing below builds a CBOR value tree: the envelope is read header by header and the
    // body is scanned within limits derived from its size before serde touches it, so an
    // unauthenticated sender pays for every item the verifier walks.
    let sign1 = cose::parse_sign1(bytes)?;
    let payload = sign1.payload;
    cbor_scan::scan(payload, &cbor_scan::Limits::for_body(payload.len())).map_err(|e| {
        WireError::BodyMalformed {
            reason: e.to_string(),
        }
    })?;
    let body: BodyHead =
        from_cbor_exact(payload).map_err(|reason| WireError::BodyMalformed { reason })?;
    if body.v != VERSION {
        return Err(WireError::UnsupportedVersion { version: body.v });
    }
    let kind: Kind = body.kind.parse().map_err(WireError::Id)?;
    let device: DeviceId = body.device.parse().map_err(WireError::Id)?;
    Ok(Unverified {
        device,
        kind,
        protected: sign1.protected.to_vec(),
        payload: payload.to_vec(),
        signature: sign1.signature.to_vec(),
    })
}

/// Decodes exactly one CBOR item of type `T` from `bytes`; trailing bytes are an error.
pub fn from_cbor_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut rest = bytes;
    let value: T =
        ciborium::from_reader(&mut rest).map_err(|e| truncate_for_display(&e.to_string()))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the CBOR item", rest.len()));
    }
    Ok(value)
}

/// Encodes `value` as CBOR. For our own serde-derived types this cannot fail.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        unreachable!("CBOR encoding into a Vec failed: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Hello;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn dev(s: &str) -> DeviceId {
        s.parse().unwrap()
    }

    fn hello() -> Hello {
        Hello {
            agent_version: "0.1.0".into(),
            model: "T-100".into(),
            reset_count: 3,
            request: 9,
            counter: 1,
        }
    }

    fn topic(device: &str, kind: Kind) -> Topic {
        Topic::new(dev(device), kind)
    }

    /// A tagged COSE_Sign1 over `payload` by key 1, with `alg` in its protected header: for
    /// bodies and headers `seal` would never produce.
    fn signed_by_key_1(payload: Vec<u8>, alg: coset::iana::Algorithm) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .payload(payload)
            .create_signature(AAD, |tbs| key(1).sign(tbs).to_bytes().to_vec())
            .build()
            .to_tagged_vec()
            .unwrap()
    }

    #[test]
    fn sealed_message_opens_with_the_right_key() {
        let k = key(1);
        let bytes = seal(&dev("t1"), &hello(), &k);
        let m = decode(&topic("t1", Kind::Hello), &bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(m.device().as_str(), "t1");
        let h: Hello = m.verify(&k.verifying_key()).unwrap().open().unwrap();
        assert_eq!(h, hello());
    }

    #[test]
    fn forged_signature_is_rejected() {
        let bytes = seal(&dev("t1"), &hello(), &key(1));
        let m = decode(&topic("t1", Kind::Hello), &bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert!(matches!(
            m.verify(&key(2).verifying_key()),
            Err(WireError::BadSignature)
        ));
    }

    #[test]
    fn message_moved_to_another_devices_topic_is_rejected() {
        let bytes = seal(&dev("t1"), &hello(), &key(1));
        let err = decode(&topic("t2", Kind::Hello), &bytes, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(matches!(err, WireError::DeviceMismatch { .. }), "{err}");
    }

    #[test]
    fn message_moved_to_another_kind_is_rejected() {
        let bytes = seal(&dev("t1"), &hello(), &key(1));
        let err = decode(&topic("t1", Kind::Status), &bytes, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(matches!(err, WireError::KindMismatch { .. }), "{err}");
    }

    #[test]
    fn oversized_payload_is_rejected_before_decoding() {
        let bytes = vec![0u8; 2048];
        let err = decode(&topic("t1", Kind::Hello), &bytes, 1024).unwrap_err();
        assert!(matches!(
            err,
            WireError::Oversized {
                len: 2048,
                max: 1024
            }
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = seal(&dev("t1"), &hello(), &key(1));
        bytes.push(0);
        let err = decode(&topic("t1", Kind::Hello), &bytes, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(matches!(err, WireError::TrailingBytes), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = seal(&dev("t1"), &hello(), &key(1));
        for n in 0..bytes.len() {
            assert!(decode(&topic("t1", Kind::Hello), &bytes[..n], DEFAULT_MAX_PAYLOAD).is_err());
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for g in [
            &b""[..],
            b"\xff\xff\xff",
            b"hello world",
            &[0xd2, 0x84, 0x40],
        ] {
            assert!(decode(&topic("t1", Kind::Hello), g, DEFAULT_MAX_PAYLOAD).is_err());
        }
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let bytes = seal(&dev("t1"), &hello(), &key(1));
        // Flip the last byte of the model string inside the signed payload.
        let pos = bytes.windows(5).position(|w| w == b"T-100").unwrap();
        let mut t = bytes.clone();
        t[pos + 4] = b'9';
        let m = decode(&topic("t1", Kind::Hello), &t, DEFAULT_MAX_PAYLOAD).unwrap();
        assert!(matches!(
            m.verify(&key(1).verifying_key()),
            Err(WireError::BadSignature)
        ));
    }

    #[test]
    fn unknown_kind_and_version_are_rejected() {
        #[derive(Serialize)]
        struct Raw<'a> {
            v: u64,
            device: &'a str,
            kind: &'a str,
            msg: u8,
        }
        for (v, kind, want) in [(1, "punch", "unknown"), (2, "hello", "version")] {
            let payload = to_cbor(&Raw {
                v,
                device: "t1",
                kind,
                msg: 0,
            });
            let sign1 = signed_by_key_1(payload, coset::iana::Algorithm::EdDSA);
            let err = decode_detached(&sign1, DEFAULT_MAX_PAYLOAD).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let payload = to_cbor(&BodyOut {
            v: 1,
            device: &dev("t1"),
            kind: Kind::Hello,
            msg: &hello(),
        });
        let sign1 = signed_by_key_1(payload, coset::iana::Algorithm::ES256);
        assert!(matches!(
            decode_detached(&sign1, DEFAULT_MAX_PAYLOAD),
            Err(WireError::UnsupportedAlgorithm)
        ));
    }

    #[test]
    fn open_rejects_missing_fields() {
        #[derive(Serialize)]
        struct Partial {
            model: String,
        }
        let bytes = {
            let body = BodyOut {
                v: 1,
                device: &dev("t1"),
                kind: Kind::Hello,
                msg: &Partial { model: "x".into() },
            };
            signed_by_key_1(to_cbor(&body), coset::iana::Algorithm::EdDSA)
        };
        let m = decode(&topic("t1", Kind::Hello), &bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        let err = m
            .verify(&key(1).verifying_key())
            .unwrap()
            .open::<Hello>()
            .unwrap_err();
        assert!(matches!(err, WireError::MessageMalformed { .. }), "{err}");
    }

    /// A valid envelope around `body` (any CBOR), signed by key 1.
    fn sealed_body(body: Vec<u8>) -> Vec<u8> {
        signed_by_key_1(body, coset::iana::Algorithm::EdDSA)
    }

    /// CBOR array header of `n` elements followed by `n` zeros.
    fn array_of_zeros(n: u32) -> Vec<u8> {
        let mut v = vec![0x9a];
        v.extend_from_slice(&n.to_be_bytes());
        v.resize(5 + n as usize, 0);
        v
    }

    /// The body `{v: 1, device: "t1", kind: "hello", msg: <msg>}` with raw CBOR for `msg`.
    fn body_with_msg(msg: &[u8]) -> Vec<u8> {
        let mut b = vec![0xa4];
        b.extend_from_slice(&to_cbor(&"v"));
        b.push(0x01);
        b.extend_from_slice(&to_cbor(&"device"));
        b.extend_from_slice(&to_cbor(&"t1"));
        b.extend_from_slice(&to_cbor(&"kind"));
        b.extend_from_slice(&to_cbor(&"hello"));
        b.extend_from_slice(&to_cbor(&"msg"));
        b.extend_from_slice(msg);
        b
    }

    #[test]
    fn huge_cbor_array_is_refused_before_building_values() {
        let t = topic("t1", Kind::Hello);
        let max = 4 << 20;
        let refused = |bytes: &[u8]| decode(&t, bytes, max).unwrap_err().to_string();

        // A 1 MB array of zeros as the whole message, tagged or not, and as the signed body's
        // `msg`: refused at the array's header, naming the limit.
        let zeros = array_of_zeros(1 << 20);
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&zeros);
        for bytes in [zeros.clone(), tagged, sealed_body(body_with_msg(&zeros))] {
            let err = refused(&bytes);
            assert!(err.contains("array of 1048576 elements"), "{err}");
            assert!(err.contains("exceeds the limit of"), "{err}");
        }

        // Arrays within the per-container limit that together flood the body.
        let mut flood = vec![0x99, 0x01, 0x00];
        for _ in 0..256 {
            flood.extend_from_slice(&array_of_zeros(4096));
        }
        let err = refused(&sealed_body(body_with_msg(&flood)));
        assert!(err.contains("limit for its size"), "{err}");

        // Deep nesting.
        let mut deep = vec![0x81; 100_000];
        deep.push(0);
        for bytes in [deep.clone(), sealed_body(body_with_msg(&deep))] {
            let err = refused(&bytes);
            assert!(err.contains("depth limit of"), "{err}");
        }

        // Lengths that claim far more than the input holds.
        let huge_bstr = [
            0xd2, 0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let err = refused(&huge_bstr);
        assert!(err.contains("claims 18446744073709551615 bytes"), "{err}");
        let huge_map = [0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let err = refused(&sealed_body(body_with_msg(&huge_map)));
        assert!(
            err.contains("map of 18446744073709551615 elements"),
            "{err}"
        );

        // Indefinite lengths, in the envelope and in the body.
        let err = refused(&[0xd2, 0x9f, 0xff]);
        assert!(err.contains("indefinite-length"), "{err}");
        let err = refused(&sealed_body(body_with_msg(&[0x9f, 0x00, 0xff])));
        assert!(err.contains("indefinite-length"), "{err}");
    }

    #[test]
    fn bodies_at_the_item_limit_still_decode() {
        // A genuine body with the largest legitimate list: 4096 firmware-like entries.
        #[derive(Serialize)]
        struct Entry {
            path: String,
            sha256: Option<serde_bytes::ByteBuf>,
        }
        let entries: Vec<Entry> = (0..4096)
            .map(|_| Entry {
                path: String::new(),
                sha256: None,
            })
            .collect();
        let body = BodyOut {
            v: 1,
            device: &dev("t1"),
            kind: Kind::Hello,
            msg: &entries,
        };
        let m = decode(
            &topic("t1", Kind::Hello),
            &sealed_body(to_cbor(&body)),
            DEFAULT_MAX_PAYLOAD,
        )
        .unwrap();
        assert!(m.verify(&key(1).verifying_key()).is_ok());
    }
}
