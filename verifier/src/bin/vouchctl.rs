//! vouchctl: the operator CLI. Errors print one line on stderr and exit 1.

use clap::Parser;

fn main() {
    let cli = vouch_verifier::ctl::Cli::parse();
    if let Err(e) = vouch_verifier::ctl::run(cli) {
        eprintln!("vouchctl: {e:#}");
        std::process::exit(1);
    }
}
