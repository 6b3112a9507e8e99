//! vouch-agent as a library: the terminal-side shells around the protocol core (TPM access,
//! state directory, firmware measurement, MQTT). `main.rs` is only the CLI entry point; keeping
//! the rest here lets integration tests drive the TPM layer directly.

pub mod tpm;
