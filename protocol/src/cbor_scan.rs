//! A bounded structural pre-scan of CBOR (RFC 8949) that runs over unauthenticated bytes before
//! anything is decoded from them. It walks item headers only, with a fixed-size stack and no
//! allocation, and refuses input whose shape the protocol never produces: nesting deeper than a
//! small constant, arrays or maps with more elements than any message can carry, more items in
//! total than the input's size allows for real messages, lengths that claim more bytes than
//! remain, indefinite lengths (vouch's encoder always writes definite ones), reserved encodings,
//! nested tags and trailing bytes. Its cost is a small constant per byte: a header is read once,
//! string contents are skipped without being looked at.
//!
//! Passing the scan says nothing about types; serde decoding still checks those. It only
//! guarantees that decoding cannot be made to do much more work, or allocate much more memory,
//! than the input's own size.

use thiserror::Error;

/// The deepest nesting any [`Limits`] may allow: the size of the walker's fixed stack.
pub const MAX_DEPTH: usize = 16;

/// Most elements in one array or map of a signed body. The largest legitimate container is
/// the firmware measurement list (`firmware::MAX_ENTRIES`, checked again after decoding).
pub const MAX_CONTAINER_LEN: u64 = crate::firmware::MAX_ENTRIES as u64;

/// What a scan accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Arrays and maps nested deeper than this are refused (at most [`MAX_DEPTH`]).
    pub max_depth: usize,
    /// Most elements of one array, or entries of one map.
    pub max_container_len: u64,
    /// Most data items in total (every header counts once, tags included).
    pub max_items: u64,
}

impl Limits {
    /// The COSE_Sign1 envelope: a tag, an array of four, and header maps holding at most a few
    /// parameters. The payload is a byte string here; its content is scanned on its own.
    pub const ENVELOPE: Limits = Limits {
        max_depth: 3,
        max_container_len: 8,
        max_items: 64,
    };

    /// A signed body of `len` bytes. Every field of every message is a key of at least two
    /// bytes with a value of at least one, and the densest list (firmware entries without a
    /// path or digest) spends three bytes per item, so real bodies stay far below one item per
    /// two bytes; a flood of one-byte items (an array of zeros) does not.
    pub fn for_body(len: usize) -> Limits {
        Limits {
            max_depth: MAX_DEPTH,
            max_container_len: MAX_CONTAINER_LEN,
            max_items: 16 + (len as u64) / 2,
        }
    }
}

/// Why bytes were refused before decoding. Offsets count from the start of the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("CBOR item truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("reserved CBOR encoding (major type {major}, additional info {info}) at byte {offset}")]
    Reserved { offset: usize, major: u8, info: u8 },
    #[error("indefinite-length CBOR item at byte {offset} (vouch encodes definite lengths only)")]
    Indefinite { offset: usize },
    #[error(
        "CBOR {what} at byte {offset} claims {claimed} bytes or items but only {remaining} bytes remain"
    )]
    LengthBeyondInput {
        offset: usize,
        what: &'static str,
        claimed: u64,
        remaining: usize,
    },
    #[error(
        "CBOR {what} of {len} elements at byte {offset} exceeds the limit of {max} elements per array or map"
    )]
    ContainerTooLong {
        offset: usize,
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("CBOR nesting at byte {offset} exceeds the depth limit of {max}")]
    TooDeep { offset: usize, max: usize },
    #[error(
        "CBOR input of {len} bytes has more than {max} items, the limit for its size (at byte {offset})"
    )]
    TooManyItems { offset: usize, len: usize, max: u64 },
    #[error("CBOR tag inside a tag at byte {offset} (vouch never nests tags)")]
    NestedTag { offset: usize },
    #[error("{count} trailing bytes after the CBOR item")]
    TrailingBytes { count: usize },
}

/// The argument of a CBOR header: a value, a length, or "indefinite" (additional info 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    Value(u64),
    Indefinite,
}

/// One CBOR item header: major type (0..=7), its argument, and the offset just past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub major: u8,
    /// Additional information (low five bits of the initial byte); for major type 7 it tells
    /// simple values from floats.
    pub info: u8,
    pub arg: Arg,
    pub end: usize,
}

