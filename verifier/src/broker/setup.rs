//! Turning the validated broker choice into what `run` starts: the verifier's MQTT identity
//! (its generated password in DATA/broker/verifier.mqtt-password, or the operator's for an
//! external broker), the password file with every enrolled terminal, the ACL, and for the
//! managed broker its configuration and supervisor.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use vouch_common::mqtt_url::BrokerAddr;
use vouch_common::{fs, mqtt_passwd};

use super::passwd::{PasswordFile, Reload};
use super::supervisor::Supervisor;
use super::{BrokerHealth, BrokerSettings, VERIFIER_USER, conf};
use crate::config::{BrokerChoice, ServerConfig};

/// What `run` needs to reach the broker, and the supervisor to start for a managed one.
#[derive(Debug)]
pub struct Plan {
    pub addr: BrokerAddr,
    pub user: String,
    pub password: zeroize::Zeroizing<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub passwd: Arc<PasswordFile>,
    pub supervisor: Option<Supervisor>,
}

/// Writes the password file (enrolled terminals, extra users, the verifier), the ACL and, for
/// the managed broker, its configuration; raises the open-file limit for the managed broker.
pub fn prepare(
    cfg: &ServerConfig,
    broker_dir: &Path,
    enrolled: Vec<(String, String)>,
    health: Arc<BrokerHealth>,
) -> Result<Plan> {
    let default_password = broker_dir.join("verifier.mqtt-password");
    let (addr, user, password, reload, supervisor, tls, own_hash) = match &cfg.broker {
        BrokerChoice::Managed(m) => {
            let password = load_or_create_password(&default_password)?;
            let nofile = super::raise_nofile_limit();
            let settings = BrokerSettings {
                listen: m.listen,
                tls_listen: m.tls.clone(),
                dir: broker_dir.to_owned(),
                max_packet_size: crate::mqtt::max_packet_size(cfg.engine.max_payload),
                max_connections: super::connection_limit(m.max_connections, nofile),
                as_root: running_as_root(),
            };
            fs::write_atomic(&settings.conf_path(), settings.conf().as_bytes(), 0o600)?;
            let addr = BrokerAddr {
                host: m.listen.ip().to_string(),
                port: m.listen.port(),
                tls: false,
            };
            let sup = Supervisor {
                bin: m.mosquitto.clone(),
                settings,
                health: health.clone(),
            };
            let hash = mqtt_passwd::hash_generated(&password);
            let reload = Reload::Managed(health);
            (
                addr,
                VERIFIER_USER.to_owned(),
                password,
                reload,
                Some(sup),
                None,
                hash,
            )
        }
        BrokerChoice::External(x) => {
            // A generated password gets the password-derived salt (the file stays stable); one
            // the operator chose gets a random salt.
            let (password, hash) = match &x.password_file {
                Some(p) => {
                    let pw = read_password(p)?;
                    let hash = mqtt_passwd::hash_random_salt(&pw)?;
                    (pw, hash)
                }
                None => {
                    let pw = load_or_create_password(&default_password)?;
                    let hash = mqtt_passwd::hash_generated(&pw);
                    (pw, hash)
                }
            };
            let reload = x
                .reload_command
                .clone()
                .map_or(Reload::None, Reload::Command);
            let (addr, user, tls) = (x.addr.clone(), x.username.clone(), x.tls.clone());
            (addr, user, password, reload, None, tls, hash)
        }
    };
    let entries = enrolled
        .into_iter()
        .chain(cfg.mqtt_extra_users.iter().cloned())
        .chain([(user.clone(), own_hash)]);
    let passwd = Arc::new(PasswordFile::create(
        &broker_dir.join("passwd"),
        entries,
        reload,
    )?);
    fs::write_atomic(
        &broker_dir.join("vouch.acl"),
        format!("{}{}", conf::acl(&user), cfg.mqtt_extra_acl).as_bytes(),
        0o644,
    )?;
    Ok(Plan {
        addr,
        user,
        password,
        tls,
        passwd,
        supervisor,
    })
}

/// Whether this process runs as root (owner of /proc/self).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn read_password(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    let bytes = zeroize::Zeroizing::new(
        fs::read_limited(path, 4096)
            .with_context(|| format!("cannot read the MQTT password file {}", path.display()))?,
    );
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        anyhow::bail!(
            "{} is empty (expected the verifier's MQTT password)",
            path.display()
        );
    }
    Ok(zeroize::Zeroizing::new(text))
}

/// The verifier's generated MQTT password, created (mode 0600) on first start.
fn load_or_create_password(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    if fs::read_optional(path, 4096)?.is_some() {
        return read_password(path);
    }
    let password = mqtt_passwd::generate_password()?;
    fs::write_atomic(path, format!("{}\n", password.as_str()).as_bytes(), 0o600)?;
    Ok(password)
}
