//! [`EventType`]: the TCG PC Client event types (TCG PC Client Platform Firmware Profile, "Event
//! Types"), as a newtype over the `u32` in the log so that unknown types survive parsing.

use std::fmt;

/// The `eventType` of a log record. Unknown values are kept and shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(pub u32);

macro_rules! event_types {
    ($($(#[$doc:meta])* $konst:ident = $value:expr, $name:literal;)*) => {
        impl EventType {
            $($(#[$doc])* pub const $konst: Self = Self($value);)*

            /// The TCG name (`EV_...`), or `None` for a type the PC Client spec does not define.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($name),)*
                    _ => None,
                }
            }

            /// The inverse of [`fmt::Display`]: a TCG name (`EV_IPL`), or `0x` and hex digits.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$konst),)*
                    _ => name
                        .strip_prefix("0x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .map(Self),
                }
            }
        }
    };
}

event_types! {
    PREBOOT_CERT = 0x0000_0000, "EV_PREBOOT_CERT";
    POST_CODE = 0x0000_0001, "EV_POST_CODE";
    UNUSED = 0x0000_0002, "EV_UNUSED";
    /// Logged but never extended into a PCR.
    NO_ACTION = 0x0000_0003, "EV_NO_ACTION";
    SEPARATOR = 0x0000_0004, "EV_SEPARATOR";
    ACTION = 0x0000_0005, "EV_ACTION";
    EVENT_TAG = 0x0000_0006, "EV_EVENT_TAG";
    S_CRTM_CONTENTS = 0x0000_0007, "EV_S_CRTM_CONTENTS";
    S_CRTM_VERSION = 0x0000_0008, "EV_S_CRTM_VERSION";
    CPU_MICROCODE = 0x0000_0009, "EV_CPU_MICROCODE";
    PLATFORM_CONFIG_FLAGS = 0x0000_000A, "EV_PLATFORM_CONFIG_FLAGS";
    TABLE_OF_DEVICES = 0x0000_000B, "EV_TABLE_OF_DEVICES";
    COMPACT_HASH = 0x0000_000C, "EV_COMPACT_HASH";
    IPL = 0x0000_000D, "EV_IPL";
    IPL_PARTITION_DATA = 0x0000_000E, "EV_IPL_PARTITION_DATA";
    NONHOST_CODE = 0x0000_000F, "EV_NONHOST_CODE";
    NONHOST_CONFIG = 0x0000_0010, "EV_NONHOST_CONFIG";
    NONHOST_INFO = 0x0000_0011, "EV_NONHOST_INFO";
    OMIT_BOOT_DEVICE_EVENTS = 0x0000_0012, "EV_OMIT_BOOT_DEVICE_EVENTS";
    POST_CODE2 = 0x0000_0013, "EV_POST_CODE2";
    EFI_EVENT_BASE = 0x8000_0000, "EV_EFI_EVENT_BASE";
    EFI_VARIABLE_DRIVER_CONFIG = 0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG";
    EFI_VARIABLE_BOOT = 0x8000_0002, "EV_EFI_VARIABLE_BOOT";
    EFI_BOOT_SERVICES_APPLICATION = 0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION";
    EFI_BOOT_SERVICES_DRIVER = 0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER";
    EFI_RUNTIME_SERVICES_DRIVER = 0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER";
    EFI_GPT_EVENT = 0x8000_0006, "EV_EFI_GPT_EVENT";
    EFI_ACTION = 0x8000_0007, "EV_EFI_ACTION";
    EFI_PLATFORM_FIRMWARE_BLOB = 0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB";
    EFI_HANDOFF_TABLES = 0x8000_0009, "EV_EFI_HANDOFF_TABLES";
    EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000_000A, "EV_EFI_PLATFORM_FIRMWARE_BLOB2";
    EFI_HANDOFF_TABLES2 = 0x8000_000B, "EV_EFI_HANDOFF_TABLES2";
    EFI_VARIABLE_BOOT2 = 0x8000_000C, "EV_EFI_VARIABLE_BOOT2";
    EFI_HCRTM_EVENT = 0x8000_0010, "EV_EFI_HCRTM_EVENT";
    EFI_VARIABLE_AUTHORITY = 0x8000_00E0, "EV_EFI_VARIABLE_AUTHORITY";
    EFI_SPDM_FIRMWARE_BLOB = 0x8000_00E1, "EV_EFI_SPDM_FIRMWARE_BLOB";
    EFI_SPDM_FIRMWARE_CONFIG = 0x8000_00E2, "EV_EFI_SPDM_FIRMWARE_CONFIG";
    EFI_SPDM_DEVICE_POLICY = 0x8000_00E3, "EV_EFI_SPDM_DEVICE_POLICY";
    EFI_SPDM_DEVICE_AUTHORITY = 0x8000_00E4, "EV_EFI_SPDM_DEVICE_AUTHORITY";
}

impl fmt::Display for EventType {
    /// The TCG name, or `0x` and eight hex digits for an unknown type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({self})")
    }
}

impl From<u32> for EventType {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn known_types_have_tcg_names_and_unknown_ones_show_as_hex() {
        assert_eq!(EventType::IPL.to_string(), "EV_IPL");
        assert_eq!(EventType(0x8000_000C).to_string(), "EV_EFI_VARIABLE_BOOT2");
        assert_eq!(
            EventType(0x8000_00E0).to_string(),
            "EV_EFI_VARIABLE_AUTHORITY"
        );
        assert_eq!(EventType::COMPACT_HASH.name(), Some("EV_COMPACT_HASH"));
        assert_eq!(EventType(0x14).to_string(), "0x00000014");
        for t in [EventType::IPL, EventType::POST_CODE, EventType(0x14)] {
            assert_eq!(EventType::from_name(&t.to_string()), Some(t));
        }
        assert_eq!(EventType::from_name("EV_KERNEL"), None);
        assert_eq!(EventType(0x8000_00ff).name(), None);
        assert_eq!(
            format!("{:?}", EventType::SEPARATOR),
            "EventType(EV_SEPARATOR)"
        );
    }
}
