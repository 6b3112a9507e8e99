//! Hash algorithms shared by the TPM structures and the TCG event log: TCG algorithm ids, digest
//! sizes, one-shot hashing and the PCR extend operation.

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// A hash algorithm a TPM PCR bank or an event-log digest can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Every algorithm vouch understands, in TCG id order.
    pub const ALL: [HashAlg; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The algorithm for a TCG `TPM_ALG_ID`, or `None` for one vouch does not hash with.
    pub const fn from_tcg_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(Self::Sha1),
            0x000B => Some(Self::Sha256),
            0x000C => Some(Self::Sha384),
            0x000D => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The TCG `TPM_ALG_ID` of this algorithm.
    pub const fn tcg_id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000B,
            Self::Sha384 => 0x000C,
            Self::Sha512 => 0x000D,
        }
    }

    /// Digest length in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Lower-case name as used in JSON and by tpm2-tools (`sha1`, `sha256`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Parses a lower-case name as produced by [`HashAlg::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Hashes the concatenation of `parts`.
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Self::Sha1 => run::<Sha1>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha384 => run::<Sha384>(parts),
            Self::Sha512 => run::<Sha512>(parts),
        }
    }

    /// The all-zero value a PCR of this bank holds after a TPM reset (locality 0).
    pub fn zero_pcr(self) -> Vec<u8> {
        vec![0; self.digest_len()]
    }

    /// TPM2_PCR_Extend: `pcr = H(pcr || digest)`.
    pub fn extend(self, pcr: &mut Vec<u8>, digest: &[u8]) {
        *pcr = self.hash(&[pcr, digest]);
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SHA-256 of `data`, as a fixed-size array.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for alg in HashAlg::ALL {
            assert_eq!(HashAlg::from_tcg_id(alg.tcg_id()), Some(alg));
            assert_eq!(HashAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.hash(&[b"abc"]).len(), alg.digest_len());
        }
        assert_eq!(HashAlg::from_tcg_id(0x0010), None);
        assert_eq!(HashAlg::from_name("md5"), None);
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn extend_is_hash_of_concatenation() {
        let mut pcr = HashAlg::Sha256.zero_pcr();
        let d = sha256(b"x");
        HashAlg::Sha256.extend(&mut pcr, &d);
        let mut cat = vec![0u8; 32];
        cat.extend_from_slice(&d);
        assert_eq!(pcr, sha256(&cat).to_vec());
    }
}
