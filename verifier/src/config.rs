//! The verifier's command line and config file, validated once into `ServerConfig`.
//! Precedence: flags, then the TOML file given by `--config`, then defaults. The TPM
//! manufacturer roots (`tpm_roots`, a directory of PEM files) are read and checked here, at
//! start: a missing or unreadable directory or a certificate that is not a CA stops the
//! verifier with a message naming the file.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use vouch_common::mqtt_url::BrokerAddr;
use vouch_protocol::ekcert::{self, TrustAnchors};
use vouch_protocol::{nonce, wire};

use crate::broker::{TlsFiles, VERIFIER_USER, supervisor::DEFAULT_MOSQUITTO};
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
    /// Run the verifier (with its own managed Mosquitto broker unless --mqtt-url is given).
    Run(RunArgs),
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Data directory (keys, admin token, store) [default: ./vouch-data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run the managed MQTT broker (Mosquitto) on this address [default: 127.0.0.1:1883]
    #[arg(long, conflicts_with = "mqtt_url")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Use an external broker (Mosquitto, EMQX) instead of the managed one: mqtt://host:port
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// Operator HTTP API address [default: 127.0.0.1:8080]
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Allow --http-listen on a non-loopback address although the API is plain HTTP (bearer
    /// tokens in clear text on the network). Without it such an address is refused at start.
    #[arg(long)]
    pub http_insecure_remote: bool,
    /// Flag a terminal (`vouchctl devices`, `"buffer_pressure"` in the device JSON) when its
    /// unacknowledged punches fill this percentage of its buffer or more [default: 80]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub punch_pressure_percent: Option<u8>,
    /// A device without an EK certificate chaining to one of --tpm-roots is at best `warning`,
    /// never trusted [default: true]
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub require_ek_cert: Option<bool>,
    /// Directory of PEM files: the TPM manufacturer CAs (roots, and any intermediates placed
    /// beside them) EK certificates must chain to. Every certificate in it is a trust anchor.
    #[arg(long, value_name = "DIR")]
    pub tpm_roots: Option<PathBuf>,
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
    /// Serve plain HTTP on a non-loopback `http_listen` (refused otherwise) [default: false].
    pub http_insecure_remote: Option<bool>,
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
    /// Connection limit of the managed broker [default: 100000, lowered to what the open-file
    /// limit allows].
    pub mqtt_max_connections: Option<u64>,
    /// The Mosquitto binary the managed broker runs [default: /usr/sbin/mosquitto].
    pub mosquitto: Option<PathBuf>,
    /// Managed broker: an additional TLS listener address (needs mqtt_tls_cert and mqtt_tls_key).
    pub mqtt_tls_listen: Option<SocketAddr>,
    /// Managed broker: PEM certificate chain of its TLS listener.
    pub mqtt_tls_cert: Option<PathBuf>,
    /// Managed broker: PEM private key of its TLS listener.
    pub mqtt_tls_key: Option<PathBuf>,
    /// Managed broker: CA file for client certificates (not required of clients yet).
    pub mqtt_tls_ca: Option<PathBuf>,
    /// External broker over mqtts://: CA certificate file (PEM) its certificate must chain to.
    pub mqtt_ca: Option<PathBuf>,
    /// External broker: the verifier's MQTT user name (default: `vouch@verifier`). It must not be
    /// a valid device id (use an `@`).
    pub mqtt_username: Option<String>,
    /// External broker: file holding the verifier's MQTT password
    /// [default: DATA/broker/verifier.mqtt-password, created on first start].
    pub mqtt_password_file: Option<PathBuf>,
    /// Extra password-file lines (`user:$7$...`) kept in DATA/broker/passwd besides the
    /// verifier's and the terminals', e.g. a monitoring account. User names must not be valid
    /// device ids (use an `@`) or enrollment could not give that id to a terminal.
    pub mqtt_extra_passwd: Option<PathBuf>,
    /// Extra ACL lines appended to the generated ACL (rights of the mqtt_extra_passwd users).
    pub mqtt_extra_acl: Option<PathBuf>,
    /// External broker: command (run with `sh -c`) that makes it re-read DATA/broker/passwd
    /// after an enrollment, e.g. "systemctl reload mosquitto".
    pub mqtt_reload_command: Option<String>,
    /// Quarantine a device after this many consecutive verdict periods without fresh evidence
    /// [default: 0 = never].
    pub quarantine_after_expiries: Option<u32>,
    /// Buffer pressure threshold in percent of a terminal's punch buffer [default: 80].
    pub punch_pressure_percent: Option<u8>,
    /// A device without an EK certificate chaining to one of `tpm_roots` is at best `warning`
    /// [default: true].
    pub require_ek_cert: Option<bool>,
    /// Directory of PEM files holding the trusted TPM manufacturer CAs.
    pub tpm_roots: Option<PathBuf>,
    /// Alert webhooks (`[[webhook]]` tables; docs/webhooks.md).
    pub webhook: Option<Vec<crate::webhook::config::WebhookFile>>,
    /// An undelivered alert is dropped after this many seconds [default: 604800 = 7 days].
    pub webhook_max_age_secs: Option<u64>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Ok(vouch_common::config::load_toml(path)?)
    }
}

