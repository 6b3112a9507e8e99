//! Test support shared by the event-log integration tests and the benchmark: the public log
//! builder of `vouch_protocol::eventlog::build`.

pub use vouch_protocol::eventlog::build::*;
