//! The operator's supply-chain policy: deny rules on PCI and USB vendor ids, SMBIOS
//! manufacturer strings and TPM manufacturer codes, and an optional allow-only mode. The
//! verifier checks every attestation's inventory against it ([`SupplyChainPolicy::check`]); a
//! denied component makes the verdict `contraindicated` with a reason naming the component and
//! the rule.
//!
//! JSON (what `vouchctl supply-chain set FILE` takes; docs/supply-chain.md):
//! `{"mode": "deny" | "allow_only", "deny": {"pci_vendors": ["10ec"], "usb_vendors": [],
//!   "smbios_manufacturers": ["Hidden Board"], "tpm_manufacturers": ["XYZ"]}, "allow": {...}}`.
//! Vendor ids are four hex digits. An SMBIOS rule matches a board, system or BIOS vendor string
//! that contains it, ignoring case; a TPM rule matches the manufacturer code exactly, ignoring
//! case. In `allow_only` mode every PCI device, USB device, SMBIOS manufacturer and TPM must
//! also match the `allow` list of its kind (a kind with no list allows nothing); deny rules
//! apply in both modes.

use serde::{Deserialize, Serialize};

use crate::inventory::{Component, Inventory};

/// Most rules of one kind.
pub const MAX_RULES: usize = 4096;
/// Longest SMBIOS or TPM rule string.
pub const MAX_RULE_STRING: usize = 128;

/// Deny (the default) or allow-only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Deny,
    AllowOnly,
}

/// One list of rules per component kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, with = "hex_ids")]
    pub pci_vendors: Vec<u16>,
    #[serde(default, with = "hex_ids")]
    pub usb_vendors: Vec<u16>,
    #[serde(default)]
    pub smbios_manufacturers: Vec<String>,
    #[serde(default)]
    pub tpm_manufacturers: Vec<String>,
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplyChainPolicy {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub deny: Rules,
    #[serde(default)]
    pub allow: Rules,
}

/// Why a policy cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupplyChainError {
    #[error("supply-chain policy: {0}")]
    Json(String),
    #[error("supply-chain policy lists {count} {what} rules (limit {MAX_RULES})")]
    TooMany { what: &'static str, count: usize },
    #[error(
        "supply-chain rule {rule:?} in {what} is empty, over {MAX_RULE_STRING} bytes or not printable"
    )]
    BadString { what: &'static str, rule: String },
    #[error(
        "supply-chain policy has allow rules but mode is \"deny\" (set \"mode\": \"allow_only\")"
    )]
    AllowWithoutAllowOnly,
}

/// A component the policy refuses, and the rule that refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The component as operators read it (`PCI device 10ec:8168 at 0000:01:00.0`).
    pub component: String,
    /// The rule (`deny.pci_vendors 10ec`, `allow_only: not in allow.usb_vendors`).
    pub rule: String,
}

impl SupplyChainPolicy {
    /// Parses and checks the operator's JSON.
    pub fn from_json(text: &str) -> Result<Self, SupplyChainError> {
        let p: SupplyChainPolicy =
            serde_json::from_str(text).map_err(|e| SupplyChainError::Json(e.to_string()))?;
        p.check()?;
        Ok(p)
    }

    /// Bounds and consistency: at most [`MAX_RULES`] per list, printable strings, and allow
    /// rules only in allow-only mode (an allow list that silently does nothing is a trap).
    pub fn check(&self) -> Result<(), SupplyChainError> {
        for (what, rules) in [("deny", &self.deny), ("allow", &self.allow)] {
            for (kind, n) in [
                ("pci_vendors", rules.pci_vendors.len()),
                ("usb_vendors", rules.usb_vendors.len()),
                ("smbios_manufacturers", rules.smbios_manufacturers.len()),
                ("tpm_manufacturers", rules.tpm_manufacturers.len()),
            ] {
                if n > MAX_RULES {
                    return Err(SupplyChainError::TooMany {
                        what: kind,
                        count: n,
                    });
                }
            }
            for s in rules
                .smbios_manufacturers
                .iter()
                .chain(&rules.tpm_manufacturers)
            {
                if s.trim().is_empty()
                    || s.len() > MAX_RULE_STRING
                    || s.chars().any(char::is_control)
                {
                    return Err(SupplyChainError::BadString {
                        what,
                        rule: crate::ids::truncate_for_display(s),
                    });
                }
            }
        }
        if self.mode == Mode::Deny && self.allow != Rules::default() {
            return Err(SupplyChainError::AllowWithoutAllowOnly);
        }
        Ok(())
    }

