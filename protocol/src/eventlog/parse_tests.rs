//! Unit tests of [`parse`](super::parse): well-formed logs of both formats, and hostile inputs
//! (every truncation, huge declared sizes, bad Spec ID events, digest lists that do not fit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::eventlog::parse;
use crate::eventlog::testlog::*;

const SM3_256: u16 = 0x0012;

#[test]
fn parses_a_crypto_agile_log() {
    let bytes = small_agile_log();
    let log = parse(&bytes).unwrap();
    assert_eq!(log.format, LogFormat::CryptoAgile);
    assert_eq!(log.banks(), vec![HashAlg::Sha1, HashAlg::Sha256]);
    assert_eq!(log.events.len(), 5);
    assert_eq!(log.padding, 0);
    let spec = log.spec_id.as_ref().unwrap();
    assert_eq!(
        (
            spec.spec_version_major,
            spec.spec_version_minor,
            spec.uintn_size
        ),
        (2, 0, 2)
    );
    assert!(matches!(log.events[0].decoded, EventData::SpecId(_)));
    let header_len = 32 + 16 + 4 + 4 + 4 + 8 + 1;
    assert_eq!(log.events[1].offset, header_len);
    for (i, event) in log.events.iter().enumerate() {
        assert_eq!(event.index, i);
    }
    let ipl = &log.events[4];
    assert_eq!((ipl.pcr, ipl.event_type), (8, EventType::IPL));
    assert_eq!(
        ipl.digest(HashAlg::Sha256).unwrap(),
        HashAlg::Sha256.hash(&[&ipl.data])
    );
    assert!(ipl.digests_match_data());
}

#[test]
fn parses_a_legacy_log() {
    let mut bytes = legacy(0, 0x8, [1; 20], &utf16z("v1"));
    bytes.extend(legacy(4, 0x4, [2; 20], &[0; 4]));
    let log = parse(&bytes).unwrap();
    assert_eq!(log.format, LogFormat::LegacySha1);
    assert_eq!(log.spec_id, None);
    assert_eq!(log.banks(), vec![HashAlg::Sha1]);
    assert_eq!(log.events.len(), 2);
    assert_eq!(log.events[1].offset, 32 + 6);
    assert_eq!(log.events[1].digest(HashAlg::Sha1), Some(&[2; 20][..]));
}

#[test]
fn a_spec_id_signature_outside_an_ev_no_action_event_is_a_legacy_log() {
    let bytes = legacy(0, 0x5, [0; 20], &spec_id_data(&[(SHA256, 32)], &[]));
    assert_eq!(parse(&bytes).unwrap().format, LogFormat::LegacySha1);
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_log() {
    for bytes in [small_agile_log(), {
        let mut legacy_log = legacy(0, 0x8, [1; 20], &utf16z("v1"));
        legacy_log.extend(legacy(4, 0x4, [2; 20], &[0; 4]));
        legacy_log
    }] {
        let full = parse(&bytes).unwrap();
        for cut in 0..bytes.len() {
            if let Ok(log) = parse(&bytes[..cut]) {
                assert!(log.events.len() < full.events.len(), "cut at {cut}");
                assert_eq!(
                    log.events[..],
                    full.events[..log.events.len()],
                    "cut at {cut}"
                );
            }
        }
    }
}

#[test]
fn truncated_event_data_names_event_offset_and_field() {
    let bytes = small_agile_log();
    let full = parse(&bytes).unwrap();
    let last = &full.events[4];
    // Cut inside the last event's data: its size field says more than remains.
    let data_offset = bytes.len() - last.data.len();
    let err = parse(&bytes[..bytes.len() - 3]).unwrap_err();
    assert_eq!(
        err,
        EventLogError::LengthOutOfBounds {
            event: 4,
            offset: data_offset,
            field: "event data",
            declared: u64::try_from(last.data.len()).unwrap(),
            available: last.data.len() - 3,
        }
    );
    assert_eq!((err.event(), err.offset()), (Some(4), Some(data_offset)));
    assert!(
        err.to_string()
            .starts_with("event 4: the event data at offset")
    );
    // Cut inside a digest of the same event.
    let err = parse(&bytes[..last.offset + 12 + 2 + 5]).unwrap_err();
    assert_eq!(
        err,
        EventLogError::Truncated {
            event: 4,
            offset: last.offset + 14,
            field: "digest",
        }
    );
}

#[test]
fn huge_declared_sizes_are_refused_before_allocating() {
    let mut bytes = header(&[(SHA256, 32)]);
    let event_offset = bytes.len();
    bytes.extend(event2(1, 0xd, &[(SHA256, vec![0; 32])], b""));
    let size_at = bytes.len() - 4;
    bytes[size_at..].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(b"only a few bytes");
    assert_eq!(
        parse(&bytes).unwrap_err(),
        EventLogError::LengthOutOfBounds {
            event: 1,
            offset: event_offset + 12 + 2 + 32 + 4,
            field: "event data",
            declared: u64::from(u32::MAX),
            available: 16,
        }
    );

    let mut data = spec_id_data(&[(SHA256, 32)], &[]);
    data[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse(&legacy(0, 3, [0; 20], &data)).unwrap_err(),
        EventLogError::LengthOutOfBounds {
            event: 0,
            offset: 60,
            field: "Spec ID algorithm list",
            ..
        }
    ));

    let mut data = spec_id_data(&[(SHA256, 32)], &[]);
    *data.last_mut().unwrap() = 0xff; // vendorInfoSize
    assert!(matches!(
        parse(&legacy(0, 3, [0; 20], &data)).unwrap_err(),
        EventLogError::LengthOutOfBounds {
            field: "Spec ID vendor info",
            declared: 255,
            available: 0,
            ..
        }
    ));

    let mut bytes = legacy(0, 8, [0; 20], b"");
    bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse(&bytes).unwrap_err(),
        EventLogError::LengthOutOfBounds {
            event: 0,
            offset: 32,
            field: "event data",
            ..
        }
    ));
}

