//! vouch-provision-sim: the SIMULATED batch behind `vouch-provision batch` (which runs this
//! executable): N simulated terminals and their vendor-signed manifests. It lives in the demo
//! crate because it links the simulator, which no production binary may contain.

use clap::Parser;
use vouch_demo::provision_batch::{BatchArgs, run};

/// Provision N SIMULATED terminals and their vendor-signed manifests.
#[derive(Debug, Parser)]
#[command(
    name = "vouch-provision batch",
    bin_name = "vouch-provision batch",
    version,
    about = "Provision N SIMULATED terminals (vouch-sim) and their vendor-signed manifests: for \
             demos and load tests; they prove nothing about hardware.",
    long_about = None
)]
struct Cli {
    #[command(flatten)]
    args: BatchArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli.args) {
        eprintln!("vouch-provision batch: {e:#}");
        std::process::exit(1);
    }
}
