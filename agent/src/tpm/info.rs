//! What the TPM says about itself, for the hardware inventory: its manufacturer code
//! (`TPM_PT_MANUFACTURER`, four ASCII characters such as `IBM ` or `IFX\0`) and its firmware
//! version (`TPM_PT_FIRMWARE_VERSION_1` and `_2`, vendor-defined 32-bit words), as the
//! protocol's [`TpmInfo`] shows them: the code with trailing spaces and NULs trimmed, the
//! version as the two words in hex, `"{v1:x}.{v2:x}"`.

use tss_esapi::constants::PropertyTag;

use super::{Tpm, TpmError};
use vouch_protocol::inventory::TpmInfo;

impl Tpm {
    /// The TPM's manufacturer and firmware version (TPM2_GetCapability of fixed properties).
    pub fn tpm_info(&mut self) -> Result<TpmInfo, TpmError> {
        let manufacturer = self.fixed_property(PropertyTag::Manufacturer, "TPM_PT_MANUFACTURER")?;
        let v1 = self.fixed_property(PropertyTag::FirmwareVersion1, "TPM_PT_FIRMWARE_VERSION_1")?;
        let v2 = self.fixed_property(PropertyTag::FirmwareVersion2, "TPM_PT_FIRMWARE_VERSION_2")?;
        describe(manufacturer, v1, v2)
    }

    fn fixed_property(&mut self, tag: PropertyTag, what: &'static str) -> Result<u32, TpmError> {
        self.ctx
            .get_tpm_property(tag)
            .map_err(|source| TpmError::Capability { what, source })?
            .ok_or(TpmError::UnexpectedResponse(
                "the TPM does not report its manufacturer or firmware version",
            ))
    }
}

/// [`TpmInfo`] from the three property values. A manufacturer code that is not printable ASCII
/// (or is blank) is refused: the inventory names it to supply-chain rules as text.
pub(crate) fn describe(manufacturer: u32, v1: u32, v2: u32) -> Result<TpmInfo, TpmError> {
    let bytes = manufacturer.to_be_bytes();
    let code = std::str::from_utf8(&bytes)
        .ok()
        .map(|s| s.trim_end_matches(['\0', ' ']))
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or(TpmError::UnexpectedResponse(
            "TPM_PT_MANUFACTURER is not a printable ASCII code",
        ))?;
    Ok(TpmInfo {
        manufacturer: code.to_owned(),
        firmware_version: format!("{v1:x}.{v2:x}"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::describe;

    #[test]
    fn manufacturer_codes_are_trimmed_and_versions_shown_in_hex() {
        let ibm = describe(u32::from_be_bytes(*b"IBM "), 0x2019_1023, 0x0016_3636).unwrap();
        assert_eq!(ibm.manufacturer, "IBM");
        assert_eq!(ibm.firmware_version, "20191023.163636");
        let ifx = describe(u32::from_be_bytes(*b"IFX\0"), 7, 0x55).unwrap();
        assert_eq!(
            (ifx.manufacturer.as_str(), ifx.firmware_version.as_str()),
            ("IFX", "7.55")
        );
        assert_eq!(
            describe(u32::from_be_bytes(*b"INTC"), 0, 0)
                .unwrap()
                .manufacturer,
            "INTC"
        );
        // Blank or binary codes are refused, not passed on as garbage text.
        assert!(describe(0, 1, 1).is_err());
        assert!(describe(u32::from_be_bytes([0x01, b'A', b'B', 0]), 1, 1).is_err());
        assert!(describe(u32::from_be_bytes([0xff, 0xfe, b'A', 0]), 1, 1).is_err());
    }
}
