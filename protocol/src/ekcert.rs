//! EK certificate validation: does a TPM's endorsement-key certificate chain to a TPM
//! manufacturer root the operator trusts, and does it certify *this* TPM's EK?
//!
//! Used by `vouch-provision issue --tpm-roots DIR` and by the verifier at `vouchctl import
//! manifest`; both load a directory of PEM files into [`TrustAnchors`] and call
//! [`verify_ek_certificate`] with the device's certificate chain (leaf first), its EK public
//! area (TPMT_PUBLIC) and the time. Pure: no file, clock or network access.
//!
//! **Every certificate given to [`TrustAnchors::from_der`] is a trust anchor**, root or not. A
//! manufacturer's intermediate CA may be placed beside its root (as Keylime's TPM cert store
//! does), because devices usually carry only the leaf in NV and the intermediate is published
//! on the manufacturer's web site. Anchors must be CA certificates (basicConstraints cA, and
//! keyCertSign if keyUsage is present), and the anchor a chain ends at must be within its own
//! validity period (as `openssl verify` requires).
//!
//! Checks, each with its own [`EkCertError`] variant: sizes and chain length are bounded before
//! parsing; every certificate parses as X.509 (RFC 5280, DER); every signature algorithm is
//! RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, or ECDSA P-256/P-384 with SHA-256/384 (what
//! swtpm_localca and the vendors' CAs use: Infineon, STMicro and Nuvoton sign with RSA or
//! ECDSA over SHA-256/384, Intel's ODCA with ECDSA); every certificate is valid at `now`
//! (notAfter 99991231235959Z, GeneralizedTime, is common and supported); supplied intermediates
//! are CAs; the signatures chain from the leaf through supplied intermediates to an anchor; the
//! leaf's extendedKeyUsage, if present, includes tcg-kp-EKCertificate (2.23.133.8.1); and the
//! leaf's public key equals the EK in `ek_public` (RSA modulus and exponent, or ECC curve and
//! point) — without that last check a genuine certificate of another TPM would pass.
//!
//! Crates, chosen by trying them on swtpm's EK certificates (`swtpm_setup --create-ek-cert`:
//! subject `CN=unknown`, critical SAN directoryName with the TPM manufacturer, model and
//! version, EKU 2.23.133.8.1, critical keyUsage keyAgreement/keyEncipherment) and on
//! vendor-style ones with an empty subject (the fixtures in `tests/vectors/ekcert/`):
//! `rustls-webpki` (with *ring*, which rustls already brings) builds and verifies the path —
//! signatures, CA and path-length constraints, critical extensions, validity — and accepts
//! these certificates when the EKU is `required_if_present`; it exposes none of the fields this
//! module reports, so `x509-cert` parses the same bytes for the subject, issuer, validity (to
//! name *which* certificate expired), the SubjectAltName TPM attributes and the public key that
//! is compared with the EK. Nothing cryptographic is written here.

use std::fmt::Write as _;

use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Reader as _, Tag, Tagged};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use thiserror::Error;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};
use x509_cert::name::Name;

use crate::tpm::{EccCurve, PublicParameters, TpmPublic};

/// Largest DER certificate accepted (the enrollment request's bound on an EK certificate).
pub const MAX_CERT_DER: usize = crate::enrollment::MAX_EK_CERT;
/// Largest PEM text [`parse_pem_certificates`] reads (one file of a roots directory).
pub const MAX_PEM_TEXT: usize = 1024 * 1024;
/// Most certificates one PEM text, or one [`TrustAnchors`] set, may hold.
pub const MAX_CERTIFICATES: usize = 256;
/// Most intermediates a chain may carry after its leaf.
pub const MAX_INTERMEDIATES: usize = 4;