    /// Whether the policy has no rule at all (every inventory passes).
    pub fn is_empty(&self) -> bool {
        self.mode == Mode::Deny && self.deny == Rules::default()
    }

    /// Every component of `inv` the policy refuses, in inventory order. In allow-only mode a
    /// missing SMBIOS board or system vendor, or a missing TPM, is refused too: leaving a field
    /// out must not pass an allow list.
    pub fn check_inventory(&self, inv: &Inventory) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.mode == Mode::AllowOnly {
            for (field, value) in [
                ("board_vendor", &inv.smbios.board_vendor),
                ("sys_vendor", &inv.smbios.sys_vendor),
            ] {
                if value.is_none() {
                    out.push(Violation {
                        component: format!("SMBIOS {field} (absent)"),
                        rule: "allow_only: not in allow.smbios_manufacturers".to_owned(),
                    });
                }
            }
            if inv.tpm.is_none() {
                out.push(Violation {
                    component: "TPM (absent)".to_owned(),
                    rule: "allow_only: not in allow.tpm_manufacturers".to_owned(),
                });
            }
        }
        for c in inv.components() {
            if let Some(rule) = matching_rule(&self.deny, &c) {
                out.push(Violation {
                    component: c.to_string(),
                    rule: format!("deny.{rule}"),
                });
            } else if self.mode == Mode::AllowOnly && matching_rule(&self.allow, &c).is_none() {
                out.push(Violation {
                    component: c.to_string(),
                    rule: format!("allow_only: not in allow.{}", list_name(&c)),
                });
            }
        }
        out
    }
}

fn list_name(c: &Component<'_>) -> &'static str {
    match c {
        Component::Pci(_) => "pci_vendors",
        Component::Usb(_) => "usb_vendors",
        Component::SmbiosManufacturer { .. } => "smbios_manufacturers",
        Component::Tpm(_) => "tpm_manufacturers",
    }
}

/// The first rule of `rules` matching `c`, as `list value` text.
fn matching_rule(rules: &Rules, c: &Component<'_>) -> Option<String> {
    let name = list_name(c);
    match c {
        Component::Pci(p) => rules
            .pci_vendors
            .iter()
            .find(|v| **v == p.vendor)
            .map(|v| format!("{name} {v:04x}")),
        Component::Usb(u) => rules
            .usb_vendors
            .iter()
            .find(|v| **v == u.vendor)
            .map(|v| format!("{name} {v:04x}")),
        Component::SmbiosManufacturer { value, .. } => {
            let value = folded(value);
            rules
                .smbios_manufacturers
                .iter()
                .find(|r| {
                    let r = folded(r);
                    !r.is_empty() && value.contains(&r)
                })
                .map(|r| format!("{name} {r:?}"))
        }
        Component::Tpm(t) => rules
            .tpm_manufacturers
            .iter()
            .find(|r| r.trim().eq_ignore_ascii_case(t.manufacturer.trim()))
            .map(|r| format!("{name} {r:?}")),
    }
}

/// An SMBIOS string as rules compare it: ASCII letters and digits only, lower-cased. Spaces,
/// punctuation, zero-width and non-breaking spaces are dropped, so `Hidden\u{200B}Board` or
/// `Hidden  Board` cannot slip past a rule "Hidden Board"; any other non-ASCII character is
/// kept as a marker that matches no rule letter (a look-alike letter does not match the letter
/// it imitates — allow-only mode refuses it, see docs/supply-chain.md).
fn folded(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            c if c.is_ascii() || c.is_whitespace() || is_invisible(c) => None,
            _ => Some('\u{fffd}'),
        })
        .collect()
}

