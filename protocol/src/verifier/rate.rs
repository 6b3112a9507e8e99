//! The per-device challenge budget: a device may obtain a bounded number of challenges per
//! clock minute; hellos and statuses past it are refused (`rate_limited`). A plain value the
//! engine keeps behind a lock and the core consults with the time it is given.

use std::collections::HashMap;

use crate::ids::DeviceId;

/// Challenges counted per device in the current minute (one entry per device that asked since
/// the verifier started, so bounded by the enrolled devices).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: u32,
    counts: HashMap<DeviceId, (u64, u32)>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` challenges per device and minute (0 refuses every one).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            counts: HashMap::new(),
        }
    }

    /// Whether `device` may get another challenge at `now` (Unix seconds); counts it if so. The
    /// budget starts afresh at each minute boundary (`now / 60`).
    pub fn allow(&mut self, device: &DeviceId, now: u64) -> bool {
        let minute = now / 60;
        let entry = self.counts.entry(device.clone()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_device_and_renews_each_minute() {
        let a: DeviceId = "a".parse().unwrap();
        let b: DeviceId = "b".parse().unwrap();
        let mut r = RateLimiter::new(2);
        assert!(r.allow(&a, 120));
        assert!(r.allow(&a, 179));
        assert!(!r.allow(&a, 179), "third in the same minute");
        assert!(r.allow(&b, 179), "another device has its own budget");
        assert!(r.allow(&a, 180), "a new minute starts afresh");
        assert!(r.allow(&a, 181));
        assert!(!r.allow(&a, 182));
    }

    #[test]
    fn a_zero_budget_refuses_everything() {
        let a: DeviceId = "a".parse().unwrap();
        assert!(!RateLimiter::new(0).allow(&a, 0));
    }
}
