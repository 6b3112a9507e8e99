//! Alert webhooks (issue 10 §4): `quarantine`, `release`, `tamper` and `buffer_pressure` events
//! POSTed as signed JSON to the operator's receivers, from a durable outbox. The engine stages
//! one outbox row per (event, webhook) in the write transaction of the state change that raised
//! it ([`stage`]); the delivery worker ([`worker`]) sends due rows with backoff. Configuration
//! (the `[[webhook]]` tables of the verifier's config file) is in [`config`], signing in [`sign`].

pub mod config;
pub mod sign;
pub mod worker;

use serde::Serialize;
use vouch_common::time::rfc3339;
use vouch_protocol::device::Actor;

pub use config::{EventKind, Webhook, Webhooks};

use crate::store::{OutboxEntry, Writer};

/// The JSON body of one alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert<'a> {
    /// Unique per event (the same for every webhook it goes to).
    pub id: String,
    pub event: &'static str,
    pub at: String,
    pub device: &'a str,
    pub reason: String,
    pub reason_codes: Vec<&'a str>,
    /// A token name, or `system` for the verifier itself.
    pub actor: String,
}

/// How an actor is named in alerts: the verifier is `system`, an operator its token's name.
pub fn actor_name(a: &Actor) -> String {
    match a {
        Actor::Verifier => "system".to_owned(),
        Actor::Operator(n) => n.clone(),
    }
}

/// What an event says, before it is addressed to the webhooks.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub at: u64,
    pub device: &'a str,
    pub reason: String,
    pub reason_codes: Vec<&'a str>,
    pub actor: String,
}

/// Writes one outbox row per webhook subscribed to `e.kind` into `w` (the transaction of the
/// change that raised it). No webhook subscribed: nothing is written.
pub fn stage(w: &mut Writer, hooks: &Webhooks, e: Event<'_>) -> anyhow::Result<()> {
    let targets: Vec<&Webhook> = hooks
        .iter()
        .filter(|h| h.events.contains(&e.kind))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let id = hex::encode(*vouch_common::keys::random_bytes::<16>()?);
    let alert = Alert {
        id: id.clone(),
        event: e.kind.as_str(),
        at: rfc3339(e.at),
        device: e.device,
        reason: e.reason,
        reason_codes: e.reason_codes,
        actor: e.actor,
    };
    let body = serde_json::to_string(&alert)?;
    for (i, h) in targets.into_iter().enumerate() {
        w.enqueue_delivery(&OutboxEntry {
            delivery: format!("{id}-{i}"),
            url: h.url.clone(),
            event: e.kind.as_str().to_owned(),
            body: body.clone(),
            created_at: e.at,
            attempts: 0,
            next_at: e.at,
        })?;
    }
    Ok(())
}
