//! Command line and config file, validated once into typed settings. Precedence: flags, then
//! the TOML file given by `--config`, then defaults.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vouch_common::mqtt_url::BrokerAddr;
use vouch_protocol::ids::DeviceId;

use crate::punch::PunchConfig;

pub const DEFAULT_STATE: &str = "/var/lib/vouch-agent";
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
pub const DEFAULT_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_FIRMWARE_PCR: u8 = 14;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_EVENTLOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
pub const DEFAULT_SYSFS_ROOT: &str = "/";

/// vouch terminal agent: proves this terminal's boot and firmware state to a vouch verifier.
#[derive(Debug, Parser)]
#[command(name = "vouch-agent", version, about, long_about = None)]
pub struct Cli {
    /// State directory (keys, identity, measurement list) [default: /var/lib/vouch-agent]
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    /// TPM access: device:/dev/tpmrm0, or swtpm:host=127.0.0.1,port=P [default: device:/dev/tpmrm0]
    #[arg(long, global = true)]
    pub tcti: Option<String>,
    /// TOML config file; command-line flags take precedence over it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (first time) or reload this terminal's TPM and device keys and write an
    /// enrollment request, with the hardware inventory and firmware version, for the operator
    /// (`vouchctl enroll FILE`) or the vendor's provisioning station.
    Enroll {
        #[arg(long)]
        device_id: DeviceId,
        #[arg(long)]
        model: String,
        /// Where to write the enrollment request (CBOR).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Answer a provisioning station's credential challenge (`vouch-provision challenge`):
    /// TPM2_ActivateCredential with this terminal's EK and AK, writing the response for
    /// `vouch-provision issue`. Fails if the TPM does not hold the EK or AK the challenge names.
    Activate {
        /// The challenge file from the station.
        challenge: PathBuf,
        /// Where to write the response (CBOR, mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// The enrolled device id; when given it must be this state directory's.
        #[arg(long)]
        device_id: Option<DeviceId>,
    },
    /// Run the agent daemon: attest at start, on every verifier challenge and every --interval.
    Run(RunArgs),
    /// Run one attestation round and exit with the verdict: 0 trusted, 3 quarantined, 4 pending
    /// (no reference values yet), 1 error.
    Attest {
        /// One round. `attest` always runs exactly one; the flag is accepted so scripts can say
        /// so (the periodic loop is `run`).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        run: RunArgs,
        /// Seconds to wait for the verdict [default: 30]
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Show the device id, the last verdict and the quarantine state as the agent last heard
    /// them, and the punch buffer (asked of the running daemon, else read from the buffer file).
    Status {
        #[arg(long)]
        json: bool,
        /// The daemon's punch socket [default: STATE/punch.sock, or punch_socket in the config]
        #[arg(long)]
        punch_socket: Option<PathBuf>,
    },
    /// Submit one punch to the running daemon and print the sequence number it was stored
    /// under (durably committed before it answers).
    Punch {
        /// Employee id: 1-64 printable ASCII characters, no spaces.
        #[arg(long)]
        employee: String,
        /// in | out
        #[arg(long)]
        kind: String,
        /// face | fingerprint | card | pin
        #[arg(long)]
        method: Option<String>,
        /// When the punch happened, RFC 3339 (e.g. 2026-12-02T08:00:00Z) [default: now]
        #[arg(long)]
        at: Option<String>,
        /// The daemon's punch socket [default: STATE/punch.sock, or punch_socket in the config]
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// MQTT broker, e.g. mqtt://127.0.0.1:1883, or mqtts://broker.example:8883 (TLS)
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// CA certificate file (PEM) the broker's TLS certificate must chain to (mqtts:// only)
    #[arg(long)]
    pub mqtt_ca: Option<PathBuf>,
    /// File holding this terminal's MQTT password (user name = device id), created by `enroll`
    /// [default: STATE/mqtt.password]
    #[arg(long)]
    pub mqtt_password_file: Option<PathBuf>,
    /// The verifier's public key (verifier.pub, PEM): only messages it signed are obeyed.
    #[arg(long)]
    pub verifier_key: Option<PathBuf>,
    /// A firmware file to measure into the application PCR (repeatable).
    #[arg(long = "firmware")]
    pub firmware: Vec<PathBuf>,
    /// Seconds between attestations [default: 300]
    #[arg(long)]
    pub interval: Option<u64>,
    /// PCR that receives the firmware measurements (8-16 or 23) [default: 14]
    #[arg(long)]
    pub firmware_pcr: Option<u8>,
    /// The firmware's TCG event log, sent with the evidence
    /// [default: /sys/kernel/security/tpm0/binary_bios_measurements, skipped if absent]
    #[arg(long)]
    pub eventlog: Option<PathBuf>,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub punch: PunchArgs,
}

/// What the terminal reports about itself with its enrollment request and every evidence
/// (`enroll`, `run`, `attest`).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Root of the tree the hardware inventory is read from: SMBIOS/DMI, PCI and USB ids and
    /// NICs under sys/, the CPU model from proc/cpuinfo (a fake tree in tests) [default: /]
    #[arg(long)]
    pub sysfs_root: Option<PathBuf>,
    /// The terminal's firmware version, which selects the vendor's reference values for its
    /// model (1-128 printable characters, no '@') [default: none reported]
    #[arg(long)]
    pub firmware_version: Option<String>,
}

/// Punch intake and mirroring (`run` only).
#[derive(Debug, Args)]
pub struct PunchArgs {
    /// Unix socket the terminal application submits punches to (mode 0660)
    /// [default: STATE/punch.sock]
    #[arg(long)]
    pub punch_socket: Option<PathBuf>,
    /// Punches held that the verifier has not acknowledged yet; beyond this new punches are
    /// refused (never overwritten) [default: 1000000]
    #[arg(long)]
    pub punch_capacity: Option<u64>,
    /// Punches per uploaded batch, 1-2000 [default: 500]
    #[arg(long)]
    pub punch_batch: Option<u64>,
    /// Milliseconds a partial batch waits for more punches before it is sent, 0-60000
    /// [default: 100]
    #[arg(long)]
    pub punch_linger_ms: Option<u64>,
    /// Seconds an acknowledged punch stays in the buffer before it is deleted [default: 86400]
    #[arg(long)]
    pub punch_retention: Option<u64>,
}

/// The optional TOML file; every key mirrors a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state: Option<PathBuf>,
    pub tcti: Option<String>,
    pub mqtt_url: Option<String>,
    pub mqtt_password_file: Option<PathBuf>,
    pub mqtt_ca: Option<PathBuf>,
    pub verifier_key: Option<PathBuf>,
    #[serde(default)]
    pub firmware: Vec<PathBuf>,
    pub interval: Option<u64>,
    pub firmware_pcr: Option<u8>,
    pub timeout: Option<u64>,
    pub eventlog: Option<PathBuf>,
    pub sysfs_root: Option<PathBuf>,
    pub firmware_version: Option<String>,
    pub punch_socket: Option<PathBuf>,
    pub punch_capacity: Option<u64>,
    pub punch_batch: Option<u64>,
    pub punch_linger_ms: Option<u64>,
    pub punch_retention: Option<u64>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Ok(vouch_common::config::load_toml(path)?)
    }
}

