//! `vouch-bench`: the attestation, punch-mirroring and provisioned-fleet benches (see
//! `vouch_demo::bench`). Only argument parsing and the exit code live here.

use clap::Parser;
use vouch_demo::bench::{self, BenchArgs};

fn main() {
    let args = BenchArgs::parse();
    // The benches move thousands of messages a second: keep per-message lines out of the output.
    vouch_common::logging::init("warn");
    if let Err(e) = bench::run(args) {
        eprintln!("vouch-bench: {e:#}");
        std::process::exit(1);
    }
}
