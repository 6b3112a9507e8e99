//! The demo's roots of trust and its factory: the TPM manufacturer's CA, the vendor's signing
//! key, each terminal made and provisioned as a vendor's factory would, and the operator
//! trusting the vendor and importing the manifests.
//!
//! TPM-backed fleet, per terminal: a swtpm manufactured with an EK certificate from the demo
//! TPM manufacturer (`vouch_test_kit::ekca`), booted, with its fake hardware tree; then
//! `vouch-agent enroll` (inventory and firmware version in the request) → `vouch-provision
//! challenge` (TPM2_MakeCredential to the EK, bound to the AK) → `vouch-agent activate` (only
//! that TPM can open it) → `vouch-provision issue --tpm-roots` (the EK certificate must chain to
//! the manufacturer, the response must match; the vendor signs the manifest). The first
//! terminal's commands are printed with what they print; the others' are the same and get one
//! line each.
//!
//! SIMULATED fleet: `vouch-provision batch` makes the terminals (seeds, MQTT passwords) and
//! their manifests, marked simulated, with no EK certificate and no activation, all with the
//! same T-100 inventory (`--inventory`; see `sysfs::simulated_t100`).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use vouch_test_kit::ekca::TpmManufacturerCa;

use super::real::RealTerminal;
use super::simulated::{BatchTerminal, SimulatedTerminal};
use super::tools::{Echo, argv, rel};
use super::{
    Backend, Demo, FIRMWARE, FIRMWARE_VERSION, MODEL, SYSFS, TPM_MANUFACTURER, Terminal, VENDOR,
    sysfs, terminal_id,
};

/// What each terminal's firmware file holds (the reference bundle lists its digest).
const FIRMWARE_CONTENT: &[u8] = b"attendance terminal firmware 1.4.2\n";

impl Demo {
    /// Creates the demo TPM manufacturer's CA (once) and returns it.
    pub(super) fn tpm_manufacturer(&mut self) -> Result<&TpmManufacturerCa> {
        if self.ca.is_none() {
            let ca = TpmManufacturerCa::create_named(
                &self.dir.join("tpm-manufacturer"),
                TPM_MANUFACTURER,
            )
            .context("creating the demo TPM manufacturer's CA (openssl)")?;
            self.ca = Some(ca);
        }
        self.ca
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the demo TPM manufacturer's CA is not there"))
    }

    /// The TPM manufacturer's roots directory (`--tpm-roots`).
    pub(super) fn ca_roots(&self) -> Result<PathBuf> {
        self.ca
            .as_ref()
            .map(TpmManufacturerCa::roots_dir)
            .ok_or_else(|| anyhow::anyhow!("a simulated fleet has no TPM manufacturer"))
    }

    /// Vendor key, terminals, manifests, and the operator's import: the fleet is enrolled, its
    /// terminals are running.
    pub(super) fn provision_fleet(&mut self, count: usize) -> Result<()> {
        let dir = self.dir.clone();
        self.tool(
            "vendor",
            &self.tools.provision,
            &dir,
            &argv(&["vendor-init", "--out", "vendor", "--name", VENDOR]),
            Echo::All,
        )?;
        let manifests = if self.simulated {
            self.batch(count)?
        } else {
            self.say(
                "factory",
                &format!(
                    "each terminal gets a TPM from {TPM_MANUFACTURER} (EK certificate in NV), then the factory flow:"
                ),
            );
            std::fs::create_dir_all(dir.join("manifests"))?;
            (1..=count)
                .map(|n| self.manufacture(n))
                .collect::<Result<Vec<_>>>()?
        };
        self.say(
            "operator",
            &format!("trusts the vendor {VENDOR} by its public key, then imports the manifests:"),
        );
        let vouchctl = self.tools.vouchctl.clone();
        self.tool(
            "operator",
            &vouchctl,
            &dir,
            &argv(&["vendor", "trust", VENDOR, "vendor/vendor.pub"]),
            Echo::All,
        )?;
        let mut import = argv(&["import", "manifest"]);
        import.extend(manifests);
        self.tool("operator", &vouchctl, &dir, &import, Echo::All)?;
        for t in &self.terminals {
            let d: serde_json::Value = self.client.get(&format!("/v1/devices/{}", t.id))?;
            let anchor = d["ek_cert_anchor"]
                .as_str()
                .map_or("no EK certificate".to_owned(), |a| {
                    format!("EK certificate chains to {a:?}")
                });
            let p = &d["provenance"];
            let activated = if p["credential_activated"] == true {
                "credential activated"
            } else {
                "no credential activation"
            };
            let how = if d["simulated"] == true || p["simulated"] == true {
                "SIMULATED, "
            } else {
                ""
            };
            self.say(
                &t.id,
                &format!(
                    "enrolled from its manifest (vendor {}, {how}{anchor}, {activated}, firmware {})",
                    p["vendor"].as_str().unwrap_or("?"),
                    p["firmware_version"].as_str().unwrap_or("?"),
                ),
            );
        }
        let Some(setup) = self.setup.take() else {
            bail!("the verifier is not up");
        };
        let started = self.terminals.iter_mut().try_for_each(|t| t.run(&setup));
        self.setup = Some(setup);
        started
    }

