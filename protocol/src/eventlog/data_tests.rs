//! Unit tests of the event-data decoders and summaries, one per event type, plus regression
//! tests for the real-world quirks found in the corpus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::eventlog::testlog::{signature_list, utf16z, variable};
use crate::eventlog::{DevicePathNode, Event, Guid, SignatureType, VariableValue};

fn event(event_type: EventType, data: &[u8]) -> Event {
    Event {
        index: 1,
        offset: 0,
        pcr: 0,
        event_type,
        digests: Vec::new(),
        data: data.to_vec(),
        decoded: decode(event_type, data),
    }
}

fn summary_of(event_type: EventType, data: &[u8]) -> String {
    event(event_type, data).summary()
}

fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn no_action_events() {
    let mut locality = b"StartupLocality\0".to_vec();
    locality.push(3);
    assert_eq!(
        decode(EventType::NO_ACTION, &locality),
        EventData::StartupLocality(3)
    );
    assert_eq!(
        summary_of(EventType::NO_ACTION, &locality),
        "StartupLocality = 3"
    );
    locality.push(0);
    assert!(matches!(
        decode(EventType::NO_ACTION, &locality),
        EventData::Malformed(_)
    ));
    let mut nv = b"NvIndexInstance\0".to_vec();
    nv.extend_from_slice(&[9, 9, 9]);
    assert_eq!(
        decode(EventType::NO_ACTION, &nv),
        EventData::NoAction {
            signature: "NvIndexInstance".into()
        }
    );
    assert_eq!(decode(EventType::NO_ACTION, &[0xff; 20]), EventData::Raw);
}

#[test]
fn crtm_version() {
    assert_eq!(
        decode(
            EventType::S_CRTM_VERSION,
            &utf16z("GCE Virtual Firmware v1")
        ),
        EventData::CrtmVersion("GCE Virtual Firmware v1".into())
    );
    assert_eq!(
        summary_of(EventType::S_CRTM_VERSION, &[0, 0]),
        "CRTM version (empty)"
    );
}

#[test]
fn crtm_version_guid_is_not_decoded_as_utf16_text() {
    // Lenovo/HP-style CRTM version: a 16-byte GUID, which is also valid UTF-16 (of CJK
    // characters) but has no NUL terminator.
    let guid = hex::decode("1efb6b540c1d5540a4ad4ef4bf17b83a").unwrap();
    assert_eq!(decode(EventType::S_CRTM_VERSION, &guid), EventData::Raw);
    assert_eq!(
        summary_of(EventType::S_CRTM_VERSION, &guid),
        "1efb6b540c1d5540a4ad4ef4bf17b83a"
    );
}

#[test]
fn post_codes_and_firmware_blobs() {
    let blob = u64s(&[0xffa9_0000, 0x35_0000]);
    assert_eq!(
        decode(EventType::POST_CODE, &blob),
        EventData::PostCode(PostCode::Blob(FirmwareBlob {
            description: None,
            base: 0xffa9_0000,
            length: 0x35_0000
        }))
    );
    assert_eq!(
        summary_of(EventType::POST_CODE, &blob),
        "firmware blob base 0xffa90000 length 0x350000"
    );
    assert_eq!(
        decode(EventType::POST_CODE, b"ACPI DATA"),
        EventData::PostCode(PostCode::Text("ACPI DATA".into()))
    );
    assert_eq!(decode(EventType::POST_CODE, &[0xff; 5]), EventData::Raw);
    assert!(matches!(
        decode(EventType::EFI_PLATFORM_FIRMWARE_BLOB, &blob),
        EventData::FirmwareBlob(_)
    ));
    assert!(matches!(
        decode(EventType::EFI_PLATFORM_FIRMWARE_BLOB, &blob[..15]),
        EventData::Malformed(_)
    ));

    let mut blob2 = vec![4];
    blob2.extend_from_slice(b"SBIO");
    blob2.extend(u64s(&[0x1000, 0x2000]));
    assert_eq!(
        summary_of(EventType::EFI_PLATFORM_FIRMWARE_BLOB2, &blob2),
        "SBIO (base 0x1000 length 0x2000)"
    );
    assert!(matches!(
        decode(EventType::POST_CODE2, &blob2),
        EventData::PostCode(PostCode::Blob(_))
    ));
    blob2[0] = 200;
    assert!(matches!(
        decode(EventType::EFI_PLATFORM_FIRMWARE_BLOB2, &blob2),
        EventData::Malformed(_)
    ));
}

