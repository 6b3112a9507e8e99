//! Human-readable output of `vouchctl` (the `--json` forms print the API's JSON instead).

use crate::api::{AuditView, DeviceView, PolicyView, StatsView};
use std::fmt::Write;

/// Pads a column; long values are kept whole (alignment matters less than truth).
fn pad(s: &str, w: usize) -> String {
    format!("{s:<w$}")
}

pub fn devices(list: &[DeviceView]) -> String {
    let mut out = String::new();
    let idw = list.iter().map(|d| d.id.len()).max().unwrap_or(2).max(2);
    let mw = list.iter().map(|d| d.model.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "{}  {}  {:<12}  {:<20}  {:<12}  {:<14}  REASON",
        pad("ID", idw),
        pad("MODEL", mw),
        "STATE",
        "LAST VERDICT",
        "PUNCHES",
        "MARKS"
    );
    for d in list {
        let _ = writeln!(
            out,
            "{}  {}  {:<12}  {:<20}  {:<12}  {:<14}  {}",
            pad(&d.id, idw),
            pad(&d.model, mw),
            d.state.to_string(),
            d.last_verdict_at.as_deref().unwrap_or("-"),
            punch_cell(d),
            marks(d),
            d.reasons.first().map(String::as_str).unwrap_or("")
        );
    }
    if list.iter().any(|d| d.buffer_pressure) {
        out.push_str("! = the terminal's punch buffer is under pressure (unacknowledged punches above the verifier's threshold)\n");
    }
    if list.iter().any(|d| d.firmware_revoked) {
        out.push_str("REVOKED-FW = the firmware version it runs was revoked: its next attestation quarantines it\n");
    }
    if list.iter().any(|d| d.simulated) {
        out.push_str(
            "SIM = a simulated terminal (software attester): it proves nothing about hardware\n",
        );
    }
    if list.is_empty() {
        out.push_str("(no devices enrolled)\n");
    }
    out
}

/// The MARKS cell: `REVOKED-FW` (its firmware version was revoked), `SIM` (simulated).
fn marks(d: &DeviceView) -> String {
    let mut m: Vec<&str> = Vec::new();
    if d.firmware_revoked {
        m.push("REVOKED-FW");
    }
    if d.simulated {
        m.push("SIM");
    }
    if m.is_empty() {
        "-".into()
    } else {
        m.join(",")
    }
}

/// The PUNCHES cell: the mirror's head seq, `!` under buffer pressure.
fn punch_cell(d: &DeviceView) -> String {
    format!(
        "{}{}",
        d.punches.head_seq,
        if d.buffer_pressure { " !" } else { "" }
    )
}

