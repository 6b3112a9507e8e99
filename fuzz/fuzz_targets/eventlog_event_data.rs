//! Fuzzes the event-data decoders directly: the input is an event type (4 bytes) and event data,
//! wrapped in one legacy log record so that every decoder sees arbitrary data without the
//! fuzzer having to learn the log framing first.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::eventlog::{Report, parse, render_text};

fuzz_target!(|input: &[u8]| {
    let Some((event_type, event_data)) = input.split_first_chunk::<4>() else {
        return;
    };
    let Ok(size) = u32::try_from(event_data.len()) else {
        return;
    };
    let mut record = Vec::with_capacity(32 + event_data.len());
    record.extend_from_slice(&7u32.to_le_bytes());
    record.extend_from_slice(event_type);
    record.extend_from_slice(&[0x5a; 20]);
    record.extend_from_slice(&size.to_le_bytes());
    record.extend_from_slice(event_data);
    let Ok(log) = parse(&record) else {
        // Only a Spec ID signature turns the record into a (then malformed) crypto-agile header.
        assert!(
            u32::from_le_bytes(*event_type) == 3 && event_data.starts_with(b"Spec ID Event03\0")
        );
        return;
    };
    let event = &log.events[0];
    assert_eq!(event.data, event_data);
    let _ = (event.summary(), event.class(), event.subject());
    let replay = log.replay();
    let _ = (log.secure_boot_enabled(), log.dbx_entry_count());
    let _ = serde_json::to_vec(&Report::new(&log, &replay)).unwrap_or_default();
    let _ = render_text(&log, &replay);
});
