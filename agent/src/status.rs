//! `vouch-agent status`: what the agent last heard from the verifier, from its state directory
//! (no TPM or network access).

use anyhow::{Context, Result};
use serde::Serialize;
use vouch_common::time::rfc3339;
use vouch_protocol::verdict::{DeviceState, Status};

use std::path::Path;

use crate::config::FileConfig;
use crate::state::StateDir;

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub device_id: String,
    pub model: String,
    /// `pending` | `trusted` | `quarantined`, or null before the first verdict.
    pub state: Option<DeviceState>,
    pub quarantined: bool,
    pub quarantine_reason: Option<String>,
    pub last_verdict: Option<VerdictSummary>,
    /// Whether the AK is exempt from TPM dictionary-attack lockout (noDA). False for AKs
    /// created before vouch set noDA: lockout stops their quotes; re-enroll to re-create it.
    pub ak_no_da: bool,
    /// The hardware inventory digest last measured into the firmware PCR (the newest
    /// `vouch:inventory` entry of the stored measurement list), hex; null before the first
    /// round that read an inventory.
    pub inventory_digest: Option<String>,
    /// The punch buffer; filled in by the `status` command (it needs the config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub punches: Option<PunchStatus>,
}

/// The punch buffer as `status --json` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PunchStatus {
    pub last_seq: u64,
    pub acked_seq: u64,
    pub unacked: u64,
    pub capacity: u64,
}

/// The punch buffer of the state directory `root`. While a daemon runs (it holds the session
/// lock) only its socket (`socket`, else as `run` would choose) is asked: the buffer is the
/// daemon's. Otherwise the buffer file is read without writing to it, under the session lock so
/// no daemon starts meanwhile (one starting waits for it, see [`crate::commands::lock_session`]);
/// zeros when there is no file yet.
pub fn punches(root: &Path, file: &FileConfig, socket: Option<&Path>) -> Result<PunchStatus> {
    let Some(_lock) = crate::commands::probe_session(root)? else {
        let socket = crate::config::punch_socket(socket, file, root);
        let stream = crate::punch::client::connect(&socket).with_context(|| {
            format!(
                "a vouch-agent holds the state directory {} (the daemon starting, or `attest \
                 --once`), and nothing answers on its punch socket",
                root.display()
            )
        })?;
        let s = crate::punch::client::status(stream)?;
        return Ok(PunchStatus {
            last_seq: s.last_seq,
            acked_seq: s.acked_seq,
            unacked: s.unacked,
            capacity: s.capacity,
        });
    };
    let capacity = file
        .punch_capacity
        .unwrap_or(crate::punch::DEFAULT_CAPACITY);
    let path = crate::punch::buffer_path(root);
    if !path.exists() {
        return Ok(PunchStatus {
            last_seq: 0,
            acked_seq: 0,
            unacked: 0,
            capacity,
        });
    }
    let device = StateDir::existing(root)?.require_identity()?.device_id;
    let meta = crate::punch::buffer::Buffer::read_meta(&path, device)?;
    Ok(PunchStatus {
        last_seq: meta.last.seq,
        acked_seq: meta.acked.seq,
        unacked: meta.unacked(),
        capacity,
    })
}

#[derive(Debug, Serialize)]
pub struct VerdictSummary {
    pub status: Status,
    pub state: DeviceState,
    pub issued_at: String,
    pub expires_at: String,
    pub policy_id: Option<String>,
    pub reasons: Vec<String>,
    pub seq: u64,
}

pub fn view(state: &StateDir) -> Result<StatusView> {
    let id = state.require_identity()?;
    let view = state.last_view()?;
    let ak_no_da = crate::tpm::ak_exempt_from_lockout(&id.ak_public.0).unwrap_or(false);
    let measured = state.firmware_log()?;
    let inventory_digest =
        vouch_protocol::inventory::measured_digest(&measured.entries).map(|d| d.to_hex());
    Ok(StatusView {
        ak_no_da,
        inventory_digest,
        device_id: id.device_id.to_string(),
        model: id.model,
        state: view.state(),
        quarantined: view.quarantined.is_some(),
        quarantine_reason: view.quarantined.clone(),
        last_verdict: view.last_verdict.map(|v| VerdictSummary {
            status: v.status,
            state: v.state,
            issued_at: rfc3339(v.iat),
            expires_at: rfc3339(v.exp),
            policy_id: v.policy_id,
            reasons: v.reasons,
            seq: v.seq,
        }),
        punches: None,
    })
}

pub fn render(v: &StatusView) -> String {
    let mut out = format!("device:       {}\nmodel:        {}\n", v.device_id, v.model);
    out.push_str(&format!(
        "state:        {}\n",
        v.state
            .map(|s| s.as_str())
            .unwrap_or("unknown (no verdict yet)")
    ));
    if let Some(r) = &v.quarantine_reason {
        out.push_str(&format!("quarantined:  {r}\n"));
    }
    if !v.ak_no_da {
        out.push_str(&format!(
            "warning:      {}\n",
            crate::tpm::AK_LOCKOUT_ADVICE
        ));
    }
    if let Some(d) = &v.inventory_digest {
        out.push_str(&format!("inventory:    {d} (last measured)\n"));
    }
    if let Some(l) = &v.last_verdict {
        out.push_str(&format!(
            "last verdict: {} at {} (expires {}), policy {}\n",
            l.status,
            l.issued_at,
            l.expires_at,
            l.policy_id.as_deref().unwrap_or("none")
        ));
        for r in &l.reasons {
            out.push_str(&format!("  - {r}\n"));
        }
    }
    if let Some(p) = &v.punches {
        out.push_str(&format!(
            "punches:      last {}, acknowledged {} ({} waiting, capacity {})\n",
            p.last_seq, p.acked_seq, p.unacked, p.capacity
        ));
    }
    out
}