#[test]
fn secure_boot_variables() {
    let on = variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]);
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, &on) else {
        panic!("not a variable");
    };
    assert_eq!(
        (var.vendor, var.name.as_str(), &var.data[..]),
        (Guid::GLOBAL_VARIABLE, "SecureBoot", &[1][..])
    );
    assert_eq!(var.value, VariableValue::Boolean(true));
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &on),
        "SecureBoot = enabled"
    );
    let off = variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[0]);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &off),
        "SecureBoot = disabled"
    );
    let absent = variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[]);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &absent),
        "SecureBoot (empty)"
    );
    let bad = variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[2]);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &bad),
        "SecureBoot: malformed (not a one-byte boolean)"
    );
    // The same name under another vendor is not the Secure Boot switch.
    let other = variable(Guid::SHIM_LOCK, "SecureBoot", &[1]);
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, &other) else {
        panic!("not a variable");
    };
    assert_eq!(var.value, VariableValue::Unknown);
}

#[test]
fn signature_databases_count_entries_by_type() {
    let dbx: Vec<u8> = [
        signature_list(Guid::CERT_SHA256, 32, 300),
        signature_list(Guid::CERT_SHA256, 32, 71),
    ]
    .concat();
    let data = variable(Guid::IMAGE_SECURITY_DATABASE, "dbx", &dbx);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &data),
        "dbx: 371 sha256 hashes"
    );
    let db = [
        signature_list(Guid::CERT_X509, 900, 2),
        signature_list(Guid::CERT_SHA256, 32, 1),
    ]
    .concat();
    let data = variable(Guid::IMAGE_SECURITY_DATABASE, "db", &db);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &data),
        "db: 1 sha256 hash, 2 x509 certs"
    );
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, &data) else {
        panic!("not a variable");
    };
    let VariableValue::SignatureDatabase(lists) = var.value else {
        panic!("not a database");
    };
    assert_eq!(lists[0].signature_type, SignatureType::X509);
    assert_eq!((lists[0].count, lists[0].signature_size), (2, 916));

    let pk = variable(
        Guid::GLOBAL_VARIABLE,
        "PK",
        &signature_list(Guid::CERT_X509, 10, 1),
    );
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &pk),
        "PK: 1 x509 cert"
    );
}

#[test]
fn malformed_signature_lists_are_reported_not_trusted() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("EFI_SIGNATURE_LIST header truncated", vec![0; 20]),
        ("SignatureListSize smaller than the list header", {
            let mut l = signature_list(Guid::CERT_SHA256, 32, 1);
            l[16..20].copy_from_slice(&10u32.to_le_bytes());
            l
        }),
        ("SignatureSize smaller than the owner GUID", {
            let mut l = signature_list(Guid::CERT_SHA256, 32, 1);
            l[24..28].copy_from_slice(&0u32.to_le_bytes());
            l
        }),
        ("signatures do not fill the list", {
            let mut l = signature_list(Guid::CERT_SHA256, 32, 2);
            l[24..28].copy_from_slice(&47u32.to_le_bytes());
            l
        }),
    ];
    for (reason, lists) in cases {
        let data = variable(Guid::IMAGE_SECURITY_DATABASE, "dbx", &lists);
        let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, &data) else {
            panic!("not a variable");
        };
        assert_eq!(var.value, VariableValue::Malformed(reason));
    }
}

