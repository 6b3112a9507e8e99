//! `vouch-bench`: measures the verifier engine with simulated terminals (see
//! `vouch_demo::bench`). Only argument parsing and the exit code live here.

use clap::Parser;
use vouch_demo::bench::{self, BenchArgs};

fn main() {
    let args = BenchArgs::parse();
    // The bench appraises thousands of devices a second: keep per-device lines out of its output.
    vouch_common::logging::init("warn");
    if let Err(e) = bench::run(args) {
        eprintln!("vouch-bench: {e:#}");
        std::process::exit(1);
    }
}