/// tcg-kp-EKCertificate (2.23.133.8.1), DER content octets, for webpki's EKU check.
const EKU_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];
/// tcg-at-tpmManufacturer, tcg-at-tpmModel, tcg-at-tpmVersion (TCG EK Credential Profile).
const TPM_MANUFACTURER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.1");
const TPM_MODEL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.2");
const TPM_VERSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.2.3");

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Signature algorithms accepted on certificates, by OID (RSASSA-PSS's hash is in its
/// parameters; webpki checks that they are one of SHA-256/384/512 with MGF1 of the same hash).
const SIGNATURE_ALGORITHMS: [ObjectIdentifier; 6] = [
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"), // sha256WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12"), // sha384WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13"), // sha512WithRSAEncryption
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"), // RSASSA-PSS
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),   // ecdsa-with-SHA256
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3"),   // ecdsa-with-SHA384
];

/// The same algorithms as webpki verifiers (keys of 2048 to 8192 bits for RSA; "absent
/// params" variants for CAs that omit the NULL parameters of PKCS#1 v1.5).
static WEBPKI_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Why an EK certificate (or a trust anchor, or a PEM text) was refused. Each variant is one
/// failed check; certificates are named by subject, or by serial and issuer when the subject is
/// empty (as it is on many EK certificates).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EkCertError {
    #[error("malformed: {what}")]
    Malformed { what: String },
    #[error("issuer {issuer:?} does not chain to a trusted TPM manufacturer root")]
    UntrustedIssuer { issuer: String },
    #[error("signature on {subject} does not verify under its issuer's key")]
    BadSignature { subject: String },
    #[error("{subject} expired (notAfter {not_after}, unix seconds)")]
    Expired { subject: String, not_after: u64 },
    #[error("{subject} is not valid yet (notBefore {not_before}, unix seconds)")]
    NotYetValid { subject: String, not_before: u64 },
    #[error("{subject} is used as an issuer but is not a CA certificate")]
    NotACa { subject: String },
    #[error("the EK certificate certifies another key than the EK: {detail}")]
    KeyMismatch { detail: String },
    #[error("unsupported algorithm {oid}")]
    UnsupportedAlgorithm { oid: String },
    #[error("chain of {len} intermediates; at most {max} are accepted")]
    ChainTooLong { len: usize, max: usize },
    #[error("{what} is {len} bytes; at most {max} are accepted")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

fn malformed(what: impl Into<String>) -> EkCertError {
    EkCertError::Malformed { what: what.into() }
}

/// What a verified EK certificate says about its TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkCertInfo {
    /// The leaf's subject (RFC 4514 text; empty on many EK certificates).
    pub subject: String,
    /// The leaf's issuer.
    pub issuer: String,
    /// The subject of the trust anchor the chain ends at.
    pub anchor: String,
    /// TPMManufacturer (2.23.133.2.1) from the SubjectAltName directoryName, e.g. "id:49465800".
    pub tpm_manufacturer: Option<String>,
    /// TPMModel (2.23.133.2.2).
    pub tpm_model: Option<String>,
    /// TPMVersion (2.23.133.2.3), e.g. "id:000F0010".
    pub tpm_version: Option<String>,
    /// The leaf's notAfter, unix seconds.
    pub not_after: u64,
}

/// DER of each CERTIFICATE block of a PEM text (other block kinds are skipped). At least one
/// is required; the text and the count are bounded.
pub fn parse_pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, EkCertError> {
    if text.len() > MAX_PEM_TEXT {
        return Err(EkCertError::TooLarge {
            what: "PEM text",
            len: text.len(),
            max: MAX_PEM_TEXT,
        });
    }
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let der = item.map_err(|e| malformed(format!("PEM text: {e}")))?;
        if out.len() == MAX_CERTIFICATES {
            return Err(EkCertError::TooLarge {
                what: "PEM text's certificate count",
                len: out.len() + 1,
                max: MAX_CERTIFICATES,
            });
        }
        check_size(der.as_ref(), "certificate")?;
        out.push(der.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err(malformed("PEM text: no CERTIFICATE block"));
    }
    Ok(out)
}