/// The default MQTT password file of the state directory `state`.
pub fn mqtt_password_path(state: &Path) -> PathBuf {
    state.join("mqtt.password")
}

/// Where the agent keeps state and reaches its TPM.
#[derive(Debug, Clone)]
pub struct Global {
    pub state: PathBuf,
    pub tcti: String,
}

impl Global {
    pub fn resolve(cli: &Cli, file: &FileConfig) -> Self {
        Self {
            state: cli
                .state
                .clone()
                .or_else(|| file.state.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)),
            tcti: cli
                .tcti
                .clone()
                .or_else(|| file.tcti.clone())
                .unwrap_or_else(|| DEFAULT_TCTI.to_owned()),
        }
    }
}

/// Where the firmware event log comes from. The default path is skipped quietly when absent
/// (a kernel without a TPM driver, a terminal without UEFI); a path given explicitly must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogSource {
    pub path: PathBuf,
    pub required: bool,
}

/// Validated settings for `run` and `attest`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub eventlog: EventLogSource,
    pub broker: BrokerAddr,
    /// Where the MQTT password is read from (the password itself is not kept in the config).
    pub mqtt_password_file: PathBuf,
    /// TLS settings for mqtts:// (trusting only the configured CA).
    pub mqtt_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub verifier_key: VerifyingKey,
    pub firmware: Vec<PathBuf>,
    pub interval: Duration,
    pub firmware_pcr: u8,
    pub timeout: Duration,
    pub report: DeviceReport,
    pub punch: PunchConfig,
}

