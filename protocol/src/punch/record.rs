//! One punch record and its place in the terminal's hash chain: the validated fields (employee
//! id, kind, method, boot id), the record as stored and sent, and the chain hash that links each
//! record to the one before it.
//!
//! A record has no field for a face or fingerprint template and its encodings refuse unknown
//! fields, so biometric data cannot ride along by accident.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::str::FromStr;

use crate::ids::DeviceId;
use crate::wire;

use super::PunchError;

/// Domain separator of the chain hash: no other vouch hash starts with these bytes.
const HASH_DOMAIN: &[u8] = b"vouch/v1/punch\0";

/// Who punched: 1–64 printable ASCII characters without spaces, not starting with `=`, `+`,
/// `-` or `@` (so an exported CSV opened in a spreadsheet cannot run a formula).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmployeeId(String);

impl EmployeeId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EmployeeId {
    type Err = PunchError;

    fn from_str(s: &str) -> Result<Self, PunchError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(PunchError::EmployeeLength { len: s.len() });
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(PunchError::EmployeeChar { found: c });
        }
        if let Some(c) = s
            .chars()
            .next()
            .filter(|c| matches!(c, '=' | '+' | '-' | '@'))
        {
            return Err(PunchError::EmployeeFormula { found: c });
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for EmployeeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EmployeeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmployeeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Clocking in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PunchKind {
    In,
    Out,
}

impl PunchKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PunchKind::In => "in",
            PunchKind::Out => "out",
        }
    }
}

impl FromStr for PunchKind {
    type Err = PunchError;

    fn from_str(s: &str) -> Result<Self, PunchError> {
        match s {
            "in" => Ok(PunchKind::In),
            "out" => Ok(PunchKind::Out),
            other => Err(PunchError::UnknownKind {
                kind: crate::ids::truncate_for_display(other),
            }),
        }
    }
}

impl fmt::Display for PunchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the employee identified themselves at the terminal (the outcome only: no template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Face,
    Fingerprint,
    Card,
    Pin,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Face => "face",
            Method::Fingerprint => "fingerprint",
            Method::Card => "card",
            Method::Pin => "pin",
        }
    }
}

impl FromStr for Method {
    type Err = PunchError;

    fn from_str(s: &str) -> Result<Self, PunchError> {
        match s {
            "face" => Ok(Method::Face),
            "fingerprint" => Ok(Method::Fingerprint),
            "card" => Ok(Method::Card),
            "pin" => Ok(Method::Pin),
            other => Err(PunchError::UnknownMethod {
                method: crate::ids::truncate_for_display(other),
            }),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The terminal's boot the punch was taken in (Linux `boot_id`, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootId(pub [u8; 16]);

impl BootId {
    /// Parses the kernel's `/proc/sys/kernel/random/boot_id` text (a UUID, dashes optional).
    pub fn parse_uuid(text: &str) -> Result<Self, PunchError> {
        let hex_digits: String = text.trim().chars().filter(|c| *c != '-').collect();
        let bad = || PunchError::BootId {
            value: crate::ids::truncate_for_display(text.trim()),
        };
        let bytes = hex::decode(&hex_digits).map_err(|_| bad())?;
        <[u8; 16]>::try_from(bytes.as_slice())
            .map(BootId)
            .map_err(|_| bad())
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl Serialize for BootId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for BootId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        <[u8; 16]>::try_from(b.as_slice()).map(BootId).map_err(|_| {
            serde::de::Error::custom(format!("boot id must be 16 bytes, got {}", b.len()))
        })
    }
}

/// A SHA-256 link of the chain: the hash of one record ([`PunchRecord::hash`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of record 1, and the head of an empty chain.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(ChainHash)
    }

    /// Parses 64 lower-case hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = hex::decode(s).ok()?;
        Self::from_slice(&b)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        ChainHash::from_slice(&b).ok_or_else(|| {
            serde::de::Error::custom(format!("chain hash must be 32 bytes, got {}", b.len()))
        })
    }
}

/// The latest punch time vouch accepts: 9999-12-31T23:59:59Z, the last second RFC 3339 (and
/// every export) can write as a date.
pub const MAX_TIME: u64 = 253_402_300_799;

/// What the terminal application hands the agent: one validated punch without its place in
/// the chain yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchInput {
    pub employee: EmployeeId,
    pub kind: PunchKind,
    pub method: Option<Method>,
    /// When it happened, Unix seconds (UTC).
    pub time: u64,
}

impl PunchInput {
    /// Validates the text fields a terminal application sends; each failure names its field.
    pub fn parse(
        employee: &str,
        kind: &str,
        method: Option<&str>,
        time: u64,
    ) -> Result<Self, PunchError> {
        if time > MAX_TIME {
            return Err(PunchError::TimeOutOfRange { time });
        }
        Ok(Self {
            employee: employee.parse()?,
            kind: kind.parse()?,
            method: method.map(str::parse).transpose()?,
            time,
        })
    }

    /// The record that follows `prev` (`None`: the first record of the chain) in boot `boot`.
    pub fn chain_after(self, prev: Option<(u64, ChainHash)>, boot: BootId) -> PunchRecord {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, ChainHash::GENESIS),
        };
        PunchRecord {
            seq,
            time: self.time,
            employee: self.employee,
            kind: self.kind,
            method: self.method,
            boot,
            prev_hash,
        }
    }
}

/// One punch as the terminal stores it, sends it and the mirror keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PunchRecord {
    /// Strictly increasing from 1 on each terminal, never reused.
    pub seq: u64,
    /// When it happened, Unix seconds (UTC).
    pub time: u64,
    pub employee: EmployeeId,
    pub kind: PunchKind,
    pub method: Option<Method>,
    pub boot: BootId,
    /// [`PunchRecord::hash`] of record `seq - 1` ([`ChainHash::GENESIS`] for record 1).
    pub prev_hash: ChainHash,
}

impl PunchRecord {
    /// The record's canonical encoding: CBOR of the fields in declaration order. Both sides
    /// hash and store this, never the bytes as received.
    pub fn to_cbor(&self) -> Vec<u8> {
        wire::to_cbor(self)
    }

    /// Decodes one record; unknown or missing fields and trailing bytes are errors.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, PunchError> {
        wire::from_cbor_exact(bytes).map_err(|reason| PunchError::RecordMalformed { reason })
    }

    /// The chain hash of this record on `device`'s chain: SHA-256 over a domain separator, the
    /// device id and the canonical encoding. Binding the device means a record copied onto
    /// another terminal's chain does not link.
    pub fn hash(&self, device: &DeviceId) -> ChainHash {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update([device.as_str().len() as u8]);
        h.update(device.as_str().as_bytes());
        h.update(self.to_cbor());
        ChainHash(h.finalize().into())
    }
}
