//! Unit tests of [`Reason`]: one example of every kind with the exact operator text it renders
//! (the text vouch showed before reasons were typed), stable codes that match the documented
//! table, and stored forms that read back equal.

use super::*;
use crate::policy::events::EventKind;
use crate::tpm::{ClockError, QuoteError};

fn d(b: u8) -> Sha256Digest {
    Sha256Digest([b; 32])
}

fn scope() -> String {
    "model T-100".into()
}

/// Every kind of reason, with the text an operator reads.
fn examples() -> Vec<(Reason, &'static str)> {
    vec![
        (Reason::MoreReasons { count: 4034 }, "and 4034 more reasons"),
        (
            Reason::NoReferenceValues {
                subject: "device term-1 or model T-100".into(),
            },
            "no reference values for device term-1 or model T-100",
        ),
        (
            Reason::PcrMismatch {
                index: 4,
                quoted: d(0x44),
                reference: d(0x04),
            },
            "PCR 4 (sha256) is 444444444444…, reference is 040404040404…",
        ),
        (
            Reason::PcrNotQuoted { index: 9 },
            "PCR 9 was not quoted but has a reference value",
        ),
        (
            Reason::FirmwarePcrMoved {
                measured: 15,
                expected: 14,
                scope: scope(),
            },
            "firmware was measured into PCR 15, but the reference for model T-100 expects PCR 14",
        ),
        (
            Reason::FirmwareMissing {
                path: "/fw/app.bin".into(),
            },
            "firmware /fw/app.bin is missing on the terminal",
        ),
        (
            Reason::FirmwareNotInReference {
                path: "/fw/extra.bin".into(),
            },
            "firmware /fw/extra.bin is not in the reference values",
        ),
        (
            Reason::FirmwareHashNotApproved {
                path: "/fw/app.bin".into(),
                sha256: d(0xbb),
            },
            "firmware /fw/app.bin has sha256 bbbbbbbbbbbb…, which is not an approved hash",
        ),
        (
            Reason::FirmwareNotMeasured {
                path: "/fw/app.bin".into(),
            },
            "firmware /fw/app.bin was not measured",
        ),
        (
            Reason::EventLogMissing { scope: scope() },
            "evidence carries no event log, but the reference for model T-100 constrains boot events",
        ),
        (Reason::SecureBootDisabled, "Secure Boot is disabled"),
        (
            Reason::SecureBootUnknown,
            "Secure Boot state is not in the event log",
        ),
        (
            Reason::DbxShrunk {
                entries: 300,
                min: 371,
                scope: scope(),
            },
            "dbx has 300 entries, fewer than the 371 of the reference for model T-100: \
             revocations were removed",
        ),
        (Reason::DbxMissing, "dbx is not in the event log"),
        (
            Reason::EventNotInReference {
                pcr: 4,
                event_type: "EV_EFI_BOOT_SERVICES_APPLICATION".into(),
                subject: "\\EFI\\BOOT\\BOOTX64.EFI".into(),
                digest: d(0x3f),
                scope: scope(),
            },
            "PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION \\EFI\\BOOT\\BOOTX64.EFI digest 3f3f3f3f3f3f… \
             not in reference for model T-100",
        ),
        (
            Reason::EventClassMissing {
                kind: EventKind::BootApplication,
                scope: scope(),
            },
            "the reference for model T-100 requires boot_application events, but the event log \
             shows none that the quote vouches for",
        ),
        (
            Reason::EventsUnverifiable { pcrs: vec![8, 9] },
            "event log entries in PCR 8, 9 cannot be checked: the quote does not reproduce them",
        ),
        (
            Reason::ClosedWorldStaleMeasurements { scope: scope() },
            "the measurements predate closed-world event checks, which the reference for model \
             T-100 needs: fresh evidence is required",
        ),
        (
            Reason::ClosedWorldPcrNotQuoted {
                pcr: 9,
                scope: scope(),
            },
            "PCR 9 is constrained by the reference for model T-100 but was not quoted",
        ),
        (
            Reason::ClosedWorldPcrMismatch { pcr: 8 },
            "event log does not match the quote: PCR 8",
        ),
        (
            Reason::ClosedWorldPcrUnexplained { pcr: 12 },
            "quoted PCR 12 is not explained by the event log",
        ),
        (
            Reason::ClosedWorldEventType {
                pcr: 8,
                event_type: "EV_EVENT_TAG".into(),
                scope: scope(),
            },
            "PCR 8 EV_EVENT_TAG event is not in the reference for model T-100",
        ),
        (
            Reason::FirmwareEventInOsPcr {
                pcr: 9,
                event_type: "EV_POST_CODE".into(),
            },
            "PCR 9 EV_POST_CODE event: a firmware event type in a PCR the PC Client spec leaves \
             to the OS, so a boot-loader measurement relabelled to escape its class",
        ),
        (
            Reason::NoFreshEvidence { since: 100 },
            "no fresh evidence since 1970-01-01T00:01:40Z",
        ),
        (
            Reason::Unresponsive { expiries: 3 },
            "unresponsive: 3 verdict periods without fresh evidence",
        ),
        (
            Reason::Quarantined {
                actor: Actor::Operator("admin".into()),
                reasons: vec![Reason::Operator {
                    text: "tamper report".into(),
                }],
            },
            "quarantined by operator:admin: tamper report",
        ),
        (
            Reason::Quarantined {
                actor: Actor::Verifier,
                reasons: vec![
                    Reason::PcrNotQuoted { index: 9 },
                    Reason::Evidence(Defect::WrongSigner),
                ],
            },
            "quarantined by verifier: PCR 9 was not quoted but has a reference value; quote was \
             not signed by the enrolled AK under the enrolled EK",
        ),
        (
            Reason::PunchForged,
            "a punch batch's signature does not verify with the device's key",
        ),
        (
            Reason::PunchFork { seq: 42 },
            "punch 42 differs from the record the mirror holds (fork)",
        ),
        (
            Reason::PunchChainBroken { seq: 7 },
            "the punch chain is broken at record 7",
        ),
        (
            Reason::SupplyChainDenied {
                component: "PCI device 10ec:8168 at 0000:01:00.0".into(),
                rule: "deny.pci_vendors 10ec".into(),
            },
            "PCI device 10ec:8168 at 0000:01:00.0 is refused by the supply-chain policy \
             (deny.pci_vendors 10ec)",
        ),
        (
            Reason::HardwareChanged {
                component: "smbios.board_vendor".into(),
                was: "Acme Boards".into(),
                now: "Hidden Board Co".into(),
            },
            "hardware changed since provisioning: smbios.board_vendor was Acme Boards, is now \
             Hidden Board Co",
        ),
        (
            Reason::InventoryMissing,
            "evidence carries no hardware inventory, but the device was enrolled from a manifest \
             or a supply-chain policy is in force",
        ),
        (
            Reason::InventoryNotMeasured,
            "the hardware inventory in the evidence is not the one measured into the quoted \
             firmware PCR",
        ),
        (
            Reason::FirmwareRevoked {
                model: "T-100".into(),
                version: "2.1.0".into(),
                reason: "CVE-2026-1234".into(),
            },
            "firmware 2.1.0 of model T-100 was revoked: CVE-2026-1234",
        ),
        (
            Reason::EkCertUntrusted {
                detail: "the manifest has no EK certificate".into(),
            },
            "no EK certificate chaining to a trusted TPM-manufacturer root (the manifest has no \
             EK certificate)",
        ),
        (
            Reason::Operator {
                text: "tamper report".into(),
            },
            "tamper report",
        ),
        (Reason::Legacy("PCR 4 changed".into()), "PCR 4 changed"),
        (
            Defect::EnrolledAkUnusable("TPMT_PUBLIC.type is truncated at byte offset 0".into())
                .into(),
            "enrolled AK unusable: TPMT_PUBLIC.type is truncated at byte offset 0",
        ),
        (
            Defect::FirmwarePcrUnusable(17).into(),
            "firmware PCR 17 cannot hold measurements (8-16 or 23)",
        ),
        (
            Defect::FirmwareListMalformed("firmware list has 4097 entries".into()).into(),
            "firmware list has 4097 entries",
        ),
        (
            Defect::PcrValuesMalformed("duplicate PCR 3".into()).into(),
            "PCR values: duplicate PCR 3",
        ),
        (
            Defect::PcrNotCovered(7).into(),
            "evidence does not cover PCR 7",
        ),
        (
            Defect::of_quote(QuoteError::NotAQuote { st: 0x8017 }).into(),
            "attestation structure malformed: attestation type is 0x8017, not a quote \
             (TPM_ST_ATTEST_QUOTE, 0x8018)",
        ),
        (
            Defect::of_quote(QuoteError::SignatureInvalid).into(),
            "quote: quote signature does not verify with the attestation key",
        ),
        (
            Defect::of_quote(QuoteError::NonceMismatch).into(),
            "quote: quote nonce (extraData) does not match the nonce the verifier issued: \
             replayed or stale",
        ),
        (
            Defect::of_quote(QuoteError::PcrDigestMismatch {
                quoted: "aa".into(),
                expected: "bb".into(),
            })
            .into(),
            "quote: quoted PCR digest aa does not match bb, the digest of the expected PCR \
             values: the PCRs hold other values than expected",
        ),
        (
            Defect::of_quote(QuoteError::SignatureHashMismatch {
                expected: 0x000b,
                found: 0x0004,
            })
            .into(),
            "quote: quote signature hash is 0x0004, but the attestation key's scheme uses 0x000b",
        ),
        (
            Defect::WrongSigner.into(),
            "quote was not signed by the enrolled AK under the enrolled EK",
        ),
        (
            Defect::FirmwareReplayMismatch(14).into(),
            "firmware list does not replay to PCR 14: it was extended with measurements the list \
             does not show",
        ),
        (
            Defect::EventLogMalformed("event 3 at offset 9: truncated".into()).into(),
            "event log malformed: event 3 at offset 9: truncated",
        ),
        (
            Defect::EventLogNoSha256.into(),
            "event log has no sha256 bank, so it cannot be checked against the quote",
        ),
        (
            Defect::EventLogMismatch(vec![4, 7]).into(),
            "event log does not match the quote: PCR 4, 7",
        ),
        (
            Defect::EventLogUnreplayable(14).into(),
            "event log cannot be replayed for PCR 14",
        ),
        (
            Defect::EventLogChanged { boot: 3, held: 100 }.into(),
            "log changed within a boot: the log sent for TPM boot 3 does not begin with the 100 \
             bytes accepted earlier in that boot",
        ),
        (
            Defect::EventLogUnknownBoot {
                boot: 3,
                offset: 512,
            }
            .into(),
            "event log part at offset 512 continues a log of TPM boot 3 that the verifier does \
             not hold",
        ),
        (
            Defect::Clock(ClockError::ResetCountDecreased {
                previous: 5,
                current: 4,
            })
            .into(),
            "TPM clock: TPM resetCount went down from 5 to 4: the TPM was cleared or this is a \
             replayed or foreign quote",
        ),
        (
            Defect::InventoryMalformed("inventory lists are not sorted".into()).into(),
            "hardware inventory malformed: inventory lists are not sorted",
        ),
        (
            Defect::FirmwareVersionMalformed(
                "reported firmware version \"a@b\" must be 1 to 128 printable characters without '@'"
                    .into(),
            )
            .into(),
            "reported firmware version \"a@b\" must be 1 to 128 printable characters without '@'",
        ),
    ]
}

