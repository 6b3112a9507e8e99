//! The reference bundle: a vendor's signed reference values for one model and firmware version
//! (the same values `vouch-provision reference` computes from golden images and a golden event
//! log, or captures from a known-good terminal's verified evidence). The operator imports it
//! (`vouchctl import reference BUNDLE`); a device's reference values then come from the bundle
//! for its model and the firmware version it reports, unless the operator set its own for the
//! device or the model. docs/provisioning.md shows an example.

use serde::{Deserialize, Serialize};

use super::{DocType, Document};
use crate::policy::ReferenceValues;

/// Longest model or firmware-version string.
pub const MAX_LABEL: usize = 128;

/// The bundle body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceBundle {
    pub model: String,
    pub firmware_version: String,
    /// Unix seconds.
    pub issued_at: u64,
    pub reference: ReferenceValues,
}

impl Document for ReferenceBundle {
    const TYPE: DocType = DocType::ReferenceBundle;
    const MAX_LEN: usize = 4 << 20;
}

/// Checks a model or firmware-version label: 1 to [`MAX_LABEL`] bytes, no control characters,
/// no `@` (the separator of `model@version` in scopes and reasons).
pub fn check_label(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_LABEL || s.chars().any(char::is_control) || s.contains('@') {
        Err(format!(
            "{what} {:?} must be 1 to {MAX_LABEL} printable characters without '@'",
            crate::ids::truncate_for_display(s)
        ))
    } else {
        Ok(())
    }
}
