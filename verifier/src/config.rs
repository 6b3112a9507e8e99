//! The verifier's command line and config file, validated once into `ServerConfig`.
//! Precedence: flags, then the TOML file given by `--config`, then defaults.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use vouch_common::mqtt_url::BrokerAddr;
use vouch_protocol::{nonce, wire};

use crate::engine::EngineConfig;

/// vouch verifier: appraises terminals' TPM evidence, publishes signed verdicts, quarantines
/// terminals that fail, and serves operators.
#[derive(Debug, Parser)]
#[command(name = "vouch-verifier", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the verifier (embedded MQTT broker unless --mqtt-url is given).
    Run(RunArgs),
    /// Run a demo fleet against a verifier on the embedded defaults and narrate what happens.
    Demo(crate::demo::DemoArgs),
    /// Measure the verifier engine (store, verification, appraisal) with simulated terminals.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Data directory (keys, admin token, store) [default: ./vouch-data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run the embedded MQTT broker on this address [default: 127.0.0.1:1883]
    #[arg(long, conflicts_with = "mqtt_url")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Use an external broker (e.g. Mosquitto) instead of the embedded one: mqtt://host:port
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// Operator HTTP API address [default: 127.0.0.1:8080]
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// TOML config file; flags take precedence.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The optional TOML file; keys mirror the flags plus tunables without a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub mqtt_listen: Option<SocketAddr>,
    pub mqtt_url: Option<String>,
    pub http_listen: Option<SocketAddr>,
    /// Largest accepted MQTT payload in bytes [default: 1048576].
    pub max_payload: Option<usize>,
    /// Challenge lifetime in seconds [default: 60].
    pub nonce_ttl: Option<u64>,
    /// Verdict lifetime in seconds [default: 900].
    pub verdict_ttl: Option<u64>,
    /// Challenges per device per minute [default: 30].
    pub challenges_per_minute: Option<u32>,
    /// Worker threads for message checks [default: number of CPUs].
    pub workers: Option<usize>,
    /// Connection limit of the embedded broker [default: 10010].
    pub mqtt_max_connections: Option<usize>,
    /// Quarantine a device after this many consecutive verdict periods without fresh evidence
    /// [default: 0 = never].
    pub quarantine_after_expiries: Option<u32>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Ok(vouch_common::config::load_toml(path)?)
    }
}

/// Which broker the verifier talks to.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    Embedded(SocketAddr),
    External(BrokerAddr),
}

/// Validated settings for `run`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data: PathBuf,
    pub broker: BrokerChoice,
    pub http_listen: SocketAddr,
    pub engine: EngineConfig,
    pub workers: usize,
    pub mqtt_max_connections: usize,
}

pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

impl ServerConfig {
    pub fn resolve(args: &RunArgs) -> Result<Self> {
        let file = FileConfig::load(args.config.as_deref())?;
        let default_addr = |s: &str| -> SocketAddr {
            // The defaults are literals that parse; fall back to the unspecified address rather
            // than panicking if one were ever edited wrong.
            s.parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        let broker = match (&args.mqtt_url, &args.mqtt_listen) {
            (Some(url), _) => BrokerChoice::External(url.parse()?),
            (None, Some(listen)) => BrokerChoice::Embedded(*listen),
            (None, None) => match (&file.mqtt_url, file.mqtt_listen) {
                (Some(url), _) => BrokerChoice::External(url.parse()?),
                (None, Some(l)) => BrokerChoice::Embedded(l),
                (None, None) => BrokerChoice::Embedded(default_addr(DEFAULT_MQTT)),
            },
        };
        let max_payload = file.max_payload.unwrap_or(wire::DEFAULT_MAX_PAYLOAD);
        if !(4096..=64 * 1024 * 1024).contains(&max_payload) {
            bail!("max_payload must be between 4096 and 67108864 bytes");
        }
        let nonce_ttl = file.nonce_ttl.unwrap_or(nonce::DEFAULT_TTL_SECS);
        let verdict_ttl = file.verdict_ttl.unwrap_or(900);
        if nonce_ttl == 0 || verdict_ttl == 0 {
            bail!("nonce_ttl and verdict_ttl must be at least 1 second");
        }
        let workers = file
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .clamp(1, 256);
        Ok(Self {
            data: args
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("./vouch-data")),
            broker,
            http_listen: args
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_HTTP)),
            engine: EngineConfig {
                max_payload,
                nonce_ttl,
                verdict_ttl,
                challenges_per_minute: file.challenges_per_minute.unwrap_or(30).max(1),
                verifier_id: format!("vouch-verifier {}", env!("CARGO_PKG_VERSION")),
                quarantine_after_expiries: file.quarantine_after_expiries.unwrap_or(0),
            },
            workers,
            mqtt_max_connections: file.mqtt_max_connections.unwrap_or(10_010).max(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ServerConfig::resolve(&RunArgs::default()).unwrap();
        assert_eq!(c.data, PathBuf::from("./vouch-data"));
        assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP);
        assert!(matches!(c.broker, BrokerChoice::Embedded(a) if a.to_string() == DEFAULT_MQTT));
        assert_eq!(c.engine.max_payload, 1 << 20);
        assert_eq!(c.engine.nonce_ttl, 60);
    }

    #[test]
    fn mqtt_url_selects_an_external_broker() {
        let args = RunArgs {
            mqtt_url: Some("mqtt://127.0.0.1:1999".into()),
            ..RunArgs::default()
        };
        let c = ServerConfig::resolve(&args).unwrap();
        assert!(matches!(c.broker, BrokerChoice::External(ref b) if b.port == 1999));
    }

    #[test]
    fn quarantine_after_expiries_comes_from_the_config_file_and_defaults_to_never() {
        assert_eq!(
            ServerConfig::resolve(&RunArgs::default())
                .unwrap()
                .engine
                .quarantine_after_expiries,
            0
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(&path, "quarantine_after_expiries = 3\n").unwrap();
        let args = RunArgs {
            config: Some(path),
            ..RunArgs::default()
        };
        let c = ServerConfig::resolve(&args).unwrap();
        assert_eq!(c.engine.quarantine_after_expiries, 3);
    }

    #[test]
    fn listen_and_url_conflict() {
        assert!(
            Cli::try_parse_from([
                "vouch-verifier",
                "run",
                "--mqtt-listen",
                "127.0.0.1:1",
                "--mqtt-url",
                "mqtt://x"
            ])
            .is_err()
        );
    }
}
