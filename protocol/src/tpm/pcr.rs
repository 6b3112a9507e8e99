//! PCR selections and values: TPML_PCR_SELECTION as the TPM marshals it, the set of PCR values a
//! verifier supplies, and the composite digest a quote's `pcrDigest` is compared with.
//!
//! The TPM computes `pcrDigest` as `H(value_1 || ... || value_n)` over the selected PCRs in
//! TPML order: banks in list order, and within a bank PCRs by ascending index (Part 3,
//! TPM2_Quote, and the reference implementation's `PCRComputeCurrentDigest`).

use std::collections::BTreeMap;
use std::fmt;

use super::TpmError;
use super::limits::{MAX_PCR_BANKS, MAX_PCR_SELECT};
use super::reader::Reader;
use crate::digest::HashAlg;

/// Number of PCRs vouch knows: indexes `0..PCR_COUNT` (the PC Client platform's 24).
pub const PCR_COUNT: u8 = 24;

/// One PCR: a bank and an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PcrRef {
    pub bank: HashAlg,
    pub index: u8,
}

impl fmt::Display for PcrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bank, self.index)
    }
}

/// The PCRs selected in one bank (one TPMS_PCR_SELECTION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBank {
    alg: HashAlg,
    /// Bit `i` set selects PCR `i`; bits `PCR_COUNT..` are always clear.
    mask: u32,
}

impl PcrBank {
    /// A bank selecting `indexes` (in any order, duplicates ignored).
    pub fn new(alg: HashAlg, indexes: impl IntoIterator<Item = u8>) -> Result<Self, TpmError> {
        let mut mask = 0u32;
        for index in indexes {
            if index >= PCR_COUNT {
                return Err(TpmError::PcrIndexOutOfRange {
                    index: u32::from(index),
                });
            }
            mask |= 1 << index;
        }
        Ok(Self { alg, mask })
    }

    /// The bank's hash algorithm.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Selected PCR indexes, ascending.
    pub fn indexes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..PCR_COUNT).filter(|i| self.mask & (1 << i) != 0)
    }

    /// Whether no PCR of this bank is selected.
    pub fn is_empty(&self) -> bool {
        self.mask == 0
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        r.nested("TPMS_PCR_SELECTION", |r| {
            let id = r.u16("hash")?;
            let alg = HashAlg::from_tcg_id(id).ok_or(TpmError::UnsupportedHashAlg {
                structure: "TPMS_PCR_SELECTION",
                field: "hash",
                alg: id,
            })?;
            let size = usize::from(r.u8("sizeofSelect")?);
            if size > MAX_PCR_SELECT {
                return Err(TpmError::TooLarge {
                    structure: "TPMS_PCR_SELECTION",
                    field: "sizeofSelect",
                    size,
                    max: MAX_PCR_SELECT,
                });
            }
            let mut mask = 0u32;
            // pcrSelect[i] bit j selects PCR 8*i + j.
            for (i, byte) in (0u32..).zip(r.bytes(size, "pcrSelect")?) {
                mask |= u32::from(*byte) << (8 * i);
            }
            if mask >> PCR_COUNT != 0 {
                // Report the lowest out-of-range PCR that is selected.
                return Err(TpmError::PcrIndexOutOfRange {
                    index: (mask >> PCR_COUNT).trailing_zeros() + u32::from(PCR_COUNT),
                });
            }
            Ok(Self { alg, mask })
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.alg.tcg_id().to_be_bytes());
        // PCR_SELECT_MIN for 24 PCRs: three bytes, as every PC Client TPM emits.
        let [b0, b1, b2, _] = self.mask.to_le_bytes();
        out.extend_from_slice(&[3, b0, b1, b2]);
    }
}

/// A TPML_PCR_SELECTION: PCR banks in list order, each bank at most once.
///
/// Banks that select no PCR are kept as the TPM listed them; they contribute nothing to the
/// composite digest or to [`PcrSelection::pcrs`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelection {
    banks: Vec<PcrBank>,
}

impl PcrSelection {
    /// A selection of `banks` in the given order. A bank may appear only once.
    pub fn new(banks: Vec<PcrBank>) -> Result<Self, TpmError> {
        for (i, bank) in banks.iter().enumerate() {
            if banks.iter().take(i).any(|b| b.alg == bank.alg) {
                return Err(TpmError::DuplicatePcrBank { alg: bank.alg });
            }
        }
        Ok(Self { banks })
    }

