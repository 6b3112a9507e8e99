//! UEFI device paths (`EFI_DEVICE_PATH_PROTOCOL` node lists), as found in image-load events and
//! boot options: parsed into typed nodes and rendered in the UEFI text form, e.g.
//! `PciRoot(0x0)/Pci(0x1,0x1)/HD(1,GPT,<guid>,0x800,0x100000)/\EFI\BOOT\BOOTX64.EFI`.
//!
//! Parsing never fails: a node list that stops being well formed keeps the nodes before the fault
//! and sets [`DevicePath::malformed`]. Node types without a decoder render as `Path(type,subtype,hex)`.

use std::fmt;

use super::guid::Guid;
use super::reader::Reader;
use super::text::utf16_lossy_until_nul;

/// A parsed device path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DevicePath {
    /// The nodes up to the end-of-path node (which is not included).
    pub nodes: Vec<DevicePathNode>,
    /// The bytes were not a well-formed node list: a node shorter than its 4-byte header or
    /// longer than the bytes left. `nodes` holds what came before.
    pub malformed: bool,
}

/// One device-path node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DevicePathNode {
    /// Hardware, PCI (1/1).
    Pci { function: u8, device: u8 },
    /// ACPI (2/1); `hid` is the EISA-compressed `_HID`.
    Acpi { hid: u32, uid: u32 },
    /// Vendor-defined hardware (1/4), messaging (3/10) or media (4/3) node.
    Vendor { node_type: u8, guid: Guid },
    /// Messaging, SCSI (3/2).
    Scsi { target: u16, lun: u16 },
    /// Messaging, USB (3/5).
    Usb { parent_port: u8, interface: u8 },
    /// Messaging, SATA (3/18).
    Sata {
        hba_port: u16,
        multiplier_port: u16,
        lun: u16,
    },
    /// Messaging, NVMe namespace (3/23).
    Nvme { namespace_id: u32, eui64: [u8; 8] },
    /// Messaging, MAC address (3/11), for network boot; `address` holds the significant bytes
    /// (6 for Ethernet).
    Mac { address: Vec<u8>, if_type: u8 },
    /// Messaging, URI (3/24), e.g. for HTTP boot.
    Uri(String),
    /// Media, hard-drive partition (4/1).
    HardDrive {
        partition: u32,
        start_lba: u64,
        size_lba: u64,
        signature: PartitionSignature,
    },
    /// Media, file path (4/4): a UTF-16 path such as `\EFI\BOOT\BOOTX64.EFI`.
    FilePath(String),
    /// Media, relative offset range (4/8): the part of a file or option ROM that was loaded.
    Offset { start: u64, end: u64 },
    /// Media, PIWG firmware file (4/6).
    FvFile(Guid),
    /// Media, PIWG firmware volume (4/7).
    Fv(Guid),
    /// End of one instance of a multi-instance path (0x7f/0x01).
    EndInstance,
    /// Any other node, or a known one whose data has the wrong size.
    Other {
        node_type: u8,
        sub_type: u8,
        data: Vec<u8>,
    },
}

/// The partition signature of a hard-drive node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionSignature {
    None,
    Mbr(u32),
    Gpt(Guid),
    Unknown { signature_type: u8 },
}

const END_TYPE: u8 = 0x7f;
const END_ENTIRE: u8 = 0xff;
const END_INSTANCE: u8 = 0x01;

impl DevicePath {
    /// Parses a device path; never fails (see [`DevicePath::malformed`]).
    pub fn parse(bytes: &[u8]) -> Self {
        let mut r = Reader::new(bytes);
        let mut path = Self::default();
        while !r.is_empty() {
            let header = (r.u8(), r.u8(), r.u16());
            let (Some(node_type), Some(sub_type), Some(len)) = header else {
                path.malformed = true;
                break;
            };
            let Some(data) = usize::from(len).checked_sub(4).and_then(|n| r.take(n)) else {
                path.malformed = true;
                break;
            };
            match (node_type, sub_type) {
                (END_TYPE, END_ENTIRE) => break,
                (END_TYPE, END_INSTANCE) => path.nodes.push(DevicePathNode::EndInstance),
                _ => path
                    .nodes
                    .push(DevicePathNode::parse(node_type, sub_type, data)),
            }
        }
        path
    }

