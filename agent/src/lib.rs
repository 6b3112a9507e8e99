//! vouch-agent as a library: the terminal-side shells around the protocol core (TPM access,
//! state directory, firmware measurement, MQTT session). `main.rs` is only the CLI entry point;
//! keeping the rest here lets tests drive each part directly.

pub mod activate;
pub mod attester;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod freshness;
pub mod inventory;
pub mod measure;
pub mod punch;
pub mod session;
pub mod state;
pub mod status;
pub mod tpm;
