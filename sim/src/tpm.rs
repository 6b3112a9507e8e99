//! A *simulated* TPM, for demos, benchmarks and engine tests only. It exists so that `vouch-demo`
//! can show the whole protocol on a machine without swtpm, and so that scale benchmarks can stand
//! in for thousands of terminals without a TPM process each. It is not a TPM and proves nothing: its
//! keys are derived from a seed the caller chooses, live in ordinary memory and can be recomputed
//! by anyone who knows the seed. The `vouch-agent` binary never contains it (it talks to a TPM
//! through tss-esapi); the demo runs the agent's shell over it only for terminals it labels
//! SIMULATED. Nothing here may ever be offered as a way to enroll a real terminal.
//!
//! What it does reproduce, byte for byte, are the structures a TPM 2.0 emits and vouch's verifier
//! parses: the TPMT_PUBLIC of an ECC P-256 endorsement key in the TCG default EK template shape
//! and of an ECDSA/SHA-256 attestation key as `tpm2_createak` makes it, and TPM2_Quote's
//! TPMS_ATTEST and TPMT_SIGNATURE (TPM 2.0 Library Part 2, big-endian). It is deterministic: the
//! same seed and the same calls give the same bytes (ECDSA nonces are RFC 6979).
//!
//! Modelled state: 24 sha256-bank PCRs, the clock (in ms, advanced by every quote and by
//! [`SimTpm::advance_clock`]), resetCount and restartCount. Not modelled: localities (any PCR may
//! be extended), other PCR banks, sessions, authorization, NV, and unorderly shutdown (`safe` is
//! always YES).

#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fmt;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::Coordinates;
use sha2::{Digest as _, Sha256};
use vouch_protocol::bytes::Bytes;
use vouch_protocol::digest::HashAlg;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::Nonce;
use vouch_protocol::messages::{EnrollmentRequest, Evidence, PcrValue};
use vouch_protocol::tpm::limits::MAX_HA;
use vouch_protocol::tpm::{ClockInfo, PCR_COUNT, TPM_GENERATED_VALUE, TPM_RH_ENDORSEMENT, alg, st};

/// A well-formed `$7$` password-file hash whose PBKDF2 output is all zeros: finding a password
/// that hashes to it is a preimage attack on SHA-512, so it opens no broker account. Simulated
/// enrollments without a broker carry it.
pub const LOCKED_MQTT_HASH: &str = "$7$101$AAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

/// `TPM_ALG_SHA256`: the name algorithm of both keys, the PCR bank and the signing hash.
const SHA256: u16 = HashAlg::Sha256.tcg_id();
/// `TPM_ECC_NIST_P256`.
const ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ALG_CFB`, the EK template's symmetric mode.
const ALG_CFB: u16 = 0x0043;
/// TPMA_OBJECT of the TCG default EK: fixedTPM, fixedParent, sensitiveDataOrigin,
/// adminWithPolicy, restricted, decrypt.
const EK_ATTRIBUTES: u32 = 0x0003_00b2;
/// TPMA_OBJECT of the AK `tpm2_createak` makes: fixedTPM, fixedParent, sensitiveDataOrigin,
/// userWithAuth, restricted, sign.
const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// The EK template's authPolicy: PolicyA for SHA-256 (`TPM2_PolicySecret(TPM_RH_ENDORSEMENT)`),
/// from the TCG EK Credential Profile.
const EK_POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// The `firmwareVersion` every simulated quote reports: ASCII "vouchSIM", so a quote from the
/// simulator is recognisable as such in any dump.
pub const FIRMWARE_VERSION: u64 = u64::from_be_bytes(*b"vouchSIM");
/// Milliseconds the simulated clock advances per quote (about what a discrete TPM takes to sign),
/// so successive quotes within one boot always carry strictly increasing clocks.
pub const QUOTE_DURATION_MS: u64 = 30;

/// Domain separator of the key derivation, so simulator keys never collide with keys derived
/// from the same bytes for any other purpose. `tests/lean_binaries.rs` looks for these bytes in
/// the production executables: keep them a distinctive string.
const KDF_DOMAIN: &[u8] = b"vouch-sim-v1\0";

/// Why a simulated TPM command failed (the same conditions a real TPM refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("PCR {pcr} does not exist (the simulated TPM has PCRs 0 to {})", PCR_COUNT - 1)]
    InvalidPcr { pcr: u8 },
    #[error("nonce is {len} bytes; at most {max} fit the quote's qualifying data")]
    NonceTooLong { len: usize, max: usize },
    #[error("ECDSA signing failed")]
    Signing,
}

/// A TPM2_Quote and the PCR values it covers, shaped like the agent's `tpm::Quote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled TPMS_ATTEST exactly as signed.
    pub attest: Vec<u8>,
    /// The marshalled TPMT_SIGNATURE: ECDSA, SHA-256, then r and s as 32-byte TPM2Bs.
    pub signature: Vec<u8>,
    /// The sha256-bank values of the quoted PCRs, ascending by index.
    pub pcrs: Vec<(u8, [u8; 32])>,
}