    /// Decodes a TPML_PCR_SELECTION that is the whole of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPML_PCR_SELECTION");
        let sel = Self::read(&mut r)?;
        r.finish()?;
        Ok(sel)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        r.nested("TPML_PCR_SELECTION", |r| {
            let count = r.u32("count")?;
            let n = usize::try_from(count)
                .ok()
                .filter(|n| *n <= MAX_PCR_BANKS)
                .ok_or(TpmError::TooManyPcrBanks {
                    count,
                    max: MAX_PCR_BANKS,
                })?;
            let mut banks = Vec::with_capacity(n);
            for _ in 0..n {
                banks.push(PcrBank::read(r)?);
            }
            Self::new(banks)
        })
    }

    /// Encodes as TPML_PCR_SELECTION, with a three-byte `sizeofSelect` per bank. (A selection
    /// parsed from a four-byte `sizeofSelect` therefore re-encodes to different, equivalent bytes.)
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 6 * self.banks.len());
        // `new` admits each of the four hash algorithms at most once, so this cannot truncate.
        out.extend_from_slice(&(self.banks.len() as u32).to_be_bytes());
        for bank in &self.banks {
            bank.write(&mut out);
        }
        out
    }

    /// The banks in list order.
    pub fn banks(&self) -> &[PcrBank] {
        &self.banks
    }

    /// Every selected PCR in TPML order: banks in list order, ascending index within a bank. This
    /// is the order the composite digest concatenates values in.
    pub fn pcrs(&self) -> impl Iterator<Item = PcrRef> + '_ {
        self.banks
            .iter()
            .flat_map(|b| b.indexes().map(move |index| PcrRef { bank: b.alg, index }))
    }
}

/// PCR values a verifier expects, keyed by bank and index (for instance from a replayed event
/// log). Each value has its bank's digest length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    values: BTreeMap<PcrRef, Vec<u8>>,
}