fn check_size(der: &[u8], what: &'static str) -> Result<(), EkCertError> {
    if der.len() > MAX_CERT_DER {
        return Err(EkCertError::TooLarge {
            what,
            len: der.len(),
            max: MAX_CERT_DER,
        });
    }
    Ok(())
}

/// One trust anchor: its webpki form (subject and key) and what is reported and checked.
#[derive(Debug, Clone)]
struct Anchor {
    webpki: TrustAnchor<'static>,
    subject: String,
    not_before: u64,
    not_after: u64,
}

/// The TPM manufacturer CAs the operator trusts: every certificate is an anchor (roots and any
/// intermediates placed beside them), each must be a CA.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
    webpki: Vec<TrustAnchor<'static>>,
}

impl TrustAnchors {
    /// Builds the set from DER certificates; refuses one that is not a CA (naming it), and more
    /// than [`MAX_CERTIFICATES`].
    pub fn from_der(certs: Vec<Vec<u8>>) -> Result<Self, EkCertError> {
        if certs.len() > MAX_CERTIFICATES {
            return Err(EkCertError::TooLarge {
                what: "trust anchor count",
                len: certs.len(),
                max: MAX_CERTIFICATES,
            });
        }
        let mut anchors = Vec::with_capacity(certs.len());
        for (i, der) in certs.iter().enumerate() {
            check_size(der, "trust anchor certificate")?;
            let cert = Certificate::from_der(der)
                .map_err(|e| malformed(format!("trust anchor {i}: {e}")))?;
            let name = describe(&cert);
            check_is_ca(&cert, &name)?;
            let (not_before, not_after) = validity(&cert);
            let owned = CertificateDer::from(der.as_slice());
            let webpki = webpki::anchor_from_trusted_cert(&owned)
                .map_err(|e| malformed(format!("trust anchor {name}: {e}")))?
                .to_owned();
            anchors.push(Anchor {
                webpki,
                subject: name_text(cert.tbs_certificate().subject()),
                not_before,
                not_after,
            });
        }
        let webpki = anchors.iter().map(|a| a.webpki.clone()).collect();
        Ok(Self { anchors, webpki })
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors' subjects, in the order given.
    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.anchors.iter().map(|a| a.subject.as_str())
    }
}

