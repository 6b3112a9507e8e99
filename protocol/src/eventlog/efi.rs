//! Decoders for the UEFI structures measured into the event log: `UEFI_VARIABLE_DATA` (with
//! `EFI_SIGNATURE_LIST` databases, `BootOrder` and `EFI_LOAD_OPTION` interpreted),
//! `UEFI_IMAGE_LOAD_EVENT`, `UEFI_PLATFORM_FIRMWARE_BLOB(2)`, `UEFI_GPT_DATA` and
//! `UEFI_HANDOFF_TABLE_POINTERS(2)`.
//!
//! Each decoder returns `Err(reason)` on malformed input; the caller keeps the raw bytes.

use super::devicepath::DevicePath;
use super::guid::Guid;
use super::reader::Reader;
use super::text::{ascii_lossy, utf16_lossy_until_nul};

/// A decoder's reason for rejecting event data.
pub(crate) type Malformed = &'static str;

/// A measured UEFI variable (`UEFI_VARIABLE_DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UefiVariable {
    /// The vendor GUID (`VariableName` in the TCG structure).
    pub vendor: Guid,
    /// The variable name (`UnicodeName`), trailing NULs removed.
    pub name: String,
    /// `VariableData`.
    pub data: Vec<u8>,
    /// What vouch makes of `data` for the variables it knows.
    pub value: VariableValue,
    /// Bytes in the event after `VariableData`, which are ignored. Should be 0; some versions
    /// of shim log a few extra bytes after their `EV_EFI_VARIABLE_AUTHORITY` data.
    pub trailing_bytes: usize,
}

/// The interpretation of a known variable's data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VariableValue {
    /// A variable vouch has no interpretation for.
    Unknown,
    /// The variable was measured with no data (it does not exist).
    Empty,
    /// A one-byte boolean: `SecureBoot`, `SetupMode`, `AuditMode`, `DeployedMode`.
    Boolean(bool),
    /// A signature database: `PK`, `KEK`, `db`, `dbx`, `dbt`, `dbr`.
    SignatureDatabase(Vec<SignatureList>),
    /// One `EFI_SIGNATURE_DATA` (the owner and a certificate or hash), as measured by
    /// `EV_EFI_VARIABLE_AUTHORITY` for the `db` entry that authorised an image.
    SignatureData { owner: Guid, data_len: usize },
    /// `BootOrder`: boot option numbers.
    BootOrder(Vec<u16>),
    /// `Boot####`.
    LoadOption(LoadOption),
    /// Data of a known variable that does not parse; the reason.
    Malformed(&'static str),
}

/// One `EFI_SIGNATURE_LIST` of a signature database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureList {
    pub signature_type: SignatureType,
    /// Bytes per entry, owner GUID included.
    pub signature_size: u32,
    /// Number of entries.
    pub count: usize,
}

/// The `SignatureType` of a signature list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SignatureType {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Rsa2048,
    Rsa2048Sha1,
    Rsa2048Sha256,
    X509,
    X509Sha256,
    X509Sha384,
    X509Sha512,
    Other(Guid),
}

impl SignatureType {
    fn from_guid(guid: Guid) -> Self {
        match guid {
            Guid::CERT_SHA1 => Self::Sha1,
            Guid::CERT_SHA224 => Self::Sha224,
            Guid::CERT_SHA256 => Self::Sha256,
            Guid::CERT_SHA384 => Self::Sha384,
            Guid::CERT_SHA512 => Self::Sha512,
            Guid::CERT_RSA2048 => Self::Rsa2048,
            Guid::CERT_RSA2048_SHA1 => Self::Rsa2048Sha1,
            Guid::CERT_RSA2048_SHA256 => Self::Rsa2048Sha256,
            Guid::CERT_X509 => Self::X509,
            Guid::CERT_X509_SHA256 => Self::X509Sha256,
            Guid::CERT_X509_SHA384 => Self::X509Sha384,
            Guid::CERT_X509_SHA512 => Self::X509Sha512,
            other => Self::Other(other),
        }
    }

    /// A short noun for summaries, singular and plural: `("sha256 hash", "sha256 hashes")`.
    pub fn noun(self) -> (&'static str, &'static str) {
        match self {
            Self::Sha1 => ("sha1 hash", "sha1 hashes"),
            Self::Sha224 => ("sha224 hash", "sha224 hashes"),
            Self::Sha256 => ("sha256 hash", "sha256 hashes"),
            Self::Sha384 => ("sha384 hash", "sha384 hashes"),
            Self::Sha512 => ("sha512 hash", "sha512 hashes"),
            Self::Rsa2048 => ("rsa2048 key", "rsa2048 keys"),
            Self::Rsa2048Sha1 => ("rsa2048-sha1 signature", "rsa2048-sha1 signatures"),
            Self::Rsa2048Sha256 => ("rsa2048-sha256 signature", "rsa2048-sha256 signatures"),
            Self::X509 => ("x509 cert", "x509 certs"),
            Self::X509Sha256 => ("x509 sha256 tbs hash", "x509 sha256 tbs hashes"),
            Self::X509Sha384 => ("x509 sha384 tbs hash", "x509 sha384 tbs hashes"),
            Self::X509Sha512 => ("x509 sha512 tbs hash", "x509 sha512 tbs hashes"),
            Self::Other(_) => ("other entry", "other entries"),
        }
    }
}

