//! Fuzz target: arbitrary bytes as an EK certificate chain (the leaf, or a leaf and an
//! intermediate split at a point the first two bytes choose), as a trust anchor, and as PEM
//! text, checked against fixed anchors and EK public areas (the committed swtpm fixtures). None
//! of it may panic. Seeds: protocol/tests/vectors/ekcert.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vouch_protocol::ekcert::{TrustAnchors, parse_pem_certificates, verify_ek_certificate};

const ANCHORS: [&str; 3] = [
    include_str!("../../protocol/tests/vectors/ekcert/swtpm-root.pem"),
    include_str!("../../protocol/tests/vectors/ekcert/swtpm-intermediate.pem"),
    include_str!("../../protocol/tests/vectors/ekcert/vendor-root.pem"),
];
const EKS: [&[u8]; 2] = [
    include_bytes!("../../protocol/tests/vectors/ekcert/p384-ek.tpmt"),
    include_bytes!("../../protocol/tests/vectors/ekcert/rsa2048-ek.tpmt"),
];
/// 2027-01-15, when every fixture is valid.
const NOW: u64 = 1_800_000_000;

fn anchors() -> &'static TrustAnchors {
    static ANCHOR_SET: OnceLock<TrustAnchors> = OnceLock::new();
    ANCHOR_SET.get_or_init(|| {
        let ders = ANCHORS
            .iter()
            .flat_map(|p| parse_pem_certificates(p).unwrap_or_default())
            .collect();
        TrustAnchors::from_der(ders).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let anchors = anchors();
    // A PEM seed is a certificate too: try its DER as well.
    let text = String::from_utf8_lossy(data);
    let from_pem = parse_pem_certificates(&text).unwrap_or_default();
    for ek in EKS {
        let _ = verify_ek_certificate(&[data.to_vec()], ek, anchors, NOW);
        if !from_pem.is_empty() {
            let _ = verify_ek_certificate(&from_pem, ek, anchors, NOW);
        }
        if let [a, b, rest @ ..] = data {
            let at = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
            let (leaf, intermediate) = rest.split_at(at);
            let _ =
                verify_ek_certificate(&[leaf.to_vec(), intermediate.to_vec()], ek, anchors, NOW);
        }
    }
    let _ = TrustAnchors::from_der(vec![data.to_vec()]);
});
