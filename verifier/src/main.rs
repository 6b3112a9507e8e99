//! vouch-verifier: the verifier service (`run`) and the demo fleet (`demo`).

use clap::Parser;
use vouch_verifier::config::{Cli, Command, ServerConfig};
use vouch_verifier::{bench, demo, server};

fn main() {
    let cli = Cli::parse();
    // The bench appraises thousands of devices a second: keep per-device lines out of its output.
    let level = match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    };
    vouch_common::logging::init(level);
    let result = match cli.command {
        Command::Run(args) => ServerConfig::resolve(&args).and_then(|cfg| {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let shutdown = server::shutdown_on_signals()?;
                let listeners = server::Listeners::bind(&cfg).await?;
                server::run(cfg, listeners, shutdown).await
            })
        }),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(e) = result {
        eprintln!("vouch-verifier: {e:#}");
        std::process::exit(1);
    }
}
