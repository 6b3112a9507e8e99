//! Fuzzes the TCG event-log parser with arbitrary bytes; on a successful parse, also the replay,
//! the decoders' summaries and classes, the Secure Boot helpers and both report renderers.
//! Nothing may panic, and a parse must describe the input faithfully.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_protocol::eventlog::{Report, parse, render_text};

fuzz_target!(|data: &[u8]| {
    let Ok(log) = parse(data) else {
        return;
    };
    // Every event lies inside the input, in order.
    let mut end = 0;
    for (i, event) in log.events.iter().enumerate() {
        assert_eq!(event.index, i);
        assert!(event.offset >= end && event.offset < data.len());
        end = event.offset;
        let _ = (
            event.summary(),
            event.class(),
            event.subject(),
            event.digests_match_data(),
        );
    }
    assert!(log.padding < data.len());
    let replay = log.replay();
    let _ = (log.secure_boot_enabled(), log.dbx_entry_count());
    let report = Report::new(&log, &replay);
    assert_eq!(report.events.len(), log.events.len());
    let _ = serde_json::to_vec(&report).unwrap_or_default();
    let _ = render_text(&log, &replay);
});