/// Reads the header starting at `pos`.
pub(crate) fn read_header(bytes: &[u8], pos: usize) -> Result<Header, ScanError> {
    let truncated = ScanError::Truncated { offset: pos };
    let initial = *bytes.get(pos).ok_or(truncated.clone())?;
    let major = initial >> 5;
    let info = initial & 0x1f;
    let extra = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 if matches!(major, 2..=5 | 7) => {
            return Ok(Header {
                major,
                info,
                arg: Arg::Indefinite,
                end: pos + 1,
            });
        }
        _ => {
            return Err(ScanError::Reserved {
                offset: pos,
                major,
                info,
            });
        }
    };
    let start = pos + 1;
    let arg_bytes = bytes.get(start..start + extra).ok_or(truncated)?;
    let value = if extra == 0 {
        u64::from(info)
    } else {
        arg_bytes
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    Ok(Header {
        major,
        info,
        arg: Arg::Value(value),
        end: start + extra,
    })
}

/// Scans `bytes` as exactly one CBOR item within `limits`; trailing bytes are refused.
pub fn scan(bytes: &[u8], limits: &Limits) -> Result<(), ScanError> {
    let end = item_end(bytes, 0, limits)?;
    match bytes.len() - end {
        0 => Ok(()),
        count => Err(ScanError::TrailingBytes { count }),
    }
}

