//! The terminal's hardware inventory: what the agent reads from SMBIOS/DMI, the PCI and USB
//! buses, the CPU, the TPM and the network interfaces, in one canonical shape both sides share.
//! The vendor's manifest carries the inventory seen at provisioning (the baseline); every
//! evidence carries the current one, whose [`Inventory::digest`] the agent measured into its
//! firmware PCR as the reserved list entry [`INVENTORY_PATH`], so the quote vouches for it.
//!
//! [`Inventory::check`] bounds every list and string (an inventory is device-signed input);
//! [`diff`] names what changed between the baseline and the current one (the swapped-mainboard
//! case); the supply-chain rules ([`crate::supply_chain`]) read its components by name
//! ([`Inventory::components`]).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::bytes::Sha256Digest;
use crate::digest::sha256;
use crate::firmware::FirmwareEntry;
use crate::wire::to_cbor;

/// The firmware-list path the inventory digest is measured under. No configured firmware path
/// can take it: the agent refuses firmware paths starting with `vouch:`.
pub const INVENTORY_PATH: &str = "vouch:inventory";

/// Most PCI functions, USB devices or network interfaces an inventory may list.
pub const MAX_DEVICES: usize = 512;
/// Longest string field, in bytes.
pub const MAX_STRING: usize = 256;

const DOMAIN: &[u8] = b"vouch-inventory-v1\0";

/// SMBIOS/DMI strings (Linux `/sys/class/dmi/id/*`); `None` where the firmware reports none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smbios {
    pub board_vendor: Option<String>,
    pub board_name: Option<String>,
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
}

/// One PCI function: its bus address (`0000:00:1f.3`) and vendor:device ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciDevice {
    pub slot: String,
    pub vendor: u16,
    pub device: u16,
}

/// One USB device: its sysfs name (`1-1.2`) and vendor:product ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbDevice {
    pub port: String,
    pub vendor: u16,
    pub product: u16,
}

/// The TPM as it describes itself (`TPM_PT_MANUFACTURER`, `TPM_PT_FIRMWARE_VERSION_1/2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmInfo {
    /// The four-character manufacturer code (TCG vendor ID registry), trailing spaces and NULs
    /// trimmed: `IBM`, `INTC`, `IFX`, `STM`, `NTC`.
    pub manufacturer: String,
    /// Firmware version as `major.minor` of the two 32-bit words, in hex
    /// (`TPM_PT_FIRMWARE_VERSION_1`.`TPM_PT_FIRMWARE_VERSION_2`).
    pub firmware_version: String,
}

/// One network interface with a hardware address (loopback and virtual ones are left out).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// The whole inventory. Lists are kept sorted ([`Inventory::normalize`]), so equal hardware
/// gives equal bytes and an equal digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub smbios: Smbios,
    pub cpu_model: Option<String>,
    pub pci: Vec<PciDevice>,
    pub usb: Vec<UsbDevice>,
    pub tpm: Option<TpmInfo>,
    pub nics: Vec<Nic>,
}

