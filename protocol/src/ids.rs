//! Identifiers parsed once at the boundary: device ids, nonces, message kinds and MQTT topics.
//! Everything past this module holds these newtypes, never raw strings or byte slices.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

use crate::error::IdError;

/// The prefix of every vouch v1 MQTT topic.
pub const TOPIC_PREFIX: &str = "vouch/v1";

/// A terminal's identity: `[A-Za-z0-9._-]{1,64}`, so it is always one safe MQTT topic level
/// (no `/`, `+` or `#`) and one safe file or URL path segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::DeviceIdLength { len: s.len() });
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(IdError::DeviceIdChar { found: c });
        }
        // "." and ".." are legal by the character set but are path components with a meaning of
        // their own; refusing them keeps ids safe to use as file and URL path segments.
        if s == "." || s == ".." {
            return Err(IdError::DeviceIdDots);
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A verifier-issued challenge: 32 random bytes, single-use, with an expiry kept by the verifier.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nonce([u8; 32]);

impl Nonce {
    pub const LEN: usize = 32;

    /// Wraps bytes the caller drew from a cryptographic random source.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| IdError::NonceLength { len: bytes.len() })
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        Nonce::from_slice(&b).map_err(serde::de::Error::custom)
    }
}

/// Who sends a message kind: the terminal's agent or the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Agent,
    Verifier,
}

/// The kind of a v1 message; it is both the last MQTT topic level and a signed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Agent → verifier at (re)connect: "here I am, challenge me".
    Hello,
    /// Agent → verifier: a TPM quote answering a challenge.
    Evidence,
    /// Agent → verifier: periodic heartbeat with the agent's view; asks for a challenge.
    Status,
    /// Verifier → agent: a fresh nonce to quote over.
    Challenge,
    /// Verifier → agent (retained): the signed attestation result.
    Verdict,
    /// Verifier → agent: an instruction (quarantine, release, attest now).
    Cmd,
    /// Agent → verifier: a signed batch of the terminal's hash-chained punch records.
    Punches,
    /// Verifier → agent (retained): the signed acknowledgement of the mirror's durable head.
    Ack,
    /// Agent → verifier over the HTTP API, not MQTT: a self-signed enrollment request.
    Enroll,
}

impl Kind {
    /// The kinds that travel over MQTT, in a fixed order.
    pub const MQTT: [Kind; 8] = [
        Kind::Hello,
        Kind::Evidence,
        Kind::Status,
        Kind::Punches,
        Kind::Challenge,
        Kind::Verdict,
        Kind::Cmd,
        Kind::Ack,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Evidence => "evidence",
            Kind::Status => "status",
            Kind::Challenge => "challenge",
            Kind::Verdict => "verdict",
            Kind::Cmd => "cmd",
            Kind::Punches => "punches",
            Kind::Ack => "ack",
            Kind::Enroll => "enroll",
        }
    }

    pub const fn sender(self) -> Sender {
        match self {
            Kind::Hello | Kind::Evidence | Kind::Status | Kind::Punches | Kind::Enroll => {
                Sender::Agent
            }
            Kind::Challenge | Kind::Verdict | Kind::Cmd | Kind::Ack => Sender::Verifier,
        }
    }
}

impl FromStr for Kind {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        match s {
            "hello" => Ok(Kind::Hello),
            "evidence" => Ok(Kind::Evidence),
            "status" => Ok(Kind::Status),
            "challenge" => Ok(Kind::Challenge),
            "verdict" => Ok(Kind::Verdict),
            "cmd" => Ok(Kind::Cmd),
            "punches" => Ok(Kind::Punches),
            "ack" => Ok(Kind::Ack),
            "enroll" => Ok(Kind::Enroll),
            other => Err(IdError::UnknownKind {
                kind: truncate_for_display(other),
            }),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A parsed `vouch/v1/{device_id}/{kind}` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub device: DeviceId,
    pub kind: Kind,
}

impl Topic {
    pub fn new(device: DeviceId, kind: Kind) -> Self {
        Self { device, kind }
    }

    /// The MQTT filter matching one kind from every device: `vouch/v1/+/{kind}`.
    pub fn filter_all(kind: Kind) -> String {
        format!("{TOPIC_PREFIX}/+/{kind}")
    }
}

impl FromStr for Topic {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Topic {
            topic: truncate_for_display(s),
        };
        let rest = s
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(bad)?;
        let (device, kind) = rest.split_once('/').ok_or_else(bad)?;
        let kind: Kind = kind.parse()?;
        if kind == Kind::Enroll {
            return Err(bad());
        }
        Ok(Self {
            device: device.parse()?,
            kind,
        })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOPIC_PREFIX}/{}/{}", self.device, self.kind)
    }
}

/// Shortens attacker-controlled text before it goes into an error message or a log line.
pub(crate) fn truncate_for_display(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.escape_debug().to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s[..end].escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_accepts_the_documented_alphabet() {
        for ok in ["a", "T-100.front_door", &"x".repeat(64)] {
            assert!(ok.parse::<DeviceId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn device_id_rejects_topic_wildcards_and_path_tricks() {
        for bad in ["", "a/b", "+", "#", "a b", "é", ".", "..", &"x".repeat(65)] {
            assert!(bad.parse::<DeviceId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_round_trips() {
        let t: Topic = "vouch/v1/term-1/evidence".parse().unwrap();
        assert_eq!(t.device.as_str(), "term-1");
        assert_eq!(t.kind, Kind::Evidence);
        assert_eq!(t.to_string(), "vouch/v1/term-1/evidence");
    }

    #[test]
    fn topic_rejects_wrong_prefix_extra_levels_and_unknown_kinds() {
        for bad in [
            "vouch/v2/term-1/evidence",
            "vouch/v1/term-1/evidence/x",
            "vouch/v1/term-1/punch",
            "vouch/v1/term-1/enroll",
            "vouch/v1//evidence",
            "vouch/v1/term-1",
        ] {
            assert!(bad.parse::<Topic>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nonce_requires_exactly_32_bytes() {
        assert!(Nonce::from_slice(&[0; 31]).is_err());
        assert!(Nonce::from_slice(&[0; 33]).is_err());
        assert_eq!(Nonce::from_slice(&[7; 32]).unwrap().as_bytes(), &[7; 32]);
    }

    #[test]
    fn display_truncation_never_splits_a_char() {
        let s = "é".repeat(100);
        let t = truncate_for_display(&s);
        assert!(t.ends_with('…'));
    }
}