/// Scans the one CBOR item starting at `start` within `limits` and returns the offset just past
/// it. Items are counted from `start`; lengths are compared with what remains of `bytes`.
pub(crate) fn item_end(bytes: &[u8], start: usize, limits: &Limits) -> Result<usize, ScanError> {
    let max_depth = limits.max_depth.min(MAX_DEPTH);
    // Elements still expected by each open array or map, innermost last.
    let mut open = [0u64; MAX_DEPTH];
    let mut depth = 0usize;
    let mut items = 0u64;
    let mut pos = start;
    let mut after_tag = false;
    loop {
        let h = read_header(bytes, pos)?;
        let offset = pos;
        items += 1;
        if items > limits.max_items {
            return Err(ScanError::TooManyItems {
                offset,
                len: bytes.len() - start,
                max: limits.max_items,
            });
        }
        pos = h.end;
        let remaining = bytes.len() - pos;
        let n = match h.arg {
            Arg::Value(n) => n,
            Arg::Indefinite => return Err(ScanError::Indefinite { offset }),
        };
        let is_tag = h.major == 6;
        if is_tag && after_tag {
            return Err(ScanError::NestedTag { offset });
        }
        after_tag = is_tag;
        match h.major {
            // Integers; simple values and floats (their argument is the value itself).
            0 | 1 | 7 => {}
            2 | 3 => {
                let what = if h.major == 2 {
                    "byte string"
                } else {
                    "text string"
                };
                let len = usize::try_from(n)
                    .ok()
                    .filter(|len| *len <= remaining)
                    .ok_or(ScanError::LengthBeyondInput {
                        offset,
                        what,
                        claimed: n,
                        remaining,
                    })?;
                pos += len;
            }
            4 | 5 => {
                let what = if h.major == 4 { "array" } else { "map" };
                if n > limits.max_container_len {
                    return Err(ScanError::ContainerTooLong {
                        offset,
                        what,
                        len: n,
                        max: limits.max_container_len,
                    });
                }
                // Every element takes at least one byte.
                let elements = if h.major == 4 { n } else { n.saturating_mul(2) };
                if elements > remaining as u64 {
                    return Err(ScanError::LengthBeyondInput {
                        offset,
                        what,
                        claimed: elements,
                        remaining,
                    });
                }
                if elements > 0 {
                    if depth == max_depth {
                        return Err(ScanError::TooDeep {
                            offset,
                            max: max_depth,
                        });
                    }
                    open[depth] = elements;
                    depth += 1;
                    continue;
                }
            }
            // A tag's content is the next item, which fills the tag's place.
            _ => continue,
        }
        // The item is complete: close every container it completes.
        loop {
            if depth == 0 {
                return Ok(pos);
            }
            open[depth - 1] -= 1;
            if open[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::to_cbor;

    const BODY_1K: usize = 1024;

    fn body(bytes: &[u8]) -> Result<(), ScanError> {
        scan(bytes, &Limits::for_body(bytes.len()))
    }

    #[test]
    fn encoder_output_passes() {
        #[derive(serde::Serialize)]
        struct S {
            a: Vec<u32>,
            b: Option<String>,
            c: std::collections::BTreeMap<u8, Vec<Vec<u8>>>,
            d: serde_bytes::ByteBuf,
            e: f64,
            f: i64,
        }
        let v = S {
            a: vec![1, 1000, 70_000, u32::MAX],
            b: Some("hello".into()),
            c: [(1, vec![vec![], vec![1]]), (2, vec![])].into(),
            d: serde_bytes::ByteBuf::from(vec![7; 300]),
            e: 1.5,
            f: -5_000_000_000,
        };
        body(&to_cbor(&v)).unwrap();
        body(&to_cbor(&vec![0u8; 0])).unwrap();
    }

    #[test]
    fn a_megabyte_array_of_zeros_is_refused_at_its_header() {
        let mut bytes = vec![0x9a, 0x00, 0x10, 0x00, 0x00];
        bytes.resize(5 + (1 << 20), 0);
        let err = body(&bytes).unwrap_err();
        assert_eq!(
            err,
            ScanError::ContainerTooLong {
                offset: 0,
                what: "array",
                len: 1 << 20,
                max: MAX_CONTAINER_LEN
            }
        );
        assert!(err.to_string().contains("limit of 4096"), "{err}");
    }

    #[test]
    fn many_small_arrays_of_zeros_hit_the_total_item_limit() {
        // 256 arrays of 4096 zeros: each container is within its limit, the total is not.
        let mut bytes = vec![0x99, 0x01, 0x00];
        for _ in 0..256 {
            bytes.extend_from_slice(&[0x99, 0x10, 0x00]);
            bytes.extend(std::iter::repeat_n(0u8, 4096));
        }
        let err = body(&bytes).unwrap_err();
        assert!(matches!(err, ScanError::TooManyItems { .. }), "{err}");
        assert!(err.to_string().contains("limit for its size"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![0x81; 1000];
        bytes.push(0);
        let err = body(&bytes).unwrap_err();
        assert_eq!(
            err,
            ScanError::TooDeep {
                offset: MAX_DEPTH,
                max: MAX_DEPTH
            }
        );
        // Exactly at the limit is fine.
        let mut ok = vec![0x81; MAX_DEPTH];
        ok.push(0);
        body(&ok).unwrap();
    }

    #[test]
    fn claimed_lengths_beyond_the_input_are_refused() {
        for bytes in [
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..], // bstr of 2^64-1
            &[0x7a, 0x7f, 0xff, 0xff, 0xff, 0x61],                       // tstr of 2^31-1
            &[0x84, 0x00, 0x00],                                         // array(4), 2 present
            &[0xa2, 0x00, 0x00, 0x00],                                   // map(2), 3 present
        ] {
            let err = body(bytes).unwrap_err();
            assert!(
                matches!(err, ScanError::LengthBeyondInput { .. }),
                "{bytes:02x?}: {err}"
            );
        }
        let mut huge_map = vec![0xbb, 0, 0, 0, 1, 0, 0, 0, 0];
        huge_map.resize(64, 0);
        assert!(matches!(
            body(&huge_map),
            Err(ScanError::ContainerTooLong { what: "map", .. })
        ));
    }

    #[test]
    fn indefinite_lengths_are_refused() {
        for bytes in [
            &[0x9f, 0x00, 0xff][..],
            &[0xbf, 0x00, 0x00, 0xff],
            &[0x5f, 0x41, 0x00, 0xff],
            &[0x7f, 0x61, 0x61, 0xff],
            &[0xff],
        ] {
            assert_eq!(body(bytes), Err(ScanError::Indefinite { offset: 0 }));
        }
    }

    #[test]
    fn reserved_encodings_nested_tags_truncation_and_trailing_bytes_are_refused() {
        assert!(matches!(body(&[0x1c]), Err(ScanError::Reserved { .. })));
        assert!(matches!(body(&[0x1f]), Err(ScanError::Reserved { .. })));
        assert_eq!(
            body(&[0xd2, 0xd2, 0x00]),
            Err(ScanError::NestedTag { offset: 1 })
        );
        body(&[0xd2, 0x00]).unwrap();
        assert_eq!(
            body(&[0x82, 0x41, 0x00]),
            Err(ScanError::Truncated { offset: 3 })
        );
        assert_eq!(body(&[0x19, 0x01]), Err(ScanError::Truncated { offset: 0 }));
        assert_eq!(body(&[]), Err(ScanError::Truncated { offset: 0 }));
        assert_eq!(
            body(&[0x00, 0x00, 0x00]),
            Err(ScanError::TrailingBytes { count: 2 })
        );
    }

    #[test]
    fn item_end_stops_after_one_item() {
        let bytes = [0x82, 0x01, 0x42, 0xaa, 0xbb, 0x07];
        let limits = Limits::for_body(BODY_1K);
        assert_eq!(item_end(&bytes, 0, &limits), Ok(5));
        assert_eq!(item_end(&bytes, 5, &limits), Ok(6));
    }
}