/// One simulated TPM: an EK, an AK created under it, PCRs and a clock. See the module docs.
pub struct SimTpm {
    ak: SigningKey,
    ek_public: Vec<u8>,
    ak_public: Vec<u8>,
    /// `qualifiedSigner` of every quote: the AK's qualified Name under the EK.
    ak_qualified_name: Vec<u8>,
    pcrs: [[u8; 32]; PCR_COUNT as usize],
    clock: u64,
    reset_count: u32,
    restart_count: u32,
}

impl fmt::Debug for SimTpm {
    /// Public identity and state only; the AK's private scalar is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTpm")
            .field("ak_name", &Hex(&self.ak_name()))
            .field("clock", &self.clock)
            .field("reset_count", &self.reset_count)
            .field("restart_count", &self.restart_count)
            .finish_non_exhaustive()
    }
}

impl SimTpm {
    /// A freshly started TPM whose EK and AK are derived from `seed` (each with its own label, so
    /// they are unrelated keys). PCRs hold their reset values; clock, resetCount and restartCount
    /// start at zero.
    pub fn from_seed(seed: [u8; 32]) -> SimTpm {
        // The EK's private part is never used (a real EK only decrypts credential blobs, which
        // vouch does not do yet), so only its public point is kept.
        let ek_point = *derive_key(&seed, b"endorsement key").verifying_key();
        let ak = derive_key(&seed, b"attestation key");
        let ek_public = ek_tpmt(&ek_point);
        let ak_public = ak_tpmt(ak.verifying_key());
        let ek_qualified_name = qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes(), &ek_public);
        let ak_qualified_name = qualified_name(&ek_qualified_name, &ak_public);
        SimTpm {
            ak,
            ek_public,
            ak_public,
            ak_qualified_name,
            pcrs: initial_pcrs(),
            clock: 0,
            reset_count: 0,
            restart_count: 0,
        }
    }

    /// TPMT_PUBLIC of the EK: the TCG default ECC P-256 EK template (restricted decrypt,
    /// AES-128-CFB, PolicyA) with this EK's point in `unique`.
    pub fn ek_public(&self) -> Vec<u8> {
        self.ek_public.clone()
    }

    /// TPMT_PUBLIC of the AK: restricted ECDSA/SHA-256 P-256 signing key, like `ak.tpmt` in the
    /// swtpm test vectors, with this AK's point.
    pub fn ak_public(&self) -> Vec<u8> {
        self.ak_public.clone()
    }

    /// The AK's Name: `0x000b || SHA-256(ak_public)`.
    pub fn ak_name(&self) -> Vec<u8> {
        name(&self.ak_public)
    }

    /// An enrollment request for this TPM's keys, for the device key `device_key` (the caller
    /// seals it with the matching signing key). No EK certificate: a simulated EK has none.
    ///
    /// Its MQTT credential is [`LOCKED_MQTT_HASH`], which no password opens: for engine tests and
    /// benchmarks without a broker. A simulated terminal that connects to a broker uses
    /// [`SimTpm::enrollment_request_with_mqtt`].
    pub fn enrollment_request(
        &self,
        model: &str,
        device_key: &ed25519_dalek::VerifyingKey,
    ) -> EnrollmentRequest {
        self.enrollment_request_with_mqtt(model, device_key, LOCKED_MQTT_HASH)
    }

    /// [`SimTpm::enrollment_request`] carrying the Mosquitto hash of the terminal's MQTT password.
    pub fn enrollment_request_with_mqtt(
        &self,
        model: &str,
        device_key: &ed25519_dalek::VerifyingKey,
        mqtt_password_hash: &str,
    ) -> EnrollmentRequest {
        EnrollmentRequest {
            model: model.to_owned(),
            ek_public: Bytes(self.ek_public()),
            ek_certificate: None,
            ak_public: Bytes(self.ak_public()),
            ak_name: Bytes(self.ak_name()),
            device_key: Bytes(device_key.to_bytes().to_vec()),
            mqtt_password_hash: mqtt_password_hash.to_owned(),
            firmware_version: None,
            inventory: None,
        }
    }

    /// TPM2_PCR_Extend of the sha256 bank: `pcr = SHA-256(pcr || digest)`.
    pub fn pcr_extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), SimError> {
        let value = self
            .pcrs
            .get_mut(usize::from(pcr))
            .ok_or(SimError::InvalidPcr { pcr })?;
        *value = Sha256::new()
            .chain_update(*value)
            .chain_update(digest)
            .finalize()
            .into();
        Ok(())
    }

    /// Extends each entry's event digest into `pcr`, in order, as the agent measures firmware.
    pub fn measure_firmware(&mut self, pcr: u8, entries: &[FirmwareEntry]) -> Result<(), SimError> {
        entries
            .iter()
            .try_for_each(|e| self.pcr_extend(pcr, &e.event_digest().0))
    }

    /// The current value of sha256 PCR `pcr`.
    pub fn pcr(&self, pcr: u8) -> Result<[u8; 32], SimError> {
        self.pcrs
            .get(usize::from(pcr))
            .copied()
            .ok_or(SimError::InvalidPcr { pcr })
    }

    /// The TPM's current TPMS_CLOCK_INFO (what TPM2_ReadClock would return).
    pub fn clock_info(&self) -> ClockInfo {
        ClockInfo {
            clock: self.clock,
            reset_count: self.reset_count,
            restart_count: self.restart_count,
            safe: true,
        }
    }

    /// A reboot with an orderly shutdown (TPM Reset): PCRs return to their reset values,
    /// resetCount increments, restartCount returns to zero, and the clock continues from where
    /// it was (so quotes after the reboot report `safe` = YES truthfully).
    pub fn reboot(&mut self) {
        self.pcrs = initial_pcrs();
        self.reset_count = self.reset_count.saturating_add(1);
        self.restart_count = 0;
    }

    /// Lets `ms` milliseconds of powered time pass.
    pub fn advance_clock(&mut self, ms: u64) {
        self.clock = self.clock.saturating_add(ms);
    }

    /// TPM2_Quote with the AK over sha256 PCRs `pcrs` (any order; duplicates ignored) and `nonce`
    /// as qualifying data. The clock advances by [`QUOTE_DURATION_MS`] first, so every quote of
    /// one boot carries a later clock than the one before.
    pub fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, SimError> {
        if nonce.len() > MAX_HA {
            return Err(SimError::NonceTooLong {
                len: nonce.len(),
                max: MAX_HA,
            });
        }
        let mask = pcrs.iter().try_fold(0u32, |mask, &pcr| {
            if pcr < PCR_COUNT {
                Ok(mask | 1 << pcr)
            } else {
                Err(SimError::InvalidPcr { pcr })
            }
        })?;
        let values: Vec<(u8, [u8; 32])> = (0u8..)
            .zip(self.pcrs)
            .filter(|(i, _)| mask & (1 << i) != 0)
            .collect();
        let pcr_digest: [u8; 32] = values
            .iter()
            .fold(Sha256::new(), |h, (_, v)| h.chain_update(v))
            .finalize()
            .into();
        self.advance_clock(QUOTE_DURATION_MS);

        let mut attest = Vec::with_capacity(145);
        put_u32(&mut attest, TPM_GENERATED_VALUE);
        put_u16(&mut attest, st::ATTEST_QUOTE);
        put_tpm2b(&mut attest, &self.ak_qualified_name);
        put_tpm2b(&mut attest, nonce);
        // TPMS_CLOCK_INFO.
        put_u64(&mut attest, self.clock);
        put_u32(&mut attest, self.reset_count);
        put_u32(&mut attest, self.restart_count);
        attest.push(1); // safe = YES
        put_u64(&mut attest, FIRMWARE_VERSION);
        // TPMS_QUOTE_INFO: a TPML_PCR_SELECTION of one sha256 bank, then pcrDigest.
        put_u32(&mut attest, 1);
        put_u16(&mut attest, SHA256);
        let [b0, b1, b2, _] = mask.to_le_bytes();
        attest.extend_from_slice(&[3, b0, b1, b2]); // sizeofSelect, pcrSelect[3]
        put_tpm2b(&mut attest, &pcr_digest);

        // The AK's scheme is ECDSA with SHA-256: `Signer` hashes `attest` with SHA-256 (the
        // curve's digest) and derives the ECDSA nonce per RFC 6979.
        let sig: Signature = self.ak.try_sign(&attest).map_err(|_| SimError::Signing)?;
        let (r, s) = sig.split_bytes();
        // Like the reference TPM, r and s are written at the full 32-byte size of the curve order.
        let mut signature = Vec::with_capacity(72);
        put_u16(&mut signature, alg::ECDSA);
        put_u16(&mut signature, SHA256);
        put_tpm2b(&mut signature, &r);
        put_tpm2b(&mut signature, &s);
        Ok(Quote {
            attest,
            signature,
            pcrs: values,
        })
    }

    /// Quotes PCRs `pcrs` over `nonce` and packs the result as the agent does: `pcrs` should
    /// be the boot PCRs 0-7 and `firmware_pcr`, and `firmware` the list extended into it (the
    /// simulator does not check either, so demos can also produce evidence the verifier rejects).
    pub fn evidence(
        &mut self,
        nonce: &Nonce,
        pcrs: &[u8],
        firmware_pcr: u8,
        firmware: Vec<FirmwareEntry>,
    ) -> Result<Evidence, SimError> {
        let quote = self.quote(nonce.as_bytes(), pcrs)?;
        Ok(Evidence {
            nonce: *nonce,
            attest: Bytes(quote.attest),
            signature: Bytes(quote.signature),
            pcrs: PcrValue::from_pairs(quote.pcrs),
            firmware_pcr,
            firmware,
            eventlog: None,
            firmware_version: None,
            inventory: None,
        })
    }
}

