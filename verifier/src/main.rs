//! vouch-verifier: the verifier service (`run`). The demo fleet and the scale bench are
//! `vouch-demo` and `vouch-bench` (crate `vouch-demo`).

use clap::Parser;
use vouch_verifier::config::{Cli, Command, ServerConfig};
use vouch_verifier::server;

fn main() {
    let cli = Cli::parse();
    vouch_common::logging::init("info");
    let result = match cli.command {
        Command::Run(args) => ServerConfig::resolve(&args).and_then(|cfg| {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let shutdown = server::shutdown_on_signals()?;
                let listeners = server::Listeners::bind(&cfg).await?;
                server::run(cfg, listeners, shutdown).await
            })
        }),
    };
    if let Err(e) = result {
        eprintln!("vouch-verifier: {e:#}");
        std::process::exit(1);
    }
}
