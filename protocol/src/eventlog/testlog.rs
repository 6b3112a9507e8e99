//! Test-only encoders for event logs and event data, low-level enough to build malformed logs
//! for the hostile-input tests.

use super::guid::Guid;
use crate::digest::HashAlg;

pub(crate) const SHA1: u16 = 0x0004;
pub(crate) const SHA256: u16 = 0x000B;
pub(crate) const SHA384: u16 = 0x000C;

pub(crate) fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn len32(data: &[u8]) -> [u8; 4] {
    u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes()
}

/// `TCG_EfiSpecIDEvent` data declaring `algs` as `(algorithmId, digestSize)`.
pub(crate) fn spec_id_data(algs: &[(u16, u16)], vendor: &[u8]) -> Vec<u8> {
    let mut out = b"Spec ID Event03\0".to_vec();
    out.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    out.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
    out.extend_from_slice(&u32::try_from(algs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (id, size) in algs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
    }
    out.push(u8::try_from(vendor.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(vendor);
    out
}

/// A legacy `TCG_PCR_EVENT` record.
pub(crate) fn legacy(pcr: u32, event_type: u32, digest: [u8; 20], data: &[u8]) -> Vec<u8> {
    let mut out = pcr.to_le_bytes().to_vec();
    out.extend_from_slice(&event_type.to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(&len32(data));
    out.extend_from_slice(data);
    out
}

/// The Spec ID header record of a crypto-agile log.
pub(crate) fn header(algs: &[(u16, u16)]) -> Vec<u8> {
    legacy(0, 3, [0; 20], &spec_id_data(algs, &[]))
}

/// A `TCG_PCR_EVENT2` record with explicit `(algorithmId, digest)` pairs.
pub(crate) fn event2(
    pcr: u32,
    event_type: u32,
    digests: &[(u16, Vec<u8>)],
    data: &[u8],
) -> Vec<u8> {
    let mut out = pcr.to_le_bytes().to_vec();
    out.extend_from_slice(&event_type.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(digests.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (id, digest) in digests {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(digest);
    }
    out.extend_from_slice(&len32(data));
    out.extend_from_slice(data);
    out
}

/// A `TCG_PCR_EVENT2` record whose digests are the hashes of `data` in each bank.
pub(crate) fn measured(pcr: u32, event_type: u32, banks: &[HashAlg], data: &[u8]) -> Vec<u8> {
    let digests: Vec<(u16, Vec<u8>)> = banks
        .iter()
        .map(|alg| (alg.tcg_id(), alg.hash(&[data])))
        .collect();
    event2(pcr, event_type, &digests, data)
}

/// A `UEFI_VARIABLE_DATA`.
pub(crate) fn variable(vendor: Guid, name: &str, data: &[u8]) -> Vec<u8> {
    let name_units: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut out = vendor.0.to_vec();
    out.extend_from_slice(
        &u64::try_from(name.encode_utf16().count())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    out.extend_from_slice(&u64::try_from(data.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&name_units);
    out.extend_from_slice(data);
    out
}

/// An `EFI_SIGNATURE_LIST` of `count` entries of `entry_len` bytes (owner GUID excluded).
pub(crate) fn signature_list(kind: Guid, entry_len: usize, count: usize) -> Vec<u8> {
    let size = entry_len + 16;
    let mut out = kind.0.to_vec();
    out.extend_from_slice(&u32::try_from(28 + size * count).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&u32::try_from(size).unwrap_or(0).to_le_bytes());
    for i in 0..count {
        out.extend_from_slice(&[0x77; 16]);
        out.extend(std::iter::repeat_n(
            u8::try_from(i % 251).unwrap_or(0),
            entry_len,
        ));
    }
    out
}

/// A small valid crypto-agile log with sha1 and sha256 banks, used by the hostile-input tests.
pub(crate) fn small_agile_log() -> Vec<u8> {
    let banks = [HashAlg::Sha1, HashAlg::Sha256];
    let mut log = header(&[(SHA1, 20), (SHA256, 32)]);
    log.extend(measured(0, 0x8, &banks, &utf16z("1.0")));
    log.extend(measured(
        7,
        0x8000_0001,
        &banks,
        &variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]),
    ));
    log.extend(measured(7, 0x4, &banks, &[0; 4]));
    log.extend(measured(8, 0xd, &banks, b"grub_cmd: linux /vmlinuz\0"));
    log
}