/// PCR values after TPM2_Startup(CLEAR) at locality 0 on a PC Client TPM: all zero except
/// PCRs 17-22, which start at all ones until a dynamic launch resets them (TCG PC Client
/// Platform TPM Profile, "PCR Initial and Reset Values"; swtpm does the same).
fn initial_pcrs() -> [[u8; 32]; PCR_COUNT as usize] {
    let mut pcrs = [[0u8; 32]; PCR_COUNT as usize];
    if let Some(drtm) = pcrs.get_mut(17..=22) {
        drtm.fill([0xff; 32]);
    }
    pcrs
}

/// A P-256 signing key derived from `seed` for `label`: the first
/// `SHA-256(KDF_DOMAIN || label || 0x00 || seed || counter)`, counter = 0, 1, ..., that is a
/// valid scalar. A digest is out of range with probability below 2^-32, so the loop ends at
/// counter 0 for all but astronomically rare seeds.
fn derive_key(seed: &[u8; 32], label: &[u8]) -> SigningKey {
    let mut counter = 0u32;
    loop {
        let candidate = Sha256::new()
            .chain_update(KDF_DOMAIN)
            .chain_update(label)
            .chain_update([0])
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        if let Ok(key) = SigningKey::from_slice(&candidate) {
            return key;
        }
        counter = counter.wrapping_add(1);
    }
}

