//! Firmware measurement on the terminal: hash each configured file, extend what is new or
//! changed into the application PCR, and recover from a crash between recording and extending.
//! The decisions (what is new, what a crash left unextended) are the protocol core's
//! (`FirmwareLog`); this module does the file and TPM I/O.
//!
//! The hardware inventory's digest rides the same list as the reserved entry
//! `vouch:inventory` (see `vouch_protocol::inventory`), after the files: it is recorded, then
//! extended, and repaired after a crash exactly as a file is, and measured again only when it
//! differs from the newest inventory entry of this boot. Configured file paths may not use the
//! reserved `vouch:` prefix ([`check_firmware_paths`]), so no file can pose as the inventory.

use anyhow::{Context, Result, bail};
use std::io;
use std::path::{Path, PathBuf};
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::firmware::{FirmwareEntry, FirmwareLog};

use crate::state::StateDir;
use crate::tpm::AgentTpm;

/// Hashes every configured file. A missing or unreadable file is measured as absent (the
/// verifier reports it) rather than failing the attestation, so a terminal with a broken file
/// system is quarantined rather than silent. A relative path is read from `base` when given
/// (else from the working directory); the entry keeps the path as configured, which is the name
/// reference values use.
pub fn hash_files(paths: &[PathBuf], base: Option<&Path>) -> Vec<FirmwareEntry> {
    paths
        .iter()
        .map(|p| {
            let at = base.map_or_else(|| p.clone(), |b| b.join(p));
            let sha256 = match hash_file(&at) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "firmware file cannot be read; measuring it as missing");
                    None
                }
            };
            FirmwareEntry {
                path: p.to_string_lossy().into_owned(),
                sha256,
            }
        })
        .collect()
}

/// The prefix of list paths the agent reserves for its own entries (`vouch:inventory`).
pub const RESERVED_PREFIX: &str = "vouch:";

/// Refuses a configured firmware path in the reserved namespace ([`RESERVED_PREFIX`]), which
/// would let a file's hash stand in for the inventory's measurement.
pub fn check_firmware_paths(paths: &[PathBuf]) -> Result<()> {
    if let Some(p) = paths
        .iter()
        .find(|p| p.to_string_lossy().starts_with(RESERVED_PREFIX))
    {
        bail!(
            "firmware path {} starts with {RESERVED_PREFIX:?}, which the agent reserves for its \
             own measurements (the hardware inventory is measured as {:?})",
            p.display(),
            vouch_protocol::inventory::INVENTORY_PATH
        );
    }
    Ok(())
}

fn hash_file(path: &Path) -> io::Result<Sha256Digest> {
    vouch_common::fs::sha256_file(path).map(Sha256Digest)
}

/// Brings the application PCR and the stored list up to date for the current TPM boot and
/// returns the full list to send with the evidence. `files` are read as [`hash_files`] reads
/// them; `reserved` entries (the inventory's measurement) are planned after them, by the same
/// rule: measured when they differ from the newest entry of the same path.
pub fn measure(
    tpm: &mut dyn AgentTpm,
    state: &StateDir,
    pcr: u8,
    start: &Sha256Digest,
    reset_count: u32,
    files: (&[PathBuf], Option<&Path>),
    reserved: &[FirmwareEntry],
) -> Result<FirmwareLog> {
    // `RunConfig::resolve` refuses these already; a shell that builds its config by hand
    // (the demo) is held to the same rule here.
    check_firmware_paths(files.0)?;
    let mut log = state.firmware_log()?;
    if log.reset_count == reset_count {
        // Same boot: first repair a crash between saving the list and extending the PCR.
        let current = read_pcr(tpm, pcr)?;
        match log.unextended(start, &current) {
            Ok(pending) => {
                for e in pending {
                    tracing::info!(path = %e.path, "extending a measurement recorded before a restart");
                    extend(tpm, pcr, e)?;
                }
            }
            Err(_) => tracing::warn!(
                pcr,
                "PCR no longer matches the firmware list: something else extended it; the verifier will report this"
            ),
        }
    }
    let mut fresh = hash_files(files.0, files.1);
    fresh.extend_from_slice(reserved);
    let new = log.plan(reset_count, &fresh);
    if !new.is_empty() {
        // Record first, then extend: a crash in between is repaired by `unextended` above.
        state.save_firmware_log(&log)?;
        for e in &new {
            tracing::info!(path = %e.path, sha256 = ?e.sha256, pcr, "measuring");
            extend(tpm, pcr, e)?;
        }
    }
    Ok(log)
}

fn read_pcr(tpm: &mut dyn AgentTpm, pcr: u8) -> Result<Sha256Digest> {
    let values = tpm
        .pcr_read(&[pcr])
        .context("reading the application PCR")?;
    let (_, v) = values
        .into_iter()
        .find(|(i, _)| *i == pcr)
        .with_context(|| format!("the TPM returned no value for PCR {pcr}"))?;
    Ok(Sha256Digest(v))
}

fn extend(tpm: &mut dyn AgentTpm, pcr: u8, e: &FirmwareEntry) -> Result<()> {
    tpm.pcr_extend(pcr, &e.event_digest().0)
        .with_context(|| format!("extending PCR {pcr} with {}", e.path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn relative_firmware_paths_are_read_from_the_base_and_keep_their_configured_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("firmware.bin"), b"fw").unwrap();
        let paths = [PathBuf::from("firmware.bin")];
        let [entry] = hash_files(&paths, Some(dir.path())).try_into().unwrap();
        assert_eq!(entry.path, "firmware.bin");
        assert_eq!(
            entry.sha256,
            Some(Sha256Digest(
                vouch_common::fs::sha256_file(&dir.path().join("firmware.bin")).unwrap()
            ))
        );
        // An absolute path ignores the base, and without a base the working directory is used
        // (where this file does not exist: measured as absent, not an error).
        let absolute = [dir.path().join("firmware.bin")];
        let [entry] = hash_files(&absolute, Some(Path::new("/nonexistent")))
            .try_into()
            .unwrap();
        assert!(entry.sha256.is_some());
        let [entry] = hash_files(&paths, None).try_into().unwrap();
        assert_eq!(entry.sha256, None);
    }

    #[test]
    fn firmware_paths_in_the_reserved_namespace_are_refused() {
        let inventory = PathBuf::from(vouch_protocol::inventory::INVENTORY_PATH);
        let err = check_firmware_paths(&[PathBuf::from("/fw.bin"), inventory]).unwrap_err();
        assert!(format!("{err:#}").contains("vouch:inventory"), "{err:#}");
        assert!(check_firmware_paths(&[PathBuf::from("vouch:other")]).is_err());
        // Positive control: ordinary paths, absolute or relative, pass.
        check_firmware_paths(&[PathBuf::from("/opt/fw.bin"), PathBuf::from("fw.bin")]).unwrap();
    }
}