/// An inventory that breaks the bounds (see [`Inventory::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory lists {count} {what} (limit {MAX_DEVICES})")]
    TooMany { what: &'static str, count: usize },
    #[error("inventory field {field} is empty, longer than {MAX_STRING} bytes or not printable")]
    BadString { field: &'static str },
    #[error("inventory lists {what} {key} twice")]
    Duplicate { what: &'static str, key: String },
    #[error("inventory MAC address {mac:?} is not lower-case aa:bb:cc:dd:ee:ff")]
    BadMac { mac: String },
    #[error("inventory lists are not sorted (normalize before signing or sending)")]
    Unsorted,
}

/// A component of the inventory as supply-chain rules and change reasons name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component<'a> {
    Pci(&'a PciDevice),
    Usb(&'a UsbDevice),
    /// An SMBIOS manufacturer string: `field` is `board_vendor`, `sys_vendor` or `bios_vendor`.
    SmbiosManufacturer {
        field: &'static str,
        value: &'a str,
    },
    Tpm(&'a TpmInfo),
}

impl fmt::Display for Component<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Pci(p) => write!(
                f,
                "PCI device {:04x}:{:04x} at {}",
                p.vendor, p.device, p.slot
            ),
            Component::Usb(u) => {
                write!(
                    f,
                    "USB device {:04x}:{:04x} at {}",
                    u.vendor, u.product, u.port
                )
            }
            Component::SmbiosManufacturer { field, value } => {
                write!(f, "SMBIOS {field} {value:?}")
            }
            Component::Tpm(t) => write!(
                f,
                "TPM manufacturer {:?} (firmware {})",
                t.manufacturer, t.firmware_version
            ),
        }
    }
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_STRING && !s.chars().any(char::is_control)
}

fn check_string(field: &'static str, s: &str) -> Result<(), InventoryError> {
    if printable(s) {
        Ok(())
    } else {
        Err(InventoryError::BadString { field })
    }
}

fn check_opt(field: &'static str, s: &Option<String>) -> Result<(), InventoryError> {
    s.as_deref().map_or(Ok(()), |s| check_string(field, s))
}

fn check_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn check_list<T: Ord, K: fmt::Display>(
    what: &'static str,
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Result<(), InventoryError> {
    if items.len() > MAX_DEVICES {
        return Err(InventoryError::TooMany {
            what,
            count: items.len(),
        });
    }
    for pair in items.windows(2) {
        if let [a, b] = pair {
            if a > b {
                return Err(InventoryError::Unsorted);
            }
            if key(a).to_string() == key(b).to_string() {
                return Err(InventoryError::Duplicate {
                    what,
                    key: key(a).to_string(),
                });
            }
        }
    }
    Ok(())
}

impl Inventory {
    /// Sorts every list (and drops exact duplicates), the canonical form that is hashed.
    pub fn normalize(&mut self) {
        self.pci.sort();
        self.pci.dedup();
        self.usb.sort();
        self.usb.dedup();
        self.nics.sort();
        self.nics.dedup();
    }

    /// Checks the bounds a verifier enforces on a received inventory: list lengths, strings
    /// printable and at most [`MAX_STRING`] bytes, MAC addresses well-formed, lists sorted with
    /// no slot, port or interface listed twice.
    pub fn check(&self) -> Result<(), InventoryError> {
        let s = &self.smbios;
        check_opt("smbios.board_vendor", &s.board_vendor)?;
        check_opt("smbios.board_name", &s.board_name)?;
        check_opt("smbios.sys_vendor", &s.sys_vendor)?;
        check_opt("smbios.product_name", &s.product_name)?;
        check_opt("smbios.bios_vendor", &s.bios_vendor)?;
        check_opt("smbios.bios_version", &s.bios_version)?;
        check_opt("cpu_model", &self.cpu_model)?;
        check_list("PCI functions", &self.pci, |p| p.slot.clone())?;
        for p in &self.pci {
            check_string("pci.slot", &p.slot)?;
        }
        check_list("USB devices", &self.usb, |u| u.port.clone())?;
        for u in &self.usb {
            check_string("usb.port", &u.port)?;
        }
        check_list("network interfaces", &self.nics, |n| n.name.clone())?;
        for n in &self.nics {
            check_string("nics.name", &n.name)?;
            if !check_mac(&n.mac) {
                return Err(InventoryError::BadMac { mac: n.mac.clone() });
            }
        }
        if let Some(t) = &self.tpm {
            check_string("tpm.manufacturer", &t.manufacturer)?;
            check_string("tpm.firmware_version", &t.firmware_version)?;
        }
        Ok(())
    }

    /// SHA-256 over a domain label and the canonical CBOR of the inventory (call
    /// [`Inventory::normalize`] first; [`Inventory::check`] refuses unsorted lists).
    pub fn digest(&self) -> Sha256Digest {
        let mut buf = DOMAIN.to_vec();
        buf.extend_from_slice(&to_cbor(self));
        Sha256Digest(sha256(&buf))
    }

    /// The firmware-list entry the agent extends for this inventory.
    pub fn measurement(&self) -> FirmwareEntry {
        FirmwareEntry {
            path: INVENTORY_PATH.to_owned(),
            sha256: Some(self.digest()),
        }
    }

    /// Every component a supply-chain rule can name.
    pub fn components(&self) -> Vec<Component<'_>> {
        let mut out: Vec<Component<'_>> = Vec::new();
        for (field, value) in [
            ("board_vendor", &self.smbios.board_vendor),
            ("sys_vendor", &self.smbios.sys_vendor),
            ("bios_vendor", &self.smbios.bios_vendor),
        ] {
            if let Some(v) = value {
                out.push(Component::SmbiosManufacturer { field, value: v });
            }
        }
        out.extend(self.pci.iter().map(Component::Pci));
        out.extend(self.usb.iter().map(Component::Usb));
        out.extend(self.tpm.iter().map(Component::Tpm));
        out
    }
}

/// The digest of the newest inventory measurement in a firmware list, if the agent made one.
pub fn measured_digest(firmware: &[FirmwareEntry]) -> Option<Sha256Digest> {
    firmware
        .iter()
        .rev()
        .find(|e| e.path == INVENTORY_PATH)
        .and_then(|e| e.sha256)
}

/// One difference between the baseline inventory and the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed: `smbios.board_vendor`, `PCI 0000:00:1f.3`, `TPM`, `NIC eth0`, ...
    pub component: String,
    /// Its value in the baseline (`absent` when it was not there).
    pub was: String,
    /// Its value now (`absent` when it is gone).
    pub now: String,
}

