//! Counters of accepted and rejected messages, and the most recent rejections, for
//! `vouchctl stats` and `/v1/stats`. In memory: they describe this process's life.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use vouch_common::time::rfc3339;
use vouch_protocol::error::RejectionLabel;

use crate::api::{RejectionView, StatsView};
use crate::metrics::Metrics;

const RECENT: usize = 100;

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
    /// The same counts for `/metrics` (lock-free).
    pub(super) metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Inner {
    accepted: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    recent: VecDeque<RejectionView>,
}

impl Stats {
    pub fn accept(&self, kind: &str) {
        self.metrics.accepted(kind);
        if let Ok(mut i) = self.inner.lock() {
            *i.accepted.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Counts and logs a message rejected at `now` under `label`. `topic` and `reason` may hold
    /// attacker-chosen text and are already bounded by the caller's decoding.
    pub fn reject(&self, topic: &str, label: RejectionLabel, reason: &str, now: u64) {
        let label = label.as_str();
        self.metrics.rejected(label);
        tracing::warn!(topic, label, reason, "rejected message");
        if let Ok(mut i) = self.inner.lock() {
            *i.rejected.entry(label.to_owned()).or_default() += 1;
            if i.recent.len() == RECENT {
                i.recent.pop_front();
            }
            i.recent.push_back(RejectionView {
                at: rfc3339(now),
                topic: topic.chars().take(200).collect(),
                label: label.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }

    pub fn view(&self) -> StatsView {
        match self.inner.lock() {
            Ok(i) => StatsView {
                accepted: i.accepted.clone(),
                rejected: i.rejected.clone(),
                recent_rejections: i.recent.iter().cloned().collect(),
            },
            Err(_) => StatsView::default(),
        }
    }
}
