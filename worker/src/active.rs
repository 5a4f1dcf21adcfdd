//! The runs executing on this worker, by run id: what the registration
//! `/cron/workers/<id>` lists (`running`, `runs`, `draining`), and where a
//! kill by run id (`/cron/killrun/<runId>`) finds its run.
//!
//! Runs add themselves when their command starts and remove themselves
//! when it ends; `register` reads a snapshot when the version it watches
//! moves (it coalesces, so a busy worker still writes its record at most
//! twice a second).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rcron_shared::RunRef;
use tokio::sync::watch;

use crate::run_stop::{RunStop, RunStopReason};

struct Entry {
    run: RunRef,
    stop: RunStop,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Entry>,
    draining: bool,
    clock: ClockState,
}

/// The worker's clock against the cluster's reference, as registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    /// Measured offset (ms, positive = ahead); None until measured.
    pub offset_ms: Option<i64>,
    /// Beyond `max_clock_skew_ms`: the worker fires nothing.
    pub skewed: bool,
}

/// What the registration shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Runs executing, oldest first.
    pub runs: Vec<RunRef>,
    /// Whether the worker is draining.
    pub draining: bool,
    /// The clock's offset and whether it stops firing.
    pub clock: ClockState,
}

impl Snapshot {
    /// Job names of the runs, sorted and unique (the registration's `running`).
    pub fn job_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.runs.iter().map(|r| r.job.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Shared by the runner (writes), `register` and the scheduler (reads, kills).
pub struct ActiveRuns {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
}

impl Default for ActiveRuns {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            version: watch::channel(0).0,
        }
    }
}

impl ActiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Held for a map operation only; nothing in it can panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A run's command started.
    pub fn insert(&self, run: RunRef, stop: RunStop) {
        self.lock()
            .runs
            .insert(run.run_id.clone(), Entry { run, stop });
        self.bump();
    }

    /// A run ended.
    pub fn remove(&self, run_id: &str) {
        if self.lock().runs.remove(run_id).is_some() {
            self.bump();
        }
    }

    /// Kills the run with this id, if it runs here.
    pub fn kill(&self, run_id: &str) -> bool {
        self.stop(run_id, RunStopReason::Killed)
    }

    /// Stops the run with this id, if it executes here, for `reason`.
    pub fn stop(&self, run_id: &str, reason: RunStopReason) -> bool {
        let stop = self.lock().runs.get(run_id).map(|e| e.stop.clone());
        match stop {
            Some(stop) => {
                stop.stop(reason);
                true
            }
            None => false,
        }
    }

    /// The worker stops firing and waits for its runs.
    pub fn set_draining(&self) {
        self.lock().draining = true;
        self.bump();
    }

    /// Records the clock's state; the registration is rewritten when the
    /// skew verdict changes or the offset moves by more than 50 ms.
    pub fn set_clock(&self, clock: ClockState) {
        let changed = {
            let mut inner = self.lock();
            let old = inner.clock;
            let moved = match (old.offset_ms, clock.offset_ms) {
                (Some(a), Some(b)) => (a - b).abs() > 50,
                (a, b) => a.is_some() != b.is_some(),
            };
            if moved || old.skewed != clock.skewed {
                inner.clock = clock;
                true
            } else {
                false
            }
        };
        if changed {
            self.bump();
        }
    }

    /// How many runs execute now.
    pub fn len(&self) -> usize {
        self.lock().runs.len()
    }

    /// Whether no run executes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the registration should show now.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut runs: Vec<RunRef> = inner.runs.values().map(|e| e.run.clone()).collect();
        runs.sort_by(|a, b| (a.start_time, &a.run_id).cmp(&(b.start_time, &b.run_id)));
        Snapshot {
            runs,
            draining: inner.draining,
            clock: inner.clock,
        }
    }

    /// Moves whenever the snapshot may have changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, id: &str, start: i64) -> RunRef {
        RunRef {
            job: job.into(),
            run_id: id.into(),
            plan_time: start,
            start_time: start,
        }
    }

    #[test]
    fn lists_runs_kills_by_id_and_marks_draining() {
        let active = ActiveRuns::default();
        let mut seen = active.subscribe();
        let stop = RunStop::new();
        active.insert(run("b", "r2", 2), RunStop::new());
        active.insert(run("a", "r1", 1), stop.clone());
        active.insert(run("b", "r3", 3), RunStop::new());
        assert!(seen.has_changed().expect("open"));
        seen.mark_unchanged();
        let snap = active.snapshot();
        assert_eq!(
            snap.runs
                .iter()
                .map(|r| r.run_id.as_str())
                .collect::<Vec<_>>(),
            ["r1", "r2", "r3"]
        );
        assert_eq!(snap.job_names(), ["a", "b"]);
        assert!(!active.kill("nope"));
        assert!(active.kill("r1"));
        assert_eq!(stop.reason(), Some(RunStopReason::Killed));
        active.remove("r1");
        active.set_draining();
        assert!(seen.has_changed().expect("open"));
        let snap = active.snapshot();
        assert!(snap.draining);
        assert_eq!(snap.runs.len(), 2);
    }
}
