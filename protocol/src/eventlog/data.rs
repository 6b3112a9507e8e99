//! [`EventData`]: the event data decoded according to the event type.
//!
//! Decoding never fails: data vouch has no decoder for is [`EventData::Raw`], data that does not
//! parse as its type says is [`EventData::Malformed`] with the reason; either way the bytes stay
//! in [`Event::data`](super::Event::data).

use super::efi::{self, FirmwareBlob, GptEvent, HandoffTables, ImageLoad, UefiVariable};
use super::reader::Reader;
use super::text::{any_text, ascii_lossy, printable_ascii, utf16_text};
use super::{EventType, SpecIdEvent};

/// The data of an `EV_NO_ACTION` event that sets the locality PCR 0 starts from.
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";
/// The data of an `EV_SEPARATOR` that reports a firmware error.
pub(crate) const ERROR_SEPARATOR: u32 = 0xffff_ffff;

/// Event data decoded by event type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventData {
    /// No decoder for this event type (the bytes are in [`Event::data`](super::Event::data)).
    Raw,
    /// The data does not parse as its event type says; the reason.
    Malformed(&'static str),
    /// The Spec ID header of a crypto-agile log.
    SpecId(SpecIdEvent),
    /// `EV_NO_ACTION` "StartupLocality": the locality of TPM2_Startup, which PCR 0 starts from.
    StartupLocality(u8),
    /// Another `EV_NO_ACTION` event with a 16-byte ASCII signature (e.g. `NvIndexInstance`,
    /// `SP800-155 Event3`).
    NoAction { signature: String },
    /// `EV_S_CRTM_VERSION` as a UTF-16 string (other encodings stay [`EventData::Raw`]).
    CrtmVersion(String),
    /// `EV_POST_CODE` / `EV_POST_CODE2`.
    PostCode(PostCode),
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB` / `EV_EFI_PLATFORM_FIRMWARE_BLOB2`.
    FirmwareBlob(FirmwareBlob),
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG`, `_BOOT`, `_BOOT2`, `_AUTHORITY`.
    Variable(UefiVariable),
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`, `_BOOT_SERVICES_DRIVER`, `_RUNTIME_SERVICES_DRIVER`.
    ImageLoad(ImageLoad),
    /// `EV_SEPARATOR`; `error` is set for the 0xFFFFFFFF error separator.
    Separator { value: u32, error: bool },
    /// `EV_ACTION` / `EV_EFI_ACTION` text.
    Action(String),
    /// `EV_IPL` text: GRUB commands and files, kernel command lines (ASCII or UTF-16, NULs
    /// trimmed).
    Ipl(String),
    /// `EV_EFI_GPT_EVENT`.
    Gpt(GptEvent),
    /// `EV_EFI_HANDOFF_TABLES` / `EV_EFI_HANDOFF_TABLES2`.
    HandoffTables(HandoffTables),
    /// `EV_EVENT_TAG` (`TCG_PCClientTaggedEvent`).
    Tagged { id: u32, data: Vec<u8> },
}

/// The two forms of `EV_POST_CODE` data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostCode {
    /// A description such as `ACPI DATA`, `SMM CODE` or `Embedded UEFI Driver`.
    Text(String),
    /// The firmware region measured.
    Blob(FirmwareBlob),
}

fn or_malformed<T>(
    decoded: Result<T, efi::Malformed>,
    wrap: impl FnOnce(T) -> EventData,
) -> EventData {
    decoded.map_or_else(EventData::Malformed, wrap)
}

/// Decodes `data` according to `event_type`.
pub(crate) fn decode(event_type: EventType, data: &[u8]) -> EventData {
    match event_type {
        EventType::NO_ACTION => no_action(data),
        EventType::S_CRTM_VERSION => {
            utf16_text(data).map_or(EventData::Raw, EventData::CrtmVersion)
        }
        EventType::POST_CODE => post_code(data, efi::firmware_blob),
        EventType::POST_CODE2 => post_code(data, efi::firmware_blob2),
        EventType::EFI_PLATFORM_FIRMWARE_BLOB => {
            or_malformed(efi::firmware_blob(data), EventData::FirmwareBlob)
        }
        EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => {
            or_malformed(efi::firmware_blob2(data), EventData::FirmwareBlob)
        }
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2 => {
            or_malformed(efi::decode_variable(data, false), EventData::Variable)
        }
        EventType::EFI_VARIABLE_AUTHORITY => {
            or_malformed(efi::decode_variable(data, true), EventData::Variable)
        }
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => {
            or_malformed(efi::image_load(data), EventData::ImageLoad)
        }
        EventType::SEPARATOR => match <[u8; 4]>::try_from(data) {
            Ok(bytes) => {
                let value = u32::from_le_bytes(bytes);
                EventData::Separator {
                    value,
                    error: value == ERROR_SEPARATOR,
                }
            }
            Err(_) => EventData::Malformed("separator data is not 4 bytes"),
        },
        EventType::ACTION | EventType::EFI_ACTION => EventData::Action(ascii_lossy(data)),
        EventType::IPL => EventData::Ipl(any_text(data)),
        EventType::EFI_GPT_EVENT => or_malformed(efi::gpt(data), EventData::Gpt),
        EventType::EFI_HANDOFF_TABLES => {
            or_malformed(efi::handoff_tables(data, false), EventData::HandoffTables)
        }
        EventType::EFI_HANDOFF_TABLES2 => {
            or_malformed(efi::handoff_tables(data, true), EventData::HandoffTables)
        }
        EventType::EVENT_TAG => tagged(data),
        _ => EventData::Raw,
    }
}

fn no_action(data: &[u8]) -> EventData {
    if let Some(rest) = data.strip_prefix(STARTUP_LOCALITY) {
        return match rest {
            [locality] => EventData::StartupLocality(*locality),
            _ => EventData::Malformed("StartupLocality data is not one byte"),
        };
    }
    match data.get(..16).and_then(printable_ascii) {
        Some(signature) => EventData::NoAction { signature },
        None => EventData::Raw,
    }
}

fn post_code(data: &[u8], blob: fn(&[u8]) -> Result<FirmwareBlob, efi::Malformed>) -> EventData {
    if let Some(text) = printable_ascii(data) {
        return EventData::PostCode(PostCode::Text(text));
    }
    blob(data).map_or(EventData::Raw, |b| EventData::PostCode(PostCode::Blob(b)))
}

fn tagged(data: &[u8]) -> EventData {
    let mut r = Reader::new(data);
    let (Some(id), Some(size)) = (r.u32(), r.u32()) else {
        return EventData::Malformed("TCG_PCClientTaggedEvent header truncated");
    };
    match r.take_u64(u64::from(size)) {
        Some(tag_data) if r.is_empty() => EventData::Tagged {
            id,
            data: tag_data.to_vec(),
        },
        _ => EventData::Malformed("taggedEventDataSize does not match the event"),
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
