//! Synthesis of well-formed TCG event logs: a builder for crypto-agile logs and encoders for the
//! UEFI structures their events carry. Compiled only for this crate's tests and with the
//! `eventlog-builder` feature, which `vouch-test-kit` turns on and re-exports as
//! `vouch_test_kit::eventlog`: tests, fuzz seeds, benchmarks and the demo use it, and so do the
//! end-to-end tests, which extend the very digests a synthesized log records into a
//! software TPM (see [`LogBuilder::extends`]) so that a real quote and a log agree.

use crate::digest::HashAlg;
use crate::eventlog::{EventType, Guid};

// The event types and GUIDs are the parser's ([`EventType`], [`Guid`]): one definition, here
// only as the raw values a log carries.
pub const EV_NO_ACTION: u32 = EventType::NO_ACTION.0;
pub const EV_SEPARATOR: u32 = EventType::SEPARATOR.0;
pub const EV_S_CRTM_VERSION: u32 = EventType::S_CRTM_VERSION.0;
pub const EV_IPL: u32 = EventType::IPL.0;
pub const EV_POST_CODE: u32 = EventType::POST_CODE.0;
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = EventType::EFI_VARIABLE_DRIVER_CONFIG.0;
pub const EV_EFI_VARIABLE_BOOT: u32 = EventType::EFI_VARIABLE_BOOT.0;
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = EventType::EFI_BOOT_SERVICES_APPLICATION.0;
pub const EV_EFI_ACTION: u32 = EventType::EFI_ACTION.0;
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = EventType::EFI_PLATFORM_FIRMWARE_BLOB.0;
pub const EV_EFI_VARIABLE_AUTHORITY: u32 = EventType::EFI_VARIABLE_AUTHORITY.0;