#[test]
fn every_kind_renders_the_operator_text() {
    for (r, text) in examples() {
        assert_eq!(r.to_string(), text, "{}", r.code());
    }
}

#[test]
fn every_code_is_listed_once_and_has_an_example() {
    let mut listed: Vec<_> = Reason::CODES.to_vec();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(listed.len(), Reason::CODES.len(), "a code is listed twice");
    let seen: std::collections::BTreeSet<_> = examples().iter().map(|(r, _)| r.code()).collect();
    for code in Reason::CODES {
        assert!(seen.contains(code), "no example of {code}");
    }
    for code in &seen {
        assert!(
            Reason::CODES.contains(code),
            "{code} is not in Reason::CODES"
        );
    }
}

#[test]
fn stored_reasons_read_back_equal_and_are_tagged_with_their_code() {
    for (r, _) in examples() {
        let json = serde_json::to_value(&r).unwrap();
        match &r {
            Reason::Legacy(text) => assert_eq!(json, serde_json::json!(text)),
            _ => assert_eq!(json["code"], r.code(), "{json}"),
        }
        assert_eq!(serde_json::from_value::<Reason>(json).unwrap(), r);
        let cbor = crate::wire::to_cbor(&r);
        assert_eq!(crate::wire::from_cbor_exact::<Reason>(&cbor).unwrap(), r);
    }
}