/// Verifies `chain` (the EK certificate, then any intermediates the device or manifest
/// supplied) against `anchors` at `now` (unix seconds), and that it certifies the EK whose
/// TPMT_PUBLIC is `ek_public`. See the module documentation for every check.
pub fn verify_ek_certificate(
    chain: &[Vec<u8>],
    ek_public: &[u8],
    anchors: &TrustAnchors,
    now: u64,
) -> Result<EkCertInfo, EkCertError> {
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err(malformed("empty certificate chain"));
    };
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(EkCertError::ChainTooLong {
            len: intermediates.len(),
            max: MAX_INTERMEDIATES,
        });
    }
    check_size(leaf_der, "EK certificate")?;
    let leaf_der = strip_nv_padding(leaf_der)?;
    let leaf =
        Certificate::from_der(leaf_der).map_err(|e| malformed(format!("EK certificate: {e}")))?;
    let mut parsed = Vec::with_capacity(intermediates.len());
    for (i, der) in intermediates.iter().enumerate() {
        check_size(der, "intermediate certificate")?;
        let cert = Certificate::from_der(der)
            .map_err(|e| malformed(format!("intermediate certificate {}: {e}", i + 1)))?;
        check_is_ca(&cert, &describe(&cert))?;
        parsed.push(cert);
    }
    for cert in std::iter::once(&leaf).chain(&parsed) {
        check_signature_algorithm(cert)?;
        check_validity(cert, now)?;
    }
    let ek = TpmPublic::parse(ek_public).map_err(|e| malformed(format!("EK public area: {e}")))?;
    check_same_key(&leaf, &ek)?;

    let leaf_webpki = CertificateDer::from(leaf_der);
    let end_entity = webpki::EndEntityCert::try_from(&leaf_webpki)
        .map_err(|e| malformed(format!("EK certificate: {e}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let path = end_entity
        .verify_for_usage(
            WEBPKI_ALGORITHMS,
            &anchors.webpki,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            webpki::KeyUsage::required_if_present(EKU_EK_CERTIFICATE),
            None,
            None,
        )
        .map_err(|e| webpki_error(e, &leaf, intermediates.len()))?;
    // The path's anchor is one of `anchors.webpki`, which parallels `anchors.anchors`.
    let anchor = anchors
        .anchors
        .iter()
        .find(|a| a.webpki == *path.anchor())
        .ok_or_else(|| malformed("the chain ended at an anchor that is not in the set"))?;
    if now < anchor.not_before {
        return Err(EkCertError::NotYetValid {
            subject: format!("trust anchor {}", anchor.subject),
            not_before: anchor.not_before,
        });
    }
    if now > anchor.not_after {
        return Err(EkCertError::Expired {
            subject: format!("trust anchor {}", anchor.subject),
            not_after: anchor.not_after,
        });
    }

    let tbs = leaf.tbs_certificate();
    let (tpm_manufacturer, tpm_model, tpm_version) = tpm_attributes(&leaf)?;
    Ok(EkCertInfo {
        subject: name_text(tbs.subject()),
        issuer: name_text(tbs.issuer()),
        anchor: anchor.subject.clone(),
        tpm_manufacturer,
        tpm_model,
        tpm_version,
        not_after: validity(&leaf).1,
    })
}

/// The EK certificate's own DER without the padding that can follow it when it was read from
/// an NV index larger than the certificate (0x00 or 0xFF bytes; go-attestation strips such
/// trailers too). The padding is not signed, so dropping it changes nothing that is checked;
/// any other trailing byte is refused.
fn strip_nv_padding(bytes: &[u8]) -> Result<&[u8], EkCertError> {
    let tlv = der::SliceReader::new(bytes)
        .and_then(|mut r| r.tlv_bytes())
        .map_err(|e| malformed(format!("EK certificate: {e}")))?;
    let rest = bytes.get(tlv.len()..).unwrap_or_default();
    if rest.iter().all(|&b| b == 0x00 || b == 0xff) {
        Ok(tlv)
    } else {
        Err(malformed(format!(
            "EK certificate: {} bytes after the certificate that are not NV padding",
            rest.len()
        )))
    }
}

/// Maps webpki's verdict to the check that failed. Sizes, algorithms, validity and CA-ness of
/// the supplied certificates were checked before, so what remains is mostly the path itself.
fn webpki_error(e: webpki::Error, leaf: &Certificate, intermediates: usize) -> EkCertError {
    use webpki::Error as W;
    let subject = describe(leaf);
    match e {
        W::UnknownIssuer => EkCertError::UntrustedIssuer {
            issuer: name_text(leaf.tbs_certificate().issuer()),
        },
        W::InvalidSignatureForPublicKey => EkCertError::BadSignature { subject },
        W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            EkCertError::UnsupportedAlgorithm {
                oid: format!("signature algorithm in the chain of {subject} ({e})"),
            }
        }
        W::CertExpired { not_after, .. } => EkCertError::Expired {
            subject: format!("a certificate in the chain of {subject}"),
            not_after: not_after.as_secs(),
        },
        W::CertNotValidYet { not_before, .. } => EkCertError::NotYetValid {
            subject: format!("a certificate in the chain of {subject}"),
            not_before: not_before.as_secs(),
        },
        W::EndEntityUsedAsCa => EkCertError::NotACa {
            subject: format!("an issuer of {subject}"),
        },
        W::CaUsedAsEndEntity => malformed(format!("{subject} is a CA certificate, not an EK's")),
        W::MaximumPathDepthExceeded => EkCertError::ChainTooLong {
            len: intermediates,
            max: MAX_INTERMEDIATES,
        },
        W::MaximumPathBuildCallsExceeded | W::MaximumSignatureChecksExceeded => malformed(format!(
            "chain of {subject}: path building exceeded its work bound ({e})"
        )),
        W::RequiredEkuNotFoundContext(_) => malformed(format!(
            "extendedKeyUsage in the chain of {subject} lacks tcg-kp-EKCertificate (2.23.133.8.1)"
        )),
        other => malformed(format!("chain of {subject}: {other}")),
    }
}

/// basicConstraints cA, and keyCertSign when keyUsage is present.
fn check_is_ca(cert: &Certificate, name: &str) -> Result<(), EkCertError> {
    let not_a_ca = || EkCertError::NotACa {
        subject: name.to_owned(),
    };
    let tbs = cert.tbs_certificate();
    let bc = tbs
        .get_extension::<BasicConstraints>()
        .map_err(|e| malformed(format!("{name}: basicConstraints: {e}")))?;
    if !bc.is_some_and(|(_, bc)| bc.ca) {
        return Err(not_a_ca());
    }
    let ku = tbs
        .get_extension::<KeyUsage>()
        .map_err(|e| malformed(format!("{name}: keyUsage: {e}")))?;
    if let Some((_, ku)) = ku
        && !ku.0.contains(KeyUsages::KeyCertSign)
    {
        return Err(not_a_ca());
    }
    Ok(())
}

fn check_signature_algorithm(cert: &Certificate) -> Result<(), EkCertError> {
    let oid = cert.signature_algorithm().oid;
    if SIGNATURE_ALGORITHMS.contains(&oid) {
        Ok(())
    } else {
        Err(EkCertError::UnsupportedAlgorithm {
            oid: format!("{oid} (signature of {})", describe(cert)),
        })
    }
}

/// (notBefore, notAfter) in unix seconds.
fn validity(cert: &Certificate) -> (u64, u64) {
    let v = cert.tbs_certificate().validity();
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

fn check_validity(cert: &Certificate, now: u64) -> Result<(), EkCertError> {
    let (not_before, not_after) = validity(cert);
    if now < not_before {
        return Err(EkCertError::NotYetValid {
            subject: describe(cert),
            not_before,
        });
    }
    if now > not_after {
        return Err(EkCertError::Expired {
            subject: describe(cert),
            not_after,
        });
    }
    Ok(())
}

/// The leaf's SubjectPublicKeyInfo against the TPM's EK public area.
fn check_same_key(leaf: &Certificate, ek: &TpmPublic) -> Result<(), EkCertError> {
    let spki = leaf.tbs_certificate().subject_public_key_info();
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| malformed("EK certificate: public key is not a whole number of bytes"))?;
    let mismatch = |detail: &str| EkCertError::KeyMismatch {
        detail: detail.to_owned(),
    };
    match (ek.parameters(), spki.algorithm.oid) {
        (PublicParameters::Rsa(rsa), RSA_ENCRYPTION) => {
            let (n, e) = rsa_public_key(key)?;
            if strip_zeros(n) != strip_zeros(&rsa.modulus) {
                return Err(mismatch("RSA modulus differs"));
            }
            if e != u64::from(rsa.exponent()) {
                return Err(mismatch("RSA exponent differs"));
            }
            Ok(())
        }
        (PublicParameters::Ecc(ecc), EC_PUBLIC_KEY) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| malformed("EK certificate: EC key without a named curve"))?;
            let size = match (ecc.curve, curve) {
                (EccCurve::NistP256, SECP256R1) => 32,
                (EccCurve::NistP384, SECP384R1) => 48,
                (EccCurve::NistP256 | EccCurve::NistP384, SECP256R1 | SECP384R1) => {
                    return Err(mismatch("ECC curve differs"));
                }
                (EccCurve::Other(id), _) => {
                    return Err(EkCertError::UnsupportedAlgorithm {
                        oid: format!("TPM ECC curve {id:#06x} of the EK"),
                    });
                }
                (_, other) => {
                    return Err(EkCertError::UnsupportedAlgorithm {
                        oid: format!("{other} (EC curve of the EK certificate's key)"),
                    });
                }
            };
            let point = key
                .strip_prefix(&[0x04])
                .filter(|p| p.len() == 2 * size)
                .ok_or_else(|| {
                    malformed("EK certificate: EC point is not an uncompressed point of its curve")
                })?;
            let (x, y) = point.split_at(size);
            if !same_coordinate(x, &ecc.x) || !same_coordinate(y, &ecc.y) {
                return Err(mismatch("ECC point differs"));
            }
            Ok(())
        }
        (PublicParameters::Rsa(_), _) => Err(mismatch("the EK is RSA, the certificate's key not")),
        (PublicParameters::Ecc(_), _) => Err(mismatch("the EK is ECC, the certificate's key not")),
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017).
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    exponent: UintRef<'a>,
}

