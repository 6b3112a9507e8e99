//! vouch-sim: a SIMULATED TPM ([`SimTpm`]) and one simulated terminal built on it
//! ([`SimTerminal`]), for the demo (`vouch-demo --simulated`), the benchmarks (`vouch-bench`,
//! `cargo bench -p vouch-sim`) and the verifier's engine tests. Its keys derive from seeds anyone
//! can recompute, so it must never reach a production binary: `vouch-verifier` and `vouch-agent`
//! do not depend on this crate, and an end-to-end test (`tests/lean_binaries.rs`) fails if one
//! ever does.

pub mod terminal;
pub mod tpm;

pub use terminal::SimTerminal;
pub use tpm::{FIRMWARE_VERSION, LOCKED_MQTT_HASH, QUOTE_DURATION_MS, Quote, SimError, SimTpm};
