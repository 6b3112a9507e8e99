//! Framing of the binary log: the legacy `TCG_PCR_EVENT` records, the Spec ID header and the
//! crypto-agile `TCG_PCR_EVENT2` records, with every length checked before it is used.

use std::collections::{BTreeMap, BTreeSet};

use super::data::decode;
use super::reader::Reader;
use super::{
    AlgorithmSize, DigestAlg, Event, EventData, EventDigest, EventLog, EventLogError, EventType,
    LogFormat, SpecIdEvent,
};
use crate::digest::HashAlg;

/// The signature that opens the Spec ID event of a crypto-agile log.
pub(crate) const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";
/// Size of the fixed part of `TCG_EfiSpecIDEvent` before the algorithm list.
const SPEC_ID_FIXED_LEN: usize = 16 + 4 + 4 + 4;
/// Size of a SHA-1 digest in a legacy record.
const LEGACY_DIGEST_LEN: usize = 20;

/// Parses a TCG event log in either format; see the [module documentation](super) for the rules.
pub fn parse(log: &[u8]) -> Result<EventLog, EventLogError> {
    // Where the trailing run of zero bytes starts: found once, so that the padding check at each
    // event boundary is O(1) (rescanning the rest at every boundary is quadratic in a log of
    // all-zero records followed by anything else).
    let zero_tail = log.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    if zero_tail == 0 {
        return Err(EventLogError::Empty);
    }
    let mut r = Reader::new(log);
    let first = read_legacy(&mut r, 0)?;
    let spec_id =
        if first.event_type == EventType::NO_ACTION && first.data.starts_with(SPEC_ID_EVENT03) {
            if first.pcr != 0 {
                return Err(EventLogError::SpecIdPcr {
                    event: 0,
                    offset: first.offset,
                    pcr: first.pcr,
                });
            }
            Some(parse_spec_id(first.data, first.data_offset)?)
        } else {
            None
        };
    let format = if spec_id.is_some() {
        LogFormat::CryptoAgile
    } else {
        LogFormat::LegacySha1
    };
    let sizes: Option<DigestSizes> = spec_id.as_ref().map(|spec| {
        spec.algorithms
            .iter()
            .map(|a| (a.alg.tcg_id(), a.digest_size))
            .collect()
    });
    let mut events = vec![first.into_event(spec_id.clone())];
    let padding = loop {
        if r.is_empty() {
            break 0;
        }
        if r.pos() >= zero_tail {
            break r.remaining();
        }
        let index = events.len();
        let record = match &sizes {
            Some(sizes) => read_event2(&mut r, index, sizes)?,
            None => read_legacy(&mut r, index)?,
        };
        events.push(record.into_event(None));
    };
    Ok(EventLog {
        format,
        spec_id,
        events,
        padding,
    })
}

/// The digest size of each algorithm the Spec ID event declares, by TCG id.
type DigestSizes = BTreeMap<u16, u16>;

/// A framed record whose data is not yet decoded.
struct Record<'a> {
    index: usize,
    offset: usize,
    pcr: u32,
    event_type: EventType,
    digests: Vec<EventDigest>,
    data: &'a [u8],
    data_offset: usize,
}

impl Record<'_> {
    fn into_event(self, spec_id: Option<SpecIdEvent>) -> Event {
        let decoded = match spec_id {
            Some(spec) => EventData::SpecId(spec),
            None => decode(self.event_type, self.data),
        };
        Event {
            index: self.index,
            offset: self.offset,
            pcr: self.pcr,
            event_type: self.event_type,
            digests: self.digests,
            data: self.data.to_vec(),
            decoded,
        }
    }
}

/// Reads fixed-size fields of one event and reports failures against it.
struct Fields<'r, 'a> {
    r: &'r mut Reader<'a>,
    event: usize,
}

impl<'a> Fields<'_, 'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let offset = self.r.pos();
        self.r.take(n).ok_or(EventLogError::Truncated {
            event: self.event,
            offset,
            field,
        })
    }

    /// Takes a variable-length field whose length `declared` was read from the log.
    fn take_declared(
        &mut self,
        declared: u64,
        field: &'static str,
    ) -> Result<&'a [u8], EventLogError> {
        let offset = self.r.pos();
        let available = self.r.remaining();
        self.r
            .take_u64(declared)
            .ok_or(EventLogError::LengthOutOfBounds {
                event: self.event,
                offset,
                field,
                declared,
                available,
            })
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EventLogError> {
        let offset = self.r.pos();
        self.r.array().ok_or(EventLogError::Truncated {
            event: self.event,
            offset,
            field,
        })
    }
}

/// Reads a legacy `TCG_PCR_EVENT` record.
fn read_legacy<'a>(r: &mut Reader<'a>, index: usize) -> Result<Record<'a>, EventLogError> {
    let offset = r.pos();
    let mut f = Fields { r, event: index };
    let pcr = f.u32("PCR index")?;
    let event_type = EventType(f.u32("event type")?);
    let digest = f.take(LEGACY_DIGEST_LEN, "SHA-1 digest")?;
    let size = f.u32("event size")?;
    let data_offset = f.r.pos();
    let data = f.take_declared(u64::from(size), "event data")?;
    Ok(Record {
        index,
        offset,
        pcr,
        event_type,
        digests: vec![EventDigest {
            alg: DigestAlg::Known(HashAlg::Sha1),
            digest: digest.to_vec(),
        }],
        data,
        data_offset,
    })
}