const ABSENT: &str = "absent";

fn opt_text(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| ABSENT.to_owned())
}

/// What differs between `baseline` (the manifest's) and `current` (the evidence's), in a stable
/// order: SMBIOS fields, CPU, PCI by slot, USB by port, TPM, NICs by name. Empty when equal.
pub fn diff(baseline: &Inventory, current: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    let (a, b) = (&baseline.smbios, &current.smbios);
    for (field, was, now) in [
        ("smbios.board_vendor", &a.board_vendor, &b.board_vendor),
        ("smbios.board_name", &a.board_name, &b.board_name),
        ("smbios.sys_vendor", &a.sys_vendor, &b.sys_vendor),
        ("smbios.product_name", &a.product_name, &b.product_name),
        ("smbios.bios_vendor", &a.bios_vendor, &b.bios_vendor),
        ("smbios.bios_version", &a.bios_version, &b.bios_version),
        ("cpu_model", &baseline.cpu_model, &current.cpu_model),
    ] {
        if was != now {
            out.push(Change {
                component: field.to_owned(),
                was: opt_text(was),
                now: opt_text(now),
            });
        }
    }
    keyed_diff(
        &mut out,
        "PCI",
        &baseline.pci,
        &current.pci,
        |p| p.slot.clone(),
        |p| format!("{:04x}:{:04x}", p.vendor, p.device),
    );
    keyed_diff(
        &mut out,
        "USB",
        &baseline.usb,
        &current.usb,
        |u| u.port.clone(),
        |u| format!("{:04x}:{:04x}", u.vendor, u.product),
    );
    let tpm_text = |t: &Option<TpmInfo>| {
        t.as_ref().map_or_else(
            || ABSENT.to_owned(),
            |t| format!("{} firmware {}", t.manufacturer, t.firmware_version),
        )
    };
    if baseline.tpm != current.tpm {
        out.push(Change {
            component: "TPM".to_owned(),
            was: tpm_text(&baseline.tpm),
            now: tpm_text(&current.tpm),
        });
    }
    keyed_diff(
        &mut out,
        "NIC",
        &baseline.nics,
        &current.nics,
        |n| n.name.clone(),
        |n| n.mac.clone(),
    );
    out
}

