//! The hidden-board act: the operator's supply-chain policy denies a board vendor it never
//! approved, and one terminal turns out to be built on that vendor's mainboard behind the
//! brand on its case (its SMBIOS system strings still say the brand, its board strings now
//! name the hidden board maker). At its next attestation the inventory it reports — measured
//! into its firmware PCR, so the quote vouches for it — is refused by the policy, and it is
//! quarantined with the component and the rule named; the rest of the fleet is untouched.

use anyhow::Result;
use std::time::Duration;

use super::acts::HIDDEN_BOARD_VICTIM;
use super::tools::{Echo, argv};
use super::{Demo, SYSFS, sysfs};

/// The board maker the operator never approved.
const HIDDEN_VENDOR: &str = "Hidden Board Co";
/// Its board's name.
const HIDDEN_BOARD: &str = "HB-X1";
/// The operator's policy file (`vouchctl supply-chain set`; docs/supply-chain.md).
const POLICY: &str = r#"{"mode": "deny", "deny": {"smbios_manufacturers": ["Hidden Board Co"]}}"#;

impl Demo {
    pub(super) fn hidden_board_act(&mut self) -> Result<()> {
        let (victim, victim_dir) = self.terminal(HIDDEN_BOARD_VICTIM)?;
        let dir = self.dir.clone();
        let vouchctl = self.tools.vouchctl.clone();
        let file = "supply-chain.json";
        std::fs::write(dir.join(file), format!("{POLICY}\n"))?;
        self.say(
            "operator",
            &format!(
                "refuses mainboards made by {HIDDEN_VENDOR}, a board maker it never approved:"
            ),
        );
        self.say("operator", &format!("$ cat {file}"));
        println!("{:>18}{POLICY}", "");
        self.tool(
            "operator",
            &vouchctl,
            &dir,
            &argv(&["supply-chain", "set", file]),
            Echo::All,
        )?;
        let tree = victim_dir.join(SYSFS);
        sysfs::swap_board(&tree, HIDDEN_VENDOR, HIDDEN_BOARD)?;
        let brand = sysfs::sys_vendor(&tree)?;
        self.say(
            &victim,
            &format!(
                "turns out to run on a {HIDDEN_VENDOR} {HIDDEN_BOARD} mainboard behind the {brand} \
                 case: SMBIOS board_vendor reads {HIDDEN_VENDOR:?}, sys_vendor {brand:?}"
            ),
        );
        self.show_quarantine(
            &victim,
            &format!(
                "{victim} QUARANTINED at its next attestation; the reasons name the component:"
            ),
        )?;
        // Every other terminal attests once more under the policy, to show it is untouched.
        std::thread::sleep(Duration::from_secs(self.setup()?.interval + 1));
        self.check()?;
        self.fleet(
            "the hidden board is cut off; the rest of the fleet is untouched and keeps working",
        )
    }
}