fn rsa_public_key(key: &[u8]) -> Result<(&[u8], u64), EkCertError> {
    let parsed = RsaPublicKey::from_der(key)
        .map_err(|e| malformed(format!("EK certificate: RSA public key: {e}")))?;
    let e = parsed.exponent.as_bytes();
    if e.len() > 8 {
        return Err(malformed(
            "EK certificate: RSA exponent longer than 64 bits",
        ));
    }
    let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Ok((parsed.modulus.as_bytes(), e))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// A certificate's fixed-size coordinate against a TPM's (possibly shorter, unpadded) one.
fn same_coordinate(cert: &[u8], tpm: &[u8]) -> bool {
    strip_zeros(cert) == strip_zeros(tpm)
}

/// TPMManufacturer, TPMModel and TPMVersion from the SubjectAltName's directoryName (TCG EK
/// Credential Profile §3.2.9), falling back to the subject where older certificates put them.
type TpmAttributes = (Option<String>, Option<String>, Option<String>);

fn tpm_attributes(cert: &Certificate) -> Result<TpmAttributes, EkCertError> {
    let tbs = cert.tbs_certificate();
    let san = tbs
        .get_extension::<SubjectAltName>()
        .map_err(|e| malformed(format!("EK certificate: subjectAltName: {e}")))?;
    let mut names: Vec<&Name> = san
        .as_ref()
        .map(|(_, san)| {
            san.0
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DirectoryName(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.push(tbs.subject());
    let find = |oid: ObjectIdentifier| {
        names
            .iter()
            .flat_map(|n| n.iter())
            .find(|atv| atv.oid == oid)
            .map(|atv| attribute_text(&atv.value))
    };
    Ok((find(TPM_MANUFACTURER), find(TPM_MODEL), find(TPM_VERSION)))
}

/// A directory-string attribute value as text; any other type as `#` and its DER in hex.
fn attribute_text(value: &der::Any) -> String {
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
            String::from_utf8_lossy(value.value()).into_owned()
        }
        _ => {
            let mut s = String::from("#");
            for b in value.value() {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
    }
}

/// RFC 4514 text of a name (empty for an empty name).
fn name_text(name: &Name) -> String {
    name.to_string()
}

/// How errors name a certificate: its subject, or its serial and issuer if the subject is empty.
fn describe(cert: &Certificate) -> String {
    let tbs = cert.tbs_certificate();
    if tbs.subject().is_empty() {
        format!(
            "certificate with serial {} issued by {:?}",
            tbs.serial_number(),
            name_text(tbs.issuer())
        )
    } else {
        format!("certificate {:?}", name_text(tbs.subject()))
    }
}