    /// The file-path part (the media file-path nodes joined), e.g. `\EFI\BOOT\BOOTX64.EFI`, or
    /// `None` if the path has no file-path node.
    pub fn file_path(&self) -> Option<String> {
        let mut joined: Option<String> = None;
        for node in &self.nodes {
            if let DevicePathNode::FilePath(part) = node {
                let out = joined.get_or_insert_with(String::new);
                if !out.is_empty() && !out.ends_with('\\') && !part.starts_with('\\') {
                    out.push('\\');
                }
                out.push_str(part);
            }
        }
        joined
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl DevicePathNode {
    fn parse(node_type: u8, sub_type: u8, data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let typed = match (node_type, sub_type) {
            (1, 1) => exact(&mut r, |r| {
                Some(Self::Pci {
                    function: r.u8()?,
                    device: r.u8()?,
                })
            }),
            (2, 1) => exact(&mut r, |r| {
                Some(Self::Acpi {
                    hid: r.u32()?,
                    uid: r.u32()?,
                })
            }),
            // Vendor nodes carry vendor data after the GUID.
            (1, 4) | (3, 10) | (4, 3) => r.array().map(|g| Self::Vendor {
                node_type,
                guid: Guid(g),
            }),
            (3, 2) => exact(&mut r, |r| {
                Some(Self::Scsi {
                    target: r.u16()?,
                    lun: r.u16()?,
                })
            }),
            (3, 11) => exact(&mut r, |r| {
                let address: [u8; 32] = r.array()?;
                let if_type = r.u8()?;
                // RFC 1700 hardware types 0 and 1 are Ethernet: a 6-byte address.
                let len = if if_type <= 1 { 6 } else { 32 };
                Some(Self::Mac {
                    address: address.get(..len)?.to_vec(),
                    if_type,
                })
            }),
            (3, 5) => exact(&mut r, |r| {
                Some(Self::Usb {
                    parent_port: r.u8()?,
                    interface: r.u8()?,
                })
            }),
            (3, 18) => exact(&mut r, |r| {
                Some(Self::Sata {
                    hba_port: r.u16()?,
                    multiplier_port: r.u16()?,
                    lun: r.u16()?,
                })
            }),
            (3, 23) => exact(&mut r, |r| {
                Some(Self::Nvme {
                    namespace_id: r.u32()?,
                    eui64: r.array()?,
                })
            }),
            (3, 24) => Some(Self::Uri(String::from_utf8_lossy(data).into_owned())),
            (4, 1) => exact(&mut r, |r| {
                let partition = r.u32()?;
                let start_lba = r.u64()?;
                let size_lba = r.u64()?;
                let raw: [u8; 16] = r.array()?;
                let _mbr_type = r.u8()?;
                let signature = match r.u8()? {
                    0 => PartitionSignature::None,
                    1 => {
                        let [a, b, c, d, ..] = raw;
                        PartitionSignature::Mbr(u32::from_le_bytes([a, b, c, d]))
                    }
                    2 => PartitionSignature::Gpt(Guid(raw)),
                    other => PartitionSignature::Unknown {
                        signature_type: other,
                    },
                };
                Some(Self::HardDrive {
                    partition,
                    start_lba,
                    size_lba,
                    signature,
                })
            }),
            (4, 4) => Some(Self::FilePath(utf16_lossy_until_nul(data))),
            (4, 6) => exact(&mut r, |r| r.array().map(|g| Self::FvFile(Guid(g)))),
            (4, 7) => exact(&mut r, |r| r.array().map(|g| Self::Fv(Guid(g)))),
            (4, 8) => exact(&mut r, |r| {
                let _reserved = r.u32()?;
                Some(Self::Offset {
                    start: r.u64()?,
                    end: r.u64()?,
                })
            }),
            _ => None,
        };
        typed.unwrap_or_else(|| Self::Other {
            node_type,
            sub_type,
            data: data.to_vec(),
        })
    }
}

/// Runs `read` and accepts its result only if it consumed all of `r`.
fn exact<'a, T>(r: &mut Reader<'a>, read: impl FnOnce(&mut Reader<'a>) -> Option<T>) -> Option<T> {
    let value = read(r)?;
    r.is_empty().then_some(value)
}

/// The EISA-compressed vendor id "PNP" in the low 16 bits of an ACPI `_HID`.
const EISA_PNP: u32 = 0x41d0;

impl fmt::Display for DevicePathNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci { function, device } => write!(f, "Pci({device:#x},{function:#x})"),
            Self::Acpi { hid, uid } => match (hid & 0xffff, hid >> 16) {
                (EISA_PNP, 0x0a03) => write!(f, "PciRoot({uid:#x})"),
                (EISA_PNP, 0x0a08) => write!(f, "PcieRoot({uid:#x})"),
                (EISA_PNP, product) => write!(f, "Acpi(PNP{product:04X},{uid:#x})"),
                _ => write!(f, "Acpi({hid:#010x},{uid:#x})"),
            },
            Self::Vendor { node_type, guid } => {
                let kind = match node_type {
                    1 => "VenHw",
                    3 => "VenMsg",
                    _ => "VenMedia",
                };
                write!(f, "{kind}({guid})")
            }
            Self::Scsi { target, lun } => write!(f, "Scsi({target:#x},{lun:#x})"),
            Self::Mac { address, if_type } => {
                write!(f, "MAC({},{if_type:#x})", hex::encode(address))
            }
            Self::Usb {
                parent_port,
                interface,
            } => write!(f, "USB({parent_port:#x},{interface:#x})"),
            Self::Sata {
                hba_port,
                multiplier_port,
                lun,
            } => write!(f, "Sata({hba_port:#x},{multiplier_port:#x},{lun:#x})"),
            Self::Nvme {
                namespace_id,
                eui64,
            } => {
                let eui: Vec<String> = eui64.iter().map(|b| format!("{b:02X}")).collect();
                write!(f, "NVMe({namespace_id:#x},{})", eui.join("-"))
            }
            Self::Uri(uri) => write!(f, "Uri({uri})"),
            Self::HardDrive {
                partition,
                start_lba,
                size_lba,
                signature,
            } => {
                write!(f, "HD({partition},")?;
                match signature {
                    PartitionSignature::None => f.write_str("None,0")?,
                    PartitionSignature::Mbr(sig) => write!(f, "MBR,{sig:#010x}")?,
                    PartitionSignature::Gpt(guid) => write!(f, "GPT,{guid}")?,
                    PartitionSignature::Unknown { signature_type } => {
                        write!(f, "{signature_type},?")?;
                    }
                }
                write!(f, ",{start_lba:#x},{size_lba:#x})")
            }
            Self::FilePath(path) => f.write_str(path),
            Self::FvFile(guid) => write!(f, "FvFile({guid})"),
            Self::Fv(guid) => write!(f, "Fv({guid})"),
            Self::Offset { start, end } => write!(f, "Offset({start:#x},{end:#x})"),
            Self::EndInstance => f.write_str(","),
            Self::Other {
                node_type,
                sub_type,
                data,
            } => write!(f, "Path({node_type},{sub_type},{})", hex::encode(data)),
        }
    }
}