/// Which broker the verifier talks to.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// A Mosquitto child the verifier generates the configuration for and supervises.
    Managed(ManagedBroker),
    External(ExternalBroker),
}

#[derive(Debug, Clone)]
pub struct ManagedBroker {
    pub listen: SocketAddr,
    pub tls: Option<(SocketAddr, TlsFiles)>,
    pub mosquitto: PathBuf,
    pub max_connections: u64,
}

#[derive(Debug, Clone)]
pub struct ExternalBroker {
    pub addr: BrokerAddr,
    /// TLS settings when `addr` is mqtts://.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub username: String,
    pub password_file: Option<PathBuf>,
    pub reload_command: Option<String>,
}

/// Validated settings for `run`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data: PathBuf,
    pub broker: BrokerChoice,
    pub http_listen: SocketAddr,
    pub engine: EngineConfig,
    pub workers: usize,
    /// Extra (user, hash) lines for the broker password file.
    pub mqtt_extra_users: Vec<(String, String)>,
    /// Extra ACL text appended to the generated ACL.
    pub mqtt_extra_acl: String,
    /// Buffer pressure threshold, percent of a terminal's punch buffer.
    pub punch_pressure_percent: u8,
    /// The TPM manufacturer CAs EK certificates are checked against (empty: none configured).
    pub tpm_roots: TrustAnchors,
    /// Alert webhooks, validated (secrets read).
    pub webhooks: Vec<crate::webhook::Webhook>,
    /// Age after which an undelivered alert is dropped, seconds.
    pub webhook_max_age_secs: u64,
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
        let url = match (&args.mqtt_url, &args.mqtt_listen) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(_)) => None,
            (None, None) => file.mqtt_url.clone(),
        };
        let broker = match url {
            Some(url) => BrokerChoice::External(external(&url, &file)?),
            None => BrokerChoice::Managed(managed(
                args.mqtt_listen
                    .or(file.mqtt_listen)
                    .unwrap_or_else(|| default_addr(DEFAULT_MQTT)),
                &file,
            )?),
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
        let punch_pressure_percent = args
            .punch_pressure_percent
            .or(file.punch_pressure_percent)
            .unwrap_or(crate::engine::DEFAULT_PUNCH_PRESSURE_PERCENT);
        if !(1..=100).contains(&punch_pressure_percent) {
            bail!("punch_pressure_percent must be between 1 and 100");
        }
        let require_ek_cert = args
            .require_ek_cert
            .or(file.require_ek_cert)
            .unwrap_or(true);
        let tpm_roots = match args.tpm_roots.as_ref().or(file.tpm_roots.as_ref()) {
            Some(dir) => load_tpm_roots(dir)?,
            None => TrustAnchors::default(),
        };
        let http_listen = args
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| default_addr(DEFAULT_HTTP));
        check_http_exposure(
            http_listen,
            args.http_insecure_remote || file.http_insecure_remote.unwrap_or(false),
        )?;
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
            http_listen,
            engine: EngineConfig {
                max_payload,
                nonce_ttl,
                verdict_ttl,
                challenges_per_minute: file.challenges_per_minute.unwrap_or(30).max(1),
                verifier_id: format!("vouch-verifier {}", env!("CARGO_PKG_VERSION")),
                quarantine_after_expiries: file.quarantine_after_expiries.unwrap_or(0),
                require_ek_cert,
            },
            workers,
            punch_pressure_percent,
            tpm_roots,
            webhooks: crate::webhook::config::resolve(file.webhook.as_deref().unwrap_or_default())?,
            webhook_max_age_secs: file
                .webhook_max_age_secs
                .unwrap_or(crate::webhook::config::DEFAULT_MAX_AGE_SECS)
                .max(1),
            mqtt_extra_users: match &file.mqtt_extra_passwd {
                Some(p) => extra_users(p)?,
                None => Vec::new(),
            },
            mqtt_extra_acl: match &file.mqtt_extra_acl {
                Some(p) => String::from_utf8(vouch_common::fs::read_limited(p, 1 << 20)?)
                    .map_err(|_| anyhow::anyhow!("{} is not UTF-8", p.display()))?,
                None => String::new(),
            },
        })
    }
}

