//! vouch-agent: the terminal-side daemon and its one-shot commands. See `commands` for what each
//! does; this file only parses arguments and maps errors to exit codes.

use clap::Parser;
use vouch_agent::commands::{self, EXIT_ERROR};
use vouch_agent::config::Cli;

fn main() {
    vouch_common::logging::init("info,tss_esapi=warn");
    let cli = Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vouch-agent: {e:#}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}
