//! The agent's commands: each turns validated configuration into real objects (state directory,
//! attester, protocol core) and runs. Returns the process exit code.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use vouch_protocol::verdict::DeviceState;

use crate::config::{
    Cli, Command, DeviceReport, FileConfig, Global, RunConfig, mqtt_password_path,
};
use crate::session::{Ended, Mode, Session};
use crate::state::StateDir;
use crate::{enroll, status};

/// Exit codes of `attest --once`.
pub const EXIT_TRUSTED: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_QUARANTINED: i32 = 3;
pub const EXIT_PENDING: i32 = 4;

pub fn exit_code(state: DeviceState) -> i32 {
    match state {
        DeviceState::Trusted => EXIT_TRUSTED,
        DeviceState::Quarantined => EXIT_QUARANTINED,
        DeviceState::Pending | DeviceState::Unresponsive => EXIT_PENDING,
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    let file = FileConfig::load(cli.config.as_deref())?;
    let global = Global::resolve(&cli, &file);
    match &cli.command {
        Command::Enroll {
            device_id,
            model,
            out,
            report,
        } => {
            let report = DeviceReport::resolve(report, &file)?;
            let state = StateDir::open(&global.state)?;
            enroll::enroll(
                &global.tcti,
                &state,
                device_id,
                model,
                out,
                &mqtt_password_path(&global.state),
                &report,
            )?;
            Ok(0)
        }
        Command::Activate {
            challenge,
            out,
            device_id,
        } => {
            let state = StateDir::existing(&global.state)?;
            crate::activate::activate(&global.tcti, &state, device_id.as_ref(), challenge, out)?;
            Ok(0)
        }
        Command::Status { json, punch_socket } => {
            let state = StateDir::existing(&global.state)?;
            let mut v = status::view(&state)?;
            v.punches = Some(status::punches(
                &global.state,
                &file,
                punch_socket.as_deref(),
            )?);
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", status::render(&v));
            }
            Ok(0)
        }
        Command::Punch {
            employee,
            kind,
            method,
            at,
            socket,
        } => {
            let socket = crate::config::punch_socket(socket.as_deref(), &file, &global.state);
            let seq = crate::punch::client::punch(
                &socket,
                employee,
                kind,
                method.as_deref(),
                at.as_deref(),
            )
            .context("punch not stored")?;
            println!("{seq}");
            Ok(0)
        }
        Command::Run(args) => {
            let cfg = RunConfig::resolve(args, None, &file, &global.state)?;
            let ended = session(&global, cfg, Mode::Daemon)?;
            debug_assert!(matches!(ended, Ended::Signal));
            Ok(0)
        }
        Command::Attest {
            once: _,
            run,
            timeout,
        } => {
            let cfg = RunConfig::resolve(run, *timeout, &file, &global.state)?;
            match session(&global, cfg, Mode::Once)? {
                Ended::Verdict(v) => {
                    println!(
                        "verdict:  {} (device {} is {})",
                        v.status, v.device, v.state
                    );
                    if let Some(p) = &v.policy_id {
                        println!("policy:   {p}");
                    }
                    for r in &v.reasons {
                        println!("  - {r}");
                    }
                    Ok(exit_code(v.state))
                }
                Ended::Signal => Ok(EXIT_ERROR),
            }
        }
    }
}

/// Takes the exclusive session lock of the state directory `root` (file `agent.lock`, holding
/// the owner's pid), or fails naming the process that holds it. `run` and `attest` both connect
/// to the broker as the device (client id = user name = device id), so a second one would knock
/// the first off the broker; the lock also keeps two processes from racing the firmware
/// measurement's record-then-extend. Released when the returned file is dropped or the process
/// dies.
///
/// A holder that lets go within [`LOCK_WAIT`] (`vouch-agent status` reading the buffer) is
/// waited for, so a status run never makes a daemon's start fail.
pub fn lock_session(root: &Path) -> Result<File> {
    let path = root.join("agent.lock");
    let mut f = open_lock(&path)?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut outcome = f.try_lock();
    while matches!(outcome, Err(TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        outcome = f.try_lock();
    }
    match outcome {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = (&f).take(32).read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another vouch-agent".to_owned()
            } else {
                format!("another vouch-agent (pid {holder})")
            };
            bail!(
                "{who} is already running on state directory {} (it holds the lock {}): a daemon \
                 and `attest --once` share the terminal's MQTT identity and cannot run at once; \
                 stop it first",
                root.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    f.set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| writeln!(f, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(f)
}

/// How long [`lock_session`] waits for the lock's holder to let go.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The session lock of `root` for a reader (`status`): `None` when a daemon or `attest --once`
/// holds it; else the lock, held until the returned file is dropped (the holder's pid in the
/// file is left alone).
pub fn probe_session(root: &Path) -> Result<Option<File>> {
    let path = root.join("agent.lock");
    let f = open_lock(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn session(global: &Global, cfg: RunConfig, mode: Mode) -> Result<Ended> {
    let state = StateDir::open(&global.state)?;
    let _lock = lock_session(&global.state)?;
    let mqtt_password = enroll::read_mqtt_password(&cfg.mqtt_password_file)?;
    let tpm = Arc::new(crate::tpm::Tcti(global.tcti.clone()));
    let session = Session::open(state, tpm, mqtt_password, cfg, mode)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(session.run())
}

#[cfg(test)]
mod tests {
    use super::lock_session;

    #[test]
    fn a_second_session_on_one_state_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_session(dir.path()).unwrap();
        let err = format!("{:#}", lock_session(dir.path()).unwrap_err());
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("agent.lock"), "{err}");
        drop(held);
        assert!(
            lock_session(dir.path()).is_ok(),
            "the lock is released on drop"
        );
    }
}
