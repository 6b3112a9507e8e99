//! The demo's punch act: every terminal's staff clock in through the terminal's intake socket
//! (the same one a terminal application uses), and the demo waits until the verifier's mirror
//! holds each terminal's whole chain — the quarantined terminal's too, its records marked held.

use anyhow::Result;
use std::time::Duration;
use vouch_agent::punch::{client, default_socket};

use super::Demo;

/// Punches each terminal takes in the act.
const PER_TERMINAL: u64 = 5;

impl Demo {
    pub(super) fn punch_act(&mut self) -> Result<()> {
        self.say(
            "staff",
            &format!(
                "clock in at every terminal ({PER_TERMINAL} punches each, via its punch.sock)"
            ),
        );
        let mut last = Vec::new();
        for t in &self.terminals {
            let socket = default_socket(&t.dir().join("state"));
            let mut seq = 0;
            for n in 1..=PER_TERMINAL {
                let employee = format!("E{:03}", 100 + n);
                seq = client::punch(&socket, &employee, "in", Some("card"), None)?;
            }
            last.push((t.id.clone(), seq));
        }
        for (id, seq) in last {
            let d = self.wait(
                &format!("{id}'s punches in the mirror"),
                Duration::from_secs(30),
                || {
                    let d = self.device(&id)?;
                    Ok((d.punches.head_seq >= seq).then_some(d))
                },
            )?;
            let held = if d.punches.held > 0 {
                format!(
                    ", {} held for review (collected while {})",
                    d.punches.held, d.state
                )
            } else {
                String::new()
            };
            self.say(
                &id,
                &format!(
                    "mirrored through seq {} (head {}…){held}",
                    d.punches.head_seq,
                    &d.punches.head_hash[..12.min(d.punches.head_hash.len())]
                ),
            );
        }
        Ok(())
    }
}
