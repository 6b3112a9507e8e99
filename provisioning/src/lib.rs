//! vouch-provision as a library: the parts of the factory tooling other crates and tests use
//! directly. [`credential`] computes TPM2_MakeCredential without a TPM (the station's
//! `challenge` step); [`pending`] keeps each challenge's secret until `issue` checks the
//! terminal's response against it. The `vouch-provision` binary (`main.rs`) is CLI glue.

pub mod credential;
pub mod pending;
