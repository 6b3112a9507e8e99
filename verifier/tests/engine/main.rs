//! The verifier engine end to end without MQTT: real redb store, real `prepare`/`apply`, and
//! terminals on the software TPM, with the engine's clock and nonce source injected so nonce
//! expiry, verdict expiry and rate limits are driven by the test, not waited for. Each test is
//! named after the invariant it guards; several are regressions for review findings
//! (quarantines lifted without fresh evidence, pre-release quotes, reordered genuine quotes,
//! duplicates in flight). The decisions themselves are tested, faster, in
//! `vouch_protocol::verifier`; these check that the engine wires them to the store and the
//! outgoing queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use vouch_protocol::bytes::Sha256Digest;
use vouch_protocol::device::Actor;
use vouch_protocol::enrollment::Enrollment;
use vouch_protocol::firmware::FirmwareEntry;
use vouch_protocol::ids::{DeviceId, Kind, Nonce, Topic};
use vouch_protocol::messages::{Challenge, Hello};
use vouch_protocol::policy::PolicyScope;
use vouch_protocol::verdict::{DeviceState, Status, TrustVector, Verdict};
use vouch_protocol::wire;
use vouch_sim::SimTpm;
use vouch_verifier::api::AuditView;
use vouch_verifier::engine::Engine;
use vouch_verifier::mqtt::{Inbound, Outgoing};
use vouch_verifier::store::{DeviceRecord, Store};

mod harness;
use harness::*;

mod evidence;
mod expiry;
mod freshness;
mod policy;
mod provenance;
mod punches;
mod quarantine;