/// An `EFI_LOAD_OPTION` (the data of a `Boot####` variable).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOption {
    pub attributes: u32,
    pub description: String,
    pub device_path: DevicePath,
    /// Length of `OptionalData`.
    pub optional_data_len: usize,
}

/// A `UEFI_IMAGE_LOAD_EVENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageLoad {
    pub location: u64,
    pub length: u64,
    pub link_time_address: u64,
    pub device_path: DevicePath,
}

/// A `UEFI_PLATFORM_FIRMWARE_BLOB`, or a `UEFI_PLATFORM_FIRMWARE_BLOB2` with its description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FirmwareBlob {
    pub description: Option<String>,
    pub base: u64,
    pub length: u64,
}

/// A `UEFI_GPT_DATA`: the partition table header and the partitions measured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GptEvent {
    pub disk_guid: Guid,
    pub revision: u32,
    /// `NumberOfPartitionEntries` of the header (the size of the table on disk).
    pub partition_entries: u32,
    /// The partitions in the event (`NumberOfPartitions`).
    pub partitions: Vec<GptPartition>,
}

/// One `EFI_PARTITION_ENTRY`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GptPartition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub starting_lba: u64,
    pub ending_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// A `UEFI_HANDOFF_TABLE_POINTERS(2)`: the configuration tables handed to the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandoffTables {
    /// The `TableDescription` of the `2` variant.
    pub description: Option<String>,
    /// Each table's vendor GUID and address.
    pub tables: Vec<(Guid, u64)>,
}

/// Decodes a `UEFI_VARIABLE_DATA`; `authority` selects the `EV_EFI_VARIABLE_AUTHORITY` reading
/// of the data (one signature entry rather than a database).
pub(crate) fn decode_variable(data: &[u8], authority: bool) -> Result<UefiVariable, Malformed> {
    let mut r = Reader::new(data);
    let vendor = Guid(r.array().ok_or("UEFI_VARIABLE_DATA header truncated")?);
    let name_chars = r.u64().ok_or("UEFI_VARIABLE_DATA header truncated")?;
    let data_len = r.u64().ok_or("UEFI_VARIABLE_DATA header truncated")?;
    let name_bytes = name_chars
        .checked_mul(2)
        .and_then(|n| r.take_u64(n))
        .ok_or("UnicodeName longer than the event")?;
    let value_bytes = r
        .take_u64(data_len)
        .ok_or("VariableData longer than the event")?;
    let name = utf16_lossy_until_nul(name_bytes);
    let value = interpret_variable(vendor, &name, value_bytes, authority);
    Ok(UefiVariable {
        vendor,
        name,
        data: value_bytes.to_vec(),
        value,
        trailing_bytes: r.remaining(),
    })
}

/// Whether `(vendor, name)` is one of the variables that make up the Secure Boot policy.
pub(crate) fn is_secure_boot_variable(vendor: Guid, name: &str) -> bool {
    match vendor {
        Guid::GLOBAL_VARIABLE => matches!(
            name,
            "SecureBoot" | "PK" | "KEK" | "SetupMode" | "AuditMode" | "DeployedMode"
        ),
        Guid::IMAGE_SECURITY_DATABASE => matches!(name, "db" | "dbx" | "dbt" | "dbr"),
        _ => false,
    }
}

fn interpret_variable(vendor: Guid, name: &str, data: &[u8], authority: bool) -> VariableValue {
    let known = is_secure_boot_variable(vendor, name)
        || (vendor == Guid::GLOBAL_VARIABLE
            && (name == "BootOrder" || boot_option_number(name).is_some()));
    if !known {
        return VariableValue::Unknown;
    }
    if data.is_empty() {
        return VariableValue::Empty;
    }
    let value = if authority {
        if vendor != Guid::IMAGE_SECURITY_DATABASE {
            return VariableValue::Unknown;
        }
        signature_data(data)
    } else {
        match name {
            "SecureBoot" | "SetupMode" | "AuditMode" | "DeployedMode" => match data {
                [0] => Ok(VariableValue::Boolean(false)),
                [1] => Ok(VariableValue::Boolean(true)),
                _ => Err("not a one-byte boolean"),
            },
            "BootOrder" => boot_order(data),
            "PK" | "KEK" | "db" | "dbx" | "dbt" | "dbr" => {
                signature_lists(data).map(VariableValue::SignatureDatabase)
            }
            _ => load_option(data).map(VariableValue::LoadOption),
        }
    };
    value.unwrap_or_else(VariableValue::Malformed)
}

