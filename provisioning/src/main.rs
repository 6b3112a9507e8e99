//! vouch-provision: the terminal vendor's factory tool. `vendor-init` makes the vendor's signing
//! key; `challenge` and `issue` run credential activation against a terminal's enrollment
//! request and sign its device manifest; `reference` computes reference values (as JSON, or as
//! a vendor-signed bundle); `batch` provisions simulated terminals. This file is the CLI
//! definition and glue: one module per command. docs/provisioning.md walks the factory flow.

mod batch;
mod challenge;
mod issue;
mod reference;

use clap::{Parser, Subcommand};
use vouch_provisioning::vendor;

/// vouch factory tooling.
#[derive(Debug, Parser)]
#[command(name = "vouch-provision", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a vendor signing key (DIR/vendor.key, 0600) and its public key file for operators.
    VendorInit(vendor::InitArgs),
    /// Make a credential-activation challenge for a terminal's enrollment request.
    Challenge(challenge::ChallengeArgs),
    /// Check the terminal's activation response and EK certificate; sign its device manifest.
    Issue(issue::IssueArgs),
    /// Compute reference values from golden images or verified evidence; with --vendor, sign
    /// them as a reference bundle for a model and firmware version.
    Reference(reference::ReferenceArgs),
    /// Provision N SIMULATED terminals and their vendor-signed manifests.
    Batch(batch::BatchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::VendorInit(args) => vendor::init(&args),
        Command::Challenge(args) => challenge::run(&args),
        Command::Issue(args) => issue::run(&args),
        Command::Reference(args) => reference::run(&args),
        Command::Batch(args) => batch::run(&args),
    };
    if let Err(e) = result {
        eprintln!("vouch-provision: {e:#}");
        std::process::exit(1);
    }
}