/// The API carries bearer tokens and quarantine actions in plain HTTP, so it may listen on a
/// non-loopback address only when the operator says so explicitly (then a warning is logged).
fn check_http_exposure(listen: SocketAddr, insecure_remote: bool) -> Result<()> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !insecure_remote {
        bail!(
            "--http-listen {listen} is not a loopback address and the API is plain HTTP \
             (bearer tokens would cross the network in clear text); listen on 127.0.0.1 \
             (and reach it through an SSH tunnel or a TLS reverse proxy), or pass \
             --http-insecure-remote (config: http_insecure_remote = true) to accept the risk"
        );
    }
    tracing::warn!(
        http_listen = %listen,
        "INSECURE: the HTTP API is served without TLS on a non-loopback address \
         (--http-insecure-remote); bearer tokens cross the network in clear text"
    );
    Ok(())
}

/// Most PEM files read from a roots directory.
const MAX_ROOT_FILES: usize = 256;

/// Reads every `*.pem` file of `dir` (sorted by name) into one set of trust anchors. Each file
/// is checked on its own first, so an error names the file: unreadable, not PEM, no
/// certificate, or a certificate that is not a CA. An empty directory is refused too: a roots
/// setting that trusts nothing is a mistake, not a choice.
pub fn load_tpm_roots(dir: &Path) -> Result<TrustAnchors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "tpm_roots {}: cannot read the directory: {e}",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| anyhow::anyhow!("tpm_roots {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|x| x == "pem") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("tpm_roots {} holds no *.pem file", dir.display());
    }
    if files.len() > MAX_ROOT_FILES {
        bail!(
            "tpm_roots {} holds {} PEM files (limit {MAX_ROOT_FILES})",
            dir.display(),
            files.len()
        );
    }
    let mut all = Vec::new();
    for path in &files {
        let bytes = vouch_common::fs::read_limited(path, ekcert::MAX_PEM_TEXT as u64)
            .map_err(|e| anyhow::anyhow!("tpm_roots: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("tpm_roots: {} is not PEM text", path.display()))?;
        let certs = ekcert::parse_pem_certificates(&text)
            .map_err(|e| anyhow::anyhow!("tpm_roots: {}: {e}", path.display()))?;
        TrustAnchors::from_der(certs.clone())
            .map_err(|e| anyhow::anyhow!("tpm_roots: {}: {e}", path.display()))?;
        all.extend(certs);
    }
    TrustAnchors::from_der(all).map_err(|e| anyhow::anyhow!("tpm_roots {}: {e}", dir.display()))
}

/// Parses `user:hash` lines; refuses user names that are device ids.
fn extra_users(path: &Path) -> Result<Vec<(String, String)>> {
    let text = String::from_utf8(vouch_common::fs::read_limited(path, 1 << 20)?)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            bail!("{} line {}: expected user:hash", path.display(), n + 1);
        };
        if user.parse::<vouch_protocol::ids::DeviceId>().is_ok() || user == VERIFIER_USER {
            bail!(
                "{} line {}: user {user:?} is a device id or the verifier's name; extra users \
                 need a name with '@'",
                path.display(),
                n + 1
            );
        }
        vouch_protocol::enrollment::check_mqtt_password_hash(hash)
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
        out.push((user.to_owned(), hash.to_owned()));
    }
    Ok(out)
}

