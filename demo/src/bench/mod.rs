//! `vouch-bench`: measured figures instead of hopes. Two benches share the binary:
//! - `vouch-bench [--devices N]` (or `vouch-bench attest`): the verifier engine's attestation
//!   throughput with simulated terminals, no broker ([`attest`]);
//! - `vouch-bench punches`: zero-loss punch mirroring end to end — the real `vouch-verifier`
//!   binary with its managed Mosquitto, simulated terminals publishing signed batches over
//!   MQTT, and a real `vouch-agent` daemon on swtpm taking punches at its socket ([`punches`]);
//! - `vouch-bench fleet DIR`: a `vouch-provision batch` fleet of simulated terminals attesting
//!   against a running verifier through its broker, verdicts counted by status ([`fleet`]).
//!
//! Benches print figures with their targets; nothing here is a test and nothing asserts on
//! speed.

pub mod attest;
pub mod fleet;
pub mod punches;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use attest::AttestArgs;
pub use fleet::FleetArgs;
pub use punches::PunchArgs;

/// vouch bench: measure the verifier with simulated terminals. Without a subcommand it runs
/// the attestation bench (`attest`).
#[derive(Debug, Parser)]
#[command(name = "vouch-bench", version, args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Options of the attestation bench when no subcommand is given.
    #[command(flatten)]
    pub attest: AttestArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Attestation throughput of the verifier engine (store, verification, appraisal); no broker.
    Attest(AttestArgs),
    /// Punch mirroring end to end through the real broker: mirrored punches/s with durable acks
    /// (1 and 1,000 terminals), a real agent's confirmed punches/s at its socket, and the
    /// confirmation-to-ack latency.
    Punches(PunchArgs),
    /// A provisioned simulated fleet (`vouch-provision batch` output) attesting against a
    /// running verifier over MQTT: verdicts per status and the rate; exit 1 if any terminal got
    /// no verdict within --timeout.
    Fleet(FleetArgs),
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        None => attest::run(args.attest),
        Some(BenchCommand::Attest(a)) => attest::run(a),
        Some(BenchCommand::Punches(p)) => punches::run(p),
        Some(BenchCommand::Fleet(f)) => fleet::run(f),
    }
}
