//! [`Guid`]: the UEFI `EFI_GUID` as stored in event data (mixed-endian), its canonical text form,
//! and the GUIDs the decoders recognise.

use std::fmt;

/// An `EFI_GUID` in its 16-byte in-memory layout: the first three fields little-endian.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID whose text form is `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let [a0, a1, a2, a3] = d1.to_le_bytes();
        let [b0, b1] = d2.to_le_bytes();
        let [c0, c1] = d3.to_le_bytes();
        let [e0, e1, e2, e3, e4, e5, e6, e7] = d4;
        Self([
            a0, a1, a2, a3, b0, b1, c0, c1, e0, e1, e2, e3, e4, e5, e6, e7,
        ])
    }

    /// `EFI_GLOBAL_VARIABLE`: `SecureBoot`, `PK`, `KEK`, `BootOrder`, `Boot####`, ...
    pub const GLOBAL_VARIABLE: Self = Self::from_fields(
        0x8be4_df61,
        0x93ca,
        0x11d2,
        [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
    );
    /// `EFI_IMAGE_SECURITY_DATABASE_GUID`: `db`, `dbx`, `dbt`, `dbr`.
    pub const IMAGE_SECURITY_DATABASE: Self = Self::from_fields(
        0xd719_b2cb,
        0x3d3a,
        0x4596,
        [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
    );
    /// shim's vendor GUID (`MokList`, `SbatLevel`, `Shim` authority events).
    pub const SHIM_LOCK: Self = Self::from_fields(
        0x605d_ab50,
        0xe046,
        0x4300,
        [0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23],
    );
    pub const CERT_SHA1: Self = Self::from_fields(
        0x826c_a512,
        0xcf10,
        0x4ac9,
        [0xb1, 0x87, 0xbe, 0x01, 0x49, 0x66, 0x31, 0xbd],
    );
    pub const CERT_SHA224: Self = Self::from_fields(
        0x0b6e_5233,
        0xa65c,
        0x44c9,
        [0x94, 0x07, 0xd9, 0xab, 0x83, 0xbf, 0xc8, 0xbd],
    );
    pub const CERT_SHA256: Self = Self::from_fields(
        0xc1c4_1626,
        0x504c,
        0x4092,
        [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
    );
    pub const CERT_SHA384: Self = Self::from_fields(
        0xff3e_5307,
        0x9fd0,
        0x48c9,
        [0x85, 0xf1, 0x8a, 0xd5, 0x6c, 0x70, 0x1e, 0x01],
    );
    pub const CERT_SHA512: Self = Self::from_fields(
        0x093e_0fae,
        0xa6c4,
        0x4f50,
        [0x9f, 0x1b, 0xd4, 0x1e, 0x2b, 0x89, 0xc1, 0x9a],
    );
    pub const CERT_RSA2048: Self = Self::from_fields(
        0x3c57_66e8,
        0x269c,
        0x4e34,
        [0xaa, 0x14, 0xed, 0x77, 0x6e, 0x85, 0xb3, 0xb6],
    );
    pub const CERT_RSA2048_SHA256: Self = Self::from_fields(
        0xe2b3_6190,
        0x879b,
        0x4a3d,
        [0xad, 0x8d, 0xf2, 0xe7, 0xbb, 0xa3, 0x27, 0x84],
    );
    pub const CERT_RSA2048_SHA1: Self = Self::from_fields(
        0x67f8_444f,
        0x8743,
        0x48f1,
        [0xa3, 0x28, 0x1e, 0xaa, 0xb8, 0x73, 0x60, 0x80],
    );
    pub const CERT_X509: Self = Self::from_fields(
        0xa5c0_59a1,
        0x94e4,
        0x4aa7,
        [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
    );
    pub const CERT_X509_SHA256: Self = Self::from_fields(
        0x3bd2_a492,
        0x96c0,
        0x4079,
        [0xb4, 0x20, 0xfc, 0xf9, 0x8e, 0xf1, 0x03, 0xed],
    );
    pub const CERT_X509_SHA384: Self = Self::from_fields(
        0x7076_876e,
        0x80c2,
        0x4ee6,
        [0xaa, 0xd2, 0x28, 0xb3, 0x49, 0xa6, 0x86, 0x5b],
    );
    pub const CERT_X509_SHA512: Self = Self::from_fields(
        0x446d_bf63,
        0x2502,
        0x4cda,
        [0xbc, 0xfa, 0x24, 0x65, 0xd2, 0xb0, 0xfe, 0x9d],
    );
}

impl fmt::Display for Guid {
    /// The canonical lower-case form, e.g. `8be4df61-93ca-11d2-aa0d-00e098032b8c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [
            a0,
            a1,
            a2,
            a3,
            b0,
            b1,
            c0,
            c1,
            e0,
            e1,
            e2,
            e3,
            e4,
            e5,
            e6,
            e7,
        ] = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{e0:02x}{e1:02x}-{e2:02x}{e3:02x}{e4:02x}{e5:02x}{e6:02x}{e7:02x}",
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1]),
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::Guid;

    #[test]
    fn text_form_matches_the_mixed_endian_layout() {
        // The bytes as they appear in a UEFI_VARIABLE_DATA for SecureBoot.
        let raw = [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c,
        ];
        assert_eq!(Guid(raw), Guid::GLOBAL_VARIABLE);
        assert_eq!(
            Guid::GLOBAL_VARIABLE.to_string(),
            "8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
        assert_eq!(
            Guid::CERT_SHA512.to_string(),
            "093e0fae-a6c4-4f50-9f1b-d41e2b89c19a"
        );
    }
}
