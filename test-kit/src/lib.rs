//! vouch-test-kit: what the test suites (end-to-end, agent, verifier, protocol), the demo and the
//! benchmarks share, so each lives once: child processes ended by their own pid ([`process`]),
//! a software TPM on free loopback ports ([`swtpm`]), a test TPM manufacturer CA issuing EK
//! certificates to such TPMs ([`ekca`]), a size-limited tmpfs for disk-full tests
//! ([`tmpfs`]), a bare HTTP GET for health waits ([`http`]) and synthesized TCG event logs ([`eventlog`]). `publish = false`, and no
//! production binary depends on it (`tests/lean_binaries.rs` checks).

pub mod ekca;
pub mod http;
pub mod process;
pub mod swtpm;
pub mod tmpfs;

/// Synthesized crypto-agile TCG event logs and the UEFI structures their events carry. The
/// builder is defined in `vouch_protocol::eventlog::build` (behind its `eventlog-builder`
/// feature), beside the parser whose event-type constants it uses, so that the protocol's own
/// unit tests can build logs of the parser's own types; this is its public door.
pub use vouch_protocol::eventlog::build as eventlog;
