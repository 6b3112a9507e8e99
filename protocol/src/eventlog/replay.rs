//! [`Replay`]: the PCR values an event log implies, computed by extending every event's digests
//! into simulated PCR banks as the TPM did.

use std::collections::{BTreeMap, BTreeSet};

use super::{EventData, EventLog, EventType};
use crate::digest::HashAlg;

/// The locality of the H-CRTM, which PCR 0 starts from when one ran before TPM2_Startup.
const H_CRTM_LOCALITY: u8 = 4;

/// The PCR values a log replays to.
///
/// Rules (TCG PC Client Platform Firmware Profile):
/// * every bank starts at zero; `EV_NO_ACTION` events are never extended;
/// * an `EV_NO_ACTION` "StartupLocality" event in PCR 0, before any event extends PCR 0, makes
///   PCR 0 of every bank start at `00..00 || locality` (TPM2_Startup was sent from that
///   locality, e.g. 3); such a PCR 0 appears in the replay even if nothing extends it later;
/// * an `EV_EFI_HCRTM_EVENT` in PCR 0, before any other event extends PCR 0, records an H-CRTM
///   measurement made before TPM2_Startup, which the TPM extends into PCR 0 after setting it to
///   `00..00 || 04` (TPM 2.0 Library Part 1, "H-CRTM"; the reference implementation's
///   `PcrDrtm`), so PCR 0 starts there, whatever a StartupLocality event said;
/// * only the PCRs that something touched appear; banks with no PCR do not appear;
/// * a crypto-agile event that lacks the digest for a bank makes that PCR of that bank
///   unknowable: it is left out and listed in [`Replay::unreplayable`].
///
/// A legacy log replays the SHA-1 bank; a crypto-agile log every declared bank that
/// [`HashAlg`] knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    unreplayable: BTreeMap<HashAlg, BTreeSet<u32>>,
    pcr0_locality: Option<u8>,
}

impl Replay {
    pub(crate) fn new(log: &EventLog) -> Self {
        let algs = log.banks();
        let mut banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
        let mut unreplayable: BTreeMap<HashAlg, BTreeSet<u32>> = BTreeMap::new();
        let mut pcr0_locality = None;
        let mut pcr0_extended = false;
        for event in &log.events {
            if event.event_type == EventType::NO_ACTION {
                if let EventData::StartupLocality(locality) = event.decoded
                    && event.pcr == 0
                    && !pcr0_extended
                    && pcr0_locality.is_none()
                {
                    pcr0_locality = Some(locality);
                    start_pcr0_at(&mut banks, &algs, locality);
                }
                continue;
            }
            if event.event_type == EventType::EFI_HCRTM_EVENT && event.pcr == 0 && !pcr0_extended {
                pcr0_locality = Some(H_CRTM_LOCALITY);
                start_pcr0_at(&mut banks, &algs, H_CRTM_LOCALITY);
            }
            pcr0_extended |= event.pcr == 0;
            for &alg in &algs {
                match event.digest(alg) {
                    Some(digest) if digest.len() == alg.digest_len() => {
                        let pcr = banks
                            .entry(alg)
                            .or_default()
                            .entry(event.pcr)
                            .or_insert_with(|| alg.zero_pcr());
                        alg.extend(pcr, digest);
                    }
                    _ => {
                        unreplayable.entry(alg).or_default().insert(event.pcr);
                    }
                }
            }
        }
        for (alg, pcrs) in &unreplayable {
            if let Some(bank) = banks.get_mut(alg) {
                bank.retain(|pcr, _| !pcrs.contains(pcr));
            }
        }
        banks.retain(|_, bank| !bank.is_empty());
        Self {
            banks,
            unreplayable,
            pcr0_locality,
        }
    }

    /// The replayed value of `pcr` in bank `alg`, or `None` if the log never touched it (or
    /// it is [unreplayable](Replay::unreplayable)).
    pub fn get(&self, alg: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(&pcr).map(Vec::as_slice)
    }

    /// Every replayed bank: algorithm → PCR index → value.
    pub fn banks(&self) -> &BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>> {
        &self.banks
    }

    /// One replayed bank.
    pub fn bank(&self, alg: HashAlg) -> Option<&BTreeMap<u32, Vec<u8>>> {
        self.banks.get(&alg)
    }