/// An ECC P-256 TPMT_PUBLIC with nameAlg SHA-256: `attributes`, `auth_policy`, the u16 fields
/// of the TPMT_SYM_DEF_OBJECT and the TPMT_ECC_SCHEME, curve, KDF NULL and `point` as `unique`.
fn ecc_tpmt(
    attributes: u32,
    auth_policy: &[u8],
    symmetric: &[u16],
    scheme: &[u16],
    point: &VerifyingKey,
) -> Vec<u8> {
    let encoded = point.to_sec1_point(false);
    let (x, y) = match encoded.coordinates() {
        Coordinates::Uncompressed { x, y } => (x, y),
        // A VerifyingKey is never the identity, and `false` asked for the uncompressed form.
        _ => unreachable!("uncompressed SEC1 encoding of a P-256 public key"),
    };
    let mut out = Vec::with_capacity(122);
    put_u16(&mut out, alg::ECC);
    put_u16(&mut out, SHA256);
    put_u32(&mut out, attributes);
    put_tpm2b(&mut out, auth_policy);
    symmetric
        .iter()
        .chain(scheme)
        .for_each(|v| put_u16(&mut out, *v));
    put_u16(&mut out, ECC_NIST_P256);
    put_u16(&mut out, alg::NULL); // kdf
    // Like the reference TPM, coordinates are written at the full 32-byte field size.
    put_tpm2b(&mut out, x);
    put_tpm2b(&mut out, y);
    out
}