#[test]
fn spec_id_checks() {
    assert_eq!(
        parse(&header(&[])).unwrap_err(),
        EventLogError::SpecIdNoAlgorithms {
            event: 0,
            offset: 56
        }
    );
    assert_eq!(
        parse(&header(&[(SHA256, 32), (SHA1, 20), (SHA256, 32)])).unwrap_err(),
        EventLogError::SpecIdDuplicateAlgorithm {
            event: 0,
            offset: 68,
            alg_id: SHA256
        }
    );
    assert_eq!(
        parse(&header(&[(SHA256, 20)])).unwrap_err(),
        EventLogError::SpecIdDigestSize {
            event: 0,
            offset: 60,
            alg_id: SHA256,
            declared: 20,
            expected: 32
        }
    );
    let mut data = spec_id_data(&[(SHA256, 32)], b"vendor");
    data.extend_from_slice(b"xx");
    assert_eq!(
        parse(&legacy(0, 3, [0; 20], &data)).unwrap_err(),
        EventLogError::SpecIdTrailingBytes {
            event: 0,
            offset: 32 + 28 + 4 + 1 + 6,
            extra: 2
        }
    );
    assert_eq!(
        parse(&legacy(1, 3, [0; 20], &spec_id_data(&[(SHA256, 32)], &[]))).unwrap_err(),
        EventLogError::SpecIdPcr {
            event: 0,
            offset: 0,
            pcr: 1
        }
    );
    // A Spec ID event cut inside its fixed fields.
    let data = spec_id_data(&[(SHA256, 32)], &[]);
    assert!(matches!(
        parse(&legacy(0, 3, [0; 20], &data[..20])).unwrap_err(),
        EventLogError::Truncated {
            event: 0,
            field: "Spec ID event header",
            ..
        }
    ));
}

#[test]
fn digest_lists_must_fit_the_declared_algorithms() {
    let declared = [(SHA1, 20), (SHA256, 32)];
    let with = |digests: &[(u16, Vec<u8>)]| {
        let mut bytes = header(&declared);
        bytes.extend(event2(4, 0xd, digests, b"x"));
        parse(&bytes)
    };
    let at = header(&declared).len();
    assert_eq!(
        with(&[
            (SHA1, vec![0; 20]),
            (SHA256, vec![0; 32]),
            (SHA1, vec![0; 20])
        ])
        .unwrap_err(),
        EventLogError::TooManyDigests {
            event: 1,
            offset: at + 8,
            count: 3,
            declared: 2
        }
    );
    assert_eq!(
        with(&[(SHA256, vec![0; 32]), (SHA256, vec![0; 32])]).unwrap_err(),
        EventLogError::DuplicateDigest {
            event: 1,
            offset: at + 12 + 34,
            alg_id: SHA256
        }
    );
    assert_eq!(
        with(&[(SHA384, vec![0; 48])]).unwrap_err(),
        EventLogError::UndeclaredAlgorithm {
            event: 1,
            offset: at + 12,
            alg_id: SHA384
        }
    );
    // Fewer digests than declared algorithms parses; the replay accounts for it.
    let log = with(&[(SHA256, vec![0; 32])]).unwrap();
    assert_eq!(log.events[1].digests.len(), 1);
    // A digest count of u32::MAX is refused without looping or allocating.
    let mut bytes = header(&declared);
    bytes.extend(event2(4, 0xd, &[], b""));
    bytes[at + 8..at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse(&bytes).unwrap_err(),
        EventLogError::TooManyDigests {
            count: u32::MAX,
            ..
        }
    ));
}

