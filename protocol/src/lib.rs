//! vouch's pure core: every wire type, every evidence check, TPM structure parsing, policy
//! evaluation, verdicts and the agent/verifier state machines. No I/O, clock or randomness of its
//! own: callers pass them in, so everything here is unit-testable with byte vectors and fuzzable.

pub mod agent;
pub mod appraisal;
pub mod audit;
pub mod bytes;
pub mod cbor_scan;
mod cose;
pub mod credential;
pub mod device;
pub mod digest;
pub mod ear;
pub mod ekcert;
pub mod enrollment;
pub mod error;
pub mod eventlog;
pub mod firmware;
pub mod ids;
pub mod inventory;
pub mod messages;
pub mod nonce;
pub mod policy;
pub mod punch;
pub mod reason;
pub mod supply_chain;
pub mod tpm;
pub mod vendor;
pub mod verdict;
pub mod verifier;
pub mod wire;