/// Format characters that render as nothing (zero-width space, joiners, BOM, soft hyphen).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// Vendor ids as four-digit hex strings in JSON.
mod hex_ids {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(ids: &[u16], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|i| format!("{i:04x}")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|s| {
                let t = s.trim_start_matches("0x");
                if t.len() == 4 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    u16::from_str_radix(t, 16).map_err(D::Error::custom)
                } else {
                    Err(D::Error::custom(format!(
                        "vendor id {s:?} is not four hex digits (like \"10ec\")"
                    )))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{PciDevice, Smbios, TpmInfo, UsbDevice};

    fn inv() -> Inventory {
        Inventory {
            smbios: Smbios {
                board_vendor: Some("Hidden Board Co., Ltd.".into()),
                sys_vendor: Some("Acme".into()),
                ..Smbios::default()
            },
            pci: vec![PciDevice {
                slot: "0000:01:00.0".into(),
                vendor: 0x10ec,
                device: 0x8168,
            }],
            usb: vec![UsbDevice {
                port: "1-1".into(),
                vendor: 0x1a86,
                product: 0x7523,
            }],
            tpm: Some(TpmInfo {
                manufacturer: "IBM".into(),
                firmware_version: "1.0".into(),
            }),
            ..Inventory::default()
        }
    }

    #[test]
    fn deny_rules_name_component_and_rule() {
        let p = SupplyChainPolicy::from_json(
            r#"{"deny": {"pci_vendors": ["10EC"], "smbios_manufacturers": ["hidden board"]}}"#,
        )
        .unwrap();
        let v = p.check_inventory(&inv());
        assert_eq!(
            v,
            vec![
                Violation {
                    component: "SMBIOS board_vendor \"Hidden Board Co., Ltd.\"".into(),
                    rule: "deny.smbios_manufacturers \"hidden board\"".into(),
                },
                Violation {
                    component: "PCI device 10ec:8168 at 0000:01:00.0".into(),
                    rule: "deny.pci_vendors 10ec".into(),
                },
            ]
        );
        assert!(
            SupplyChainPolicy::default()
                .check_inventory(&inv())
                .is_empty()
        );
    }

    #[test]
    fn allow_only_refuses_what_is_not_listed() {
        let p = SupplyChainPolicy::from_json(
            r#"{"mode": "allow_only", "allow": {"pci_vendors": ["10ec"], "usb_vendors": ["1a86"],
                "smbios_manufacturers": ["acme", "hidden"], "tpm_manufacturers": []},
                "deny": {"tpm_manufacturers": ["ibm"]}}"#,
        )
        .unwrap();
        let v = p.check_inventory(&inv());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "deny.tpm_manufacturers \"ibm\"");
        let p = SupplyChainPolicy::from_json(r#"{"mode": "allow_only", "allow": {}}"#).unwrap();
        let v = p.check_inventory(&inv());
        assert_eq!(v.len(), 5);
        assert!(
            v.iter()
                .all(|x| x.rule.starts_with("allow_only: not in allow."))
        );
    }

    #[test]
    fn spacing_and_invisible_characters_do_not_evade_an_smbios_rule() {
        let p =
            SupplyChainPolicy::from_json(r#"{"deny": {"smbios_manufacturers": ["Hidden Board"]}}"#)
                .unwrap();
        for evasive in [
            "Hidden\u{200B}Board Co",
            "Hidden\u{00A0}Board",
            "Hidden  Board",
            "HIDDEN-BOARD",
        ] {
            let mut i = inv();
            i.smbios.board_vendor = Some(evasive.into());
            assert_eq!(
                p.check_inventory(&i).len(),
                1,
                "{evasive:?} evaded the rule"
            );
        }
        let mut i = inv();
        i.smbios.board_vendor = Some("Acme".into());
        assert!(p.check_inventory(&i).is_empty());
    }

    #[test]
    fn allow_only_refuses_missing_vendor_strings_and_tpm() {
        let p = SupplyChainPolicy::from_json(
            r#"{"mode": "allow_only", "allow": {"pci_vendors": ["10ec"], "usb_vendors": ["1a86"],
                "smbios_manufacturers": ["acme", "hidden"], "tpm_manufacturers": ["ibm"]}}"#,
        )
        .unwrap();
        assert!(p.check_inventory(&inv()).is_empty());
        let mut i = inv();
        i.smbios.board_vendor = None;
        i.tpm = None;
        let v = p.check_inventory(&i);
        assert_eq!(
            v.iter().map(|x| x.component.as_str()).collect::<Vec<_>>(),
            ["SMBIOS board_vendor (absent)", "TPM (absent)"]
        );
    }

    #[test]
    fn malformed_policies_are_refused_with_the_reason() {
        for (bad, want) in [
            (r#"{"deny": {"pci_vendors": ["10e"]}}"#, "four hex digits"),
            (r#"{"deny": {"pci": ["10ec"]}}"#, "unknown field"),
            (
                r#"{"deny": {"smbios_manufacturers": [" "]}}"#,
                "not printable",
            ),
            (r#"{"allow": {"pci_vendors": ["10ec"]}}"#, "allow_only"),
            (r#"{"mode": "permissive"}"#, "unknown variant"),
            ("[", "EOF"),
        ] {
            let e = SupplyChainPolicy::from_json(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
