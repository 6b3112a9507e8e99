//! The COSE_Sign1 envelope (RFC 9052 §4.2) as vouch receives it: parsed from unauthenticated
//! bytes into borrowed slices, after a bounded structural pre-scan ([`crate::cbor_scan`]) and
//! without building any CBOR value tree. The shape is fixed — tag 18, an array of four: the
//! protected header as a byte string, an unprotected header map, the payload byte string and
//! the signature byte string — so it is read header by header. Also builds the `Sig_structure`
//! the signature covers, byte-identical to what `coset` signs in [`crate::wire::seal`].

use crate::cbor_scan::{self, Arg, Header, Limits, ScanError, read_header};
use crate::error::WireError;

/// CBOR tag of a COSE_Sign1 message.
const TAG_COSE_SIGN1: u64 = 18;
/// Label of the `alg` header parameter.
const LABEL_ALG: u64 = 1;
/// `alg` value of EdDSA (-8), as the CBOR negative-integer argument (-1 - 7).
const ALG_EDDSA_ARG: u64 = 7;
/// CBOR major types used here.
const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
/// Simple value `null`.
const SIMPLE_NULL: u64 = 22;

/// The parts of a COSE_Sign1 that verification needs, borrowed from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sign1<'a> {
    /// The serialized protected header, exactly as received (it is signed as such).
    pub protected: &'a [u8],
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

fn not_sign1(reason: impl Into<String>) -> WireError {
    WireError::NotCoseSign1 {
        reason: reason.into(),
    }
}

fn scan_error(e: ScanError) -> WireError {
    match e {
        ScanError::TrailingBytes { .. } => WireError::TrailingBytes,
        other => not_sign1(other.to_string()),
    }
}

/// Reads the header at `pos`, which the pre-scan has already proved well-formed and definite.
fn header(bytes: &[u8], pos: usize) -> Result<(Header, u64), WireError> {
    let h = read_header(bytes, pos).map_err(scan_error)?;
    match h.arg {
        Arg::Value(v) => Ok((h, v)),
        Arg::Indefinite => Err(scan_error(ScanError::Indefinite { offset: pos })),
    }
}

/// Reads a byte string at `pos`: its content and the offset past it.
fn byte_string<'a>(
    bytes: &'a [u8],
    pos: usize,
    what: &str,
) -> Result<(&'a [u8], usize), WireError> {
    let (h, len) = header(bytes, pos)?;
    if h.major != MAJOR_BYTES {
        return Err(not_sign1(format!("{what} is not a byte string")));
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| h.end.checked_add(len))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| scan_error(ScanError::Truncated { offset: pos }))?;
    Ok((&bytes[h.end..end], end))
}

/// Parses a tagged COSE_Sign1 with an EdDSA protected `alg`, an empty unprotected header and
/// an attached payload; nothing else is accepted.
pub(crate) fn parse_sign1(bytes: &[u8]) -> Result<Sign1<'_>, WireError> {
    cbor_scan::scan(bytes, &Limits::ENVELOPE).map_err(scan_error)?;
    let (tag, value) = header(bytes, 0)?;
    if tag.major != MAJOR_TAG || value != TAG_COSE_SIGN1 {
        return Err(not_sign1("missing the COSE_Sign1 tag (18)"));
    }
    let (array, len) = header(bytes, tag.end)?;
    if array.major != MAJOR_ARRAY || len != 4 {
        return Err(not_sign1("not an array of four items"));
    }
    let (protected, pos) = byte_string(bytes, array.end, "protected header")?;
    check_protected(protected)?;
    let (unprotected, entries) = header(bytes, pos)?;
    if unprotected.major != MAJOR_MAP {
        return Err(not_sign1("unprotected header is not a map"));
    }
    if entries != 0 {
        return Err(WireError::UnexpectedHeader);
    }
    let (payload_header, simple) = header(bytes, unprotected.end)?;
    if payload_header.major == MAJOR_SIMPLE && simple == SIMPLE_NULL {
        return Err(WireError::MissingPayload);
    }
    let (payload, pos) = byte_string(bytes, unprotected.end, "payload")?;
    let (signature, _end) = byte_string(bytes, pos, "signature")?;
    Ok(Sign1 {
        protected,
        payload,
        signature,
    })
}

