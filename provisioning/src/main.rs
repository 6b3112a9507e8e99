//! vouch-provision: what a terminal vendor (or an operator with golden images) runs to produce
//! reference values for a model and firmware version. This version computes the JSON that
//! `vouchctl policy set` takes from golden firmware files and PCR values; signed reference
//! bundles, device identities and EK/AK binding are the vendor-provisioning work still to come.

mod reference;

use clap::{Parser, Subcommand};

/// vouch factory tooling.
#[derive(Debug, Parser)]
#[command(name = "vouch-provision", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute reference values (the `vouchctl policy set` JSON) from golden images.
    Reference(reference::ReferenceArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Reference(args) => reference::run(&args),
    };
    if let Err(e) = result {
        eprintln!("vouch-provision: {e:#}");
        std::process::exit(1);
    }
}
