//! TPM2_ActivateCredential: the terminal's half of credential activation. The provisioning
//! station wrapped a secret to this terminal's EK and bound it to its AK's Name
//! (`vouch_provisioning::credential::make_credential`); only this TPM, holding both, can
//! recover it. A TPM that refuses (another EK, or an AK that is not the one named) is reported
//! as [`TpmError::ActivateCredential`], whatever the response code: swtpm answers 0x101 for an
//! RSA EK and 0x1df for ECC, so codes say nothing reliable about which was wrong.
//!
//! Authorization: the AK (activateHandle, ADMIN role) with its empty password; the EK
//! (keyHandle, USER role) through a policy session satisfying its TCG template policy — PolicyA
//! (PolicySecret on the endorsement hierarchy) for the P-256 EK, and for the P-384 EK PolicyB,
//! which is PolicyOR over PolicyA and PolicyC, so PolicySecret then PolicyOR. The session is
//! started with continueSession set and flushed here, with the EK and AK, on every path.

use sha2::{Sha256, Sha384};
use tss_esapi::{
    attributes::SessionAttributesBuilder,
    constants::SessionType,
    handles::{AuthHandle, SessionHandle},
    interface_types::{
        algorithm::HashingAlgorithm, session_handles::AuthSession, session_handles::PolicySession,
    },
    structures::{Digest, DigestList, EncryptedSecret, IdObject, Nonce, SymmetricDefinition},
};
use zeroize::Zeroizing;

use super::transient::Transients;
use super::{AkBlobs, Tpm, TpmError, check_ak_template, load_ak};

/// `TPM_CC_PolicySecret`.
const TPM_CC_POLICY_SECRET: u32 = 0x0000_0151;
/// `TPM_CC_PolicyOR`.
const TPM_CC_POLICY_OR: u32 = 0x0000_0171;
/// `TPM_RH_ENDORSEMENT`, whose Name is its handle.
const TPM_RH_ENDORSEMENT: u32 = 0x4000_000b;

/// PolicyC (SHA-384) of the TCG EK Credential Profile (2.5, B.4): PolicyAuthorizeNV over the
/// EK policy NV index. The P-384 EK's PolicyB is PolicyOR(PolicyA, PolicyC); a test checks
/// that this constant yields the PolicyB the template carries.
const POLICY_C_SHA384: [u8; 48] = [
    0xd6, 0x03, 0x2c, 0xe6, 0x1f, 0x2f, 0xb3, 0xc2, 0x40, 0xeb, 0x3c, 0xf6, 0xa3, 0x32, 0x37, 0xef,
    0x2b, 0x6a, 0x16, 0xf4, 0x29, 0x3c, 0x22, 0xb4, 0x55, 0xe2, 0x61, 0xcf, 0xfd, 0x21, 0x7a, 0xd5,
    0xb4, 0x94, 0x7c, 0x2d, 0x73, 0xe6, 0x30, 0x05, 0xee, 0xd2, 0xdc, 0x2b, 0x35, 0x93, 0xd1, 0x65,
];

/// H(parts...) with the EK's name algorithm (SHA-256 or SHA-384).
fn hash(alg: HashingAlgorithm, parts: &[&[u8]]) -> Option<Vec<u8>> {
    fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match alg {
        HashingAlgorithm::Sha256 => Some(run::<Sha256>(parts)),
        HashingAlgorithm::Sha384 => Some(run::<Sha384>(parts)),
        _ => None,
    }
}

/// PolicyA: the policy digest of PolicySecret(TPM_RH_ENDORSEMENT) with an empty policyRef.
fn policy_a(alg: HashingAlgorithm) -> Option<Vec<u8>> {
    let zero = vec![0u8; hash(alg, &[])?.len()];
    let step = hash(
        alg,
        &[
            &zero,
            &TPM_CC_POLICY_SECRET.to_be_bytes(),
            &TPM_RH_ENDORSEMENT.to_be_bytes(),
        ],
    )?;
    hash(alg, &[&step])
}

/// PolicyOR over `branches` from a fresh session.
fn policy_or_digest(alg: HashingAlgorithm, branches: &[&[u8]]) -> Option<Vec<u8>> {
    let zero = vec![0u8; hash(alg, &[])?.len()];
    let mut parts: Vec<&[u8]> = vec![&zero];
    let cc = TPM_CC_POLICY_OR.to_be_bytes();
    parts.push(&cc);
    parts.extend_from_slice(branches);
    hash(alg, &parts)
}

/// How the EK's authPolicy is satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EkPolicy {
    /// PolicySecret(endorsement).
    A,
    /// PolicySecret(endorsement), then PolicyOR over these branches.
    Or(Vec<Vec<u8>>),
}