pub fn device(d: &DeviceView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id:              {}", d.id);
    let _ = writeln!(out, "model:           {}", d.model);
    let _ = writeln!(out, "state:           {}", d.state);
    if let Some(q) = &d.quarantine {
        let _ = writeln!(
            out,
            "quarantined:     {} by {}: {}",
            q.at, q.actor, q.reason
        );
    }
    if d.release_pending {
        let _ = writeln!(out, "release:         pending re-attestation");
    }
    let _ = writeln!(
        out,
        "last verdict:    {} ({})",
        d.last_verdict_at.as_deref().unwrap_or("never"),
        d.verdict_status.map(|s| s.as_str()).unwrap_or("-")
    );
    if let Some(exp) = &d.verdict_expires_at {
        let _ = writeln!(
            out,
            "verdict expires: {exp}{}",
            if d.stale { " (expired)" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "policy:          {}",
        d.policy_id.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "enrolled:        {}", d.enrolled_at);
    let _ = writeln!(
        out,
        "last measured:   {}",
        d.measured_at.as_deref().unwrap_or("never")
    );
    let _ = writeln!(out, "AK name:         {}", d.ak_name);
    match &d.provenance {
        Some(p) => {
            let _ = writeln!(
                out,
                "provenance:      manifest of vendor {}, issued {}, credential activation {}{}",
                p.vendor,
                p.issued_at,
                if p.credential_activated {
                    "proved"
                } else {
                    "not done"
                },
                if p.simulated { ", SIMULATED" } else { "" }
            );
            let _ = writeln!(out, "provisioned fw:  {}", p.firmware_version);
        }
        None => {
            let _ = writeln!(out, "provenance:      none (enrolled from its own request)");
        }
    }
    let _ = writeln!(
        out,
        "firmware:        {}{}",
        d.firmware_version.as_deref().unwrap_or("(not reported)"),
        if d.firmware_revoked {
            " — REVOKED: its next attestation quarantines it"
        } else {
            ""
        }
    );
    let _ = match (&d.ek_cert_anchor, &d.ek_cert_problem) {
        (Some(a), _) => writeln!(out, "EK certificate:  chains to {a}"),
        (None, Some(p)) => writeln!(out, "EK certificate:  does not count: {p}"),
        (None, None) => writeln!(out, "EK certificate:  -"),
    };
    let p = &d.punches;
    if let Some(e) = &p.error {
        let _ = writeln!(out, "punches:         unreadable: {e}");
    } else {
        let _ = writeln!(
            out,
            "punches:         head {} ({}), {} held ({} unreviewed), {} pending on the terminal of {}{}",
            p.head_seq,
            p.head_hash,
            p.held,
            p.held_unreviewed,
            p.pending_on_device,
            p.capacity,
            if d.buffer_pressure {
                " — BUFFER PRESSURE"
            } else {
                ""
            }
        );
    }
    if !d.reasons.is_empty() {
        let _ = writeln!(out, "reasons:");
        for (i, r) in d.reasons.iter().enumerate() {
            // A verifier that predates reason codes sends none.
            let _ = match d.reason_codes.get(i) {
                Some(code) => writeln!(out, "  - {r} [{code}]"),
                None => writeln!(out, "  - {r}"),
            };
        }
    }
    out
}

pub fn policy(v: &PolicyView) -> String {
    let mut out = format!("policy {}\n", v.policy_id);
    for d in &v.reevaluated {
        let _ = writeln!(out, "  {} is {}", d.id, d.state);
    }
    out
}

pub fn audit(list: &[AuditView]) -> String {
    let mut out = String::new();
    for a in list {
        let _ = writeln!(
            out,
            "{}  {:<16}  {:<15}  {:<16}  {}",
            a.at,
            a.device.as_deref().unwrap_or("-"),
            a.action,
            a.actor,
            a.reason
        );
    }
    if list.is_empty() {
        out.push_str("(audit trail is empty)\n");
    }
    out
}

pub fn stats(s: &StatsView) -> String {
    let mut out = String::from("accepted:\n");
    for (k, v) in &s.accepted {
        let _ = writeln!(out, "  {k:<20} {v}");
    }
    out.push_str("rejected:\n");
    for (k, v) in &s.rejected {
        let _ = writeln!(out, "  {k:<20} {v}");
    }
    if !s.recent_rejections.is_empty() {
        out.push_str("recent rejections:\n");
        for r in &s.recent_rejections {
            let _ = writeln!(out, "  {}  {}  {}: {}", r.at, r.topic, r.label, r.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_protocol::verdict::{DeviceState, Status};

    fn view(state: DeviceState, stale: bool) -> DeviceView {
        DeviceView {
            id: "term-1".into(),
            model: "T-100".into(),
            state,
            reasons: vec!["no fresh evidence since 2026-01-01T00:00:00Z".into()],
            reason_codes: vec!["no_fresh_evidence".into()],
            last_verdict_at: Some("2026-01-01T00:15:00Z".into()),
            verdict_status: Some(Status::Warning),
            verdict_expires_at: Some("2026-01-01T00:30:00Z".into()),
            stale,
            policy_id: None,
            quarantine: None,
            release_pending: false,
            enrolled_at: "2026-01-01T00:00:00Z".into(),
            measured_at: None,
            ak_name: "000b".into(),
            punches: Default::default(),
            buffer_pressure: false,
            provenance: None,
            ek_cert_anchor: None,
            ek_cert_problem: None,
            firmware_version: None,
            firmware_revoked: false,
            simulated: false,
        }
    }

    #[test]
    fn the_device_list_marks_revoked_firmware_and_simulated_terminals() {
        let mut v = view(DeviceState::Trusted, false);
        let calm = devices(std::slice::from_ref(&v));
        assert!(
            !calm.contains("REVOKED-FW") && !calm.contains("SIM"),
            "{calm}"
        );
        v.firmware_revoked = true;
        v.simulated = true;
        let list = devices(std::slice::from_ref(&v));
        assert!(list.contains("REVOKED-FW,SIM"), "{list}");
        assert!(list.contains("next attestation quarantines it"), "{list}");
        v.provenance = Some(crate::api::ProvenanceView {
            vendor: "acme".into(),
            simulated: true,
            credential_activated: false,
            firmware_version: "2.1.0".into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
        });
        v.firmware_version = Some("2.1.0".into());
        v.ek_cert_problem = Some("no EK certificate".into());
        let one = device(&v);
        assert!(one.contains("manifest of vendor acme"), "{one}");
        assert!(one.contains("SIMULATED"), "{one}");
        assert!(one.contains("firmware:        2.1.0 — REVOKED"), "{one}");
        assert!(one.contains("does not count: no EK certificate"), "{one}");
    }

    #[test]
    fn listings_show_the_real_state_instead_of_trusted_stale() {
        let list = devices(&[view(DeviceState::Unresponsive, false)]);
        assert!(list.contains("unresponsive"), "{list}");
        let one = device(&view(DeviceState::Unresponsive, false));
        assert!(one.contains("state:           unresponsive\n"), "{one}");
        // Between an expiry and the sweep the state is not embellished; the verdict line says it.
        let list = devices(&[view(DeviceState::Trusted, true)]);
        assert!(!list.contains("stale"), "{list}");
        let one = device(&view(DeviceState::Trusted, true));
        assert!(
            one.contains("verdict expires: 2026-01-01T00:30:00Z (expired)"),
            "{one}"
        );
    }

    #[test]
    fn each_reason_is_shown_with_its_code_when_the_verifier_sends_codes() {
        let mut v = view(DeviceState::Unresponsive, false);
        let one = device(&v);
        assert!(
            one.contains("  - no fresh evidence since 2026-01-01T00:00:00Z [no_fresh_evidence]\n"),
            "{one}"
        );
        v.reason_codes.clear();
        let one = device(&v);
        assert!(
            one.contains("  - no fresh evidence since 2026-01-01T00:00:00Z\n"),
            "{one}"
        );
    }

    #[test]
    fn the_device_list_marks_a_terminal_under_buffer_pressure() {
        let mut v = view(DeviceState::Trusted, false);
        v.punches.head_seq = 42;
        let calm = devices(std::slice::from_ref(&v));
        assert!(calm.contains("PUNCHES") && calm.contains(" 42 "), "{calm}");
        assert!(!calm.contains('!'), "{calm}");
        v.buffer_pressure = true;
        let list = devices(&[v.clone()]);
        assert!(list.contains("42 !"), "{list}");
        assert!(list.contains("under pressure"), "{list}");
        assert!(device(&v).contains("BUFFER PRESSURE"));
    }
}