/// Validated [`ReportArgs`]: where the inventory is read from and the firmware version sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    pub sysfs_root: PathBuf,
    pub firmware_version: Option<String>,
}

impl DeviceReport {
    /// The flags, else the file's `sysfs_root` / `firmware_version`, else `/` and none. The
    /// version is checked by the rule the verifier and the vendor's bundles use.
    pub fn resolve(args: &ReportArgs, file: &FileConfig) -> Result<Self> {
        let firmware_version = args
            .firmware_version
            .clone()
            .or_else(|| file.firmware_version.clone());
        if let Some(v) = &firmware_version {
            vouch_protocol::vendor::bundle::check_label("--firmware-version (firmware_version)", v)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(Self {
            sysfs_root: args
                .sysfs_root
                .clone()
                .or_else(|| file.sysfs_root.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSFS_ROOT)),
            firmware_version,
        })
    }
}

impl RunConfig {
    /// `state` is the state directory, home of the default MQTT password file.
    pub fn resolve(
        args: &RunArgs,
        timeout: Option<u64>,
        file: &FileConfig,
        state: &Path,
    ) -> Result<Self> {
        let url = args
            .mqtt_url
            .clone()
            .or_else(|| file.mqtt_url.clone())
            .context("--mqtt-url is required (or mqtt_url in the config file)")?;
        let broker: BrokerAddr = url.parse()?;
        let mqtt_tls = match (
            broker.tls,
            args.mqtt_ca.clone().or_else(|| file.mqtt_ca.clone()),
        ) {
            (true, Some(ca)) => Some(vouch_common::mqtt_tls::client_config(&ca)?),
            (true, None) => bail!(
                "{url} uses TLS: give --mqtt-ca FILE (or mqtt_ca), the CA certificate that signed \
                 the broker's certificate"
            ),
            (false, Some(_)) => bail!("--mqtt-ca is for mqtts:// broker URLs; {url} is plain MQTT"),
            (false, None) => None,
        };
        let key_path = args
            .verifier_key
            .clone()
            .or_else(|| file.verifier_key.clone())
            .context("--verifier-key is required (or verifier_key in the config file)")?;
        let verifier_key = vouch_common::keys::read_public(&key_path)?;
        let firmware = if args.firmware.is_empty() {
            file.firmware.clone()
        } else {
            args.firmware.clone()
        };
        crate::measure::check_firmware_paths(&firmware).context("--firmware (firmware)")?;
        let interval = args
            .interval
            .or(file.interval)
            .unwrap_or(DEFAULT_INTERVAL_SECS);
        if interval == 0 {
            bail!("--interval must be at least 1 second");
        }
        let firmware_pcr = firmware_pcr(args, file)?;
        let timeout = timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT_SECS);
        let eventlog = match args.eventlog.clone().or_else(|| file.eventlog.clone()) {
            Some(path) => EventLogSource {
                path,
                required: true,
            },
            None => EventLogSource {
                path: PathBuf::from(DEFAULT_EVENTLOG),
                required: false,
            },
        };
        let mqtt_password_file = args
            .mqtt_password_file
            .clone()
            .or_else(|| file.mqtt_password_file.clone())
            .unwrap_or_else(|| mqtt_password_path(state));
        Ok(Self {
            eventlog,
            broker,
            mqtt_password_file,
            mqtt_tls,
            verifier_key,
            firmware,
            interval: Duration::from_secs(interval),
            firmware_pcr,
            timeout: Duration::from_secs(timeout.max(1)),
            report: DeviceReport::resolve(&args.report, file)?,
            punch: punch_config(&args.punch, file, state)?,
        })
    }
}