    /// The PCRs, per bank, that some event extended without giving a digest for that bank, so
    /// their values cannot be computed. Empty for a well-formed log.
    pub fn unreplayable(&self) -> &BTreeMap<HashAlg, BTreeSet<u32>> {
        &self.unreplayable
    }

    /// The locality PCR 0 started from, if not 0 by default: that of a StartupLocality event, or
    /// 4 after an H-CRTM event.
    pub fn pcr0_locality(&self) -> Option<u8> {
        self.pcr0_locality
    }
}

/// Sets PCR 0 of every bank in `algs` to `00..00 || locality`.
fn start_pcr0_at(
    banks: &mut BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    algs: &[HashAlg],
    locality: u8,
) {
    for &alg in algs {
        let mut initial = alg.zero_pcr();
        if let Some(last) = initial.last_mut() {
            *last = locality;
        }
        banks.entry(alg).or_default().insert(0, initial);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::eventlog::parse;
    use crate::eventlog::testlog::*;

    const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    fn locality_event(pcr: u32, locality: u8) -> Vec<u8> {
        let mut data = b"StartupLocality\0".to_vec();
        data.push(locality);
        event2(pcr, 3, &[(SHA1, vec![0; 20]), (SHA256, vec![0; 32])], &data)
    }

    /// The expected value of a PCR that starts at `initial` and is extended with `digests`.
    fn extended(alg: HashAlg, initial: Vec<u8>, digests: &[Vec<u8>]) -> Vec<u8> {
        digests.iter().fold(initial, |mut pcr, d| {
            alg.extend(&mut pcr, d);
            pcr
        })
    }

    #[test]
    fn extends_every_bank_and_skips_no_action_events() {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32)]);
        bytes.extend(measured(0, 0x8, &BANKS, b"crtm"));
        // An EV_NO_ACTION event in the middle, with non-zero digests: never extended.
        bytes.extend(event2(
            0,
            3,
            &[(SHA1, vec![9; 20]), (SHA256, vec![9; 32])],
            b"whatever",
        ));
        bytes.extend(measured(0, 0x4, &BANKS, &[0; 4]));
        bytes.extend(measured(4, 0x4, &BANKS, &[0; 4]));
        let replay = parse(&bytes).unwrap().replay();
        for alg in BANKS {
            let want = extended(
                alg,
                alg.zero_pcr(),
                &[alg.hash(&[b"crtm"]), alg.hash(&[&[0; 4]])],
            );
            assert_eq!(replay.get(alg, 0), Some(want.as_slice()));
            assert!(replay.get(alg, 4).is_some());
            assert_eq!(replay.get(alg, 1), None, "untouched PCRs are absent");
            assert_eq!(replay.bank(alg).unwrap().len(), 2);
        }
        assert_eq!(replay.get(HashAlg::Sha384, 0), None);
        assert!(replay.unreplayable().is_empty());
        assert_eq!(replay.pcr0_locality(), None);
    }

    #[test]
    fn startup_locality_sets_the_initial_value_of_pcr0() {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32)]);
        bytes.extend(locality_event(0, 3));
        bytes.extend(measured(0, 0x8, &BANKS, b"crtm"));
        bytes.extend(measured(1, 0x4, &BANKS, &[0; 4]));
        let replay = parse(&bytes).unwrap().replay();
        assert_eq!(replay.pcr0_locality(), Some(3));
        for alg in BANKS {
            let mut initial = alg.zero_pcr();
            *initial.last_mut().unwrap() = 3;
            let want = extended(alg, initial, &[alg.hash(&[b"crtm"])]);
            assert_eq!(replay.get(alg, 0), Some(want.as_slice()));
            let pcr1 = extended(alg, alg.zero_pcr(), &[alg.hash(&[&[0; 4]])]);
            assert_eq!(
                replay.get(alg, 1),
                Some(pcr1.as_slice()),
                "other PCRs start at zero"
            );
        }
    }

    #[test]
    fn startup_locality_alone_shows_pcr0() {
        let mut bytes = header(&[(SHA256, 32)]);
        bytes.extend(event2(
            0,
            3,
            &[(SHA256, vec![0; 32])],
            b"StartupLocality\0\x04",
        ));
        let replay = parse(&bytes).unwrap().replay();
        let mut want = vec![0; 32];
        want[31] = 4;
        assert_eq!(replay.get(HashAlg::Sha256, 0), Some(want.as_slice()));
    }

    #[test]
    fn misplaced_startup_locality_events_are_ignored() {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32)]);
        bytes.extend(locality_event(1, 3)); // not PCR 0
        bytes.extend(measured(0, 0x8, &BANKS, b"crtm"));
        bytes.extend(locality_event(0, 3)); // after PCR 0 was extended
        let replay = parse(&bytes).unwrap().replay();
        assert_eq!(replay.pcr0_locality(), None);
        let alg = HashAlg::Sha256;
        let want = extended(alg, alg.zero_pcr(), &[alg.hash(&[b"crtm"])]);
        assert_eq!(replay.get(alg, 0), Some(want.as_slice()));
    }

    #[test]
    fn an_h_crtm_event_starts_pcr0_at_locality_4() {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32)]);
        bytes.extend(locality_event(0, 3)); // overridden by the H-CRTM sequence
        bytes.extend(event2(
            0,
            0x8000_0010,
            &[(SHA1, vec![7; 20]), (SHA256, vec![7; 32])],
            b"HCRTM",
        ));
        bytes.extend(measured(0, 0x8, &BANKS, b"crtm"));
        let replay = parse(&bytes).unwrap().replay();
        assert_eq!(replay.pcr0_locality(), Some(4));
        for alg in BANKS {
            let mut initial = alg.zero_pcr();
            *initial.last_mut().unwrap() = 4;
            let want = extended(
                alg,
                initial,
                &[vec![7; alg.digest_len()], alg.hash(&[b"crtm"])],
            );
            assert_eq!(replay.get(alg, 0), Some(want.as_slice()));
        }
        // An H-CRTM event after PCR 0 was extended changes nothing but the extend.
        let mut bytes = header(&[(SHA256, 32)]);
        bytes.extend(measured(0, 0x8, &[HashAlg::Sha256], b"crtm"));
        bytes.extend(event2(0, 0x8000_0010, &[(SHA256, vec![7; 32])], b"HCRTM"));
        let replay = parse(&bytes).unwrap().replay();
        assert_eq!(replay.pcr0_locality(), None);
        let alg = HashAlg::Sha256;
        let want = extended(alg, alg.zero_pcr(), &[alg.hash(&[b"crtm"]), vec![7; 32]]);
        assert_eq!(replay.get(alg, 0), Some(want.as_slice()));
    }

    #[test]
    fn pcrs_extended_without_a_digest_for_a_bank_are_unreplayable() {
        let mut bytes = header(&[(SHA1, 20), (SHA256, 32), (SHA384, 48)]);
        bytes.extend(measured(
            7,
            0x4,
            &[HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384],
            &[0; 4],
        ));
        bytes.extend(measured(7, 0x4, &BANKS, &[0; 4]));
        bytes.extend(measured(
            4,
            0x4,
            &[HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384],
            &[0; 4],
        ));
        let replay = parse(&bytes).unwrap().replay();
        assert!(replay.get(HashAlg::Sha256, 7).is_some());
        assert_eq!(replay.get(HashAlg::Sha384, 7), None);
        assert!(replay.get(HashAlg::Sha384, 4).is_some());
        assert_eq!(
            replay
                .unreplayable()
                .get(&HashAlg::Sha384)
                .map(|s| s.iter().copied().collect::<Vec<_>>()),
            Some(vec![7])
        );
    }

    #[test]
    fn a_legacy_log_replays_the_sha1_bank() {
        let mut bytes = legacy(0, 0x8, [1; 20], b"v");
        bytes.extend(legacy(0, 0x3, [2; 20], b"no action"));
        bytes.extend(legacy(0, 0x4, [3; 20], &[0; 4]));
        let replay = parse(&bytes).unwrap().replay();
        let want = extended(HashAlg::Sha1, vec![0; 20], &[vec![1; 20], vec![3; 20]]);
        assert_eq!(replay.get(HashAlg::Sha1, 0), Some(want.as_slice()));
        assert_eq!(replay.banks().len(), 1);
    }
}
