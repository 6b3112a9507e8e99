//! I/O helpers shared by vouch's binaries (agent, verifier, provisioning): durable atomic file
//! writes, Ed25519 key files, wall-clock time and logging setup. The protocol core never uses
//! this crate; it receives time and keys from the binaries.

pub mod config;
pub mod fs;
pub mod keys;
pub mod logging;
pub mod mqtt_passwd;
pub mod mqtt_tls;
pub mod mqtt_url;
pub mod time;
