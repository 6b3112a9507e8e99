//! Which endorsement key the agent derives, and its certificate. The EK is
//! never stored: TPM2_CreatePrimary with a TCG default template under the
//! endorsement hierarchy yields the same key for as long as the endorsement
//! seed lives, so it is re-derived whenever the AK needs its parent. The
//! template is chosen once per [`Tpm`](super::Tpm) so that the EK certificate
//! the TPM carries, if any, certifies the EK the agent reports: ECC P-256
//! (certificate at NV 0x01c0000a) by preference, ECC P-384 (0x01c00016, what
//! `swtpm_setup --create-ek-cert` provisions) if that is the only ECC
//! certificate, and P-256 without a certificate otherwise. RSA EKs are not
//! used, so an RSA-only certificate (0x01c00002) is ignored.

use tss_esapi::{
    Context,
    abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ek},
    constants::CapabilityType,
    handles::KeyHandle,
    interface_types::ecc::EccCurve,
    structures::CapabilityData,
    tss2_esys::TPM2_HANDLE,
};

use super::TpmError;
use super::transient::Transients;

/// First and last NV index of the TCG EK certificate range (EK Credential
/// Profile 2.5, section 2.2.1.4 and 2.2.1.5).
const EK_CERT_NV_FIRST: TPM2_HANDLE = 0x01c0_0002;
const EK_CERT_NV_LAST: TPM2_HANDLE = 0x01c0_7fff;
/// How many handles to ask for per TPM2_GetCapability.
const NV_LIST_BATCH: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EkKind {
    EccP256,
    EccP384,
}

impl EkKind {
    /// In order of preference.
    const ALL: [Self; 2] = [Self::EccP256, Self::EccP384];

    fn algorithm(self) -> AsymmetricAlgorithmSelection {
        match self {
            Self::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            Self::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        }
    }

    fn certificate_index(self) -> TPM2_HANDLE {
        match self {
            Self::EccP256 => 0x01c0_000a,
            Self::EccP384 => 0x01c0_0016,
        }
    }
}

/// The EK template in use and whether the TPM holds a certificate for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EkChoice {
    kind: EkKind,
    has_certificate: bool,
}

impl EkChoice {
    /// Picks the EK from the EK certificate NV indices the TPM defines.
    pub(super) fn select(ctx: &mut Context) -> Result<Self, TpmError> {
        let defined = ek_certificate_indices(ctx)?;
        Ok(EkKind::ALL
            .into_iter()
            .find(|kind| defined.contains(&kind.certificate_index()))
            .map_or(
                Self {
                    kind: EkKind::EccP256,
                    has_certificate: false,
                },
                |kind| Self {
                    kind,
                    has_certificate: true,
                },
            ))
    }

    /// The DER certificate for this EK, or `None` when the TPM has none.
    pub(super) fn certificate(self, ctx: &mut Context) -> Result<Option<Vec<u8>>, TpmError> {
        if !self.has_certificate {
            return Ok(None);
        }
        ek::retrieve_ek_pubcert(ctx, self.kind.algorithm())
            .map(Some)
            .map_err(TpmError::EkCertificate)
    }

    /// Derives the EK and records its handle in `scope`.
    pub(super) fn create(self, scope: &mut Transients<'_>) -> Result<KeyHandle, TpmError> {
        let handle = ek::create_ek_object_2(scope.ctx(), self.kind.algorithm(), DefaultKey)
            .map_err(TpmError::CreateEk)?;
        Ok(scope.track(handle))
    }
}

/// The NV indices in the EK certificate range that the TPM defines.
fn ek_certificate_indices(ctx: &mut Context) -> Result<Vec<TPM2_HANDLE>, TpmError> {
    let mut defined = Vec::new();
    let mut next = EK_CERT_NV_FIRST;
    loop {
        let (data, more) = ctx
            .execute_without_session(|ctx| {
                ctx.get_capability(CapabilityType::Handles, next, NV_LIST_BATCH)
            })
            .map_err(TpmError::EkCertificate)?;
        let CapabilityData::Handles(handles) = data else {
            return Err(TpmError::UnexpectedResponse(
                "TPM2_GetCapability(handles) returned other data",
            ));
        };
        let handles: Vec<TPM2_HANDLE> = handles.into_inner().into_iter().map(Into::into).collect();
        defined.extend(
            handles
                .iter()
                .copied()
                .filter(|h| (EK_CERT_NV_FIRST..=EK_CERT_NV_LAST).contains(h)),
        );
        match handles.last() {
            Some(&last) if more && (next..EK_CERT_NV_LAST).contains(&last) => next = last + 1,
            _ => return Ok(defined),
        }
    }
}
