//! vouch-verifier: the verifier service (`run`) and the demo fleet (`demo`).

use clap::Parser;
use vouch_verifier::config::{Cli, Command, ServerConfig};
use vouch_verifier::{demo, server};

fn main() {
    vouch_common::logging::init("info,rumqttd=warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => ServerConfig::resolve(&args).and_then(|cfg| {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let shutdown = server::shutdown_on_signals()?;
                server::run(cfg, shutdown).await
            })
        }),
        Command::Demo(args) => demo::run(args),
    };
    if let Err(e) = result {
        eprintln!("vouch-verifier: {e:#}");
        std::process::exit(1);
    }
}