#[test]
fn an_unknown_code_does_not_read_as_a_reason() {
    assert!(serde_json::from_str::<Reason>(r#"{"code": "no_such_reason"}"#).is_err());
    assert!(serde_json::from_str::<Reason>(r#"{"code": "pcr_not_quoted"}"#).is_err());
}

#[test]
fn lists_join_and_map_in_order() {
    let rs = vec![
        Reason::SecureBootDisabled,
        Reason::Evidence(Defect::WrongSigner),
    ];
    assert_eq!(codes(&rs), ["secure_boot_disabled", "wrong_signer"]);
    assert_eq!(
        join(&rs),
        "Secure Boot is disabled; quote was not signed by the enrolled AK under the enrolled EK"
    );
    assert_eq!(texts(&rs).len(), 2);
}

#[test]
fn legacy_text_counts_as_the_reasons_it_spells() {
    let typed = vec![Reason::PcrNotQuoted { index: 9 }, Reason::DbxMissing];
    let text = vec![Reason::Legacy(join(&typed))];
    assert!(Reason::same(&typed, &text));
    assert!(Reason::same(&typed, &typed.clone()));
    assert!(!Reason::same(&typed, &typed[..1]));
    assert!(!Reason::same(&[Reason::Legacy("x".into())], &typed));
}

/// The "Reason codes" table in docs/protocol.md: the rows between its heading and the next one.
fn documented_codes() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc
        .split("\n## Reason codes\n")
        .nth(1)
        .expect("docs/protocol.md has a \"## Reason codes\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_documented_code_table_matches_the_codes() {
    let documented = documented_codes();
    let codes: Vec<String> = Reason::CODES.iter().map(|c| (*c).to_owned()).collect();
    assert_eq!(documented, codes);
}