/// The punch socket `punch` and `status` talk to: the flag, the config file, or the default.
pub fn punch_socket(flag: Option<&Path>, file: &FileConfig, state: &Path) -> PathBuf {
    flag.map(Path::to_owned)
        .or_else(|| file.punch_socket.clone())
        .unwrap_or_else(|| crate::punch::default_socket(state))
}

/// The punch settings from the flags, the file or the defaults; each bad value names its flag.
pub fn punch_config(args: &PunchArgs, file: &FileConfig, state: &Path) -> Result<PunchConfig> {
    let capacity = args
        .punch_capacity
        .or(file.punch_capacity)
        .unwrap_or(crate::punch::DEFAULT_CAPACITY);
    if capacity == 0 {
        bail!("--punch-capacity (punch_capacity) must be at least 1");
    }
    let batch = args
        .punch_batch
        .or(file.punch_batch)
        .unwrap_or(crate::punch::DEFAULT_BATCH);
    let max = vouch_protocol::punch::MAX_BATCH_RECORDS as u64;
    if !(1..=max).contains(&batch) {
        bail!("--punch-batch (punch_batch) must be 1 to {max}, got {batch}");
    }
    let linger = args
        .punch_linger_ms
        .or(file.punch_linger_ms)
        .unwrap_or(crate::punch::DEFAULT_LINGER_MS);
    if linger > 60_000 {
        bail!("--punch-linger-ms (punch_linger_ms) must be at most 60000, got {linger}");
    }
    let retention = args
        .punch_retention
        .or(file.punch_retention)
        .unwrap_or(crate::punch::DEFAULT_RETENTION_SECS);
    Ok(PunchConfig {
        socket: punch_socket(args.punch_socket.as_deref(), file, state),
        capacity,
        batch,
        linger: Duration::from_millis(linger),
        retention: Duration::from_secs(retention),
    })
}

