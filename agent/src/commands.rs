//! The agent's commands: each turns validated configuration into real objects (state directory,
//! attester, protocol core) and runs. Returns the process exit code.

use anyhow::Result;
use std::sync::Arc;
use vouch_protocol::agent::AgentCore;
use vouch_protocol::verdict::DeviceState;

use crate::attester::Attester;
use crate::config::{Cli, Command, FileConfig, Global, RunConfig};
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
        } => {
            let state = StateDir::open(&global.state)?;
            enroll::enroll(&global.tcti, &state, device_id, model, out)?;
            Ok(0)
        }
        Command::Status { json } => {
            let state = StateDir::existing(&global.state)?;
            let v = status::view(&state)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", status::render(&v));
            }
            Ok(0)
        }
        Command::Run(args) => {
            let cfg = RunConfig::resolve(args, None, &file)?;
            let ended = session(&global, cfg, Mode::Daemon)?;
            debug_assert!(matches!(ended, Ended::Signal));
            Ok(0)
        }
        Command::Attest {
            once: _,
            run,
            timeout,
        } => {
            let cfg = RunConfig::resolve(run, *timeout, &file)?;
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

fn session(global: &Global, cfg: RunConfig, mode: Mode) -> Result<Ended> {
    let state = StateDir::open(&global.state)?;
    let identity = state.require_identity()?;
    let key = state.require_device_key()?;
    let view = state.view(&cfg.verifier_key)?;
    let core = AgentCore::new(
        identity.device_id.clone(),
        cfg.verifier_key,
        view,
        mode == Mode::Daemon,
    )
    .with_answered(crate::freshness::load_answered(
        &state,
        vouch_common::time::now_unix(),
    )?);
    let attester = Arc::new(Attester {
        tcti: global.tcti.clone(),
        state: state.clone(),
        identity,
        firmware: cfg.firmware.clone(),
        firmware_pcr: cfg.firmware_pcr,
        eventlog: cfg.eventlog.clone(),
    });
    let session = Session {
        mode,
        cfg,
        attester,
        key,
        state,
        core,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(session.run())
}