/// The TCG default ECC P-256 EK template (EK Credential Profile, template L-2) with `point`.
fn ek_tpmt(point: &VerifyingKey) -> Vec<u8> {
    let aes_128_cfb = [alg::AES, 128, ALG_CFB];
    let scheme_null = [alg::NULL];
    ecc_tpmt(
        EK_ATTRIBUTES,
        &EK_POLICY_A_SHA256,
        &aes_128_cfb,
        &scheme_null,
        point,
    )
}

/// An AK as `tpm2_createak -G ecc -g sha256 -s ecdsa` makes it, with `point`.
fn ak_tpmt(point: &VerifyingKey) -> Vec<u8> {
    let symmetric_null = [alg::NULL];
    let ecdsa_sha256 = [alg::ECDSA, SHA256];
    ecc_tpmt(AK_ATTRIBUTES, &[], &symmetric_null, &ecdsa_sha256, point)
}

/// The Name of an object with nameAlg SHA-256: `0x000b || SHA-256(TPMT_PUBLIC)`.
fn name(tpmt: &[u8]) -> Vec<u8> {
    let mut out = SHA256.to_be_bytes().to_vec();
    out.extend_from_slice(&Sha256::digest(tpmt));
    out
}

/// The qualified Name of the object `tpmt` under a parent with qualified Name `parent`:
/// `0x000b || SHA-256(parent || Name(tpmt))` (Part 1, "Qualified Name").
fn qualified_name(parent: &[u8], tpmt: &[u8]) -> Vec<u8> {
    let mut out = SHA256.to_be_bytes().to_vec();
    out.extend_from_slice(
        &Sha256::new()
            .chain_update(parent)
            .chain_update(name(tpmt))
            .finalize(),
    );
    out
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A TPM2B: a u16 size, then `data`.
fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    let Ok(len) = u16::try_from(data.len()) else {
        // Every TPM2B written here is a digest, a Name, a P-256 coordinate or scalar (at most 34
        // bytes), or a nonce that `quote` bounded to MAX_HA (66) bytes.
        unreachable!("a {}-byte TPM2B in a simulated TPM structure", data.len());
    };
    put_u16(out, len);
    out.extend_from_slice(data);
}

/// Lower-case hex for `Debug` output.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests;
