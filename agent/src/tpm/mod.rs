//! The terminal agent's only door to the TPM. The shell sees it through [`AgentTpm`] (opened
//! per round by a [`TpmConnector`]); [`Tpm`], the one implementation in this crate, wraps one tss-esapi
//! [`Context`] for the agent's lifetime and exposes the handful of operations
//! attestation needs: deriving the endorsement key (EK) and an attestation key
//! (AK) under it, quoting PCRs with the AK, extending and reading PCRs, and
//! reading the TPM clock. The AK never stays loaded between calls: each
//! operation re-derives the EK from the endorsement seed, loads the AK from the
//! caller's saved blobs and flushes both before returning, because swtpm and
//! bare `/dev/tpm0` have no resource manager and only three transient slots.
//! Every byte string this module hands out is a TPM-marshalled structure
//! (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE) that a verifier parses without
//! any TSS, as described on each field.

mod activate;
mod ek;
mod error;
mod info;
mod pcr;
mod transient;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use tss_esapi::{
    Context,
    abstraction::{AsymmetricAlgorithmSelection, KeyCustomization, ak},
    attributes::ObjectAttributesBuilder,
    constants::PropertyTag,
    handles::{KeyHandle, PcrHandle},
    interface_types::{
        algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm},
        ecc::EccCurve,
        session_handles::AuthSession,
    },
    structures::{
        AttestInfo, Data, Digest, DigestValues, PcrSelectSize, Private, Public, SignatureScheme,
    },
    tcti_ldr::TctiNameConf,
    traits::{Marshall, UnMarshall},
};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use self::error::TpmError;
pub use vouch_protocol::inventory::TpmInfo;

use self::ek::EkChoice;
use self::pcr::{pcr_digest, pcr_selection, read_pcrs, selection_mask};
use self::transient::Transients;

/// `TPM_ALG_SHA256`, the name algorithm of the AK and the first two bytes of its Name.
const TPM_ALG_SHA256: u16 = 0x000b;
/// PCR count assumed when the TPM does not report `TPM_PT_PCR_COUNT` (PC Client value).
const DEFAULT_PCR_COUNT: u32 = 24;
/// The largest PCR count a PCR selection mask (and tss-esapi's `PcrSlot`) can express.
const MAX_PCR_COUNT: u32 = 32;
/// How many read-quote rounds [`Tpm::quote`] tries before giving up on PCRs
/// that keep changing underneath it.
const QUOTE_ATTEMPTS: usize = 4;

/// The AK template `create_ak_2` builds (restricted ECDSA signing key, fixedTPM,
/// fixedParent, sensitiveDataOrigin, userWithAuth), plus noDA: the AK's authorization
/// (an empty password) then neither counts toward nor is refused by the TPM's
/// dictionary-attack lockout, so unclean power cuts that put the TPM into lockout cannot
/// stop quotes. See docs/tpm.md.
#[derive(Debug, Clone, Copy)]
struct NoDaAk;

impl KeyCustomization for NoDaAk {
    fn attributes(&self, attributes: ObjectAttributesBuilder) -> ObjectAttributesBuilder {
        attributes.with_no_da(true)
    }
}

/// Whether the AK with marshalled TPMT_PUBLIC `ak_public` is exempt from dictionary-attack
/// lockout (noDA set); `None` when the bytes are not a TPMT_PUBLIC.
pub fn ak_exempt_from_lockout(ak_public: &[u8]) -> Option<bool> {
    vouch_protocol::tpm::TpmPublic::parse(ak_public)
        .ok()
        .map(|p| p.attributes().no_da())
}

/// What to tell an operator whose AK predates noDA.
pub const AK_LOCKOUT_ADVICE: &str = "the attestation key was created without noDA, so TPM \
    dictionary-attack lockout (for example after repeated unclean power cuts) stops its quotes \
    until the lockout recovers; re-create it by enrolling again: move the --state directory \
    away and run `vouch-agent enroll` (the verifier refuses new keys for a device id it already \
    enrolled, so enroll the new request under a new device id); see docs/tpm.md";