/// The protected header must be a map holding exactly one parameter, `alg` = EdDSA.
fn check_protected(protected: &[u8]) -> Result<(), WireError> {
    if protected.is_empty() {
        // An empty byte string stands for an empty map: no `alg`.
        return Err(WireError::UnsupportedAlgorithm);
    }
    let inner = |e: ScanError| not_sign1(format!("protected header: {e}"));
    cbor_scan::scan(protected, &Limits::ENVELOPE).map_err(inner)?;
    let (map, entries) = header(protected, 0)?;
    if map.major != MAJOR_MAP {
        return Err(not_sign1("protected header is not a map"));
    }
    let mut pos = map.end;
    let (mut alg_is_eddsa, mut alg_seen, mut others) = (false, false, false);
    for _ in 0..entries {
        let (key, label) = header(protected, pos)?;
        let value_at = cbor_scan::item_end(protected, pos, &Limits::ENVELOPE).map_err(inner)?;
        let (value, arg) = header(protected, value_at)?;
        pos = cbor_scan::item_end(protected, value_at, &Limits::ENVELOPE).map_err(inner)?;
        if key.major == MAJOR_UINT && label == LABEL_ALG {
            if alg_seen {
                return Err(not_sign1("protected header repeats alg"));
            }
            alg_seen = true;
            alg_is_eddsa = value.major == MAJOR_NINT && arg == ALG_EDDSA_ARG;
        } else {
            others = true;
        }
    }
    if !alg_is_eddsa {
        return Err(WireError::UnsupportedAlgorithm);
    }
    if others {
        return Err(WireError::UnexpectedHeader);
    }
    Ok(())
}

/// Appends the CBOR header of major type `major` with argument `n` in its shortest form (the
/// deterministic encoding every CBOR encoder here writes).
fn push_header(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        // Each arm's range makes the narrowing exact.
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn push_bytes(out: &mut Vec<u8>, major: u8, b: &[u8]) {
    push_header(out, major, b.len() as u64);
    out.extend_from_slice(b);
}

/// `Sig_structure = ["Signature1", protected, external_aad, payload]`: the bytes an EdDSA
/// COSE_Sign1 signature covers (RFC 9052 §4.4).
pub(crate) fn sig_structure(protected: &[u8], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    const CONTEXT: &[u8] = b"Signature1";
    let mut out = Vec::with_capacity(32 + protected.len() + aad.len() + payload.len());
    push_header(&mut out, MAJOR_ARRAY, 4);
    push_bytes(&mut out, 3, CONTEXT);
    push_bytes(&mut out, MAJOR_BYTES, protected);
    push_bytes(&mut out, MAJOR_BYTES, aad);
    push_bytes(&mut out, MAJOR_BYTES, payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

    fn sign1(payload: Vec<u8>) -> coset::CoseSign1 {
        CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(coset::iana::Algorithm::EdDSA)
                    .build(),
            )
            .payload(payload)
            .signature(vec![0x5a; 64])
            .build()
    }

    #[test]
    fn parses_what_coset_writes_and_signs_the_same_bytes() {
        for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let msg = sign1(payload.clone());
            let bytes = msg.clone().to_tagged_vec().unwrap();
            let parsed = parse_sign1(&bytes).unwrap();
            assert_eq!(parsed.payload, payload.as_slice());
            assert_eq!(parsed.signature, &[0x5a; 64][..]);
            assert_eq!(
                sig_structure(parsed.protected, b"vouch/v1", parsed.payload),
                msg.tbs_data(b"vouch/v1"),
                "payload length {len}"
            );
        }
    }

    #[test]
    fn envelope_shape_errors_are_named() {
        let good = sign1(vec![1, 2, 3]).to_tagged_vec().unwrap();
        // Untagged.
        let untagged = sign1(vec![1]).to_vec().unwrap();
        assert!(
            parse_sign1(&untagged)
                .unwrap_err()
                .to_string()
                .contains("tag")
        );
        // Unprotected header with a kid.
        let mut kid = sign1(vec![1]);
        kid.unprotected.key_id = vec![1];
        let kid = kid.to_tagged_vec().unwrap();
        assert_eq!(parse_sign1(&kid), Err(WireError::UnexpectedHeader));
        // Detached payload.
        let mut detached = sign1(vec![]);
        detached.payload = None;
        let detached = detached.to_tagged_vec().unwrap();
        assert_eq!(parse_sign1(&detached), Err(WireError::MissingPayload));
        // A trailing byte.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse_sign1(&trailing), Err(WireError::TrailingBytes));
        // Protected header with an extra parameter.
        let mut extra = sign1(vec![1]);
        extra.protected.header.content_type = Some(coset::ContentType::Text("x".into()));
        let extra = extra.to_tagged_vec().unwrap();
        assert_eq!(parse_sign1(&extra), Err(WireError::UnexpectedHeader));
        // Repeated alg, hand-encoded: {1: -8, 1: -8}.
        let mut repeated = vec![
            0xd2, 0x84, 0x45, 0xa2, 0x01, 0x27, 0x01, 0x27, 0xa0, 0x41, 0x00,
        ];
        repeated.extend_from_slice(&[0x40]);
        assert!(
            parse_sign1(&repeated)
                .unwrap_err()
                .to_string()
                .contains("repeats alg")
        );
    }
}
