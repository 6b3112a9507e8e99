//! Firmware measurements: the list of (path, SHA-256) the agent extends into its application PCR,
//! and the rules both sides share. The agent measures each file once per TPM boot and again
//! whenever its hash changes; the verifier replays the list and requires it to reproduce the
//! quoted PCR, so a list that hides a measurement (or a PCR extended behind the agent's back) is
//! caught.
//!
//! Each entry is extended as `SHA-256("vouch-firmware-v1\0" || u32be(len(path)) || path ||
//! present || sha256)`, which binds the path to the hash: swapping two files' hashes changes the
//! PCR.

use serde::{Deserialize, Serialize};

use crate::bytes::Sha256Digest;
use crate::digest::{HashAlg, sha256};

/// Upper bound on entries in one boot's list (bounds verifier work and message size).
pub const MAX_ENTRIES: usize = 4096;
/// Upper bound on a path's length in bytes.
pub const MAX_PATH: usize = 4096;

const DOMAIN: &[u8] = b"vouch-firmware-v1\0";

/// A PCR that cannot hold firmware measurements (see [`check_pcr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "PCR {0} cannot hold firmware measurements: use 8-16 or 23 (0-7 belong to the platform \
     firmware, 17-22 start all-ones and only localities 1-4 can extend them)"
)]
pub struct UnusablePcr(pub u8);

/// The one check of a firmware PCR, used by the agent's config, the verifier's appraisal and
/// policies alike: an OS PCR that starts at zero and that software at locality 0 can extend
/// (8-16 and 23; PCRs 17-22 start all-ones and need localities 1-4).
pub fn check_pcr(pcr: u8) -> Result<(), UnusablePcr> {
    if matches!(pcr, 8..=16 | 23) {
        Ok(())
    } else {
        Err(UnusablePcr(pcr))
    }
}

/// Whether `pcr` can hold firmware measurements ([`check_pcr`] as a predicate).
pub fn usable_pcr(pcr: u8) -> bool {
    check_pcr(pcr).is_ok()
}

/// One measurement: the file's path as configured, and its SHA-256 (`None` when the file was
/// missing or unreadable at measurement time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareEntry {
    pub path: String,
    pub sha256: Option<Sha256Digest>,
}

impl FirmwareEntry {
    /// The digest extended into the PCR for this entry.
    pub fn event_digest(&self) -> Sha256Digest {
        let path = self.path.as_bytes();
        // MAX_PATH keeps this in range for valid entries; a longer path (rejected by
        // `check_list`) still hashes deterministically because the length saturates.
        let len = u32::try_from(path.len()).unwrap_or(u32::MAX).to_be_bytes();
        let (present, hash) = match &self.sha256 {
            Some(h) => (1u8, h.0),
            None => (0u8, [0u8; 32]),
        };
        let mut buf = Vec::with_capacity(DOMAIN.len() + 4 + path.len() + 33);
        buf.extend_from_slice(DOMAIN);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(path);
        buf.push(present);
        buf.extend_from_slice(&hash);
        Sha256Digest(sha256(&buf))
    }
}

/// The value a freshly reset PCR reaches after extending every entry in order.
pub fn replay(entries: &[FirmwareEntry]) -> Sha256Digest {
    replay_from(&Sha256Digest::ZERO, entries)
}

/// The value the PCR reaches from `start` after extending every entry in order. `start` is what
/// the boot chain left in the PCR before the agent's first measurement: zero, or, when the
/// firmware event log extends the same PCR (shim measures MokList into PCR 14), the log's
/// replayed value.
pub fn replay_from(start: &Sha256Digest, entries: &[FirmwareEntry]) -> Sha256Digest {
    let mut pcr = start.0.to_vec();
    for e in entries {
        HashAlg::Sha256.extend(&mut pcr, &e.event_digest().0);
    }
    // extend() always yields a digest of the bank's length.
    Sha256Digest::from_slice(&pcr).unwrap_or(Sha256Digest::ZERO)
}

/// Checks the bounds a verifier enforces on a received list.
pub fn check_list(entries: &[FirmwareEntry]) -> Result<(), String> {
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "firmware list has {} entries (limit {MAX_ENTRIES})",
            entries.len()
        ));
    }
    if let Some(e) = entries
        .iter()
        .find(|e| e.path.is_empty() || e.path.len() > MAX_PATH)
    {
        return Err(format!(
            "firmware path of {} bytes is empty or over {MAX_PATH}",
            e.path.len()
        ));
    }
    Ok(())
}

/// The agent's persistent list for one TPM boot (identified by the TPM's resetCount).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareLog {
    pub reset_count: u32,
    pub entries: Vec<FirmwareEntry>,
}

/// The PCR does not equal the replay of any prefix of the list: something other than this agent
/// extended it, or the stored list was lost. The agent cannot repair that; the verifier will
/// report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrDiverged;