/// What identifies this TPM and its attestation key to a verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmIdentity {
    /// The EK's marshalled TPMT_PUBLIC (no TPM2B size prefix). ECC P-256 unless
    /// the TPM only carries a P-384 EK certificate, see [`Tpm::load_or_create_identity`].
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER) from its TCG NV index, when the TPM has one for
    /// the EK in `ek_public`.
    pub ek_certificate: Option<Vec<u8>>,
    /// The AK's marshalled TPMT_PUBLIC (no size prefix).
    pub ak_public: Vec<u8>,
    /// The AK's TPM Name: `0x000b` (SHA-256, big-endian) || SHA-256(`ak_public`),
    /// checked against the Name the TPM reports for the loaded key.
    pub ak_name: Vec<u8>,
}

/// The AK as the caller persists it. Only usable on the TPM, and under the
/// EK, that created it. Zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AkBlobs {
    /// The `buffer` of the TPM2B_PRIVATE from TPM2_Create, without its size prefix.
    pub private: Vec<u8>,
    /// The AK's marshalled TPMT_PUBLIC, without a size prefix (same bytes as
    /// [`TpmIdentity::ak_public`]).
    pub public: Vec<u8>,
}

impl fmt::Debug for AkBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AkBlobs")
            .field("private", &format_args!("<{} bytes>", self.private.len()))
            .field("public", &format_args!("<{} bytes>", self.public.len()))
            .finish()
    }
}

impl AkBlobs {
    fn decode(&self) -> Result<(Private, Public), TpmError> {
        if self.private.is_empty() {
            return Err(TpmError::InvalidAkBlobs("private blob is empty"));
        }
        let private = Private::try_from(self.private.as_slice())
            .map_err(|_| TpmError::InvalidAkBlobs("private blob exceeds a TPM2B_PRIVATE"))?;
        let public = Public::unmarshall(&self.public)
            .map_err(|_| TpmError::InvalidAkBlobs("public blob is not a TPMT_PUBLIC"))?;
        // tss-esapi's unmarshal ignores trailing bytes; insist on a canonical encoding.
        if marshal_public(&public)? != self.public {
            return Err(TpmError::InvalidAkBlobs(
                "public blob has trailing or non-canonical bytes",
            ));
        }
        Ok((private, public))
    }
}

/// A PCR quote and the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled TPMS_ATTEST exactly as signed (starts `ff 54 43 47 80 18`).
    pub attest: Vec<u8>,
    /// The marshalled TPMT_SIGNATURE (`00 18` ECDSA, `00 0b` SHA-256, then r and s as TPM2Bs).
    pub signature: Vec<u8>,
    /// The SHA-256 PCR values, ascending by index; SHA-256 over their
    /// concatenation equals the quote's pcrDigest.
    pub pcrs: Vec<(u8, [u8; 32])>,
}

/// The TPM's TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// TPM resets (reboots without an orderly shutdown-state save) since the last clear.
    pub reset_count: u32,
    /// TPM restarts/resumes since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// The TPM operations the agent's shell performs (enrollment, measurement, attestation). [`Tpm`]
/// implements them over tss-esapi; the demo's simulated terminals implement them over a software
/// TPM, so one agent shell ([`crate::session`], [`crate::attester`]) drives both. Every byte
/// string crossing it is the TPM-marshalled structure documented on [`TpmIdentity`] and
/// [`Quote`], which the verifier parses without a TSS.
pub trait AgentTpm {
    /// See [`Tpm::load_or_create_identity`].
    fn load_or_create_identity(
        &mut self,
        saved_ak: Option<&AkBlobs>,
    ) -> Result<(TpmIdentity, AkBlobs), TpmError>;
    /// See [`Tpm::quote`].
    fn quote(&mut self, ak: &AkBlobs, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, TpmError>;
    /// See [`Tpm::pcr_extend`].
    fn pcr_extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError>;
    /// See [`Tpm::pcr_read`].
    fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError>;
    /// See [`Tpm::clock_info`].
    fn clock_info(&mut self) -> Result<ClockInfo, TpmError>;
    /// See [`Tpm::activate_credential`].
    fn activate_credential(
        &mut self,
        ak: &AkBlobs,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError>;
    /// See [`Tpm::tpm_info`].
    fn tpm_info(&mut self) -> Result<TpmInfo, TpmError>;
}

/// How the agent reaches its TPM. It opens a connection per enrollment or attestation round and
/// drops it after, so other TPM clients (and swtpm, which serves one client at a time) are not
/// locked out between rounds.
pub trait TpmConnector: fmt::Debug + Send + Sync {
    fn open(&self) -> Result<Box<dyn AgentTpm + '_>, TpmError>;
}

/// A TPM reached through a TCTI string (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`): what
/// `vouch-agent` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcti(pub String);

impl TpmConnector for Tcti {
    fn open(&self) -> Result<Box<dyn AgentTpm + '_>, TpmError> {
        Ok(Box::new(Tpm::open(&self.0)?))
    }
}

impl AgentTpm for Tpm {
    fn load_or_create_identity(
        &mut self,
        saved_ak: Option<&AkBlobs>,
    ) -> Result<(TpmIdentity, AkBlobs), TpmError> {
        Tpm::load_or_create_identity(self, saved_ak)
    }