/// `EFI_GLOBAL_VARIABLE` in its in-memory byte order.
pub const GLOBAL_VARIABLE: [u8; 16] = Guid::GLOBAL_VARIABLE.0;
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` in its in-memory byte order.
pub const IMAGE_SECURITY_DATABASE: [u8; 16] = Guid::IMAGE_SECURITY_DATABASE.0;
/// `EFI_CERT_SHA256_GUID` in its in-memory byte order.
pub const CERT_SHA256: [u8; 16] = Guid::CERT_SHA256.0;

fn le32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

fn le64(n: usize) -> [u8; 8] {
    u64::try_from(n).unwrap_or(u64::MAX).to_le_bytes()
}

/// Builds a crypto-agile log: the Spec ID header, then `TCG_PCR_EVENT2` records whose digests
/// are computed in every bank.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    banks: Vec<HashAlg>,
    bytes: Vec<u8>,
    events: usize,
    /// (PCR, digest per bank) of every event that extends a PCR, in log order.
    extends: Vec<(u32, Vec<Vec<u8>>)>,
}

impl LogBuilder {
    /// A log declaring `banks` (in that order) in its Spec ID event.
    pub fn new(banks: &[HashAlg]) -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, uintnSize 2 (64-bit)
        spec.extend_from_slice(&le32(banks.len()));
        for alg in banks {
            spec.extend_from_slice(&alg.tcg_id().to_le_bytes());
            spec.extend_from_slice(&u16::try_from(alg.digest_len()).unwrap_or(0).to_le_bytes());
        }
        spec.push(0); // vendorInfoSize
        Self {
            banks: banks.to_vec(),
            bytes: legacy_record(0, EV_NO_ACTION, &[0; 20], &spec),
            events: 1,
            extends: Vec::new(),
        }
    }

    /// An event whose digests are the hashes of its data.
    pub fn event(&mut self, pcr: u32, event_type: u32, data: &[u8]) -> &mut Self {
        self.event_measuring(pcr, event_type, data, data)
    }

    /// An event whose digests are the hashes of `measured` (e.g. an image) rather than of its
    /// data.
    pub fn event_measuring(
        &mut self,
        pcr: u32,
        event_type: u32,
        measured: &[u8],
        data: &[u8],
    ) -> &mut Self {
        let digests: Vec<Vec<u8>> = self.banks.iter().map(|alg| alg.hash(&[measured])).collect();
        self.record(pcr, event_type, &digests, data)
    }

    /// An `EV_NO_ACTION` event (zero digests) with `data`.
    pub fn no_action(&mut self, data: &[u8]) -> &mut Self {
        let digests: Vec<Vec<u8>> = self.banks.iter().map(|alg| alg.zero_pcr()).collect();
        self.record(0, EV_NO_ACTION, &digests, data)
    }

    /// The `EV_NO_ACTION` StartupLocality event.
    pub fn startup_locality(&mut self, locality: u8) -> &mut Self {
        let mut data = b"StartupLocality\0".to_vec();
        data.push(locality);
        self.no_action(&data)
    }

    /// The EV_SEPARATOR events that end the pre-OS phase for PCRs 0..=7.
    pub fn separators(&mut self) -> &mut Self {
        for pcr in 0..=7 {
            self.event(pcr, EV_SEPARATOR, &[0; 4]);
        }
        self
    }

    fn record(&mut self, pcr: u32, event_type: u32, digests: &[Vec<u8>], data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&pcr.to_le_bytes());
        self.bytes.extend_from_slice(&event_type.to_le_bytes());
        self.bytes.extend_from_slice(&le32(digests.len()));
        for (alg, digest) in self.banks.iter().zip(digests) {
            self.bytes.extend_from_slice(&alg.tcg_id().to_le_bytes());
            self.bytes.extend_from_slice(digest);
        }
        self.bytes.extend_from_slice(&le32(data.len()));
        self.bytes.extend_from_slice(data);
        self.events += 1;
        if event_type != EV_NO_ACTION {
            self.extends.push((pcr, digests.to_vec()));
        }
        self
    }

    /// The (PCR, digest) pairs a TPM must be extended with, in order, for its `alg` bank to
    /// match this log (EV_NO_ACTION events extend nothing). Empty for an undeclared bank.
    pub fn extends(&self, alg: HashAlg) -> Vec<(u32, Vec<u8>)> {
        let Some(i) = self.banks.iter().position(|b| *b == alg) else {
            return Vec::new();
        };
        self.extends
            .iter()
            .filter_map(|(pcr, d)| d.get(i).map(|d| (*pcr, d.clone())))
            .collect()
    }

    /// Number of events so far, the header included.
    pub fn len(&self) -> usize {
        self.events
    }

    /// True when only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.events <= 1
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// A legacy `TCG_PCR_EVENT` record.
pub fn legacy_record(pcr: u32, event_type: u32, digest: &[u8; 20], data: &[u8]) -> Vec<u8> {
    let mut out = pcr.to_le_bytes().to_vec();
    out.extend_from_slice(&event_type.to_le_bytes());
    out.extend_from_slice(digest);
    out.extend_from_slice(&le32(data.len()));
    out.extend_from_slice(data);
    out
}

/// NUL-terminated UTF-16LE.
pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A `UEFI_VARIABLE_DATA`.
pub fn uefi_variable(vendor: [u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vendor.to_vec();
    out.extend_from_slice(&le64(name.encode_utf16().count()));
    out.extend_from_slice(&le64(data.len()));
    out.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
    out.extend_from_slice(data);
    out
}

/// An `EFI_SIGNATURE_LIST` of `count` SHA-256 entries.
pub fn sha256_signature_list(count: usize) -> Vec<u8> {
    let mut out = CERT_SHA256.to_vec();
    out.extend_from_slice(&le32(28 + 48 * count));
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&48u32.to_le_bytes());
    for i in 0..count {
        out.extend_from_slice(&[0xbd; 16]);
        out.extend_from_slice(&HashAlg::Sha256.hash(&[&le64(i)]));
    }
    out
}

/// A device path: PciRoot(0x0)/Pci(0x1,0x1)/HD(1,GPT,...)/`file`.
pub fn device_path(file: &str) -> Vec<u8> {
    fn node(out: &mut Vec<u8>, node_type: u8, sub_type: u8, data: &[u8]) {
        out.extend_from_slice(&[node_type, sub_type]);
        out.extend_from_slice(&u16::try_from(data.len() + 4).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(data);
    }
    let mut out = Vec::new();
    node(&mut out, 2, 1, &[0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0]);
    node(&mut out, 1, 1, &[1, 1]);
    let mut hd = 1u32.to_le_bytes().to_vec();
    hd.extend_from_slice(&0x800u64.to_le_bytes());
    hd.extend_from_slice(&0x10_0000u64.to_le_bytes());
    hd.extend_from_slice(&[0x5a; 16]);
    hd.extend_from_slice(&[2, 2]);
    node(&mut out, 4, 1, &hd);
    node(&mut out, 4, 4, &utf16z(file));
    node(&mut out, 0x7f, 0xff, &[]);
    out
}

/// A `UEFI_IMAGE_LOAD_EVENT` for an image loaded from `file`.
pub fn image_load(file: &str) -> Vec<u8> {
    let path = device_path(file);
    let mut out = 0x7d00_0000u64.to_le_bytes().to_vec();
    out.extend_from_slice(&0x10_0000u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&le64(path.len()));
    out.extend_from_slice(&path);
    out
}

/// The platform firmware's part of a boot: CRTM version, a firmware volume, and the Secure Boot
/// policy (SecureBoot, PK, KEK, db and a dbx of `dbx_entries` SHA-256 revocations).
fn platform(log: &mut LogBuilder, secure_boot: bool, dbx_entries: usize) {
    log.event(0, EV_S_CRTM_VERSION, &utf16z("1.0"));
    let mut blob = 0x82_0000u64.to_le_bytes().to_vec();
    blob.extend_from_slice(&0xe_0000u64.to_le_bytes());
    log.event_measuring(0, EV_EFI_PLATFORM_FIRMWARE_BLOB, b"firmware volume", &blob);
    let variables = [
        (GLOBAL_VARIABLE, "SecureBoot", vec![u8::from(secure_boot)]),
        (GLOBAL_VARIABLE, "PK", sha256_signature_list(1)),
        (GLOBAL_VARIABLE, "KEK", sha256_signature_list(2)),
        (IMAGE_SECURITY_DATABASE, "db", sha256_signature_list(3)),
        (
            IMAGE_SECURITY_DATABASE,
            "dbx",
            sha256_signature_list(dbx_entries),
        ),
    ];
    for (vendor, name, data) in variables {
        log.event(
            7,
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            &uefi_variable(vendor, name, &data),
        );
    }
}

/// What a synthesized terminal boot measures; [`TerminalBoot::log`] turns it into a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalBoot {
    pub secure_boot: bool,
    /// Entries in the dbx revocation list.
    pub dbx_entries: usize,
    /// The boot loader image (measured as `\EFI\BOOT\BOOTX64.EFI`).
    pub bootloader: Vec<u8>,
    /// The kernel command line (an EV_IPL event in PCR 8).
    pub kernel_cmdline: String,
}

impl Default for TerminalBoot {
    fn default() -> Self {
        Self {
            secure_boot: true,
            dbx_entries: 371,
            bootloader: b"terminal boot loader 2.1".to_vec(),
            kernel_cmdline: "/vmlinuz root=/dev/mmcblk0p2 ro quiet".into(),
        }
    }
}

impl TerminalBoot {
    /// A sha256-only crypto-agile log of this boot: CRTM, firmware volume, Secure Boot policy,
    /// boot order, separators, the boot loader, its authority, the kernel command line.
    pub fn log(&self) -> LogBuilder {
        let mut log = LogBuilder::new(&[HashAlg::Sha256]);
        platform(&mut log, self.secure_boot, self.dbx_entries);
        log.event(
            1,
            EV_EFI_VARIABLE_BOOT,
            &uefi_variable(GLOBAL_VARIABLE, "BootOrder", &[1, 0, 0, 0]),
        );
        log.event(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        );
        log.separators();
        log.event_measuring(
            4,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            &self.bootloader,
            &image_load("\\EFI\\BOOT\\BOOTX64.EFI"),
        );
        log.event(
            7,
            EV_EFI_VARIABLE_AUTHORITY,
            &uefi_variable(IMAGE_SECURITY_DATABASE, "db", &[0x30; 64]),
        );
        log.event(
            8,
            EV_IPL,
            format!("kernel_cmdline: {}\0", self.kernel_cmdline).as_bytes(),
        );
        log.event(5, EV_EFI_ACTION, b"Exit Boot Services Invocation");
        log
    }
}

/// A firmware boot sequence like OVMF + shim + GRUB produce, `ipl_events` GRUB commands long.
pub fn typical_boot(banks: &[HashAlg], ipl_events: usize) -> LogBuilder {
    let mut log = LogBuilder::new(banks);
    platform(&mut log, true, 371);
    log.event(7, EV_SEPARATOR, &[0; 4]);
    log.event(
        1,
        EV_EFI_VARIABLE_BOOT,
        &uefi_variable(GLOBAL_VARIABLE, "BootOrder", &[1, 0, 0, 0]),
    );
    log.event(
        4,
        EV_EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    );
    for pcr in 0..=6 {
        log.event(pcr, EV_SEPARATOR, &[0; 4]);
    }
    log.event_measuring(
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        b"shim image",
        &image_load("\\EFI\\BOOT\\BOOTX64.EFI"),
    );
    log.event(
        7,
        EV_EFI_VARIABLE_AUTHORITY,
        &uefi_variable(IMAGE_SECURITY_DATABASE, "db", &[0x30; 64]),
    );
    log.event_measuring(
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        b"grub image",
        &image_load("\\EFI\\BOOT\\grubx64.efi"),
    );
    for i in 0..ipl_events {
        let command = format!("grub_cmd: set option_{i}=value\0");
        log.event(8, EV_IPL, command.as_bytes());
    }
    log.event(
        8,
        EV_IPL,
        b"kernel_cmdline: /vmlinuz root=/dev/sda2 ro quiet\0",
    );
    log.event(5, EV_EFI_ACTION, b"Exit Boot Services Invocation");
    log.event(
        5,
        EV_EFI_ACTION,
        b"Exit Boot Services Returned with Success",
    );
    log
}

/// A tampered copy of the log `bytes`: its first `pcr` event of type `event_type` removed
/// (`relabel` `None`), or that event's type field rewritten to `relabel` — what a tampered
/// terminal would send to hide or reclassify a measurement. `None` when `bytes` does not parse
/// or holds no such event.
pub fn doctor_event(
    bytes: &[u8],
    pcr: u32,
    event_type: super::EventType,
    relabel: Option<super::EventType>,
) -> Option<Vec<u8>> {
    let log = super::parse(bytes).ok()?;
    let i = log
        .events
        .iter()
        .position(|e| e.pcr == pcr && e.event_type == event_type)?;
    let start = log.events.get(i)?.offset;
    let end = log.events.get(i + 1).map_or(bytes.len(), |e| e.offset);
    let mut out = bytes.to_vec();
    match relabel {
        // TCG_PCR_EVENT2: pcrIndex (u32) then eventType (u32), little-endian.
        Some(t) => out
            .get_mut(start + 4..start + 8)?
            .copy_from_slice(&t.0.to_le_bytes()),
        None => {
            out.drain(start..end.min(out.len()));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_reproduce_the_replay() {
        let log = TerminalBoot::default().log();
        let parsed = crate::eventlog::parse(&log.bytes()).unwrap();
        let replay = parsed.replay();
        let mut pcrs = std::collections::BTreeMap::<u32, Vec<u8>>::new();
        for (pcr, digest) in log.extends(HashAlg::Sha256) {
            HashAlg::Sha256.extend(
                pcrs.entry(pcr)
                    .or_insert_with(|| HashAlg::Sha256.zero_pcr()),
                &digest,
            );
        }
        for (pcr, value) in &pcrs {
            assert_eq!(
                replay.get(HashAlg::Sha256, *pcr),
                Some(value.as_slice()),
                "PCR {pcr}"
            );
        }
        assert!(log.extends(HashAlg::Sha1).is_empty());
        assert_eq!(parsed.secure_boot_enabled(), Some(true));
        assert_eq!(parsed.dbx_entry_count(), Some(371));
    }

    #[test]
    fn terminal_boot_variations_show_in_the_log() {
        let off = TerminalBoot {
            secure_boot: false,
            dbx_entries: 10,
            ..TerminalBoot::default()
        };
        let parsed = crate::eventlog::parse(&off.log().bytes()).unwrap();
        assert_eq!(parsed.secure_boot_enabled(), Some(false));
        assert_eq!(parsed.dbx_entry_count(), Some(10));
        let paths: Vec<String> = parsed
            .events
            .iter()
            .filter_map(|e| e.class())
            .map(|c| c.subject().to_owned())
            .collect();
        assert!(
            paths.iter().any(|p| p == "\\EFI\\BOOT\\BOOTX64.EFI"),
            "{paths:?}"
        );
    }
}
