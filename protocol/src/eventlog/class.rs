//! [`EventClass`]: what an event measured, in the terms a policy engine keys its reference
//! values on — `(PCR, event type name, subject)` → allowed digests.

use serde::Serialize;

use super::data::{EventData, PostCode};
use super::efi::is_secure_boot_variable;
use super::{Event, EventType};

/// The kind of a loaded UEFI image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`: boot loaders, shim, kernels with an EFI stub.
    Application,
    /// `EV_EFI_BOOT_SERVICES_DRIVER`: option ROMs and other boot-time drivers.
    BootServicesDriver,
    /// `EV_EFI_RUNTIME_SERVICES_DRIVER`.
    RuntimeServicesDriver,
}

/// What an event measured. Serialized with a `kind` tag, e.g.
/// `{"kind":"boot_application","image":"application","path":"\\EFI\\BOOT\\BOOTX64.EFI"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventClass {
    /// A firmware volume or other region (`EV_EFI_PLATFORM_FIRMWARE_BLOB(2)`), with the
    /// `BLOB2` description if any.
    FirmwareBlob { description: Option<String> },
    /// A loaded UEFI image; `path` is the file path of its device path (e.g.
    /// `\EFI\BOOT\BOOTX64.EFI`), else the whole device path in text form, else empty (images
    /// loaded from memory). Image events whose data does not decode are not classified.
    BootApplication { image: ImageKind, path: String },
    /// A variable of the Secure Boot policy (`SecureBoot`, `PK`, `KEK`, `db`, `dbx`, `dbt`,
    /// `dbr`, `SetupMode`, `AuditMode`, `DeployedMode`), or any `EV_EFI_VARIABLE_AUTHORITY`
    /// (the `db` entry or shim's `Shim`/`MokList*`/`SbatLevel` that authorised an image).
    SecureBootVariable { name: String },
    /// A boot variable (`BootOrder`, `Boot####`, from `EV_EFI_VARIABLE_BOOT(2)`).
    BootVariable { name: String },
    /// Another `EV_EFI_VARIABLE_DRIVER_CONFIG` variable.
    ConfigVariable { name: String },
    /// `EV_IPL` text (GRUB commands, kernel command lines, file names).
    Ipl { text: String },
    /// `EV_S_CRTM_VERSION`.
    CrtmVersion,
    /// `EV_POST_CODE(2)`, with its text if it is a description.
    PostCode { text: Option<String> },
    /// `EV_SEPARATOR`.
    Separator,
    /// `EV_ACTION` / `EV_EFI_ACTION` text.
    Action { text: String },
    /// `EV_EFI_GPT_EVENT`.
    Gpt,
    /// `EV_EFI_HANDOFF_TABLES(2)`, with the `2` description if any.
    HandoffTables { description: Option<String> },
}

impl EventClass {
    /// The stable short subject of the event: the image path, the variable name, the IPL or
    /// action text, the blob, post-code or table description; `""` for classes with no subject
    /// (the PCR and event type alone identify them).
    pub fn subject(&self) -> &str {
        match self {
            Self::FirmwareBlob { description }
            | Self::PostCode { text: description }
            | Self::HandoffTables { description } => description.as_deref().unwrap_or(""),
            Self::BootApplication { path, .. } => path,
            Self::SecureBootVariable { name }
            | Self::BootVariable { name }
            | Self::ConfigVariable { name } => name,
            Self::Ipl { text } | Self::Action { text } => text,
            Self::CrtmVersion | Self::Separator | Self::Gpt => "",
        }
    }
}

pub(crate) fn classify(event: &Event) -> Option<EventClass> {
    let decoded = &event.decoded;
    let class = match event.event_type {
        EventType::EFI_PLATFORM_FIRMWARE_BLOB | EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => {
            let description = match decoded {
                EventData::FirmwareBlob(blob) => blob.description.clone(),
                _ => None,
            };
            EventClass::FirmwareBlob { description }
        }
        EventType::EFI_BOOT_SERVICES_APPLICATION => image(ImageKind::Application, decoded)?,
        EventType::EFI_BOOT_SERVICES_DRIVER => image(ImageKind::BootServicesDriver, decoded)?,
        EventType::EFI_RUNTIME_SERVICES_DRIVER => image(ImageKind::RuntimeServicesDriver, decoded)?,
        EventType::EFI_VARIABLE_DRIVER_CONFIG => {
            let EventData::Variable(var) = decoded else {
                return None;
            };
            let name = var.name.clone();
            if is_secure_boot_variable(var.vendor, &var.name) {
                EventClass::SecureBootVariable { name }
            } else {
                EventClass::ConfigVariable { name }
            }
        }
        EventType::EFI_VARIABLE_AUTHORITY => {
            let EventData::Variable(var) = decoded else {
                return None;
            };
            EventClass::SecureBootVariable {
                name: var.name.clone(),
            }
        }
        EventType::EFI_VARIABLE_BOOT | EventType::EFI_VARIABLE_BOOT2 => {
            let EventData::Variable(var) = decoded else {
                return None;
            };
            EventClass::BootVariable {
                name: var.name.clone(),
            }
        }
        EventType::IPL => match decoded {
            EventData::Ipl(text) => EventClass::Ipl { text: text.clone() },
            _ => return None,
        },
        EventType::S_CRTM_VERSION => EventClass::CrtmVersion,
        EventType::POST_CODE | EventType::POST_CODE2 => {
            let text = match decoded {
                EventData::PostCode(PostCode::Text(text)) => Some(text.clone()),
                _ => None,
            };
            EventClass::PostCode { text }
        }
        EventType::SEPARATOR => EventClass::Separator,
        EventType::ACTION | EventType::EFI_ACTION => match decoded {
            EventData::Action(text) => EventClass::Action { text: text.clone() },
            _ => return None,
        },
        EventType::EFI_GPT_EVENT => EventClass::Gpt,
        EventType::EFI_HANDOFF_TABLES | EventType::EFI_HANDOFF_TABLES2 => {
            let description = match decoded {
                EventData::HandoffTables(tables) => tables.description.clone(),
                _ => None,
            };
            EventClass::HandoffTables { description }
        }
        _ => return None,
    };
    Some(class)
}