    fn quote(&mut self, ak: &AkBlobs, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, TpmError> {
        Tpm::quote(self, ak, nonce, pcrs)
    }

    fn pcr_extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        Tpm::pcr_extend(self, pcr, digest)
    }

    fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
        Tpm::pcr_read(self, pcrs)
    }

    fn clock_info(&mut self) -> Result<ClockInfo, TpmError> {
        Tpm::clock_info(self)
    }

    fn activate_credential(
        &mut self,
        ak: &AkBlobs,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        Tpm::activate_credential(self, ak, id_object, encrypted_secret)
    }

    fn tpm_info(&mut self) -> Result<TpmInfo, TpmError> {
        Tpm::tpm_info(self)
    }
}

/// An open TPM. Keep one for the agent's lifetime; it holds no TPM objects
/// between calls.
#[derive(Debug)]
pub struct Tpm {
    ctx: Context,
    pcr_count: u32,
    select_size: PcrSelectSize,
    /// Which EK to derive, decided once from the EK certificates present.
    ek: Option<EkChoice>,
    /// Whether the "AK subject to lockout" warning was logged (once per process).
    warned_lockout: bool,
}

impl Tpm {
    /// Opens the TPM by TCTI string: `device:/dev/tpmrm0` in production,
    /// `swtpm:host=127.0.0.1,port=P` in tests. Asks the TPM for its PCR count,
    /// so a TPM that does not answer fails here.
    pub fn open(tcti: &str) -> Result<Self, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| TpmError::Tcti {
            tcti: tcti.to_owned(),
            source,
        })?;
        let mut ctx = Context::new(conf).map_err(TpmError::Open)?;
        let pcr_count = ctx
            .get_tpm_property(PropertyTag::PcrCount)
            .map_err(TpmError::Open)?
            .unwrap_or(DEFAULT_PCR_COUNT)
            .min(MAX_PCR_COUNT);
        let select_size = if pcr_count > 24 {
            PcrSelectSize::FourOctets
        } else {
            PcrSelectSize::ThreeOctets
        };
        Ok(Self {
            ctx,
            pcr_count,
            select_size,
            ek: None,
            warned_lockout: false,
        })
    }

    /// Derives the EK and creates (`saved_ak` = `None`) or loads the AK, and
    /// returns the identity together with the blobs to persist (equal to
    /// `saved_ak` when given).
    ///
    /// The EK is the TCG default template for ECC P-256 unless the TPM has no
    /// P-256 EK certificate (NV 0x01c0000a) but has a P-384 one (0x01c00016, as
    /// `swtpm_setup` provisions), in which case it is the P-384 default
    /// template, so that `ek_certificate` always certifies `ek_public`. The AK
    /// is ECC P-256, ECDSA/SHA-256, restricted signing, fixedTPM, empty auth,
    /// noDA. Its Name is checked against the TPM's. A saved AK without noDA (from
    /// before vouch set it) still loads; a warning says how to re-create it.
    pub fn load_or_create_identity(
        &mut self,
        saved_ak: Option<&AkBlobs>,
    ) -> Result<(TpmIdentity, AkBlobs), TpmError> {
        let saved = saved_ak.map(AkBlobs::decode).transpose()?;
        let ek_choice = self.ek_choice()?;
        let ek_certificate = ek_choice.certificate(&mut self.ctx)?;

        let mut scope = Transients::new(&mut self.ctx);
        let ek_handle = ek_choice.create(&mut scope)?;
        let (ek_public, _, _) = scope
            .ctx()
            .read_public(ek_handle)
            .map_err(TpmError::ReadPublic)?;
        let (private, public) = match saved {
            Some(blobs) => blobs,
            None => {
                let created = ak::create_ak_2(
                    scope.ctx(),
                    ek_handle,
                    HashingAlgorithm::Sha256,
                    AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                    SignatureSchemeAlgorithm::EcDsa,
                    None,
                    NoDaAk,
                )
                .map_err(TpmError::CreateAk)?;
                (created.out_private, created.out_public)
            }
        };
        check_ak_template(&public)?;
        let ak_public = marshal_public(&public)?;
        if ak_exempt_from_lockout(&ak_public) == Some(false) {
            warn_lockout(&mut self.warned_lockout);
        }
        let blobs = AkBlobs {
            private: private.value().to_vec(),
            public: ak_public.clone(),
        };

        let ak_handle = load_ak(&mut scope, ek_handle, private, public)?;
        let (tpm_public, tpm_name, _) = scope
            .ctx()
            .read_public(ak_handle)
            .map_err(TpmError::ReadPublic)?;
        if marshal_public(&tpm_public)? != ak_public {
            return Err(TpmError::AkMismatch("TPM reports a different public area"));
        }
        let ak_name = object_name(&ak_public);
        if tpm_name.value() != ak_name.as_slice() {
            return Err(TpmError::AkMismatch("TPM reports a different Name"));
        }
        scope.finish().map_err(TpmError::Flush)?;

        let identity = TpmIdentity {
            ek_public: marshal_public(&ek_public)?,
            ek_certificate,
            ak_public,
            ak_name,
        };
        Ok((identity, blobs))
    }

    /// TPM2_Quote with the AK over the SHA-256 bank of `pcrs` (any order,
    /// duplicates ignored), with `nonce` (at most 64 bytes) as qualifying data.
    ///
    /// The PCRs are read, then quoted, and the quote's pcrDigest is checked
    /// against the values read; if an extend raced in between, the round is
    /// repeated, up to four times in all, so the returned values are exactly
    /// the ones the signature covers.
    pub fn quote(&mut self, ak: &AkBlobs, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, TpmError> {
        let mask = self.pcr_mask(pcrs)?;
        let selection = pcr_selection(mask, self.select_size).map_err(TpmError::Quote)?;
        let nonce = Data::try_from(nonce).map_err(|_| TpmError::NonceTooLong {
            len: nonce.len(),
            max: Data::MAX_SIZE,
        })?;
        let (private, public) = ak.decode()?;
        check_ak_template(&public)?;
        if ak_exempt_from_lockout(&ak.public) == Some(false) {
            warn_lockout(&mut self.warned_lockout);
        }
        let ek_choice = self.ek_choice()?;
        let select_size = self.select_size;

        let mut scope = Transients::new(&mut self.ctx);
        let ek_handle = ek_choice.create(&mut scope)?;
        let ak_handle = load_ak(&mut scope, ek_handle, private, public)?;
        // The EK is only the AK's parent; free its slot before quoting.
        scope.flush(ek_handle).map_err(TpmError::Flush)?;

        for _ in 0..QUOTE_ATTEMPTS {
            let values = read_pcrs(scope.ctx(), mask, select_size)?;
            let (attest, signature) = scope
                .ctx()
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(
                        ak_handle,
                        nonce.clone(),
                        SignatureScheme::Null,
                        selection.clone(),
                    )
                })
                .map_err(TpmError::Quote)?;
            let AttestInfo::Quote { info } = attest.attested() else {
                return Err(TpmError::UnexpectedResponse("TPM2_Quote returned no quote"));
            };
            if attest.extra_data() != &nonce {
                return Err(TpmError::UnexpectedResponse(
                    "quote extraData is not the nonce",
                ));
            }
            if selection_mask(info.pcr_selection())? != mask {
                return Err(TpmError::UnexpectedResponse("quote covers other PCRs"));
            }
            if info.pcr_digest().value() != pcr_digest(&values).as_slice() {
                continue;
            }
            let quote = Quote {
                attest: attest.marshall().map_err(|source| TpmError::Marshal {
                    what: "TPMS_ATTEST",
                    source,
                })?,
                signature: signature.marshall().map_err(|source| TpmError::Marshal {
                    what: "TPMT_SIGNATURE",
                    source,
                })?,
                pcrs: values,
            };
            scope.finish().map_err(TpmError::Flush)?;
            return Ok(quote);
        }
        Err(TpmError::PcrsChanging {
            attempts: QUOTE_ATTEMPTS,
        })
    }

    /// TPM2_PCR_Extend of the SHA-256 bank of `pcr` with `digest`. Other banks
    /// are left alone; a verifier replaying the SHA-256 log is unaffected.
    pub fn pcr_extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        self.pcr_mask(&[pcr])?;
        let extend_error = |source| TpmError::PcrExtend { pcr, source };
        let handle = PcrHandle::try_from(u32::from(pcr)).map_err(extend_error)?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.as_slice()).map_err(extend_error)?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(handle, values)
            })
            .map_err(extend_error)
    }

    /// Current SHA-256 values of `pcrs` (any order, duplicates ignored),
    /// ascending by index. Issues as many TPM2_PCR_Read calls as the TPM needs
    /// (it returns at most eight digests per call).
    pub fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
        let mask = self.pcr_mask(pcrs)?;
        read_pcrs(&mut self.ctx, mask, self.select_size)
    }

    /// The TPM's clock, resetCount, restartCount and safe flag.
    ///
    /// tss-esapi 7.7 has no TPM2_ReadClock, so this issues TPM2_GetTime with
    /// the NULL signing key (unsigned) under endorsement (privacy-admin)
    /// authorization with the empty password, the same authorization AK
    /// creation already relies on. Its TPMS_TIME_INFO is not obfuscated.
    pub fn clock_info(&mut self) -> Result<ClockInfo, TpmError> {
        let (attest, _unsigned) = self
            .ctx
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |ctx| ctx.get_time(KeyHandle::Null, Data::default(), SignatureScheme::Null),
            )
            .map_err(TpmError::ReadClock)?;
        let AttestInfo::Time { info } = attest.attested() else {
            return Err(TpmError::UnexpectedResponse(
                "TPM2_GetTime returned no time",
            ));
        };
        let clock = info.time_info().clock_info();
        Ok(ClockInfo {
            clock: clock.clock(),
            reset_count: clock.reset_count(),
            restart_count: clock.restart_count(),
            safe: clock.safe(),
        })
    }

    /// Which EK to use; decided on first use from the certificates in NV.
    fn ek_choice(&mut self) -> Result<EkChoice, TpmError> {
        if let Some(choice) = self.ek {
            return Ok(choice);
        }
        let choice = EkChoice::select(&mut self.ctx)?;
        self.ek = Some(choice);
        Ok(choice)
    }

    /// The bit mask of `pcrs`, rejecting indices the TPM does not have.
    fn pcr_mask(&self, pcrs: &[u8]) -> Result<u32, TpmError> {
        pcrs.iter().try_fold(0u32, |mask, &pcr| {
            if u32::from(pcr) < self.pcr_count {
                Ok(mask | 1 << pcr)
            } else {
                Err(TpmError::InvalidPcr {
                    pcr,
                    count: self.pcr_count,
                })
            }
        })
    }
}

