//! The delivery worker: one periodic job for every webhook (never a task per device or per
//! webhook). Each pass reads at most [`PER_PASS`] due rows from the outbox index and sends them
//! one at a time (so at most one request is in flight, each bounded by [`TIMEOUT`]). A 2xx answer
//! deletes the row; anything else moves it to its next attempt, `1 s · 2^attempts` capped at one
//! hour, with up to 25 % jitter, persisted so the schedule survives a restart. A row older than
//! the maximum age, or for a webhook no longer configured, is dropped with an error log and
//! counted (`vouch_webhook_deliveries_total{result="dropped"}`). Delivery is at least once: a
//! crash between the POST and the delete sends it again, with the same `X-Vouch-Delivery`.

use anyhow::Result;
use std::time::Duration;

use super::Webhooks;
use super::sign::signature;
use crate::metrics::{Delivery, Metrics};
use crate::store::{OutboxEntry, Store};

/// Rows sent per pass at most.
pub const PER_PASS: usize = 8;

/// Timeout of one delivery request, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait between two attempts.
pub const MAX_BACKOFF_SECS: u64 = 3600;

/// The delay before attempt `attempts + 1` (after `attempts` failures), without jitter.
pub fn backoff(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.min(12))
        .unwrap_or(MAX_BACKOFF_SECS)
        .min(MAX_BACKOFF_SECS)
}

/// `delay` plus up to 25 % from `random` (any value), so receivers coming back are not hit by
/// every verifier's retries at once.
pub fn jittered(delay: u64, random: u64) -> u64 {
    let spread = delay / 4;
    delay
        + if spread == 0 {
            0
        } else {
            random % (spread + 1)
        }
}

/// The delivery worker's state: the webhooks, the HTTP client and the limits.
pub struct Worker {
    hooks: Webhooks,
    agent: ureq::Agent,
    max_age: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(hooks: Webhooks, max_age: u64) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Self {
            hooks,
            agent,
            max_age,
        }
    }

    /// One pass at `now`: sends the due rows, records the results. Returns how many were sent.
    pub fn pass(&self, store: &Store, metrics: &Metrics, now: u64) -> Result<usize> {
        let due = store.read()?.deliveries_due(now, PER_PASS)?;
        let mut sent = 0;
        for ((next_at, id), entry) in due {
            let Some(entry) = entry else {
                let mut w = store.write()?;
                w.forget_due(next_at, id)?;
                w.remove_delivery(id)?;
                w.commit()?;
                continue;
            };
            let hook = self.hooks.iter().find(|h| h.url == entry.url);
            let too_old = now.saturating_sub(entry.created_at) > self.max_age;
            let Some(hook) = hook.filter(|_| !too_old) else {
                tracing::error!(delivery = %entry.delivery, url = %entry.url, attempts = entry.attempts, too_old, "webhook alert dropped undelivered");
                let mut w = store.write()?;
                w.remove_delivery(id)?;
                w.commit()?;
                metrics.delivery(Delivery::Dropped);
                continue;
            };
            sent += 1;
            let result = self.post(&entry, &hook.secret, now);
            let mut w = store.write()?;
            match result {
                Ok(()) => {
                    w.remove_delivery(id)?;
                    w.commit()?;
                    metrics.delivery(Delivery::Delivered);
                    tracing::info!(delivery = %entry.delivery, event = %entry.event, "webhook delivered");
                }
                Err(why) => {
                    let random = vouch_common::keys::random_bytes::<8>()
                        .map(|b| u64::from_le_bytes(*b))
                        .unwrap_or(0);
                    let delay = jittered(backoff(entry.attempts), random);
                    let next = OutboxEntry {
                        attempts: entry.attempts.saturating_add(1),
                        next_at: now.saturating_add(delay),
                        ..entry
                    };
                    w.reschedule_delivery(id, &next)?;
                    w.commit()?;
                    metrics.delivery(Delivery::Failed);
                    tracing::warn!(delivery = %next.delivery, url = %next.url, attempts = next.attempts, retry_in = delay, error = %why, "webhook delivery failed; will retry");
                }
            }
        }
        metrics.set_outbox_pending(store.read()?.outbox_len()?);
        Ok(sent)
    }

    /// POSTs one delivery; `Err` says why it did not count as delivered.
    fn post(&self, e: &OutboxEntry, secret: &[u8], now: u64) -> Result<(), String> {
        let resp = self
            .agent
            .post(&e.url)
            .header("Content-Type", "application/json")
            .header("X-Vouch-Event", &e.event)
            .header("X-Vouch-Delivery", &e.delivery)
            .header("X-Vouch-Timestamp", now.to_string())
            .header(
                "X-Vouch-Signature",
                signature(secret, now, e.body.as_bytes()),
            )
            .send(e.body.as_bytes())
            .map_err(|err| err.to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_an_hour() {
        assert_eq!(backoff(0), 1);
        assert_eq!(backoff(1), 2);
        assert_eq!(backoff(5), 32);
        assert_eq!(backoff(11), 2048);
        assert_eq!(backoff(12), 3600);
        assert_eq!(backoff(u32::MAX), 3600);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for r in [0, 1, 7, 899, 900, u64::MAX] {
            let d = jittered(3600, r);
            assert!((3600..=4500).contains(&d), "{d}");
        }
        assert_eq!(jittered(1, 12345), 1);
    }
}