/// The firmware PCR from the flag, the file or the default, checked by the protocol's one rule
/// (the verifier rejects evidence in any other PCR, so an agent must not start with one).
fn firmware_pcr(args: &RunArgs, file: &FileConfig) -> Result<u8> {
    let pcr = args
        .firmware_pcr
        .or(file.firmware_pcr)
        .unwrap_or(DEFAULT_FIRMWARE_PCR);
    vouch_protocol::firmware::check_pcr(pcr).context("--firmware-pcr (firmware_pcr)")?;
    Ok(pcr)
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
    fn flags_win_over_the_file() {
        let cli = Cli::try_parse_from(["vouch-agent", "--tcti", "swtpm:port=1", "status"]).unwrap();
        let file: FileConfig =
            toml::from_str("tcti = \"device:/dev/tpm0\"\nstate = \"/tmp/s\"").unwrap();
        let g = Global::resolve(&cli, &file);
        assert_eq!(g.tcti, "swtpm:port=1");
        assert_eq!(g.state, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("tctii = \"x\"").is_err());
    }

    #[test]
    fn bad_device_ids_are_refused_at_parse_time() {
        let r = Cli::try_parse_from([
            "vouch-agent",
            "enroll",
            "--device-id",
            "a/b",
            "--model",
            "m",
            "--out",
            "x",
        ]);
        assert!(r.is_err());
    }

    fn run_args(flags: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["vouch-agent", "run"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Run(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn firmware_pcrs_17_to_22_are_refused_with_the_protocols_error() {
        // They start all-ones and need localities 1-4: the verifier rejects evidence in them,
        // so the agent refused only 0-7 and 24+ and started with a PCR no verdict could pass.
        for pcr in 17..=22u8 {
            let flag = run_args(&["--firmware-pcr", &pcr.to_string()]);
            let err = firmware_pcr(&flag, &FileConfig::default()).unwrap_err();
            let protocol = vouch_protocol::firmware::UnusablePcr(pcr).to_string();
            assert!(format!("{err:#}").contains(&protocol), "{err:#}");
            let file: FileConfig = toml::from_str(&format!("firmware_pcr = {pcr}")).unwrap();
            let err = firmware_pcr(&run_args(&[]), &file).unwrap_err();
            assert!(format!("{err:#}").contains(&protocol), "{err:#}");
        }
        // Positive controls: the default and the other usable PCRs pass.
        assert_eq!(
            firmware_pcr(&run_args(&[]), &FileConfig::default()).unwrap(),
            DEFAULT_FIRMWARE_PCR
        );
        for pcr in [8u8, 16, 23] {
            let args = run_args(&["--firmware-pcr", &pcr.to_string()]);
            assert_eq!(firmware_pcr(&args, &FileConfig::default()).unwrap(), pcr);
        }
    }

    #[test]
    fn bad_punch_settings_are_refused_naming_the_flag() {
        let state = Path::new("/s");
        let file = FileConfig::default();
        let err = punch_config(&run_args(&["--punch-capacity", "0"]).punch, &file, state);
        assert!(format!("{:#}", err.unwrap_err()).contains("--punch-capacity"));
        let err = punch_config(&run_args(&["--punch-batch", "2001"]).punch, &file, state);
        assert!(format!("{:#}", err.unwrap_err()).contains("--punch-batch"));
        let err = punch_config(&run_args(&["--punch-batch", "0"]).punch, &file, state);
        assert!(format!("{:#}", err.unwrap_err()).contains("--punch-batch"));
        let err = punch_config(
            &run_args(&["--punch-linger-ms", "99999"]).punch,
            &file,
            state,
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("--punch-linger-ms"));
        // Defaults, and the file's keys when no flag is given.
        let c = punch_config(&run_args(&[]).punch, &file, state).unwrap();
        assert_eq!(c, PunchConfig::defaults(state));
        let file: FileConfig =
            toml::from_str("punch_socket = \"/run/p.sock\"\npunch_capacity = 7\npunch_batch = 9\npunch_linger_ms = 5\npunch_retention = 60").unwrap();
        let c = punch_config(&run_args(&["--punch-batch", "11"]).punch, &file, state).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/p.sock"));
        assert_eq!((c.capacity, c.batch), (7, 11));
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.retention, Duration::from_secs(60));
    }

    #[test]
    fn report_settings_come_from_flags_then_the_file_and_bad_versions_name_the_flag() {
        let file: FileConfig =
            toml::from_str("sysfs_root = \"/srv/fake\"\nfirmware_version = \"1.0\"").unwrap();
        let r = DeviceReport::resolve(&run_args(&[]).report, &file).unwrap();
        assert_eq!(r.sysfs_root, PathBuf::from("/srv/fake"));
        assert_eq!(r.firmware_version.as_deref(), Some("1.0"));
        let args = run_args(&["--sysfs-root", "/other", "--firmware-version", "2.0"]);
        let r = DeviceReport::resolve(&args.report, &file).unwrap();
        assert_eq!(r.sysfs_root, PathBuf::from("/other"));
        assert_eq!(r.firmware_version.as_deref(), Some("2.0"));
        let r = DeviceReport::resolve(&run_args(&[]).report, &FileConfig::default()).unwrap();
        assert_eq!(r.sysfs_root, PathBuf::from("/"));
        assert_eq!(r.firmware_version, None);
        for bad in ["1@2", "", "a\tb"] {
            let args = run_args(&["--firmware-version", bad]);
            let err = DeviceReport::resolve(&args.report, &FileConfig::default()).unwrap_err();
            assert!(format!("{err:#}").contains("--firmware-version"), "{err:#}");
        }
    }

    #[test]
    fn a_firmware_path_posing_as_the_inventory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("verifier.pub");
        let signing = vouch_common::keys::generate().unwrap();
        vouch_common::keys::write_public(&key, &signing.verifying_key()).unwrap();
        let key = key.to_str().unwrap();
        let base = ["--mqtt-url", "mqtt://127.0.0.1:1", "--verifier-key", key];
        let flags: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--firmware", "vouch:inventory"])
            .collect();
        let args = run_args(&flags);
        let err = RunConfig::resolve(&args, None, &FileConfig::default(), dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("--firmware"), "{err:#}");
        assert!(format!("{err:#}").contains("reserves"), "{err:#}");
        // Positive control: the same flags with an ordinary file resolve.
        let flags: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--firmware", "/fw.bin"])
            .collect();
        let cfg = RunConfig::resolve(&run_args(&flags), None, &FileConfig::default(), dir.path());
        assert_eq!(cfg.unwrap().firmware, [PathBuf::from("/fw.bin")]);
    }
}