/// Logs [`AK_LOCKOUT_ADVICE`] unless `warned` says it was already logged.
fn warn_lockout(warned: &mut bool) {
    if !*warned {
        tracing::warn!(ak_no_da = false, "{AK_LOCKOUT_ADVICE}");
        *warned = true;
    }
}

/// Loads the AK under `ek_handle` and records it in `scope`.
fn load_ak(
    scope: &mut Transients<'_>,
    ek_handle: KeyHandle,
    private: Private,
    public: Public,
) -> Result<KeyHandle, TpmError> {
    let handle =
        ak::load_ak(scope.ctx(), ek_handle, None, private, public).map_err(TpmError::LoadAk)?;
    Ok(scope.track(handle))
}

/// Rejects an AK public area that is not the restricted, non-duplicable ECDSA P-256/SHA-256
/// signing key `create_ak_2` makes, so a substituted blob cannot turn the agent into a signer of
/// arbitrary data. The rule is the protocol's own, the one the verifier applies at enrollment.
fn check_ak_template(public: &Public) -> Result<(), TpmError> {
    let bytes = marshal_public(public)?;
    let parsed = vouch_protocol::tpm::TpmPublic::parse(&bytes)
        .map_err(|_| TpmError::UnexpectedAk("its public area does not parse"))?;
    parsed.check_vouch_attestation_key().map_err(|_| {
        TpmError::UnexpectedAk("not a fixedTPM restricted ECDSA P-256/SHA-256 signing key")
    })
}

fn marshal_public(public: &Public) -> Result<Vec<u8>, TpmError> {
    public.marshall().map_err(|source| TpmError::Marshal {
        what: "TPMT_PUBLIC",
        source,
    })
}

/// The TPM Name of an object with SHA-256 name algorithm.
fn object_name(marshalled_public: &[u8]) -> Vec<u8> {
    let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(marshalled_public));
    name
}
