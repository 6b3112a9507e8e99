//! Decisions on verdict expiry: what happens to a device whose current verdict expired without
//! fresh evidence. The shell's sweep reads due entries of its verdict-expiry index and hands each
//! device here; the state machine (`DeviceStatus::expire`) decides, and a renewed verdict covers
//! a verdict lifetime from now.

use super::core::{NonceSource, NonceUnavailable, VerifierCore};
use super::effects::Effects;
use super::record::DeviceRecord;

impl VerifierCore {
    /// `rec`'s verdict-expiry index entry for `entry_exp` fell due at `now` (the shell has taken
    /// the entry out of the index). Empty effects when there is nothing to do: the entry is stale
    /// (it does not match the stored verdict, which moved with newer evidence), or the device is
    /// pending (its verdict never affirmed anything; its next one comes with its next evidence).
    pub fn on_verdict_expired(
        &self,
        rec: DeviceRecord,
        entry_exp: u64,
        now: u64,
        nonces: &mut dyn NonceSource,
    ) -> Result<Effects, NonceUnavailable> {
        let current = rec.last_verdict();
        if current.as_ref().map(|v| v.exp) != Some(entry_exp) {
            return Ok(Effects::default());
        }
        let policy = current.and_then(|v| v.policy_id);
        let mut step = self.step(rec, now, nonces);
        let Some((t, a)) = step.rec.status.expire(
            step.rec.measured_at,
            now,
            self.rules.quarantine_after_expiries,
            policy,
        ) else {
            return Ok(Effects::default());
        };
        let exp = step.lifetime_from_now();
        step.issue_verdict(a, None, exp);
        step.carry_out(t)?;
        Ok(step.into_effects())
    }
}