/// The option number of a `Boot####` variable name (four upper-case hex digits).
pub(crate) fn boot_option_number(name: &str) -> Option<u16> {
    let digits = name.strip_prefix("Boot")?;
    let hex_upper = |c: char| c.is_ascii_digit() || ('A'..='F').contains(&c);
    if digits.len() != 4 || !digits.chars().all(hex_upper) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

fn signature_data(data: &[u8]) -> Result<VariableValue, Malformed> {
    let mut r = Reader::new(data);
    let owner = Guid(
        r.array()
            .ok_or("EFI_SIGNATURE_DATA shorter than its owner GUID")?,
    );
    Ok(VariableValue::SignatureData {
        owner,
        data_len: r.remaining(),
    })
}

fn boot_order(data: &[u8]) -> Result<VariableValue, Malformed> {
    let (units, odd) = data.as_chunks::<2>();
    if !odd.is_empty() {
        return Err("BootOrder has an odd length");
    }
    Ok(VariableValue::BootOrder(
        units.iter().map(|&n| u16::from_le_bytes(n)).collect(),
    ))
}

const SIGNATURE_LIST_HEADER_LEN: u32 = 28;
const SIGNATURE_OWNER_LEN: u32 = 16;

/// Parses a sequence of `EFI_SIGNATURE_LIST`s that exactly fills `data`.
pub(crate) fn signature_lists(data: &[u8]) -> Result<Vec<SignatureList>, Malformed> {
    let mut r = Reader::new(data);
    let mut lists = Vec::new();
    while !r.is_empty() {
        let header = (r.array(), r.u32(), r.u32(), r.u32());
        let (Some(guid), Some(list_size), Some(header_size), Some(signature_size)) = header else {
            return Err("EFI_SIGNATURE_LIST header truncated");
        };
        let body_len = list_size
            .checked_sub(SIGNATURE_LIST_HEADER_LEN)
            .ok_or("SignatureListSize smaller than the list header")?;
        let mut body = Reader::new(
            r.take(usize::try_from(body_len).map_err(|_| "SignatureListSize too large")?)
                .ok_or("SignatureListSize larger than the variable")?,
        );
        body.take(usize::try_from(header_size).map_err(|_| "SignatureHeaderSize too large")?)
            .ok_or("SignatureHeaderSize larger than the list")?;
        if signature_size < SIGNATURE_OWNER_LEN {
            return Err("SignatureSize smaller than the owner GUID");
        }
        let entries = body.remaining();
        let size = usize::try_from(signature_size).map_err(|_| "SignatureSize too large")?;
        if !entries.is_multiple_of(size) {
            return Err("signatures do not fill the list");
        }
        lists.push(SignatureList {
            signature_type: SignatureType::from_guid(Guid(guid)),
            signature_size,
            count: entries / size,
        });
    }
    Ok(lists)
}

/// Parses an `EFI_LOAD_OPTION`.
pub(crate) fn load_option(data: &[u8]) -> Result<LoadOption, Malformed> {
    let mut r = Reader::new(data);
    let attributes = r.u32().ok_or("EFI_LOAD_OPTION header truncated")?;
    let path_len = r.u16().ok_or("EFI_LOAD_OPTION header truncated")?;
    let mut description_units = Vec::new();
    loop {
        match r
            .u16()
            .ok_or("EFI_LOAD_OPTION description not terminated")?
        {
            0 => break,
            unit => description_units.push(unit),
        }
    }
    let description = String::from_utf16_lossy(&description_units);
    let path = r
        .take(usize::from(path_len))
        .ok_or("FilePathListLength longer than the option")?;
    Ok(LoadOption {
        attributes,
        description,
        device_path: DevicePath::parse(path),
        optional_data_len: r.remaining(),
    })
}

/// Parses a `UEFI_IMAGE_LOAD_EVENT`. Bytes after the device path are ignored.
pub(crate) fn image_load(data: &[u8]) -> Result<ImageLoad, Malformed> {
    let mut r = Reader::new(data);
    let header = (r.u64(), r.u64(), r.u64(), r.u64());
    let (Some(location), Some(length), Some(link_time_address), Some(path_len)) = header else {
        return Err("UEFI_IMAGE_LOAD_EVENT header truncated");
    };
    let path = r
        .take_u64(path_len)
        .ok_or("LengthOfDevicePath longer than the event")?;
    Ok(ImageLoad {
        location,
        length,
        link_time_address,
        device_path: DevicePath::parse(path),
    })
}

/// Parses a `UEFI_PLATFORM_FIRMWARE_BLOB` (16 bytes: base, length).
pub(crate) fn firmware_blob(data: &[u8]) -> Result<FirmwareBlob, Malformed> {
    let mut r = Reader::new(data);
    let (Some(base), Some(length), true) = (r.u64(), r.u64(), r.remaining() == 0) else {
        return Err("UEFI_PLATFORM_FIRMWARE_BLOB is not 16 bytes");
    };
    Ok(FirmwareBlob {
        description: None,
        base,
        length,
    })
}

/// Parses a `UEFI_PLATFORM_FIRMWARE_BLOB2` (description size, description, base, length).
pub(crate) fn firmware_blob2(data: &[u8]) -> Result<FirmwareBlob, Malformed> {
    let mut r = Reader::new(data);
    let description = r
        .u8()
        .and_then(|n| r.take(usize::from(n)))
        .ok_or("BlobDescription longer than the event")?;
    let (Some(base), Some(length), true) = (r.u64(), r.u64(), r.remaining() == 0) else {
        return Err("UEFI_PLATFORM_FIRMWARE_BLOB2 has the wrong size");
    };
    Ok(FirmwareBlob {
        description: Some(ascii_lossy(description)),
        base,
        length,
    })
}

const GPT_HEADER_LEN: usize = 92;
const GPT_ENTRY_MIN_LEN: u32 = 128;

/// Parses a `UEFI_GPT_DATA`.
pub(crate) fn gpt(data: &[u8]) -> Result<GptEvent, Malformed> {
    let mut r = Reader::new(data);
    let header = r.take(GPT_HEADER_LEN).ok_or("GPT header truncated")?;
    let mut h = Reader::new(header);
    if h.take(8) != Some(b"EFI PART".as_slice()) {
        return Err("GPT header signature is not \"EFI PART\"");
    }
    let revision = h.u32().ok_or("GPT header truncated")?;
    // HeaderSize, HeaderCRC32, Reserved, MyLBA, AlternateLBA, FirstUsableLBA, LastUsableLBA.
    h.take(4 + 4 + 4 + 8 * 4).ok_or("GPT header truncated")?;
    let disk_guid = Guid(h.array().ok_or("GPT header truncated")?);
    let fields = (h.u64(), h.u32(), h.u32());
    let (Some(_entry_lba), Some(partition_entries), Some(entry_size)) = fields else {
        return Err("GPT header truncated");
    };
    let count = r.u64().ok_or("NumberOfPartitions missing")?;
    if entry_size < GPT_ENTRY_MIN_LEN {
        return Err("SizeOfPartitionEntry smaller than 128");
    }
    let entry_size = usize::try_from(entry_size).map_err(|_| "SizeOfPartitionEntry too large")?;
    let total = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(entry_size))
        .ok_or("partition entries longer than the event")?;
    if total != r.remaining() {
        return Err("partition entries do not fill the event");
    }
    let mut partitions = Vec::new();
    while let Some(entry) = r.take(entry_size) {
        let mut e = Reader::new(entry);
        let fields = (e.array(), e.array(), e.u64(), e.u64(), e.u64(), e.take(72));
        let (Some(type_guid), Some(unique), Some(first), Some(last), Some(attributes), Some(name)) =
            fields
        else {
            return Err("partition entry truncated");
        };
        partitions.push(GptPartition {
            type_guid: Guid(type_guid),
            unique_guid: Guid(unique),
            starting_lba: first,
            ending_lba: last,
            attributes,
            name: utf16_lossy_until_nul(name),
        });
    }
    Ok(GptEvent {
        disk_guid,
        revision,
        partition_entries,
        partitions,
    })
}

const CONFIGURATION_TABLE_LEN: usize = 24;

/// Parses a `UEFI_HANDOFF_TABLE_POINTERS`, or with `described` a `UEFI_HANDOFF_TABLE_POINTERS2`.
pub(crate) fn handoff_tables(data: &[u8], described: bool) -> Result<HandoffTables, Malformed> {
    let mut r = Reader::new(data);
    let description = if described {
        let text = r
            .u8()
            .and_then(|n| r.take(usize::from(n)))
            .ok_or("TableDescription longer than the event")?;
        Some(ascii_lossy(text))
    } else {
        None
    };
    let count = r.u64().ok_or("NumberOfTables missing")?;
    let total = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(CONFIGURATION_TABLE_LEN))
        .ok_or("tables longer than the event")?;
    if total != r.remaining() {
        return Err("tables do not fill the event");
    }
    let mut tables = Vec::new();
    while let (Some(guid), Some(address)) = (r.array(), r.u64()) {
        tables.push((Guid(guid), address));
    }
    Ok(HandoffTables {
        description,
        tables,
    })
}