    /// Makes terminal number `n` and runs the factory flow on it; its manifest's path, relative
    /// to the demo directory.
    fn manufacture(&mut self, n: usize) -> Result<String> {
        let id = terminal_id(n);
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(FIRMWARE), FIRMWARE_CONTENT)?;
        sysfs::write_tree(&dir.join(SYSFS), &sysfs::acme_t100(n))?;
        let ca = self.tpm_manufacturer()?;
        let t = RealTerminal::manufacture(ca, &dir)
            .with_context(|| format!("manufacturing {id}'s TPM (swtpm_setup --create-ek-cert)"))?;
        let (first, echo) = if n == 1 {
            (true, Echo::All)
        } else {
            (false, Echo::Quiet)
        };
        let station = self.dir.clone();
        let roots = rel(&self.ca_roots()?, &station);
        let agent = self.tools.agent.clone();
        let provision = self.tools.provision.clone();
        self.tool(
            &id,
            &agent,
            &dir,
            &t.agent_args(&[
                "enroll",
                "--device-id",
                &id,
                "--model",
                MODEL,
                "--sysfs-root",
                SYSFS,
                "--firmware-version",
                FIRMWARE_VERSION,
                "--out",
                "enroll.cbor",
            ]),
            echo,
        )?;
        let file = |f: &str| format!("{id}/{f}");
        self.tool(
            "factory",
            &provision,
            &station,
            &argv(&[
                "challenge",
                &file("enroll.cbor"),
                "--out",
                &file("challenge.cbor"),
                "--pending",
                "station/pending",
            ]),
            echo,
        )?;
        self.tool(
            &id,
            &agent,
            &dir,
            &t.agent_args(&["activate", "challenge.cbor", "--out", "response.cbor"]),
            echo,
        )?;
        let manifest = format!("manifests/{id}.cbor");
        self.tool(
            "factory",
            &provision,
            &station,
            &argv(&[
                "issue",
                &file("enroll.cbor"),
                &file("response.cbor"),
                "--vendor",
                "vendor",
                "--model",
                MODEL,
                "--firmware-version",
                FIRMWARE_VERSION,
                "--tpm-roots",
                &roots,
                "--pending",
                "station/pending",
                "--out",
                &manifest,
            ]),
            echo,
        )?;
        if !first {
            self.say(
                &id,
                &format!("the same: enrolled, credential activated, EK certificate checked, {manifest} issued"),
            );
        }
        self.terminals.push(Terminal {
            id,
            backend: Backend::Real(t),
        });
        Ok(manifest)
    }

    /// `vouch-provision batch` for a SIMULATED fleet; the manifests' paths, relative to the
    /// demo directory. Each terminal's fake hardware tree reproduces the inventory its manifest
    /// records.
    fn batch(&mut self, count: usize) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        let inventory = "simulated-inventory.json";
        std::fs::write(
            dir.join(inventory),
            serde_json::to_vec_pretty(&sysfs::simulated_t100())?,
        )?;
        self.tool(
            "vendor",
            &self.tools.provision,
            &dir,
            &argv(&[
                "batch",
                "--count",
                &count.to_string(),
                "--model",
                MODEL,
                "--vendor",
                "vendor",
                "--firmware-version",
                FIRMWARE_VERSION,
                "--prefix",
                "term",
                "--inventory",
                inventory,
                "--out",
                "batch",
            ]),
            Echo::All,
        )?;
        let mut manifests = Vec::new();
        for n in 1..=count {
            let id = terminal_id(n);
            let tdir = dir.join(&id);
            std::fs::create_dir_all(&tdir)?;
            std::fs::write(tdir.join(FIRMWARE), FIRMWARE_CONTENT)?;
            let file =
                BatchTerminal::load(&dir.join("batch/terminals").join(format!("{id}.json")))?;
            let tree = tdir.join(SYSFS);
            sysfs::write_tree(&tree, &file.inventory)?;
            // The agent must read back exactly the baseline the manifest records (all but the
            // TPM's part, which the simulated TPM reports), or every terminal would start out
            // "hardware changed".
            let mut expected = file.inventory.clone();
            expected.tpm = None;
            let read = vouch_agent::inventory::read(&tree)
                .with_context(|| format!("reading back {id}'s fake hardware tree"))?;
            if read != expected {
                bail!("{id}'s fake hardware tree does not read back as its batch inventory");
            }
            let t = SimulatedTerminal::from_batch(&file, &tdir)?;
            self.say(
                &id,
                "SIMULATED: booted (event log in its software TPM) from its batch seed",
            );
            self.terminals.push(Terminal {
                id: id.clone(),
                backend: Backend::Simulated(t),
            });
            manifests.push(format!("batch/manifests/{id}.cbor"));
        }
        Ok(manifests)
    }
}