#[test]
fn unknown_algorithms_are_framed_by_their_declared_size() {
    let mut bytes = header(&[(SM3_256, 32), (SHA256, 32), (0x7777, 5)]);
    bytes.extend(event2(
        3,
        0xd,
        &[
            (0x7777, vec![7; 5]),
            (SHA256, HashAlg::Sha256.hash(&[b"x"])),
            (SM3_256, vec![3; 32]),
        ],
        b"x",
    ));
    bytes.extend(event2(
        3,
        0xd,
        &[
            (SHA256, vec![1; 32]),
            (SM3_256, vec![3; 32]),
            (0x7777, vec![7; 5]),
        ],
        b"y",
    ));
    let log = parse(&bytes).unwrap();
    assert_eq!(log.banks(), vec![HashAlg::Sha256]);
    let event = &log.events[1];
    assert_eq!(event.digests[0].alg, DigestAlg::Unknown(0x7777));
    assert_eq!(event.digests[0].alg.to_string(), "0x7777");
    assert_eq!(event.digests[2].alg, DigestAlg::Unknown(SM3_256));
    assert!(
        event.digests_match_data(),
        "only known algorithms are checked"
    );
    assert_eq!(log.events.len(), 3);
}

#[test]
fn zero_padding_after_the_last_event_is_tolerated_and_garbage_is_not() {
    let mut bytes = small_agile_log();
    let len = bytes.len();
    bytes.extend_from_slice(&[0; 1000]);
    let log = parse(&bytes).unwrap();
    assert_eq!((log.events.len(), log.padding), (5, 1000));

    bytes.truncate(len);
    bytes.extend_from_slice(&[0, 0, 1]);
    assert_eq!(
        parse(&bytes).unwrap_err(),
        EventLogError::Truncated {
            event: 5,
            offset: len,
            field: "PCR index"
        }
    );
    bytes.truncate(len);
    bytes.extend_from_slice(&[0xff; 40]);
    assert!(matches!(
        parse(&bytes).unwrap_err(),
        EventLogError::TooManyDigests { event: 5, .. }
    ));
}

#[test]
fn empty_and_all_zero_logs_are_empty() {
    assert_eq!(parse(&[]).unwrap_err(), EventLogError::Empty);
    assert_eq!(parse(&[0; 64]).unwrap_err(), EventLogError::Empty);
    assert_eq!(parse(&[0; 64]).unwrap_err().event(), None);
}

#[test]
fn a_log_of_only_the_header_is_valid() {
    let log = parse(&header(&[(SHA256, 32)])).unwrap();
    assert_eq!(log.events.len(), 1);
    assert!(log.replay().banks().is_empty());
    assert_eq!(log.secure_boot_enabled(), None);
}

#[test]
fn all_zero_records_before_trailing_data_parse_in_linear_time() {
    // 20,000 all-zero legacy records (valid events: PCR 0, EV_PREBOOT_CERT, zero digest, no
    // data) followed by a real one. Checking for zero padding by rescanning the rest of the log
    // at every event boundary made this quadratic (seconds); it must stay linear.
    let mut bytes = vec![0; 32 * 20_000];
    bytes.extend(legacy(4, 0x4, [1; 20], &[0; 4]));
    let log = parse(&bytes).unwrap();
    assert_eq!((log.events.len(), log.padding), (20_001, 0));
    // The same zeros after the real record are padding.
    let mut bytes = legacy(4, 0x4, [1; 20], &[0; 4]);
    bytes.extend(vec![0; 32 * 20_000]);
    let log = parse(&bytes).unwrap();
    assert_eq!((log.events.len(), log.padding), (1, 32 * 20_000));
}

#[test]
fn a_legacy_log_headed_by_a_tpm12_spec_id_event_is_legacy() {
    // TPM 1.2 firmware opens its SHA-1 log with an EV_NO_ACTION "Spec ID Event00" record
    // (tpm2-tools 5.4 rejects such a log, taking any leading EV_NO_ACTION for Event03).
    let mut spec00 = b"Spec ID Event00\0".to_vec();
    spec00.extend_from_slice(&[0; 9]);
    let mut bytes = legacy(0, 0x3, [0; 20], &spec00);
    bytes.extend(legacy(0, 0x8, [1; 20], b"v"));
    let log = parse(&bytes).unwrap();
    assert_eq!((log.format, log.events.len()), (LogFormat::LegacySha1, 2));
    assert_eq!(
        log.events[0].decoded,
        EventData::NoAction {
            signature: "Spec ID Event00".into()
        }
    );
    let replay = log.replay();
    assert_eq!(
        replay.bank(HashAlg::Sha1).map(|b| b.len()),
        Some(1),
        "the header is not extended"
    );
}
