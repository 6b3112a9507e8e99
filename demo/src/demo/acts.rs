//! The demo's acts once the fleet is provisioned and running: the first attestations; the
//! vendor's reference bundle, captured from terminal 1's verified evidence and imported, which
//! makes the fleet trusted; a tampered firmware file; a reboot into a patched boot loader; the
//! punches (`punches`); the hidden board (`supply_chain`); and the audit trail.

use anyhow::{Result, bail};
use std::time::Duration;
use vouch_test_kit::eventlog::TerminalBoot;
use vouch_verifier::api::AuditPage;

use super::tools::{Echo, argv};
use super::{Demo, FIRMWARE, FIRMWARE_VERSION, MODEL, VENDOR};

/// The terminal whose firmware file is tampered with (0-based).
const FIRMWARE_VICTIM: usize = 1;
/// The terminal whose mainboard is swapped (see `supply_chain`).
pub(super) const HIDDEN_BOARD_VICTIM: usize = 2;
/// The terminal rebooted into a patched boot loader, when the fleet has one that many.
const BOOT_VICTIM: usize = 3;

impl Demo {
    fn ids(&self) -> Vec<String> {
        self.terminals.iter().map(|t| t.id.clone()).collect()
    }

    /// The id and directory of terminal `index`.
    pub(super) fn terminal(&self, index: usize) -> Result<(String, std::path::PathBuf)> {
        match self.terminals.get(index) {
            Some(t) => Ok((t.id.clone(), t.dir().to_owned())),
            None => bail!("the demo needs {} terminals", index + 1),
        }
    }

    pub(super) fn act(&mut self) -> Result<()> {
        for id in self.ids() {
            let d = self.wait(
                &format!("{id}'s first verdict"),
                Duration::from_secs(30),
                || {
                    let d = self.device(&id)?;
                    Ok(d.last_verdict_at.is_some().then_some(d))
                },
            )?;
            self.say(
                &id,
                &format!("attested: {} ({})", d.state, d.reasons.join("; ")),
            );
        }
        self.pause()?;
        self.reference_act()?;
        self.fleet("the whole fleet is trusted")?;
        self.pause()?;

        let (victim, victim_dir) = self.terminal(FIRMWARE_VICTIM)?;
        self.say(
            &victim,
            "firmware.bin is replaced behind the operator's back (a tampered update)",
        );
        std::fs::write(
            victim_dir.join(FIRMWARE),
            b"attendance terminal firmware 1.4.2 + implant\n",
        )?;
        self.show_quarantine(
            &victim,
            &format!("{victim} QUARANTINED at its next attestation; the reason names the file:"),
        )?;
        self.pause()?;
        if self.terminals.len() > BOOT_VICTIM {
            self.reboot_act()?;
            self.pause()?;
        }
        self.punch_act()?;
        self.pause()?;
        self.hidden_board_act()?;
        let audit: AuditPage = self.client.get("/v1/audit")?;
        println!("\naudit trail (vouchctl audit):");
        for e in audit.entries {
            println!(
                "  {}  {:<10}  {:<18} {:<15} {}",
                e.at,
                e.device.as_deref().unwrap_or("-"),
                e.action,
                e.actor,
                e.reason
            );
        }
        let roots = if self.simulated {
            "the vendor's signed manifests and reference values, the operator's supply-chain\n\
             policy; SIMULATED terminals have no EK certificate to chain to a TPM manufacturer"
        } else {
            "the TPM manufacturer's EK certificates, the vendor's signed manifests and\n\
             reference values, the operator's supply-chain policy"
        };
        println!(
            "\ndone: trust came from roots the operator chose ({roots});\n\
             each tampered terminal is quarantined with what changed named, the others never stopped,\n\
             and no punch was lost: the quarantined terminals' are mirrored too, held for review."
        );
        self.shutdown();
        Ok(())
    }

    /// Reference values from the vendor: the operator exports terminal 1's last verified
    /// measurements, the vendor signs them as the bundle for this model and firmware version,
    /// the operator imports the bundle; every terminal of that model and version is appraised
    /// against it.
    fn reference_act(&mut self) -> Result<()> {
        let (first, _) = self.terminal(0)?;
        let dir = self.dir.clone();
        let vouchctl = self.tools.vouchctl.clone();
        let measurements = format!("{first}.measurements.json");
        let bundle = format!("{MODEL}-{FIRMWARE_VERSION}.bundle");
        self.say(
            "operator",
            &format!("exports {first}'s verified measurements for the vendor:"),
        );
        self.tool(
            "operator",
            &vouchctl,
            &dir,
            &argv(&["measurements", &first, "--out", &measurements]),
            Echo::All,
        )?;
        self.say(
            "vendor",
            &format!("signs them as the reference values of {MODEL} firmware {FIRMWARE_VERSION}:"),
        );
        self.tool(
            "vendor",
            &self.tools.provision,
            &dir,
            &argv(&[
                "reference",
                "--evidence",
                &measurements,
                "--vendor",
                "vendor",
                "--model",
                MODEL,
                "--firmware-version",
                FIRMWARE_VERSION,
                "--out",
                &bundle,
            ]),
            Echo::All,
        )?;
        self.tool(
            "operator",
            &vouchctl,
            &dir,
            &argv(&["import", "reference", &bundle]),
            Echo::All,
        )?;
        self.tool(
            "operator",
            &vouchctl,
            &dir,
            &argv(&["reference", "list"]),
            Echo::All,
        )?;
        for id in self.ids() {
            let d = self.wait(
                &format!("{id} trusted under the bundle"),
                Duration::from_secs(10 * self.setup()?.interval + 30),
                || {
                    let d = self.device(&id)?;
                    Ok((d.state.as_str() == "trusted").then_some(d))
                },
            )?;
            self.say(
                &id,
                &format!(
                    "{} under the reference values of {VENDOR} for {MODEL} {FIRMWARE_VERSION}",
                    d.state
                ),
            );
        }
        Ok(())
    }

    /// A terminal reboots into a patched boot loader: its event log and PCR 4 now show an image
    /// the model's reference values do not list.
    fn reboot_act(&mut self) -> Result<()> {
        let patched = TerminalBoot {
            bootloader: b"terminal boot loader 2.1 (patched)".to_vec(),
            ..TerminalBoot::default()
        };
        let Some(setup) = self.setup.take() else {
            return Ok(());
        };
        let rebooted = match self.terminals.get_mut(BOOT_VICTIM) {
            Some(t) => t.reboot_into(&setup, &patched).map(|()| Some(t.id.clone())),
            None => Ok(None),
        };
        self.setup = Some(setup);
        let Some(id) = rebooted? else { return Ok(()) };
        self.say(
            &id,
            "rebooted into a patched boot loader (\\EFI\\BOOT\\BOOTX64.EFI changed)",
        );
        self.show_quarantine(
            &id,
            &format!("{id} QUARANTINED at boot; the reason names the boot event:"),
        )?;
        Ok(())
    }
}