#[test]
fn boot_variables() {
    let order = variable(Guid::GLOBAL_VARIABLE, "BootOrder", &[1, 0, 0, 0, 0x0a, 0]);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_BOOT, &order),
        "BootOrder = 0001,0000,000A"
    );

    let mut path = vec![4, 4, 0, 0];
    path.extend(utf16z("\\EFI\\ubuntu\\shimx64.efi"));
    let len = u16::try_from(path.len()).unwrap();
    path[2..4].copy_from_slice(&len.to_le_bytes());
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    let mut option = 1u32.to_le_bytes().to_vec();
    option.extend_from_slice(&u16::try_from(path.len()).unwrap().to_le_bytes());
    option.extend(utf16z("ubuntu"));
    option.extend_from_slice(&path);
    option.extend_from_slice(b"optional");
    let boot = variable(Guid::GLOBAL_VARIABLE, "Boot0003", &option);
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_BOOT2, &boot),
        "Boot0003 = ubuntu: \\EFI\\ubuntu\\shimx64.efi"
    );
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_BOOT, &boot) else {
        panic!("not a variable");
    };
    let VariableValue::LoadOption(option) = var.value else {
        panic!("not a load option");
    };
    assert_eq!((option.attributes, option.optional_data_len), (1, 8));

    // An unterminated description is malformed; a lower-case name is not a boot option.
    let bad = variable(
        Guid::GLOBAL_VARIABLE,
        "Boot0004",
        &[1, 0, 0, 0, 0, 0, b'a', 0],
    );
    assert!(summary_of(EventType::EFI_VARIABLE_BOOT, &bad).contains("malformed"));
    let odd = variable(Guid::GLOBAL_VARIABLE, "Boot000a", &[1, 2, 3]);
    assert!(summary_of(EventType::EFI_VARIABLE_BOOT, &odd).ends_with("3 bytes"));
}

#[test]
fn authority_events() {
    let mut entry = Guid::CERT_X509.0.to_vec();
    entry.extend_from_slice(&[0x30; 100]);
    let db = variable(Guid::IMAGE_SECURITY_DATABASE, "db", &entry);
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_AUTHORITY, &db) else {
        panic!("not a variable");
    };
    assert_eq!(
        var.value,
        VariableValue::SignatureData {
            owner: Guid::CERT_X509,
            data_len: 100
        }
    );
    let sbat = variable(Guid::SHIM_LOCK, "SbatLevel", b"sbat,1,2021030218\n");
    assert_eq!(
        summary_of(EventType::EFI_VARIABLE_AUTHORITY, &sbat),
        "SbatLevel = sbat,1,2021030218\\n"
    );
}

#[test]
fn shim_authority_with_trailing_bytes_still_decodes() {
    // event-postcode.bin, event 40: shim logged 6 bytes after the "Shim" certificate.
    let mut data = variable(Guid::SHIM_LOCK, "Shim", &[0x30; 50]);
    data.extend_from_slice(&[0; 6]);
    let EventData::Variable(var) = decode(EventType::EFI_VARIABLE_AUTHORITY, &data) else {
        panic!("not a variable");
    };
    assert_eq!(
        (var.name.as_str(), var.data.len(), var.trailing_bytes),
        ("Shim", 50, 6)
    );
}

#[test]
fn malformed_variables_keep_their_bytes() {
    let mut data = variable(Guid::GLOBAL_VARIABLE, "SecureBoot", &[1]);
    data.truncate(40);
    let e = event(EventType::EFI_VARIABLE_DRIVER_CONFIG, &data);
    assert_eq!(
        e.decoded,
        EventData::Malformed("UnicodeName longer than the event")
    );
    assert_eq!(e.data, data);
    assert_eq!(
        e.summary(),
        "malformed 40 bytes: UnicodeName longer than the event"
    );
    let mut huge = Guid::GLOBAL_VARIABLE.0.to_vec();
    huge.extend(u64::MAX.to_le_bytes());
    huge.extend(u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(EventType::EFI_VARIABLE_BOOT, &huge),
        EventData::Malformed(_)
    ));
}

