//! Byte-valued wire types: CBOR byte strings on the wire, lower-case hex in JSON and logs.
//! Serde's `is_human_readable` picks the form, so one type serves both the signed CBOR messages
//! and the operator-facing JSON API.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

use crate::error::IdError;

/// A SHA-256 digest (PCR value of the sha256 bank, firmware file hash, event digest).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub const ZERO: Sha256Digest = Sha256Digest([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| IdError::DigestLength {
                expected: 32,
                len: bytes.len(),
            })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 6 bytes in hex: enough for an operator to tell digests apart in a reason line.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let bytes = hex::decode(s).map_err(|_| IdError::Hex {
            value: crate::ids::truncate_for_display(s),
        })?;
        Self::from_slice(&bytes)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            Self::from_slice(&b).map_err(serde::de::Error::custom)
        }
    }
}

/// Variable-length bytes (TPM structures, keys, certificates).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 64 {
            write!(f, "Bytes({})", hex::encode(&self.0))
        } else {
            write!(f, "Bytes({} bytes)", self.0.len())
        }
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(&s)
                .map(Bytes)
                .map_err(|_| serde::de::Error::custom("expected lower-case hex"))
        } else {
            serde_bytes::ByteBuf::deserialize(d).map(|b| Bytes(b.into_vec()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_bytes_in_cbor_and_hex_in_json() {
        let d = Sha256Digest([0xab; 32]);
        let mut cbor = Vec::new();
        ciborium::into_writer(&d, &mut cbor).unwrap();
        assert_eq!(cbor[0], 0x58); // bstr, 1-byte length follows
        assert_eq!(cbor.len(), 34);
        let back: Sha256Digest = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
    }

    #[test]
    fn digest_rejects_wrong_length_and_bad_hex() {
        assert!("abcd".parse::<Sha256Digest>().is_err());
        assert!("zz".repeat(32).parse::<Sha256Digest>().is_err());
        let mut cbor = Vec::new();
        ciborium::into_writer(&serde_bytes::Bytes::new(&[1; 31]), &mut cbor).unwrap();
        assert!(ciborium::from_reader::<Sha256Digest, _>(cbor.as_slice()).is_err());
    }

    #[test]
    fn bytes_round_trip_both_forms() {
        let b = Bytes(vec![0, 1, 2, 255]);
        let mut cbor = Vec::new();
        ciborium::into_writer(&b, &mut cbor).unwrap();
        assert_eq!(
            ciborium::from_reader::<Bytes, _>(cbor.as_slice()).unwrap(),
            b
        );
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"000102ff\"");
        assert_eq!(serde_json::from_str::<Bytes>(&json).unwrap(), b);
    }
}