fn managed(listen: SocketAddr, file: &FileConfig) -> Result<ManagedBroker> {
    if file.mqtt_username.is_some()
        || file.mqtt_password_file.is_some()
        || file.mqtt_reload_command.is_some()
        || file.mqtt_ca.is_some()
    {
        bail!(
            "mqtt_username, mqtt_password_file, mqtt_reload_command and mqtt_ca are for an external broker \
             (mqtt_url); the managed broker's credentials live in DATA/broker"
        );
    }
    let tls = match (
        file.mqtt_tls_listen,
        &file.mqtt_tls_cert,
        &file.mqtt_tls_key,
    ) {
        (None, None, None) => None,
        (Some(addr), Some(cert), Some(key)) => {
            if addr == listen {
                bail!("mqtt_tls_listen must differ from mqtt_listen ({listen})");
            }
            for p in [Some(cert), Some(key), file.mqtt_tls_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                if !crate::broker::conf::printable_path(p) || !p.is_file() {
                    bail!(
                        "TLS file {} does not exist or is not a plain path",
                        p.display()
                    );
                }
            }
            Some((
                addr,
                TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: file.mqtt_tls_ca.clone(),
                },
            ))
        }
        _ => bail!("a TLS listener needs all of mqtt_tls_listen, mqtt_tls_cert and mqtt_tls_key"),
    };
    Ok(ManagedBroker {
        listen,
        tls,
        mosquitto: file
            .mosquitto
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MOSQUITTO)),
        max_connections: file.mqtt_max_connections.unwrap_or(100_000).max(16),
    })
}

