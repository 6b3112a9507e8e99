//! The terminal's hardware inventory as the agent reads it: SMBIOS/DMI strings, PCI and USB
//! vendor:device ids, the CPU model, the network interfaces' MAC addresses (all from a tree
//! rooted at `--sysfs-root`, `/` on a terminal, a fake tree in tests) and the TPM's
//! manufacturer and firmware version (from the TPM). The result is the protocol's
//! [`Inventory`], normalized and checked, whose digest the attester measures into the firmware
//! PCR (see `measure`).
//!
//! Files read, relative to the root:
//! - `sys/class/dmi/id/{board_vendor,board_name,sys_vendor,product_name,bios_vendor,bios_version}`
//! - `sys/bus/pci/devices/<slot>/{vendor,device}` (`0x10ec\n`)
//! - `sys/bus/usb/devices/<name>/{idVendor,idProduct}` (`1a86\n`; names with `:` are
//!   interfaces, not devices, and are skipped)
//! - `proc/cpuinfo`: the first `model name` line, else `Hardware`, else `CPU part` (ARM)
//! - `sys/class/net/<if>/address`, except `lo` and interfaces without a `device` entry (virtual)
//!
//! What is missing is left out (a board without DMI, a bus with no devices), never an error.
//! What is there but does not read as the kernel writes it (a non-hex id, a string with control
//! characters, a file over its bound) is a [`CollectError`] naming the file: the caller sends no
//! inventory rather than a made-up one. Attribute files are bounded at 4 KiB, cpuinfo at 1 MiB
//! (it grows with the core count).
//!
//! Written by hand: the crates that read these trees (`procfs`, `sysinfo`) read only the live
//! `/proc` and `/sys`, with no other root for a fake tree, and cover neither sysfs's PCI/USB ids
//! nor DMI as one shape; what is read here is a dozen tiny text files.

use std::io;
use std::path::{Path, PathBuf};

use vouch_common::fs::{FsError, read_optional};
use vouch_protocol::inventory::{Inventory, InventoryError, Nic, PciDevice, Smbios, UsbDevice};

use crate::tpm::{AgentTpm, TpmError};

/// Largest sysfs attribute file read (the kernel's attribute pages are 4 KiB).
pub const MAX_ATTRIBUTE: u64 = 4096;
/// Largest `proc/cpuinfo` read.
pub const MAX_CPUINFO: u64 = 1 << 20;

