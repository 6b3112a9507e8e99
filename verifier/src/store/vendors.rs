//! The vendor-trust tables (schema 4): trusted vendors by name, imported reference bundles by
//! model and firmware version (with their revocation), and the one supply-chain policy. Each is
//! readable in a snapshot ([`Reader`]) and in a write transaction ([`Writer`], for the engine's
//! reads-for-update); every read is a point lookup except the listings operators ask for
//! (`vendors`, `bundles`), which walk their table.

use anyhow::Result;
use redb::{ReadableTable, TableHandle};
use vouch_protocol::supply_chain::SupplyChainPolicy;
use vouch_protocol::vendor::VendorName;
use vouch_protocol::vendor::trust::{BundleRecord, VendorRecord};

use super::rows::vendor::{BundleRow, VendorRow, bundle_key};
use super::rows::{self};
use super::{BUNDLES, Reader, SUPPLY_CHAIN, VENDORS, Writer};

/// The key of the supply-chain table's one row.
const SUPPLY_CHAIN_KEY: &str = "policy";

type Table = redb::TableDefinition<'static, &'static str, &'static [u8]>;

fn vendor_from(key: &str, bytes: &[u8]) -> Result<VendorRecord> {
    rows::decode::<VendorRow>(VENDORS.name(), key, bytes)?
        .into_domain()
        .map_err(|e| {
            anyhow::anyhow!(
                "stored row {key} of table {} is corrupt: {e}",
                VENDORS.name()
            )
        })
}

fn bundle_from(key: &str, bytes: &[u8]) -> Result<BundleRecord> {
    // The key holds a NUL between model and version: shown as `model@version`.
    let shown = key.replace('\0', "@");
    rows::decode::<BundleRow>(BUNDLES.name(), shown, bytes).map(BundleRow::into_domain)
}

fn supply_chain_from(bytes: &[u8]) -> Result<SupplyChainPolicy> {
    rows::decode(SUPPLY_CHAIN.name(), SUPPLY_CHAIN_KEY, bytes)
}

fn get<T>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    from: impl FnOnce(&str, &[u8]) -> Result<T>,
) -> Result<Option<T>> {
    t.get(key)?.map(|v| from(key, v.value())).transpose()
}

fn all<T>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    from: impl Fn(&str, &[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(from(k.value(), v.value())?);
    }
    Ok(out)
}

macro_rules! vendor_reads {
    ($t:ty) => {
        impl $t {
            /// The vendor trusted (or once trusted) under `name`.
            pub fn vendor(&self, name: &VendorName) -> Result<Option<VendorRecord>> {
                let t = self.tx.open_table(VENDORS)?;
                get(&t, name.as_str(), vendor_from)
            }

            /// Every vendor, by name.
            pub fn vendors(&self) -> Result<Vec<VendorRecord>> {
                all(&self.tx.open_table(VENDORS)?, vendor_from)
            }

            /// The bundle imported for `model` at firmware `version` (revoked or not).
            pub fn bundle(&self, model: &str, version: &str) -> Result<Option<BundleRecord>> {
                let t = self.tx.open_table(BUNDLES)?;
                get(&t, &bundle_key(model, version), bundle_from)
            }

            /// Every imported bundle, by model then version.
            pub fn bundles(&self) -> Result<Vec<BundleRecord>> {
                all(&self.tx.open_table(BUNDLES)?, bundle_from)
            }

            /// The revoked bundles of `model`: a range read over that model's keys only
            /// (`model NUL version`), a handful of rows.
            pub fn revoked_bundles(&self, model: &str) -> Result<Vec<BundleRecord>> {
                let t = self.tx.open_table(BUNDLES)?;
                let (start, end) = (format!("{model}\0"), format!("{model}\u{1}"));
                let mut out = Vec::new();
                for item in t.range(start.as_str()..end.as_str())? {
                    let (k, v) = item?;
                    let b = bundle_from(k.value(), v.value())?;
                    if b.revoked.is_some() {
                        out.push(b);
                    }
                }
                Ok(out)
            }

            /// The operator's supply-chain policy, if one was set.
            pub fn supply_chain(&self) -> Result<Option<SupplyChainPolicy>> {
                let t = self.tx.open_table(SUPPLY_CHAIN)?;
                get(&t, SUPPLY_CHAIN_KEY, |_, b| supply_chain_from(b))
            }
        }
    };
}

vendor_reads!(Reader);
vendor_reads!(Writer);

impl Writer {
    /// Stores `v` under its name (a new vendor, or a change such as its revocation).
    pub fn put_vendor(&mut self, v: &VendorRecord) -> Result<()> {
        let mut t = self.tx.open_table(VENDORS)?;
        let row = rows::encode(&VendorRow::from_domain(v));
        t.insert(v.name.as_str(), row.as_slice())?;
        Ok(())
    }

    /// Stores `b` under its model and firmware version, replacing what was there.
    pub fn put_bundle(&mut self, b: &BundleRecord) -> Result<()> {
        let mut t = self.tx.open_table(BUNDLES)?;
        let row = rows::encode(&BundleRow::from_domain(b));
        t.insert(
            bundle_key(&b.model, &b.firmware_version).as_str(),
            row.as_slice(),
        )?;
        Ok(())
    }

    /// Replaces the supply-chain policy.
    pub fn put_supply_chain(&mut self, p: &SupplyChainPolicy) -> Result<()> {
        let mut t = self.tx.open_table(SUPPLY_CHAIN)?;
        t.insert(SUPPLY_CHAIN_KEY, rows::encode(p).as_slice())?;
        Ok(())
    }
}

/// The tables this module owns, for `migrate::create_tables`.
pub(super) const TABLES: [Table; 3] = [VENDORS, BUNDLES, SUPPLY_CHAIN];
