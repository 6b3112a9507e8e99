//! `vouch-demo`: runs the demo fleet (see `vouch_demo::demo`). Only argument parsing and the exit
//! code live here.

use clap::Parser;
use vouch_demo::demo::{self, DemoArgs};

fn main() {
    let args = DemoArgs::parse();
    // The narration goes to stdout; the in-process terminals' agent logs would drown it, so
    // only their warnings and errors show (RUST_LOG overrides).
    vouch_common::logging::init("warn");
    if let Err(e) = demo::run(args) {
        eprintln!("vouch-demo: {e:#}");
        std::process::exit(1);
    }
}
