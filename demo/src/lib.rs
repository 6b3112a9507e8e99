//! vouch-demo: the demo fleet (`vouch-demo`, what `./scripts/demo` runs) and the scale bench
//! (`vouch-bench`). Both drive the real verifier with terminals that are either real
//! `vouch-agent` processes on swtpm or SIMULATED ones (`vouch-sim`); they live in this crate so
//! that `vouch-verifier` and `vouch-agent` carry production code only.

pub mod bench;
pub mod demo;
pub mod provision_batch;
pub mod sim_tpm;
