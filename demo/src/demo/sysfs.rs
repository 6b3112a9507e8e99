//! Each demo terminal's fake hardware: a tree under `TERMINAL/sysfs` laid out like the parts of
//! `/sys` and `/proc` that `vouch-agent --sysfs-root` reads (SMBIOS/DMI strings, PCI and USB
//! ids, the CPU model, NIC addresses), written from an [`Inventory`]. The TPM's part of the
//! inventory comes from the TPM itself, so it is not written here.
//!
//! The demo's terminals are an "Acme Terminals T-100": a small x86 board with a Realtek NIC,
//! a USB card reader and a fingerprint sensor ([`acme_t100`]; [`simulated_t100`] for simulated
//! ones). The hidden-board act rewrites one
//! terminal's board strings ([`swap_board`]) the way a swapped mainboard would report itself.

use anyhow::{Context, Result};
use std::path::Path;
use vouch_protocol::inventory::{Inventory, Nic, PciDevice, Smbios, TpmInfo, UsbDevice};

/// The brand on the terminals' cases (and in their SMBIOS system strings).
const BRAND: &str = "Acme Terminals";

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {}", path.display()))
}

/// The inventory of demo terminal number `n` (1-based): the same board for every terminal,
/// a NIC address of its own.
pub(crate) fn acme_t100(n: usize) -> Inventory {
    let [hi, lo] = u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes();
    Inventory {
        smbios: Smbios {
            board_vendor: Some(BRAND.into()),
            board_name: Some("T-100 mainboard rev B".into()),
            sys_vendor: Some(BRAND.into()),
            product_name: Some("T-100".into()),
            bios_vendor: Some("American Megatrends Inc.".into()),
            bios_version: Some("1.0.7".into()),
        },
        cpu_model: Some("Intel(R) Celeron(R) N4020 CPU @ 1.10GHz".into()),
        pci: vec![
            pci("0000:00:00.0", 0x8086, 0x31f0), // host bridge
            pci("0000:00:02.0", 0x8086, 0x3185), // UHD Graphics 600
            pci("0000:00:15.0", 0x8086, 0x31a8), // USB 3.0 xHCI
            pci("0000:01:00.0", 0x10ec, 0x8168), // RTL8111 Ethernet
        ],
        usb: vec![
            usb("usb1", 0x1d6b, 0x0002), // root hub
            usb("1-1", 0x072f, 0x2200),  // ACR122U card reader
            usb("1-2", 0x27c6, 0x5385),  // fingerprint sensor
        ],
        tpm: None,
        nics: vec![Nic {
            name: "enp1s0".into(),
            // Realtek's OUI, then the terminal's number.
            mac: format!("00:e0:4c:68:{hi:02x}:{lo:02x}"),
        }],
    }
}

/// The one inventory of every SIMULATED demo terminal (`vouch-provision batch --inventory`
/// gives all terminals of a batch the same): a T-100 without its NIC (the terminals would
/// share a MAC address), with the simulated TPM, which reports manufacturer `SIM`.
pub(crate) fn simulated_t100() -> Inventory {
    let mut inv = acme_t100(1);
    inv.nics.clear();
    inv.tpm = Some(TpmInfo {
        manufacturer: "SIM".into(),
        firmware_version: "0.0".into(),
    });
    inv.normalize();
    inv
}

fn pci(slot: &str, vendor: u16, device: u16) -> PciDevice {
    PciDevice {
        slot: slot.into(),
        vendor,
        device,
    }
}

fn usb(port: &str, vendor: u16, product: u16) -> UsbDevice {
    UsbDevice {
        port: port.into(),
        vendor,
        product,
    }
}

/// Writes `inv` as a fake tree under `root` (created if needed). Entries the agent must skip
/// are there too, as on a real machine: the loopback interface, a virtual bridge without a
/// `device` entry, and a USB interface (`1-1:1.0`).
pub(crate) fn write_tree(root: &Path, inv: &Inventory) -> Result<()> {
    let dmi = root.join("sys/class/dmi/id");
    let s = &inv.smbios;
    for (field, value) in [
        ("board_vendor", &s.board_vendor),
        ("board_name", &s.board_name),
        ("sys_vendor", &s.sys_vendor),
        ("product_name", &s.product_name),
        ("bios_vendor", &s.bios_vendor),
        ("bios_version", &s.bios_version),
    ] {
        if let Some(v) = value {
            write(&dmi.join(field), v)?;
        }
    }
    if let Some(cpu) = &inv.cpu_model {
        write(
            &root.join("proc/cpuinfo"),
            &format!("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {cpu}\n"),
        )?;
    }
    for p in &inv.pci {
        let d = root.join("sys/bus/pci/devices").join(&p.slot);
        write(&d.join("vendor"), &format!("0x{:04x}", p.vendor))?;
        write(&d.join("device"), &format!("0x{:04x}", p.device))?;
    }
    let usb = root.join("sys/bus/usb/devices");
    for u in &inv.usb {
        let d = usb.join(&u.port);
        write(&d.join("idVendor"), &format!("{:04x}", u.vendor))?;
        write(&d.join("idProduct"), &format!("{:04x}", u.product))?;
    }
    write(&usb.join("1-1:1.0/bInterfaceClass"), "0b")?;
    let net = root.join("sys/class/net");
    for n in &inv.nics {
        write(&net.join(&n.name).join("address"), &n.mac)?;
        std::fs::create_dir_all(net.join(&n.name).join("device"))?;
    }
    write(&net.join("lo/address"), "00:00:00:00:00:00")?;
    write(&net.join("br0/address"), "02:42:ac:11:00:01")?;
    Ok(())
}

/// The board strings of the tree under `root` now say `vendor` / `name`: what a terminal whose
/// mainboard was swapped reports, while its system strings still carry the brand.
pub(crate) fn swap_board(root: &Path, vendor: &str, name: &str) -> Result<()> {
    let dmi = root.join("sys/class/dmi/id");
    write(&dmi.join("board_vendor"), vendor)?;
    write(&dmi.join("board_name"), name)
}

/// The SMBIOS system vendor the tree under `root` reports (the brand on the case).
pub(crate) fn sys_vendor(root: &Path) -> Result<String> {
    let path = root.join("sys/class/dmi/id/sys_vendor");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_tree_reads_back_as_the_inventory_it_was_written_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut inv = acme_t100(3);
        write_tree(dir.path(), &inv).unwrap();
        inv.normalize();
        assert_eq!(vouch_agent::inventory::read(dir.path()).unwrap(), inv);

        swap_board(dir.path(), "Hidden Board Co", "HB-X1").unwrap();
        let swapped = vouch_agent::inventory::read(dir.path()).unwrap();
        assert_eq!(
            swapped.smbios.board_vendor.as_deref(),
            Some("Hidden Board Co")
        );
        assert_eq!(swapped.smbios.sys_vendor.as_deref(), Some(BRAND));
        let changes = vouch_protocol::inventory::diff(&inv, &swapped);
        assert_eq!(changes.len(), 2, "{changes:?}");
    }
}