#[test]
fn image_load_events() {
    let mut path = vec![4, 4, 0, 0];
    path.extend(utf16z("\\EFI\\BOOT\\BOOTX64.EFI"));
    let len = u16::try_from(path.len()).unwrap();
    path[2..4].copy_from_slice(&len.to_le_bytes());
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    let mut data = u64s(&[
        0x7d00_0000,
        0x10_0000,
        0,
        u64::try_from(path.len()).unwrap(),
    ]);
    data.extend_from_slice(&path);
    let EventData::ImageLoad(image) = decode(EventType::EFI_BOOT_SERVICES_APPLICATION, &data)
    else {
        panic!("not an image");
    };
    assert_eq!((image.location, image.length), (0x7d00_0000, 0x10_0000));
    assert_eq!(
        image.device_path.nodes,
        vec![DevicePathNode::FilePath("\\EFI\\BOOT\\BOOTX64.EFI".into())]
    );
    assert_eq!(
        summary_of(EventType::EFI_BOOT_SERVICES_APPLICATION, &data),
        "\\EFI\\BOOT\\BOOTX64.EFI"
    );
    let no_path = u64s(&[0, 0xac_7638, 0, 0]);
    assert_eq!(
        summary_of(EventType::EFI_BOOT_SERVICES_APPLICATION, &no_path),
        "image of 0xac7638 bytes, no device path"
    );
    let mut too_long = no_path.clone();
    too_long[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        decode(EventType::EFI_RUNTIME_SERVICES_DRIVER, &too_long),
        EventData::Malformed("LengthOfDevicePath longer than the event")
    );
}

#[test]
fn separators() {
    assert_eq!(
        decode(EventType::SEPARATOR, &[0; 4]),
        EventData::Separator {
            value: 0,
            error: false
        }
    );
    assert_eq!(summary_of(EventType::SEPARATOR, &[0; 4]), "separator");
    assert_eq!(
        summary_of(EventType::SEPARATOR, &[0xff; 4]),
        "error separator (0xffffffff)"
    );
    assert_eq!(
        summary_of(EventType::SEPARATOR, &[1, 0, 0, 0]),
        "separator 0x00000001"
    );
    assert!(matches!(
        decode(EventType::SEPARATOR, &[0; 3]),
        EventData::Malformed(_)
    ));
}

#[test]
fn actions_and_ipl_text() {
    assert_eq!(
        decode(EventType::EFI_ACTION, b"Exit Boot Services Invocation"),
        EventData::Action("Exit Boot Services Invocation".into())
    );
    assert_eq!(
        decode(EventType::ACTION, b"Hello\0"),
        EventData::Action("Hello".into())
    );
    assert_eq!(
        summary_of(EventType::IPL, b"grub_cmd: linux /vmlinuz root=/dev/sda1\0"),
        "grub_cmd: linux /vmlinuz root=/dev/sda1"
    );
    assert_eq!(
        decode(EventType::IPL, &utf16z(" quiet splash")),
        EventData::Ipl(" quiet splash".into())
    );
    assert_eq!(summary_of(EventType::IPL, b"a\nb\0"), "a\\nb");
}

#[test]
fn odd_length_utf16_ipl_from_systemd_boot_is_text() {
    // event-arch-linux.bin, event 24: a UTF-16 kernel command line of odd length (365).
    let mut data = utf16z("initrd=\\intel-ucode.img quiet");
    data.push(0);
    assert_eq!(
        decode(EventType::IPL, &data),
        EventData::Ipl("initrd=\\intel-ucode.img quiet".into())
    );
}