fn external(url: &str, file: &FileConfig) -> Result<ExternalBroker> {
    if file.mqtt_tls_listen.is_some() || file.mqtt_tls_cert.is_some() {
        bail!("mqtt_tls_listen and mqtt_tls_cert configure the managed broker, not mqtt_url");
    }
    let username = file
        .mqtt_username
        .clone()
        .unwrap_or_else(|| VERIFIER_USER.to_owned());
    if username.is_empty() || username.contains([':', '\n', '\r', ' ']) {
        bail!("mqtt_username {username:?} must be non-empty without ':' or whitespace");
    }
    // Enrolling a terminal under the verifier's user name would replace the verifier's
    // password-file line: that terminal would log in with the verifier's rights.
    if username.parse::<vouch_protocol::ids::DeviceId>().is_ok() {
        bail!(
            "mqtt_username {username:?} is a valid device id, so a terminal could be enrolled \
             under it; use a name with '@' (default {VERIFIER_USER})"
        );
    }
    let addr: BrokerAddr = url.parse()?;
    let tls = match (addr.tls, &file.mqtt_ca) {
        (true, Some(ca)) => Some(vouch_common::mqtt_tls::client_config(ca)?),
        (true, None) => bail!(
            "{url} uses TLS: set mqtt_ca to the CA certificate that signed the broker's certificate"
        ),
        (false, Some(_)) => bail!("mqtt_ca is for mqtts:// broker URLs; {url} is plain MQTT"),
        (false, None) => None,
    };
    Ok(ExternalBroker {
        addr,
        tls,
        username,
        password_file: file.mqtt_password_file.clone(),
        reload_command: file.mqtt_reload_command.clone(),
    })
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
        assert!(
            matches!(c.broker, BrokerChoice::Managed(ref m) if m.listen.to_string() == DEFAULT_MQTT && m.tls.is_none())
        );
        assert_eq!(c.engine.max_payload, 1 << 20);
        assert_eq!(c.engine.nonce_ttl, 60);
        assert_eq!(c.punch_pressure_percent, 80);
    }

    #[test]
    fn non_loopback_http_listen_is_refused_without_insecure_remote() {
        let args = RunArgs {
            http_listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..RunArgs::default()
        };
        let err = ServerConfig::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("--http-insecure-remote"), "{err}");
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        let args = RunArgs {
            http_insecure_remote: true,
            ..args
        };
        assert_eq!(
            ServerConfig::resolve(&args)
                .unwrap()
                .http_listen
                .to_string(),
            "0.0.0.0:8080"
        );
        // The config-file key does the same; loopback (v4 and v6) needs neither.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            "http_listen = \"0.0.0.0:8080\"\nhttp_insecure_remote = true\n",
        )
        .unwrap();
        let from_file = RunArgs {
            config: Some(path),
            ..RunArgs::default()
        };
        assert!(ServerConfig::resolve(&from_file).is_ok());
        for lo in ["127.0.0.1:8080", "[::1]:8080"] {
            let args = RunArgs {
                http_listen: Some(lo.parse().unwrap()),
                ..RunArgs::default()
            };
            assert!(ServerConfig::resolve(&args).is_ok(), "{lo}");
        }
    }

    #[test]
    fn punch_pressure_percent_comes_from_the_flag_and_is_bounded() {
        let Command::Run(args) =
            Cli::try_parse_from(["vouch-verifier", "run", "--punch-pressure-percent", "95"])
                .unwrap()
                .command;
        assert_eq!(
            ServerConfig::resolve(&args).unwrap().punch_pressure_percent,
            95
        );
        for bad in ["0", "101", "x"] {
            assert!(
                Cli::try_parse_from(["vouch-verifier", "run", "--punch-pressure-percent", bad])
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn mqtt_url_selects_an_external_broker() {
        let args = RunArgs {
            mqtt_url: Some("mqtt://127.0.0.1:1999".into()),
            ..RunArgs::default()
        };
        let c = ServerConfig::resolve(&args).unwrap();
        assert!(
            matches!(c.broker, BrokerChoice::External(ref b) if b.addr.port == 1999 && b.username == VERIFIER_USER)
        );
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
    fn an_external_verifier_user_name_that_a_terminal_could_enroll_under_is_refused() {
        // mqtt_username = "verifier" is a valid device id: enrolling a terminal "verifier"
        // replaced the verifier's password-file line with the terminal's hash, so the terminal
        // logged in with the verifier's ACL (readwrite vouch/v1/#) and the verifier was locked out.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(&path, "mqtt_username = \"verifier\"\n").unwrap();
        let args = RunArgs {
            config: Some(path),
            mqtt_url: Some("mqtt://127.0.0.1:1999".into()),
            ..RunArgs::default()
        };
        let err = ServerConfig::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("device id"), "{err}");
    }

    #[test]
    fn require_ek_cert_defaults_to_true_and_comes_from_the_flag_or_the_file() {
        let c = ServerConfig::resolve(&RunArgs::default()).unwrap();
        assert!(c.engine.require_ek_cert);
        assert!(c.tpm_roots.is_empty());
        let Command::Run(args) =
            Cli::try_parse_from(["vouch-verifier", "run", "--require-ek-cert", "false"])
                .unwrap()
                .command;
        assert!(!ServerConfig::resolve(&args).unwrap().engine.require_ek_cert);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(&path, "require_ek_cert = false\n").unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        assert!(!ServerConfig::resolve(&args).unwrap().engine.require_ek_cert);
        let args = RunArgs {
            config: Some(path),
            require_ek_cert: Some(true),
            ..RunArgs::default()
        };
        assert!(
            ServerConfig::resolve(&args).unwrap().engine.require_ek_cert,
            "the flag wins"
        );
    }

    fn vector(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../protocol/tests/vectors/ekcert")
            .join(name)
    }

    #[test]
    fn tpm_roots_load_every_pem_file_and_name_the_one_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let roots = dir.path();
        let err = load_tpm_roots(roots).unwrap_err().to_string();
        assert!(err.contains("holds no *.pem file"), "{err}");
        std::fs::copy(vector("swtpm-root.pem"), roots.join("a.pem")).unwrap();
        std::fs::copy(vector("swtpm-intermediate.pem"), roots.join("b.pem")).unwrap();
        std::fs::write(roots.join("README"), "not a certificate, not read").unwrap();
        let anchors = load_tpm_roots(roots).unwrap();
        assert_eq!(anchors.len(), 2);
        std::fs::copy(vector("rsa2048-ek-pss.pem"), roots.join("c.pem")).unwrap();
        let err = load_tpm_roots(roots).unwrap_err().to_string();
        assert!(err.contains("c.pem") && err.contains("not a CA"), "{err}");
        std::fs::write(roots.join("c.pem"), "garbage").unwrap();
        let err = load_tpm_roots(roots).unwrap_err().to_string();
        assert!(
            err.contains("c.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let err = load_tpm_roots(&roots.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("cannot read"),
            "{err}"
        );
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
