//! Fuzz target: arbitrary bytes as every provisioning input the verifier, the agent or the
//! station decodes — a vendor-signed manifest or reference bundle file (envelope, type and vendor
//! checks, signature with a fixed key), the same bytes as a document body (what a buggy vendor
//! could sign: manifest → enrollment validation, bundle), a hardware inventory (bounds check,
//! digest, diff, supply-chain check), a supply-chain policy as JSON, and the credential
//! challenge and response files. None of it may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::credential::{CredentialChallenge, CredentialResponse};
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::inventory::{self, Inventory};
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::bundle::ReferenceBundle;
use vouch_protocol::vendor::manifest::DeviceManifest;
use vouch_protocol::vendor::{self, VendorName};
use vouch_protocol::wire::from_cbor_exact;

const KEY: [u8; 32] = [9; 32];

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&KEY).verifying_key();
    if let Ok(u) = vendor::decode::<DeviceManifest>(data) {
        let _ = u.verify::<DeviceManifest>(&key);
    }
    if let Ok(u) = vendor::decode::<ReferenceBundle>(data) {
        let _ = u.verify::<ReferenceBundle>(&key);
    }
    if let Ok(m) = from_cbor_exact::<DeviceManifest>(data) {
        let vendor: VendorName = "fuzz".parse().unwrap_or_else(|_| unreachable!());
        let _ = Enrollment::from_manifest(vendor, m, 0);
    }
    let _ = from_cbor_exact::<ReferenceBundle>(data);
    if let Ok(inv) = from_cbor_exact::<Inventory>(data) {
        if inv.check().is_ok() {
            let _ = inv.digest();
            let _ = inventory::diff(&Inventory::default(), &inv);
            let deny_all = SupplyChainPolicy::from_json(r#"{"mode": "allow_only"}"#);
            if let Ok(p) = deny_all {
                let _ = p.check_inventory(&inv);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = SupplyChainPolicy::from_json(text)
    {
        let _ = p.check_inventory(&Inventory::default());
    }
    let _ = CredentialChallenge::from_cbor(data);
    let _ = CredentialResponse::from_cbor(data);
});
