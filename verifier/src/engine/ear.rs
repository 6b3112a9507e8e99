//! A device's current attestation result as a signed EAR token (`GET /api/devices/{id}/ear`):
//! read its record, build the claims (`protocol::ear`), sign them with the verifier's key.

use super::operator::parse_id;
use super::{ApiError, Engine};

impl Engine {
    /// The device's EAR JWT, valid at most `verdict_ttl` from now and never past its live
    /// verdict.
    pub fn ear(&self, id: &str) -> Result<String, ApiError> {
        let id = parse_id(id)?;
        let rec = self
            .store
            .read()?
            .device(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("device {id} is not enrolled")))?;
        let verdict = rec.last_verdict();
        let claims = vouch_protocol::ear::claims(
            &id,
            rec.status.state(),
            verdict.as_ref(),
            self.now(),
            self.cfg.verdict_ttl,
            env!("CARGO_PKG_VERSION"),
        );
        crate::ear::sign(&claims, &self.key)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding an EAR: {e}")))
    }
}
