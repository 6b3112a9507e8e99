//! vouch-verifier as a library shared by its two binaries: `vouch-verifier` (the service and the
//! demo) and `vouchctl` (the operator CLI, which shares the API's JSON types).

pub mod api;
pub mod bench;
pub mod broker;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod engine;
pub mod http;
pub mod mqtt;
pub mod server;
pub mod sim;
pub mod store;