#[test]
fn gpt_events() {
    let disk = Guid::CERT_SHA1;
    let mut header = b"EFI PART".to_vec();
    header.extend_from_slice(&0x0001_0000u32.to_le_bytes());
    header.extend_from_slice(&[0; 44]);
    header.extend_from_slice(&disk.0);
    header.extend(u64s(&[2]));
    header.extend_from_slice(&128u32.to_le_bytes());
    header.extend_from_slice(&128u32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(header.len(), 92);
    let mut data = header.clone();
    data.extend(u64s(&[2]));
    for name in ["EFI System", "root"] {
        let mut entry = Guid::CERT_X509.0.to_vec();
        entry.extend_from_slice(&disk.0);
        entry.extend(u64s(&[2048, 4095, 0]));
        let mut utf16 = utf16z(name);
        utf16.resize(72, 0);
        entry.extend_from_slice(&utf16);
        data.extend_from_slice(&entry);
    }
    let EventData::Gpt(gpt) = decode(EventType::EFI_GPT_EVENT, &data) else {
        panic!("not a GPT event");
    };
    assert_eq!(
        (gpt.disk_guid, gpt.partition_entries, gpt.partitions.len()),
        (disk, 128, 2)
    );
    assert_eq!(gpt.partitions[1].name, "root");
    assert_eq!(
        summary_of(EventType::EFI_GPT_EVENT, &data),
        format!("GPT disk {disk}: 2 partitions")
    );
    // A partition count that does not match the data.
    let mut bad = header.clone();
    bad.extend(u64s(&[u64::MAX]));
    assert!(matches!(
        decode(EventType::EFI_GPT_EVENT, &bad),
        EventData::Malformed(_)
    ));
    let mut bad = header;
    bad[84..88].copy_from_slice(&0u32.to_le_bytes());
    bad.extend(u64s(&[0]));
    assert_eq!(
        decode(EventType::EFI_GPT_EVENT, &bad),
        EventData::Malformed("SizeOfPartitionEntry smaller than 128")
    );
}

#[test]
fn handoff_tables_and_tagged_events() {
    let mut tables = u64s(&[1]);
    tables.extend_from_slice(&Guid::CERT_SHA256.0);
    tables.extend(u64s(&[0x7f00_0000]));
    assert_eq!(
        summary_of(EventType::EFI_HANDOFF_TABLES, &tables),
        format!("1 configuration table: {}", Guid::CERT_SHA256)
    );
    let mut tables2 = vec![6];
    tables2.extend_from_slice(b"SMBIOS");
    tables2.extend_from_slice(&tables);
    let EventData::HandoffTables(t) = decode(EventType::EFI_HANDOFF_TABLES2, &tables2) else {
        panic!("not handoff tables");
    };
    assert_eq!(
        (t.description.as_deref(), t.tables[0].1),
        (Some("SMBIOS"), 0x7f00_0000)
    );
    tables.truncate(20);
    assert!(matches!(
        decode(EventType::EFI_HANDOFF_TABLES, &tables),
        EventData::Malformed(_)
    ));

    let mut tag = 0x8f3b_22ecu32.to_le_bytes().to_vec();
    tag.extend_from_slice(&13u32.to_le_bytes());
    tag.extend_from_slice(b"Linux initrd\0");
    assert_eq!(
        summary_of(EventType::EVENT_TAG, &tag),
        "tag 0x8f3b22ec: Linux initrd"
    );
    tag.push(0);
    assert!(matches!(
        decode(EventType::EVENT_TAG, &tag),
        EventData::Malformed(_)
    ));
}

#[test]
fn unknown_types_stay_raw() {
    assert_eq!(decode(EventType(0x1234), b"abc"), EventData::Raw);
    assert_eq!(
        summary_of(EventType(0x1234), b"GCE NonHostInfo\0\0"),
        "GCE NonHostInfo"
    );
    assert_eq!(summary_of(EventType::NONHOST_INFO, &[1, 2]), "0102");
    assert_eq!(
        summary_of(EventType::CPU_MICROCODE, &[0xff; 40]),
        "40 bytes"
    );
    assert_eq!(summary_of(EventType::CPU_MICROCODE, &[]), "(no data)");
}