impl PcrValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the value of PCR `bank:index`. Rejects an index outside `0..PCR_COUNT`, a value of
    /// the wrong length for the bank, and a second value for the same PCR.
    pub fn insert(&mut self, bank: HashAlg, index: u8, value: Vec<u8>) -> Result<(), TpmError> {
        if index >= PCR_COUNT {
            return Err(TpmError::PcrIndexOutOfRange {
                index: u32::from(index),
            });
        }
        if value.len() != bank.digest_len() {
            return Err(TpmError::PcrValueLength {
                bank,
                index,
                expected: bank.digest_len(),
                found: value.len(),
            });
        }
        match self.values.entry(PcrRef { bank, index }) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(TpmError::DuplicatePcrValue { bank, index })
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    /// The value of one PCR, if supplied.
    pub fn get(&self, pcr: PcrRef) -> Option<&[u8]> {
        self.values.get(&pcr).map(Vec::as_slice)
    }

    /// The PCRs a value was supplied for, sorted by bank then index.
    pub fn pcrs(&self) -> impl Iterator<Item = PcrRef> + '_ {
        self.values.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The composite digest a TPM puts in a quote's `pcrDigest`: `alg` over the concatenation of
/// `values`, which must already be in TPML order (see [`PcrSelection::pcrs`]).
pub fn pcr_composite_digest<V: AsRef<[u8]>>(alg: HashAlg, values: &[V]) -> Vec<u8> {
    let parts: Vec<&[u8]> = values.iter().map(AsRef::as_ref).collect();
    alg.hash(&parts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn parses_quote_selection_from_swtpm() {
        // sha256:0..=7,14 as tpm2_quote sent it (see tests/vectors/tpm/decoded.txt).
        let bytes = hex::decode("00000001000b03ff4000").unwrap();
        let sel = PcrSelection::parse(&bytes).unwrap();
        let pcrs: Vec<u8> = sel.pcrs().map(|p| p.index).collect();
        assert_eq!(pcrs, [0, 1, 2, 3, 4, 5, 6, 7, 14]);
        assert!(sel.pcrs().all(|p| p.bank == HashAlg::Sha256));
        assert_eq!(sel.to_bytes(), bytes);
    }

    #[test]
    fn multi_bank_order_is_list_order_then_index() {
        let bytes = hex::decode("00000002000b03014000000403004001").unwrap();
        let sel = PcrSelection::parse(&bytes).unwrap();
        let pcrs: Vec<String> = sel.pcrs().map(|p| p.to_string()).collect();
        assert_eq!(pcrs, ["sha256:0", "sha256:14", "sha1:14", "sha1:16"]);
        assert_eq!(sel.to_bytes(), bytes);
    }

    #[test]
    fn four_byte_select_is_accepted_if_high_pcrs_clear() {
        let sel = PcrSelection::parse(&hex::decode("00000001000b0401000000").unwrap()).unwrap();
        assert_eq!(sel.pcrs().count(), 1);
        assert_eq!(
            PcrSelection::parse(&hex::decode("00000001000b0400000001").unwrap()),
            Err(TpmError::PcrIndexOutOfRange { index: 24 })
        );
        assert!(matches!(
            PcrSelection::parse(&hex::decode("00000001000b050000000000").unwrap()),
            Err(TpmError::TooLarge {
                field: "sizeofSelect",
                ..
            })
        ));
    }

    /// Regression: the out-of-range index was computed from the lowest selected bit overall
    /// (clamped to 24), so a selection of PCRs 0 and 25 was reported as PCR 24.
    #[test]
    fn out_of_range_pcr_error_names_lowest_offending_index() {
        assert_eq!(
            PcrSelection::parse(&hex::decode("00000001000b0401000002").unwrap()),
            Err(TpmError::PcrIndexOutOfRange { index: 25 })
        );
    }

    #[test]
    fn rejects_duplicate_bank_unknown_hash_and_huge_count() {
        assert_eq!(
            PcrSelection::parse(&hex::decode("00000002000b03010000000b03020000").unwrap()),
            Err(TpmError::DuplicatePcrBank {
                alg: HashAlg::Sha256
            })
        );
        assert!(matches!(
            PcrSelection::parse(&hex::decode("00000001001203010000").unwrap()),
            Err(TpmError::UnsupportedHashAlg { alg: 0x0012, .. })
        ));
        assert!(matches!(
            PcrSelection::parse(&hex::decode("ffffffff").unwrap()),
            Err(TpmError::TooManyPcrBanks { .. })
        ));
    }

    #[test]
    fn rejects_trailing_bytes_and_every_truncation() {
        let bytes = hex::decode("00000002000b03014000000403004001").unwrap();
        for len in 0..bytes.len() {
            assert!(PcrSelection::parse(&bytes[..len]).is_err(), "len {len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            PcrSelection::parse(&long),
            Err(TpmError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn empty_bank_contributes_nothing() {
        let sel = PcrSelection::parse(&hex::decode("00000001000403000000").unwrap()).unwrap();
        assert_eq!(sel.banks().len(), 1);
        assert!(sel.banks()[0].is_empty());
        assert_eq!(sel.pcrs().count(), 0);
    }

    #[test]
    fn pcr_values_validate_index_length_and_duplicates() {
        let mut v = PcrValues::new();
        v.insert(HashAlg::Sha256, 0, vec![0; 32]).unwrap();
        assert_eq!(
            v.insert(HashAlg::Sha256, 0, vec![1; 32]),
            Err(TpmError::DuplicatePcrValue {
                bank: HashAlg::Sha256,
                index: 0
            })
        );
        assert!(matches!(
            v.insert(HashAlg::Sha1, 1, vec![0; 32]),
            Err(TpmError::PcrValueLength {
                expected: 20,
                found: 32,
                ..
            })
        ));
        assert!(matches!(
            v.insert(HashAlg::Sha1, 24, vec![0; 20]),
            Err(TpmError::PcrIndexOutOfRange { index: 24 })
        ));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn composite_digest_is_hash_of_concatenation() {
        let a = vec![1u8; 32];
        let b = vec![2u8; 20];
        let mut cat = a.clone();
        cat.extend_from_slice(&b);
        assert_eq!(
            pcr_composite_digest(HashAlg::Sha256, &[&a, &b]),
            crate::digest::sha256(&cat).to_vec()
        );
    }

    #[test]
    fn bank_new_rejects_out_of_range_index() {
        assert!(PcrBank::new(HashAlg::Sha256, [23]).is_ok());
        assert_eq!(
            PcrBank::new(HashAlg::Sha256, [24]),
            Err(TpmError::PcrIndexOutOfRange { index: 24 })
        );
    }
}