/// The class of an image-load event; `None` if its data did not decode (the path is unknown).
fn image(kind: ImageKind, decoded: &EventData) -> Option<EventClass> {
    let EventData::ImageLoad(image) = decoded else {
        return None;
    };
    let path = image
        .device_path
        .file_path()
        .unwrap_or_else(|| image.device_path.to_string());
    Some(EventClass::BootApplication { image: kind, path })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::eventlog::Guid;
    use crate::eventlog::data::decode;
    use crate::eventlog::testlog::{utf16z, variable};

    fn class_of(event_type: EventType, data: &[u8]) -> Option<EventClass> {
        Event {
            index: 1,
            offset: 0,
            pcr: 0,
            event_type,
            digests: Vec::new(),
            data: data.to_vec(),
            decoded: decode(event_type, data),
        }
        .class()
    }

    #[test]
    fn classes_and_subjects() {
        let db = variable(Guid::IMAGE_SECURITY_DATABASE, "db", &[]);
        let class = class_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &db).unwrap();
        assert_eq!(class, EventClass::SecureBootVariable { name: "db".into() });
        assert_eq!(class.subject(), "db");

        let vendor_var = variable(Guid::SHIM_LOCK, "db", &[]);
        assert_eq!(
            class_of(EventType::EFI_VARIABLE_DRIVER_CONFIG, &vendor_var),
            Some(EventClass::ConfigVariable { name: "db".into() })
        );
        let shim = variable(Guid::SHIM_LOCK, "Shim", &[1]);
        assert_eq!(
            class_of(EventType::EFI_VARIABLE_AUTHORITY, &shim),
            Some(EventClass::SecureBootVariable {
                name: "Shim".into()
            })
        );
        let order = variable(Guid::GLOBAL_VARIABLE, "BootOrder", &[0, 0]);
        assert_eq!(
            class_of(EventType::EFI_VARIABLE_BOOT, &order)
                .unwrap()
                .subject(),
            "BootOrder"
        );

        let ipl = class_of(EventType::IPL, b"grub_cmd: linux /vmlinuz\0").unwrap();
        assert_eq!(ipl.subject(), "grub_cmd: linux /vmlinuz");
        let action = class_of(EventType::EFI_ACTION, b"Exit Boot Services Invocation").unwrap();
        assert_eq!(action.subject(), "Exit Boot Services Invocation");
        assert_eq!(
            class_of(EventType::SEPARATOR, &[0; 4]),
            Some(EventClass::Separator)
        );
        assert_eq!(
            class_of(EventType::S_CRTM_VERSION, &[1]),
            Some(EventClass::CrtmVersion)
        );
        assert_eq!(
            class_of(EventType::POST_CODE, b"ACPI DATA")
                .unwrap()
                .subject(),
            "ACPI DATA"
        );
        assert_eq!(
            class_of(EventType::EFI_PLATFORM_FIRMWARE_BLOB, &[0; 16]),
            Some(EventClass::FirmwareBlob { description: None })
        );
        assert_eq!(
            class_of(EventType::EFI_GPT_EVENT, b"junk"),
            Some(EventClass::Gpt)
        );
        assert_eq!(
            class_of(EventType::NO_ACTION, b"StartupLocality\0\x03"),
            None
        );
        assert_eq!(class_of(EventType(0x1234), b""), None);
    }

    #[test]
    fn images_are_keyed_on_their_file_path() {
        let mut path = vec![4, 4, 0, 0];
        path.extend(utf16z("\\EFI\\BOOT\\BOOTX64.EFI"));
        let len = u16::try_from(path.len()).unwrap();
        path[2..4].copy_from_slice(&len.to_le_bytes());
        let mut data = [0u64, 0x1000, 0, u64::try_from(path.len()).unwrap()]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        data.extend_from_slice(&path);
        let class = class_of(EventType::EFI_BOOT_SERVICES_APPLICATION, &data).unwrap();
        assert_eq!(
            class,
            EventClass::BootApplication {
                image: ImageKind::Application,
                path: "\\EFI\\BOOT\\BOOTX64.EFI".into()
            }
        );
        let no_path: Vec<u8> = [0u64, 0x1000, 0, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let driver = class_of(EventType::EFI_BOOT_SERVICES_DRIVER, &no_path).unwrap();
        assert_eq!(driver.subject(), "", "no device path");
        // Undecodable image data has no subject to key on.
        assert_eq!(
            class_of(EventType::EFI_BOOT_SERVICES_APPLICATION, &data[..10]),
            None
        );
        assert_eq!(
            serde_json::to_string(&class).unwrap(),
            r#"{"kind":"boot_application","image":"application","path":"\\EFI\\BOOT\\BOOTX64.EFI"}"#
        );
    }
}
