//! The error type of the TPM layer. Each variant names the operation that
//! failed, so a log line says what the agent was doing; the underlying TSS
//! or TPM response code is kept as the error's source rather than repeated
//! in its message.

/// Everything that can go wrong talking to the TPM. Variants name the
/// operation that failed; TPM and TSS errors are kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TCTI string could not be parsed.
    #[error("invalid TCTI configuration {tcti:?}")]
    Tcti {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    /// The TCTI or ESAPI context could not be initialised, or the TPM did not answer.
    #[error("opening the TPM")]
    Open(#[source] tss_esapi::Error),
    /// A PCR index outside the TPM's PCR bank was requested.
    #[error("PCR {pcr} does not exist (the TPM has {count} PCRs)")]
    InvalidPcr { pcr: u8, count: u32 },
    /// The nonce does not fit a TPM2B_DATA.
    #[error("nonce is {len} bytes; at most {max} fit the quote's qualifying data")]
    NonceTooLong { len: usize, max: usize },
    /// The saved AK blobs are not well-formed TPM structures.
    #[error("saved AK blobs are malformed: {0}")]
    InvalidAkBlobs(&'static str),
    /// The AK public area is not the restricted ECDSA P-256 signing key this module creates.
    #[error("AK does not match the attestation key template: {0}")]
    UnexpectedAk(&'static str),
    /// Listing or reading the EK certificate NV indices failed.
    #[error("reading the EK certificate from NV")]
    EkCertificate(#[source] tss_esapi::Error),
    /// TPM2_CreatePrimary of the endorsement key failed.
    #[error("creating the endorsement key")]
    CreateEk(#[source] tss_esapi::Error),
    /// TPM2_Create of the attestation key failed.
    #[error("creating the attestation key")]
    CreateAk(#[source] tss_esapi::Error),
    /// TPM2_Load of the attestation key failed (wrong TPM, wrong EK, or corrupted blobs).
    #[error("loading the attestation key")]
    LoadAk(#[source] tss_esapi::Error),
    /// TPM2_ReadPublic failed.
    #[error("reading a key's public area")]
    ReadPublic(#[source] tss_esapi::Error),
    /// The TPM's view of the loaded AK differs from the blobs it was loaded from.
    #[error("loaded AK is inconsistent: {0}")]
    AkMismatch(&'static str),
    /// TPM2_Quote failed.
    #[error("TPM2_Quote failed")]
    Quote(#[source] tss_esapi::Error),
    /// The PCRs changed between reading them and quoting them on every attempt.
    #[error("PCRs kept changing during the quote; gave up after {attempts} attempts")]
    PcrsChanging { attempts: usize },
    /// TPM2_PCR_Read failed.
    #[error("TPM2_PCR_Read failed")]
    PcrRead(#[source] tss_esapi::Error),
    /// TPM2_PCR_Extend failed.
    #[error("TPM2_PCR_Extend of PCR {pcr} failed")]
    PcrExtend {
        pcr: u8,
        #[source]
        source: tss_esapi::Error,
    },
    /// A credential to activate is not a well-formed TPM structure.
    #[error("the credential is malformed: {0}")]
    InvalidCredential(&'static str),
    /// Starting or satisfying the EK's policy session (PolicySecret, PolicyOR) failed.
    #[error("authorizing the endorsement key (its policy session)")]
    EkPolicy(#[source] tss_esapi::Error),
    /// TPM2_ActivateCredential refused the credential. Its response code does not say which
    /// of the two causes it was (swtpm: 0x101 for RSA EKs, 0x1df for ECC).
    #[error(
        "the TPM refused to activate the credential: this TPM does not hold the EK the \
         challenge was made for, or the AK is not this TPM's"
    )]
    ActivateCredential(#[source] tss_esapi::Error),
    /// TPM2_GetTime, used to read the clock, failed.
    #[error("reading the TPM clock")]
    ReadClock(#[source] tss_esapi::Error),
    /// TPM2_GetCapability of a TPM property failed.
    #[error("reading the TPM property {what}")]
    Capability {
        what: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    /// Flushing a transient object or session failed; its TPM slot may be leaked.
    #[error("flushing a transient TPM handle")]
    Flush(#[source] tss_esapi::Error),
    /// Marshalling a structure into its TPM wire form failed.
    #[error("marshalling {what}")]
    Marshal {
        what: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    /// The TPM answered with something that contradicts the request.
    #[error("unexpected TPM response: {0}")]
    UnexpectedResponse(&'static str),
    /// An [`AgentTpm`](super::AgentTpm) that is not reached through tss-esapi (the demo's
    /// simulated TPM) failed; its own error is the source.
    #[error("{what} failed")]
    Backend {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