impl fmt::Display for DevicePath {
    /// The UEFI text form; `/<malformed>` marks where a malformed path stopped parsing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for node in &self.nodes {
            if matches!(node, DevicePathNode::EndInstance) {
                f.write_str(",")?;
                first = true;
                continue;
            }
            if !first {
                f.write_str("/")?;
            }
            write!(f, "{node}")?;
            first = false;
        }
        if self.malformed {
            f.write_str(if first { "<malformed>" } else { "/<malformed>" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(node_type: u8, sub_type: u8, data: &[u8]) -> Vec<u8> {
        let len = u16::try_from(data.len() + 4).unwrap_or(u16::MAX);
        let mut out = vec![node_type, sub_type];
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    fn end() -> Vec<u8> {
        node(0x7f, 0xff, &[])
    }

    #[test]
    fn renders_a_typical_boot_path() {
        let guid = Guid::from_fields(
            0x32e3_ebef,
            0x0a78,
            0x4087,
            [0xb3, 0x20, 0x94, 0x8b, 0x8e, 0x06, 0xb0, 0x2f],
        );
        let mut hd = 1u32.to_le_bytes().to_vec();
        hd.extend_from_slice(&0x800u64.to_le_bytes());
        hd.extend_from_slice(&0x12_c000u64.to_le_bytes());
        hd.extend_from_slice(&guid.0);
        hd.extend_from_slice(&[2, 2]);
        let bytes = [
            node(2, 1, &[0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0]),
            node(1, 1, &[0x3, 0x1]),
            node(4, 1, &hd),
            node(4, 4, &utf16z("\\EFI\\BOOT\\BOOTX64.EFI")),
            end(),
        ]
        .concat();
        let path = DevicePath::parse(&bytes);
        assert!(!path.malformed);
        assert_eq!(
            path.to_string(),
            "PciRoot(0x0)/Pci(0x1,0x3)/HD(1,GPT,32e3ebef-0a78-4087-b320-948b8e06b02f,0x800,0x12c000)/\\EFI\\BOOT\\BOOTX64.EFI"
        );
        assert_eq!(
            path.file_path().as_deref(),
            Some("\\EFI\\BOOT\\BOOTX64.EFI")
        );
    }

    #[test]
    fn other_nodes_render_generically_and_fv_nodes_by_guid() {
        let guid = Guid::CERT_X509;
        let bytes = [
            node(4, 7, &guid.0),
            node(4, 6, &guid.0),
            node(3, 12, &[0xab, 0x01]),
            end(),
        ]
        .concat();
        let path = DevicePath::parse(&bytes);
        assert_eq!(
            path.to_string(),
            format!("Fv({guid})/FvFile({guid})/Path(3,12,ab01)")
        );
        assert_eq!(path.file_path(), None);
        // A PCI node with the wrong data size is kept as a generic node.
        assert_eq!(
            DevicePath::parse(&node(1, 1, &[1])).to_string(),
            "Path(1,1,01)"
        );
        assert_eq!(
            DevicePath::parse(&node(2, 1, &[0xd0, 0x41, 0x01, 0x05, 2, 0, 0, 0])).to_string(),
            "Acpi(PNP0501,0x2)"
        );
    }

    #[test]
    fn network_and_option_rom_nodes() {
        let mut mac = vec![0x0c, 0xc4, 0x7a, 0xff, 0x60, 0x1c];
        mac.resize(32, 0);
        mac.push(1);
        let mut offset = vec![0; 4];
        offset.extend_from_slice(&0xf250u64.to_le_bytes());
        offset.extend_from_slice(&0x201ffu64.to_le_bytes());
        let bytes = [
            node(3, 11, &mac),
            node(3, 2, &[1, 0, 0, 0]),
            node(4, 8, &offset),
            end(),
        ]
        .concat();
        assert_eq!(
            DevicePath::parse(&bytes).to_string(),
            "MAC(0cc47aff601c,0x1)/Scsi(0x1,0x0)/Offset(0xf250,0x201ff)"
        );
    }

    #[test]
    fn multi_instance_and_split_file_paths() {
        let bytes = [
            node(4, 4, &utf16z("\\EFI")),
            node(4, 4, &utf16z("BOOT\\BOOTX64.EFI")),
            node(0x7f, 0x01, &[]),
            node(1, 1, &[0, 2]),
            end(),
        ]
        .concat();
        let path = DevicePath::parse(&bytes);
        assert_eq!(
            path.file_path().as_deref(),
            Some("\\EFI\\BOOT\\BOOTX64.EFI")
        );
        assert_eq!(path.to_string(), "\\EFI/BOOT\\BOOTX64.EFI,Pci(0x2,0x0)");
    }

    #[test]
    fn malformed_paths_keep_the_good_prefix() {
        // A node claiming to be shorter than its own header.
        let mut bytes = node(1, 1, &[0, 1]);
        bytes.extend_from_slice(&[4, 4, 2, 0]);
        let path = DevicePath::parse(&bytes);
        assert!(path.malformed);
        assert_eq!(path.to_string(), "Pci(0x1,0x0)/<malformed>");
        // A node longer than the bytes left, and a truncated header.
        assert!(DevicePath::parse(&[4, 4, 0xff, 0xff, 0, 0]).malformed);
        assert!(DevicePath::parse(&[4, 4, 6]).malformed);
        assert_eq!(DevicePath::parse(&[4]).to_string(), "<malformed>");
        // Nothing after the end node is read.
        let path = DevicePath::parse(&[end(), vec![1, 2, 3]].concat());
        assert!(path.is_empty() && !path.malformed);
    }
}