/// Reads a crypto-agile `TCG_PCR_EVENT2` record framed by the declared digest `sizes`.
fn read_event2<'a>(
    r: &mut Reader<'a>,
    index: usize,
    sizes: &DigestSizes,
) -> Result<Record<'a>, EventLogError> {
    let offset = r.pos();
    let mut f = Fields { r, event: index };
    let pcr = f.u32("PCR index")?;
    let event_type = EventType(f.u32("event type")?);
    let count_offset = f.r.pos();
    let count = f.u32("digest count")?;
    let declared = sizes.len();
    if usize::try_from(count).map_or(true, |n| n > declared) {
        return Err(EventLogError::TooManyDigests {
            event: index,
            offset: count_offset,
            count,
            declared,
        });
    }
    // No preallocation: `count` is not yet checked against the bytes left.
    let mut digests: Vec<EventDigest> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        let alg_offset = f.r.pos();
        let alg_id = f.u16("digest algorithm")?;
        let size = *sizes
            .get(&alg_id)
            .ok_or(EventLogError::UndeclaredAlgorithm {
                event: index,
                offset: alg_offset,
                alg_id,
            })?;
        if !seen.insert(alg_id) {
            return Err(EventLogError::DuplicateDigest {
                event: index,
                offset: alg_offset,
                alg_id,
            });
        }
        let digest = f.take(usize::from(size), "digest")?;
        digests.push(EventDigest {
            alg: DigestAlg::from_tcg_id(alg_id),
            digest: digest.to_vec(),
        });
    }
    let size = f.u32("event size")?;
    let data_offset = f.r.pos();
    let data = f.take_declared(u64::from(size), "event data")?;
    Ok(Record {
        index,
        offset,
        pcr,
        event_type,
        digests,
        data,
        data_offset,
    })
}

/// Parses the `TCG_EfiSpecIDEvent` data (starting with [`SPEC_ID_EVENT03`]) found at
/// `data_offset` in the log.
fn parse_spec_id(data: &[u8], data_offset: usize) -> Result<SpecIdEvent, EventLogError> {
    let mut r = Reader::new(data);
    // Offsets in errors are offsets in the log; the data lies at `data_offset`.
    let at = |pos: usize| data_offset.saturating_add(pos);
    let header = (r.take(16), r.u32(), r.u8(), r.u8(), r.u8(), r.u8(), r.u32());
    let (
        Some(_signature),
        Some(platform_class),
        Some(minor),
        Some(major),
        Some(errata),
        Some(uintn),
        Some(count),
    ) = header
    else {
        return Err(EventLogError::Truncated {
            event: 0,
            offset: at(r.pos()),
            field: "Spec ID event header",
        });
    };
    if count == 0 {
        return Err(EventLogError::SpecIdNoAlgorithms {
            event: 0,
            offset: at(SPEC_ID_FIXED_LEN - 4),
        });
    }
    // Each entry is 4 bytes: check the declared count against the data before allocating.
    let list_len = u64::from(count) * 4;
    if usize::try_from(list_len).map_or(true, |n| n > r.remaining()) {
        return Err(EventLogError::LengthOutOfBounds {
            event: 0,
            offset: at(r.pos()),
            field: "Spec ID algorithm list",
            declared: list_len,
            available: r.remaining(),
        });
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        let entry_offset = at(r.pos());
        let (Some(alg_id), Some(digest_size)) = (r.u16(), r.u16()) else {
            return Err(EventLogError::Truncated {
                event: 0,
                offset: entry_offset,
                field: "Spec ID algorithm list",
            });
        };
        if !seen.insert(alg_id) {
            return Err(EventLogError::SpecIdDuplicateAlgorithm {
                event: 0,
                offset: entry_offset,
                alg_id,
            });
        }
        let alg = DigestAlg::from_tcg_id(alg_id);
        if let DigestAlg::Known(known) = alg
            && usize::from(digest_size) != known.digest_len()
        {
            return Err(EventLogError::SpecIdDigestSize {
                event: 0,
                offset: entry_offset,
                alg_id,
                declared: digest_size,
                expected: known.digest_len(),
            });
        }
        algorithms.push(AlgorithmSize { alg, digest_size });
    }
    let vendor_size_offset = at(r.pos());
    let vendor_size = r.u8().ok_or(EventLogError::Truncated {
        event: 0,
        offset: vendor_size_offset,
        field: "Spec ID vendor info size",
    })?;
    let vendor_offset = at(r.pos());
    let available = r.remaining();
    let vendor_info = r
        .take(usize::from(vendor_size))
        .ok_or(EventLogError::LengthOutOfBounds {
            event: 0,
            offset: vendor_offset,
            field: "Spec ID vendor info",
            declared: u64::from(vendor_size),
            available,
        })?;
    if !r.is_empty() {
        return Err(EventLogError::SpecIdTrailingBytes {
            event: 0,
            offset: at(r.pos()),
            extra: r.remaining(),
        });
    }
    Ok(SpecIdEvent {
        platform_class,
        spec_version_minor: minor,
        spec_version_major: major,
        spec_errata: errata,
        uintn_size: uintn,
        algorithms,
        vendor_info: vendor_info.to_vec(),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