/// Why the inventory could not be read. Each variant names the file or the step.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file that exists could not be read, or is over its bound.
    #[error(transparent)]
    Read(#[from] FsError),
    /// A directory that exists could not be listed.
    #[error("listing {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file or entry name that does not hold what the kernel writes there.
    #[error("{path}: {problem}")]
    Garbage { path: PathBuf, problem: String },
    /// The TPM did not say who made it.
    #[error("reading the TPM's manufacturer and firmware version")]
    Tpm(#[source] TpmError),
    /// What was read breaks the inventory's bounds (too many devices).
    #[error("the inventory read from {root} is out of bounds")]
    Bounds {
        root: PathBuf,
        #[source]
        source: InventoryError,
    },
}

/// At most the first 40 characters of `s`, for error messages about garbage.
fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

fn garbage(path: &Path, problem: impl Into<String>) -> CollectError {
    CollectError::Garbage {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The inventory under `root` plus what `tpm` says about itself, normalized and checked.
pub fn collect(root: &Path, tpm: &mut dyn AgentTpm) -> Result<Inventory, CollectError> {
    let mut inventory = read(root)?;
    inventory.tpm = Some(tpm.tpm_info().map_err(CollectError::Tpm)?);
    inventory.check().map_err(|source| CollectError::Bounds {
        root: root.to_owned(),
        source,
    })?;
    Ok(inventory)
}

/// The inventory under `root` without the TPM's part (`tpm` is `None`), normalized and checked.
pub fn read(root: &Path) -> Result<Inventory, CollectError> {
    let dmi = root.join("sys/class/dmi/id");
    let mut inventory = Inventory {
        smbios: Smbios {
            board_vendor: string_attr(&dmi.join("board_vendor"))?,
            board_name: string_attr(&dmi.join("board_name"))?,
            sys_vendor: string_attr(&dmi.join("sys_vendor"))?,
            product_name: string_attr(&dmi.join("product_name"))?,
            bios_vendor: string_attr(&dmi.join("bios_vendor"))?,
            bios_version: string_attr(&dmi.join("bios_version"))?,
        },
        cpu_model: cpu_model(&root.join("proc/cpuinfo"))?,
        pci: pci(&root.join("sys/bus/pci/devices"))?,
        usb: usb(&root.join("sys/bus/usb/devices"))?,
        tpm: None,
        nics: nics(&root.join("sys/class/net"))?,
    };
    inventory.normalize();
    inventory.check().map_err(|source| CollectError::Bounds {
        root: root.to_owned(),
        source,
    })?;
    Ok(inventory)
}

/// The file at `path` as text, surrounding whitespace (the kernel's trailing newline) trimmed;
/// `None` when it does not exist.
fn text(path: &Path, max: u64) -> Result<Option<String>, CollectError> {
    let Some(bytes) = read_optional(path, max)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| garbage(path, "not UTF-8 text"))?;
    Ok(Some(text.trim().to_owned()))
}

/// A DMI string: `None` when absent or blank; control characters or more than
/// [`vouch_protocol::inventory::MAX_STRING`] bytes are garbage.
fn string_attr(path: &Path) -> Result<Option<String>, CollectError> {
    text(path, MAX_ATTRIBUTE)?
        .filter(|s| !s.is_empty())
        .map(|s| checked_string(path, s))
        .transpose()
}

fn checked_string(path: &Path, s: String) -> Result<String, CollectError> {
    let max = vouch_protocol::inventory::MAX_STRING;
    if s.chars().any(char::is_control) {
        Err(garbage(path, "contains control characters"))
    } else if s.len() > max {
        Err(garbage(path, format!("is {} bytes, over {max}", s.len())))
    } else {
        Ok(s)
    }
}

/// A 16-bit id as sysfs writes it: four hex digits, with `0x` before them when `prefixed`
/// (PCI) and without (USB). `None` when the file does not exist.
fn id_attr(path: &Path, prefixed: bool) -> Result<Option<u16>, CollectError> {
    let Some(t) = text(path, MAX_ATTRIBUTE)? else {
        return Ok(None);
    };
    let digits = if prefixed {
        t.strip_prefix("0x")
    } else {
        Some(t.as_str())
    };
    let expected = if prefixed { "0x and " } else { "" };
    digits
        .filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|d| u16::from_str_radix(d, 16).ok())
        .map(Some)
        .ok_or_else(|| {
            garbage(
                path,
                format!(
                    "{:?} is not a 16-bit id ({expected}four hex digits)",
                    shown(&t)
                ),
            )
        })
}

/// The entries of the directory at `dir` as (name, path), sorted by name; empty when it does
/// not exist. A name that is not UTF-8 is garbage.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, CollectError> {
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CollectError::List {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.map_err(|source| CollectError::List {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| garbage(&path, "the entry's name is not UTF-8"))?;
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

fn pci(dir: &Path) -> Result<Vec<PciDevice>, CollectError> {
    let mut out = Vec::new();
    for (slot, path) in entries(dir)? {
        let vendor = id_attr(&path.join("vendor"), true)?;
        let device = id_attr(&path.join("device"), true)?;
        if let (Some(vendor), Some(device)) = (vendor, device) {
            let slot = checked_string(&path, slot)?;
            out.push(PciDevice {
                slot,
                vendor,
                device,
            });
        }
    }
    Ok(out)
}

fn usb(dir: &Path) -> Result<Vec<UsbDevice>, CollectError> {
    let mut out = Vec::new();
    for (port, path) in entries(dir)? {
        // `1-1:1.0` is an interface of device `1-1`, not a device of its own.
        if port.contains(':') {
            continue;
        }
        let vendor = id_attr(&path.join("idVendor"), false)?;
        let product = id_attr(&path.join("idProduct"), false)?;
        if let (Some(vendor), Some(product)) = (vendor, product) {
            let port = checked_string(&path, port)?;
            out.push(UsbDevice {
                port,
                vendor,
                product,
            });
        }
    }
    Ok(out)
}

/// The CPU model from cpuinfo: x86's `model name`, else ARM's `Hardware` (the SoC), else
/// `CPU part` (the core's part number); the first non-blank value of the first key present.
fn cpu_model(path: &Path) -> Result<Option<String>, CollectError> {
    let Some(text) = text(path, MAX_CPUINFO)? else {
        return Ok(None);
    };
    let value_of = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, v)| k.trim() == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
    };
    ["model name", "Hardware", "CPU part"]
        .into_iter()
        .find_map(value_of)
        .map(|v| checked_string(path, v))
        .transpose()
}

/// A MAC address as sysfs writes it, lower-cased: `Ok(None)` for a well-formed hardware
/// address that is not a 6-byte Ethernet one (InfiniBand's 20 bytes), which the inventory does
/// not list.
fn mac(path: &Path, text: &str) -> Result<Option<String>, CollectError> {
    let mac = text.to_ascii_lowercase();
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed = octets
        .iter()
        .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    match (well_formed, octets.len()) {
        (true, 6) => Ok(Some(mac)),
        (true, _) => Ok(None),
        (false, _) => Err(garbage(
            path,
            format!(
                "{:?} is not a hardware address (hex octets separated by ':')",
                shown(text)
            ),
        )),
    }
}

fn nics(dir: &Path) -> Result<Vec<Nic>, CollectError> {
    let mut out = Vec::new();
    for (name, path) in entries(dir)? {
        // Loopback, bridges, tunnels, VPNs: no `device` link to hardware behind them.
        if name == "lo" || std::fs::symlink_metadata(path.join("device")).is_err() {
            continue;
        }
        let address = path.join("address");
        let Some(text) = text(&address, MAX_ATTRIBUTE)? else {
            continue;
        };
        if let Some(mac) = mac(&address, &text)? {
            let name = checked_string(&path, name)?;
            out.push(Nic { name, mac });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn cpu_model_prefers_model_name_then_hardware_then_cpu_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpuinfo");
        let cases = [
            (
                "processor\t: 0\nmodel name\t: Intel(R) Celeron(R) J4125\nflags : fpu\n\
                 processor\t: 1\nmodel name\t: Intel(R) Celeron(R) J4125\n",
                Some("Intel(R) Celeron(R) J4125"),
            ),
            (
                "processor\t: 0\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\n",
                Some("BCM2835"),
            ),
            ("processor\t: 0\nCPU part\t: 0xd03\n", Some("0xd03")),
            (
                "processor\t: 0\nmodel name\t:\nCPU part : 0xd03\n",
                Some("0xd03"),
            ),
            ("processor\t: 0\n", None),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            assert_eq!(cpu_model(&path).unwrap().as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn only_six_octet_hex_addresses_are_listed_and_garbage_is_an_error() {
        let p = Path::new("address");
        assert_eq!(
            mac(p, "52:54:00:AB:cd:0F").unwrap().as_deref(),
            Some("52:54:00:ab:cd:0f")
        );
        let infiniband = ["80"; 20].join(":");
        assert_eq!(mac(p, &infiniband).unwrap(), None);
        let err = mac(p, "52:54:00:zz:cd:0f").unwrap_err().to_string();
        assert!(err.starts_with("address: "), "{err}");
        assert!(mac(p, "").is_err());
    }
}
