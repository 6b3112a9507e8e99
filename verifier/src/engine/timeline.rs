//! The per-minute timeline of the last 24 hours that the dashboard charts (`GET /api/timeline`):
//! attestation outcomes (the signed verdict statuses of appraised evidence), quarantines and
//! releases. A fixed ring of 1,440 one-minute buckets: recording an event is O(1) and memory is
//! constant whatever the fleet size. In memory, for this process's life; at start the
//! quarantines and releases of the last 24 h are seeded from the audit trail (attestation
//! outcomes are not audited, so the attestation series starts empty after a restart).

use serde::Serialize;
use std::sync::{Mutex, PoisonError};
use vouch_common::time::rfc3339;

/// Seconds per bucket.
pub const BUCKET_SECS: u64 = 60;

/// Buckets kept: 24 hours.
pub const BUCKETS: usize = 1440;

/// What one bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Affirming,
    Warning,
    Contraindicated,
    Quarantine,
    Release,
}

/// The counts of one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub affirming: u64,
    pub warning: u64,
    pub contraindicated: u64,
    pub quarantines: u64,
    pub releases: u64,
}

impl Counts {
    fn add(&mut self, e: Event) {
        let c = match e {
            Event::Affirming => &mut self.affirming,
            Event::Warning => &mut self.warning,
            Event::Contraindicated => &mut self.contraindicated,
            Event::Quarantine => &mut self.quarantines,
            Event::Release => &mut self.releases,
        };
        *c = c.saturating_add(1);
    }

    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// One bucket of `GET /api/timeline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteView {
    /// The bucket's start, RFC 3339.
    pub at: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The body of `GET /api/timeline`: buckets with something in them, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineView {
    pub bucket_secs: u64,
    pub minutes: Vec<MinuteView>,
}

/// The ring itself, pure: slot `m % BUCKETS` holds minute `m` (Unix minutes).
#[derive(Debug, Clone)]
struct Ring {
    slots: Vec<(u64, Counts)>,
}

impl Ring {
    fn new() -> Self {
        Self {
            slots: vec![(0, Counts::default()); BUCKETS],
        }
    }

    fn slot(minute: u64) -> usize {
        // BUCKETS fits in u64 and the remainder is below BUCKETS, so it fits in usize.
        usize::try_from(minute % BUCKETS as u64).unwrap_or(0)
    }

    /// Counts `e` at Unix time `at`. An event older than the minute its slot holds now (more
    /// than 24 h behind the newest) is dropped.
    fn record(&mut self, at: u64, e: Event) {
        let minute = at / BUCKET_SECS;
        let Some(s) = self.slots.get_mut(Self::slot(minute)) else {
            return;
        };
        if s.0 < minute {
            *s = (minute, Counts::default());
        }
        if s.0 == minute {
            s.1.add(e);
        }
    }

    /// The non-empty buckets of the 24 h ending with the minute of `now`, oldest first.
    fn view(&self, now: u64) -> TimelineView {
        let last = now / BUCKET_SECS;
        let first = last.saturating_sub(BUCKETS as u64 - 1);
        let mut minutes: Vec<(u64, Counts)> = self
            .slots
            .iter()
            .filter(|(m, c)| (first..=last).contains(m) && !c.is_empty())
            .copied()
            .collect();
        minutes.sort_unstable_by_key(|(m, _)| *m);
        TimelineView {
            bucket_secs: BUCKET_SECS,
            minutes: minutes
                .into_iter()
                .map(|(m, counts)| MinuteView {
                    at: rfc3339(m * BUCKET_SECS),
                    counts,
                })
                .collect(),
        }
    }
}

/// The shared timeline: one short lock per event (a few additions), never held across I/O.
#[derive(Debug)]
pub struct Timeline {
    ring: Mutex<Ring>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            ring: Mutex::new(Ring::new()),
        }
    }

    /// Counts `e` at Unix time `at`. The ring holds plain counts, so after a panic elsewhere
    /// under the lock it is still meaningful: a poisoned lock is taken over.
    pub fn record(&self, at: u64, e: Event) {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(at, e);
    }

    /// The last 24 h as of `now`.
    pub fn view(&self, now: u64) -> TimelineView {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .view(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn events_land_in_their_minute_oldest_first() {
        let t = Timeline::new();
        t.record(T0 + 61, Event::Quarantine);
        t.record(T0, Event::Affirming);
        t.record(T0 + 5, Event::Affirming);
        t.record(T0 + 70, Event::Release);
        let v = t.view(T0 + 120);
        assert_eq!(v.bucket_secs, 60);
        assert_eq!(v.minutes.len(), 2);
        assert_eq!(v.minutes[0].at, rfc3339(T0 / 60 * 60));
        assert_eq!(v.minutes[0].counts.affirming, 2);
        assert_eq!(v.minutes[1].counts.quarantines, 1);
        assert_eq!(v.minutes[1].counts.releases, 1);
    }

    #[test]
    fn a_day_old_bucket_is_reused_and_not_shown() {
        let t = Timeline::new();
        t.record(T0, Event::Warning);
        // Same slot, one day later: the old count is gone.
        t.record(T0 + 86_400, Event::Contraindicated);
        // An event a day behind the slot's minute is dropped.
        t.record(T0, Event::Warning);
        let v = t.view(T0 + 86_400);
        assert_eq!(v.minutes.len(), 1);
        assert_eq!(v.minutes[0].counts.contraindicated, 1);
        assert_eq!(v.minutes[0].counts.warning, 0);
        // A day and a minute later nothing of it is within the window.
        assert!(t.view(T0 + 2 * 86_400 + 60).minutes.is_empty());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let t = Timeline::new();
        t.record(T0, Event::Release);
        let j = serde_json::to_value(t.view(T0)).unwrap_or_default();
        assert_eq!(j["bucket_secs"], 60);
        let m = &j["minutes"][0];
        for k in [
            "at",
            "affirming",
            "warning",
            "contraindicated",
            "quarantines",
            "releases",
        ] {
            assert!(m.get(k).is_some(), "{k} missing in {m}");
        }
        assert_eq!(m["releases"], 1);
    }
}