/// Which of the TCG EK policies `auth_policy` is, for an EK with name algorithm `alg`.
fn ek_policy(alg: HashingAlgorithm, auth_policy: &[u8]) -> Result<EkPolicy, TpmError> {
    let unsupported = TpmError::UnexpectedResponse(
        "the EK's authPolicy is not a TCG EK template policy this agent can satisfy",
    );
    let a = policy_a(alg).ok_or(TpmError::UnexpectedResponse(
        "the EK's name algorithm is neither SHA-256 nor SHA-384",
    ))?;
    if auth_policy == a.as_slice() {
        return Ok(EkPolicy::A);
    }
    if alg == HashingAlgorithm::Sha384 {
        let branches = vec![a, POLICY_C_SHA384.to_vec()];
        let refs: Vec<&[u8]> = branches.iter().map(Vec::as_slice).collect();
        if policy_or_digest(alg, &refs).as_deref() == Some(auth_policy) {
            return Ok(EkPolicy::Or(branches));
        }
    }
    Err(unsupported)
}

impl Tpm {
    /// TPM2_ActivateCredential of the credential (`id_object`: TPM2B_ID_OBJECT contents,
    /// `encrypted_secret`: TPM2B_ENCRYPTED_SECRET contents) with this TPM's EK (the same EK
    /// choice as [`Tpm::load_or_create_identity`]) and the AK loaded from `ak`. Returns the
    /// secret the credential carries. Every transient object and the policy session are
    /// flushed before returning, on success and failure alike.
    pub fn activate_credential(
        &mut self,
        ak: &AkBlobs,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let id_object = IdObject::try_from(id_object)
            .map_err(|_| TpmError::InvalidCredential("the ID object exceeds a TPM2B_ID_OBJECT"))?;
        let encrypted_secret = EncryptedSecret::try_from(encrypted_secret).map_err(|_| {
            TpmError::InvalidCredential("the encrypted secret exceeds a TPM2B_ENCRYPTED_SECRET")
        })?;
        let (private, public) = ak.decode()?;
        check_ak_template(&public)?;
        let ek_choice = self.ek_choice()?;

        let mut scope = Transients::new(&mut self.ctx);
        let ek_handle = ek_choice.create(&mut scope)?;
        let (ek_public, _, _) = scope
            .ctx()
            .read_public(ek_handle)
            .map_err(TpmError::ReadPublic)?;
        let ek_alg = ek_public.name_hashing_algorithm();
        let policy = ek_policy(ek_alg, ek_public.auth_policy().value())?;
        let ak_handle = load_ak(&mut scope, ek_handle, private, public)?;

        let session = scope
            .ctx()
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                ek_alg,
            )
            .map_err(TpmError::EkPolicy)?
            .ok_or(TpmError::UnexpectedResponse(
                "TPM2_StartAuthSession returned no session",
            ))?;
        scope.track(SessionHandle::from(session));
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .build();
        scope
            .ctx()
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(TpmError::EkPolicy)?;
        let policy_session = PolicySession::try_from(session).map_err(TpmError::EkPolicy)?;
        scope
            .ctx()
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.policy_secret(
                    policy_session,
                    AuthHandle::Endorsement,
                    Nonce::default(),
                    Digest::default(),
                    Nonce::default(),
                    None,
                )
            })
            .map_err(TpmError::EkPolicy)?;
        if let EkPolicy::Or(branches) = &policy {
            let mut list = DigestList::new();
            for b in branches {
                list.add(Digest::try_from(b.as_slice()).map_err(TpmError::EkPolicy)?)
                    .map_err(TpmError::EkPolicy)?;
            }
            scope
                .ctx()
                .policy_or(policy_session, list)
                .map_err(TpmError::EkPolicy)?;
        }

        let secret = scope
            .ctx()
            .execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
                ctx.activate_credential(ak_handle, ek_handle, id_object, encrypted_secret)
            })
            .map_err(TpmError::ActivateCredential)?;
        let secret = Zeroizing::new(secret.value().to_vec());
        scope.finish().map_err(TpmError::Flush)?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_a_sha256_is_the_tcg_template_value() {
        // authPolicy of the TCG default RSA-2048 and ECC P-256 EK templates.
        assert_eq!(
            hex::encode(policy_a(HashingAlgorithm::Sha256).unwrap()),
            "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
        );
    }

    #[test]
    fn policy_c_yields_the_p384_templates_policy_b() {
        // authPolicy of the TCG P-384 EK template (tss-esapi's, and swtpm_setup's).
        let b = hex::decode(concat!(
            "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4",
            "cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12"
        ))
        .unwrap();
        assert_eq!(
            ek_policy(HashingAlgorithm::Sha384, &b).unwrap(),
            EkPolicy::Or(vec![
                policy_a(HashingAlgorithm::Sha384).unwrap(),
                POLICY_C_SHA384.to_vec()
            ])
        );
        assert!(ek_policy(HashingAlgorithm::Sha384, &[0; 48]).is_err());
        assert!(ek_policy(HashingAlgorithm::Sha256, &[0; 32]).is_err());
    }
}