impl FirmwareLog {
    /// Decides what to measure now. `current` holds a fresh hash of every configured file.
    /// On a new TPM boot the list restarts; otherwise only files whose hash differs from their
    /// latest entry are measured again. The returned entries have been appended to `self`: the
    /// caller persists the log *before* extending them, so a crash in between is recoverable
    /// with [`FirmwareLog::unextended`].
    pub fn plan(&mut self, reset_count: u32, current: &[FirmwareEntry]) -> Vec<FirmwareEntry> {
        if reset_count != self.reset_count {
            self.reset_count = reset_count;
            self.entries.clear();
        }
        let mut new = Vec::new();
        for entry in current {
            let latest = self.entries.iter().rev().find(|e| e.path == entry.path);
            if latest.map(|e| &e.sha256) != Some(&entry.sha256) {
                new.push(entry.clone());
                self.entries.push(entry.clone());
            }
        }
        new
    }

    /// Given the PCR's value before any of this boot's measurements (`start`, see
    /// [`replay_from`]) and its current value, the entries of the list not yet extended into it
    /// (an empty slice when the PCR is up to date).
    pub fn unextended(
        &self,
        start: &Sha256Digest,
        pcr: &Sha256Digest,
    ) -> Result<&[FirmwareEntry], PcrDiverged> {
        let mut value = start.0.to_vec();
        if value == pcr.0 {
            return Ok(&self.entries);
        }
        for (i, e) in self.entries.iter().enumerate() {
            HashAlg::Sha256.extend(&mut value, &e.event_digest().0);
            if value == pcr.0 {
                return Ok(self.entries.get(i + 1..).unwrap_or_default());
            }
        }
        Err(PcrDiverged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, byte: u8) -> FirmwareEntry {
        FirmwareEntry {
            path: path.into(),
            sha256: Some(Sha256Digest([byte; 32])),
        }
    }

    #[test]
    fn replay_binds_path_to_hash() {
        let a = [entry("/a", 1), entry("/b", 2)];
        let swapped = [entry("/a", 2), entry("/b", 1)];
        assert_ne!(replay(&a), replay(&swapped));
        assert_eq!(replay(&[]), Sha256Digest::ZERO);
    }

    #[test]
    fn missing_file_is_distinct_from_any_hash() {
        let missing = FirmwareEntry {
            path: "/a".into(),
            sha256: None,
        };
        assert_ne!(missing.event_digest(), entry("/a", 0).event_digest());
    }

    #[test]
    fn plan_measures_everything_on_a_new_boot_and_only_changes_after() {
        let mut log = FirmwareLog::default();
        let cur = [entry("/a", 1), entry("/b", 2)];
        assert_eq!(log.plan(1, &cur).len(), 2);
        assert!(log.plan(1, &cur).is_empty());
        let changed = [entry("/a", 1), entry("/b", 3)];
        assert_eq!(log.plan(1, &changed), vec![entry("/b", 3)]);
        assert_eq!(log.entries.len(), 3);
        // Changing back is a new measurement too: what was measured stays measured.
        assert_eq!(log.plan(1, &cur), vec![entry("/b", 2)]);
        // New boot: the list restarts.
        assert_eq!(log.plan(2, &cur).len(), 2);
        assert_eq!(log.entries.len(), 2);
    }

    #[test]
    fn unextended_finds_the_suffix_a_crash_left_behind() {
        let mut log = FirmwareLog::default();
        log.plan(1, &[entry("/a", 1), entry("/b", 2)]);
        let zero = Sha256Digest::ZERO;
        let after_first = replay(&log.entries[..1]);
        assert_eq!(
            log.unextended(&zero, &after_first).unwrap(),
            &log.entries[1..]
        );
        assert_eq!(log.unextended(&zero, &zero).unwrap().len(), 2);
        assert!(
            log.unextended(&zero, &replay(&log.entries))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            log.unextended(&zero, &Sha256Digest([9; 32])),
            Err(PcrDiverged)
        );
        // On top of what the boot chain left in the PCR (shim's MokList in PCR 14).
        let shim = Sha256Digest([7; 32]);
        let all = replay_from(&shim, &log.entries);
        assert!(log.unextended(&shim, &all).unwrap().is_empty());
        assert_eq!(log.unextended(&zero, &all), Err(PcrDiverged));
    }

    #[test]
    fn only_resettable_locality_0_pcrs_are_usable() {
        assert!(usable_pcr(14) && usable_pcr(8) && usable_pcr(16) && usable_pcr(23));
        assert!(!usable_pcr(7) && !usable_pcr(17) && !usable_pcr(22) && !usable_pcr(24));
        for pcr in 0..=u8::MAX {
            assert_eq!(check_pcr(pcr).is_ok(), usable_pcr(pcr), "PCR {pcr}");
        }
        let e = check_pcr(17).unwrap_err().to_string();
        assert!(e.contains("PCR 17") && e.contains("8-16 or 23"), "{e}");
    }

    #[test]
    fn check_list_bounds_paths_and_count() {
        assert!(check_list(&[entry("/a", 1)]).is_ok());
        assert!(check_list(&[entry("", 1)]).is_err());
        assert!(check_list(&[entry(&"x".repeat(MAX_PATH + 1), 1)]).is_err());
        let many = vec![entry("/a", 1); MAX_ENTRIES + 1];
        assert!(check_list(&many).is_err());
    }
}