/// Differences between two lists keyed by `key` (slot, port, name), each side's value shown by
/// `show`.
fn keyed_diff<T>(
    out: &mut Vec<Change>,
    label: &str,
    was: &[T],
    now: &[T],
    key: impl Fn(&T) -> String,
    show: impl Fn(&T) -> String,
) {
    let was: std::collections::BTreeMap<String, String> =
        was.iter().map(|t| (key(t), show(t))).collect();
    let now: std::collections::BTreeMap<String, String> =
        now.iter().map(|t| (key(t), show(t))).collect();
    let keys: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    for k in keys {
        let (w, n) = (was.get(k), now.get(k));
        if w != n {
            out.push(Change {
                component: format!("{label} {k}"),
                was: w.cloned().unwrap_or_else(|| ABSENT.to_owned()),
                now: n.cloned().unwrap_or_else(|| ABSENT.to_owned()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::from_cbor_exact;

    pub(crate) fn sample() -> Inventory {
        let mut inv = Inventory {
            smbios: Smbios {
                board_vendor: Some("Acme Boards".into()),
                board_name: Some("AB-200".into()),
                sys_vendor: Some("Acme".into()),
                product_name: Some("T-100".into()),
                bios_vendor: Some("Acme BIOS".into()),
                bios_version: Some("1.2.3".into()),
            },
            cpu_model: Some("ARM Cortex-A53".into()),
            pci: vec![
                PciDevice {
                    slot: "0000:01:00.0".into(),
                    vendor: 0x10ec,
                    device: 0x8168,
                },
                PciDevice {
                    slot: "0000:00:00.0".into(),
                    vendor: 0x8086,
                    device: 0x1234,
                },
            ],
            usb: vec![UsbDevice {
                port: "1-1".into(),
                vendor: 0x1a86,
                product: 0x7523,
            }],
            tpm: Some(TpmInfo {
                manufacturer: "IBM".into(),
                firmware_version: "20191023.0".into(),
            }),
            nics: vec![Nic {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
            }],
        };
        inv.normalize();
        inv
    }

    #[test]
    fn normalized_inventory_checks_and_round_trips() {
        let inv = sample();
        inv.check().unwrap();
        let back: Inventory = from_cbor_exact(&to_cbor(&inv)).unwrap();
        assert_eq!(back, inv);
        assert_eq!(back.digest(), inv.digest());
        assert_eq!(inv.pci[0].slot, "0000:00:00.0");
    }

    #[test]
    fn the_digest_changes_with_any_component() {
        let inv = sample();
        let mut other = inv.clone();
        other.usb[0].product ^= 1;
        assert_ne!(inv.digest(), other.digest());
        let mut other = inv.clone();
        other.smbios.bios_version = None;
        assert_ne!(inv.digest(), other.digest());
    }

    #[test]
    fn unsorted_duplicate_and_malformed_inventories_are_refused() {
        let mut inv = sample();
        inv.pci.reverse();
        assert_eq!(inv.check(), Err(InventoryError::Unsorted));
        let mut inv = sample();
        let mut twin = inv.pci[0].clone();
        twin.device = 0x9999;
        inv.pci.push(twin);
        inv.pci.sort();
        assert!(matches!(inv.check(), Err(InventoryError::Duplicate { .. })));
        let mut inv = sample();
        inv.nics[0].mac = "02:00:00:00:00:GG".into();
        assert!(matches!(inv.check(), Err(InventoryError::BadMac { .. })));
        let mut inv = sample();
        inv.smbios.board_vendor = Some("evil\nvendor".into());
        assert!(matches!(inv.check(), Err(InventoryError::BadString { .. })));
        let mut inv = sample();
        inv.usb = (0..=MAX_DEVICES)
            .map(|i| UsbDevice {
                port: format!("1-{i:04}"),
                vendor: 1,
                product: 1,
            })
            .collect();
        assert!(matches!(inv.check(), Err(InventoryError::TooMany { .. })));
    }

    #[test]
    fn diff_names_the_swapped_board() {
        let base = sample();
        let mut now = base.clone();
        now.smbios.board_vendor = Some("Hidden Board Co".into());
        now.pci.retain(|p| p.vendor != 0x10ec);
        now.nics[0].mac = "02:00:00:00:00:02".into();
        let changes = diff(&base, &now);
        assert_eq!(
            changes,
            vec![
                Change {
                    component: "smbios.board_vendor".into(),
                    was: "Acme Boards".into(),
                    now: "Hidden Board Co".into()
                },
                Change {
                    component: "PCI 0000:01:00.0".into(),
                    was: "10ec:8168".into(),
                    now: "absent".into()
                },
                Change {
                    component: "NIC eth0".into(),
                    was: "02:00:00:00:00:01".into(),
                    now: "02:00:00:00:00:02".into()
                },
            ]
        );
        assert!(diff(&base, &base).is_empty());
    }

    #[test]
    fn the_newest_inventory_measurement_counts() {
        let inv = sample();
        let list = vec![
            FirmwareEntry {
                path: INVENTORY_PATH.into(),
                sha256: Some(Sha256Digest([1; 32])),
            },
            FirmwareEntry {
                path: "/opt/app".into(),
                sha256: Some(Sha256Digest([2; 32])),
            },
            inv.measurement(),
        ];
        assert_eq!(measured_digest(&list), Some(inv.digest()));
        assert_eq!(measured_digest(&list[1..2]), None);
    }
}
