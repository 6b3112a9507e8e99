//! vouch-verifier as a library shared by its two binaries: `vouch-verifier` (the service) and
//! `vouchctl` (the operator CLI, which shares the API's JSON types). The demo and the scale bench
//! live in `vouch-demo`, the simulated TPM in `vouch-sim`: neither is linked into this crate.

pub mod api;
pub mod broker;
pub mod config;
pub mod ctl;
pub mod ear;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod roles;
pub mod server;
pub mod store;
pub mod webhook;
