//! vouch-provision as a library: the parts of the factory tooling other crates and tests use
//! directly. [`credential`] computes TPM2_MakeCredential without a TPM (the station's
//! `challenge` step); [`pending`] keeps each challenge's secret until `issue` checks the
//! terminal's response against it; [`vendor`] makes and loads the vendor's key directory (also
//! used by `vouch-provision-sim`, the simulated batch, which lives in the demo crate so that this
//! crate never links the simulator). The `vouch-provision` binary (`main.rs`) is CLI glue.

pub mod credential;
pub mod pending;
pub mod vendor;
