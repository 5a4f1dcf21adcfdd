//! The clock-skew guard (ARCHITECTURE §4, "Clock").
//!
//! The leader master writes its time to `/cron/clock` every second. Each
//! put reaches this worker through a watch a little later; the difference
//! between the local clock at arrival and the beacon's time is the
//! worker's offset plus that delay, which is never negative, so the
//! smallest of the last few samples is the best estimate. The worker's
//! clock is corrected by it (times in its schedule and its records are the
//! cluster's), and while it exceeds `max_clock_skew_ms` the worker fires
//! nothing: a clock that far off is a fault to fix, not to paper over. It
//! fires again by itself once the offset is back within bounds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use etcd_client::Client;
use rcron_shared::Keys;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::active::{ActiveRuns, ClockState};
use crate::clock::Clock;
use crate::metrics::WorkerMetrics;
use crate::placement::{Change, mirror_dir};

/// Offsets up to this (ms) are not corrected: they are within what the
/// beacon's delay adds to the measurement.
pub const DEAD_BAND_MS: i64 = 100;
/// Samples the estimate is taken from.
const SAMPLES: usize = 5;
/// With no beacon for this long after start (no master leads, or an older
/// one), the worker fires on its own clock rather than not at all.
pub const NO_BEACON_GRACE: Duration = Duration::from_secs(5);

/// The beacon's value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Beacon {
    time_ms: i64,
}

#[derive(Debug)]
struct State {
    samples: VecDeque<i64>,
    skewed: bool,
}

/// The corrected clock and whether the worker may fire.
pub struct ClockGuard {
    base: Arc<dyn Clock>,
    correction_ms: AtomicI64,
    state: Mutex<State>,
    max_skew_ms: i64,
    started: Instant,
    /// No beacon exists at all (no master has led here): nothing to wait for.
    no_reference: std::sync::atomic::AtomicBool,
    active: Arc<ActiveRuns>,
    metrics: Arc<WorkerMetrics>,
}

impl ClockGuard {
    /// A guard over `base` allowing `max_skew_ms`, publishing its state in
    /// the registration through `active`.
    pub fn new(
        base: Arc<dyn Clock>,
        max_skew_ms: u64,
        active: Arc<ActiveRuns>,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        Self {
            base,
            correction_ms: AtomicI64::new(0),
            state: Mutex::new(State {
                samples: VecDeque::new(),
                skewed: false,
            }),
            max_skew_ms: max_skew_ms as i64,
            started: Instant::now(),
            no_reference: std::sync::atomic::AtomicBool::new(false),
            active,
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The measured offset (ms, positive = this worker's clock is ahead).
    pub fn offset_ms(&self) -> Option<i64> {
        self.state().samples.iter().copied().min()
    }

    /// Whether the worker may fire: its offset is measured and within
    /// bounds; or there is no beacon to measure against (no master ever
    /// led on this etcd prefix), or none came within [`NO_BEACON_GRACE`] of
    /// its start.
    pub fn may_fire(&self) -> bool {
        let state = self.state();
        if state.samples.is_empty() {
            return self.no_reference.load(Ordering::Relaxed)
                || self.started.elapsed() >= NO_BEACON_GRACE;
        }
        !state.skewed
    }

    /// Whether a beacon exists to measure against, as listed at (re)start
    /// of the watch.
    fn set_reference(&self, exists: bool) {
        self.no_reference.store(!exists, Ordering::Relaxed);
    }

    /// Whether the offset is beyond `max_clock_skew_ms`.
    pub fn skewed(&self) -> bool {
        self.state().skewed
    }

    /// A beacon written at `beacon_ms` (the reference clock) arrived now.
    pub fn observe(&self, beacon_ms: i64) {
        let sample = self.base.now().timestamp_millis() - beacon_ms;
        let (offset, skewed, flipped) = {
            let mut state = self.state();
            state.samples.push_back(sample);
            while state.samples.len() > SAMPLES {
                state.samples.pop_front();
            }
            let offset = state.samples.iter().copied().min().unwrap_or(sample);
            let skewed = offset.abs() > self.max_skew_ms;
            let flipped = skewed != state.skewed;
            state.skewed = skewed;
            (offset, skewed, flipped)
        };
        // Within the dead band the estimate is mostly the beacon's own
        // delay (etcd's commit, the watch): correcting by it would only
        // make every run that much late.
        let correction = if offset.abs() <= DEAD_BAND_MS {
            0
        } else {
            offset
        };
        self.correction_ms.store(correction, Ordering::Relaxed);
        self.metrics
            .clock_offset_ms
            .store(offset, Ordering::Relaxed);
        self.metrics.clock_skewed.store(skewed, Ordering::Relaxed);
        if flipped {
            if skewed {
                tracing::error!(
                    offset_ms = offset,
                    max_ms = self.max_skew_ms,
                    "this worker's clock is off beyond max_clock_skew_ms: it fires nothing until the clock is corrected"
                );
            } else {
                tracing::info!(
                    offset_ms = offset,
                    "clock back within max_clock_skew_ms; firing again"
                );
            }
        }
        self.active.set_clock(ClockState {
            offset_ms: Some(offset),
            skewed,
        });
    }
}

impl Clock for ClockGuard {
    fn now(&self) -> DateTime<Utc> {
        self.base.now() - chrono::Duration::milliseconds(self.correction_ms.load(Ordering::Relaxed))
    }
}

/// Measures the clock against each beacon until `token` is cancelled.
pub async fn watch(client: Client, keys: Keys, guard: Arc<ClockGuard>, token: CancellationToken) {
    let key = keys.clock();
    mirror_dir(&client, key, &token, |change| {
        match change {
            // The listed value was written up to a second ago: not a
            // sample, only a sign that a master writes one.
            Change::Reset(kvs) => guard.set_reference(!kvs.is_empty()),
            Change::Put(kv) => {
                if let Ok(beacon) = serde_json::from_slice::<Beacon>(kv.value()) {
                    guard.set_reference(true);
                    guard.observe(beacon.time_ms);
                }
            }
            Change::Delete(_) => {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn a_clock_ahead_is_measured_corrected_and_stops_firing() {
        let guard = ClockGuard::new(
            Arc::new(SystemClock::with_offset_ms(3000)),
            500,
            Arc::new(ActiveRuns::default()),
            Arc::new(WorkerMetrics::default()),
        );
        assert!(!guard.may_fire(), "not before the first beacon");
        for delay in [40, 5, 20] {
            let beacon = Utc::now().timestamp_millis() - delay;
            guard.observe(beacon);
        }
        let offset = guard.offset_ms().expect("measured");
        assert!((3000..3030).contains(&offset), "{offset}");
        assert!(guard.skewed() && !guard.may_fire());
        let corrected = (guard.now() - Utc::now()).num_milliseconds();
        assert!(corrected.abs() < 50, "corrected clock {corrected} ms off");
    }

    #[test]
    fn a_clock_within_bounds_fires_and_recovers_after_a_fix() {
        let base = Arc::new(SystemClock::with_offset_ms(200));
        let guard = ClockGuard::new(
            base,
            500,
            Arc::new(ActiveRuns::default()),
            Arc::new(WorkerMetrics::default()),
        );
        guard.observe(Utc::now().timestamp_millis());
        assert!(guard.may_fire() && !guard.skewed());
    }
}
