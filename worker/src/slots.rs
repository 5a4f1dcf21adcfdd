//! Run slots: at most `max_concurrency` runs execute at once on a worker.
//! A due tick that finds every slot taken waits for one instead of being
//! dropped. Waiting ticks are served oldest planned time first; among
//! ticks planned for the same instant, the job that started least recently
//! here goes first, so no job starves another. A tick still waiting
//! `grace` after its planned time is given up here (another worker with a
//! free slot may have started it; `runner` settles it as missed otherwise).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use rcron_shared::JobName;

/// Starts remembered for fairness; the table is cleared past this many jobs
/// (only jobs that met a full worker are in it).
const FAIRNESS_MEMORY: usize = 10_000;

struct Waiting<T> {
    plan_ms: i64,
    /// When the job last started here (a sequence number; 0 = never).
    last_start: u64,
    seq: u64,
    job: JobName,
    item: T,
}

impl<T> Waiting<T> {
    fn key(&self) -> (i64, u64, u64) {
        (self.plan_ms, self.last_start, self.seq)
    }
}

impl<T> PartialEq for Waiting<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<T> Eq for Waiting<T> {}
impl<T> PartialOrd for Waiting<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Waiting<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap's top is the smallest key.
        other.key().cmp(&self.key())
    }
}

/// Free slots and the ticks waiting for one.
pub struct Slots<T> {
    free: usize,
    waiting: BinaryHeap<Waiting<T>>,
    last_start: HashMap<JobName, u64>,
    seq: u64,
}

/// What [`Slots::admit`] decided.
pub enum Admit<T> {
    /// A slot is taken for it: start it now.
    Start(T),
    /// It waits for a slot.
    Queued,
}

impl<T> Slots<T> {
    /// `capacity` free slots, nothing waiting.
    pub fn new(capacity: usize) -> Self {
        Self {
            free: capacity,
            waiting: BinaryHeap::new(),
            last_start: HashMap::new(),
            seq: 0,
        }
    }

    /// A tick of `job` planned at `plan_ms` asks for a slot.
    pub fn admit(&mut self, job: &JobName, plan_ms: i64, item: T) -> Admit<T> {
        if self.free > 0 && self.waiting.is_empty() {
            self.free -= 1;
            if !self.last_start.is_empty() {
                self.started(job);
            }
            return Admit::Start(item);
        }
        self.seq += 1;
        self.waiting.push(Waiting {
            plan_ms,
            last_start: self.last_start.get(job).copied().unwrap_or(0),
            seq: self.seq,
            job: job.clone(),
            item,
        });
        Admit::Queued
    }

    /// Ticks planned before `oldest_ms` that are still waiting: given up here.
    pub fn expire(&mut self, oldest_ms: i64) -> Vec<(JobName, i64, T)> {
        let mut out = Vec::new();
        while self.waiting.peek().is_some_and(|w| w.plan_ms < oldest_ms) {
            if let Some(w) = self.waiting.pop() {
                out.push((w.job, w.plan_ms, w.item));
            }
        }
        out
    }

    /// A run ended and gives its slot back: the next waiting tick takes it
    /// (returned), or the slot becomes free. Call [`Self::expire`] first.
    pub fn release(&mut self) -> Option<T> {
        match self.waiting.pop() {
            Some(w) => {
                self.started(&w.job);
                Some(w.item)
            }
            None => {
                self.free += 1;
                None
            }
        }
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.free == 0
    }

    /// Takes every waiting tick out (the worker drains).
    pub fn take_waiting(&mut self) -> Vec<T> {
        self.waiting.drain().map(|w| w.item).collect()
    }

    /// Ticks waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn started(&mut self, job: &JobName) {
        if self.last_start.len() >= FAIRNESS_MEMORY {
            self.last_start.clear();
        }
        self.seq += 1;
        self.last_start.insert(job.clone(), self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> JobName {
        JobName::new(s).expect("name")
    }

    #[test]
    fn a_full_worker_serves_the_oldest_tick_first_and_alternates_between_jobs() {
        let (a, b) = (name("a"), name("b"));
        let mut slots = Slots::new(1);
        // Second 1: both due; `a` (saved first) takes the only slot.
        assert!(matches!(slots.admit(&a, 1_000, "a1"), Admit::Start("a1")));
        assert!(matches!(slots.admit(&b, 1_000, "b1"), Admit::Queued));
        // Second 2 comes while a1 still runs: both wait.
        assert!(matches!(slots.admit(&a, 2_000, "a2"), Admit::Queued));
        assert!(matches!(slots.admit(&b, 2_000, "b2"), Admit::Queued));
        let mut order = Vec::new();
        while let Some(next) = slots.release() {
            order.push(next);
        }
        // b1 is the oldest; then second 2's ticks.
        assert_eq!(order, ["b1", "a2", "b2"]);
    }

    #[test]
    fn ties_go_to_the_job_that_started_least_recently() {
        let (a, b) = (name("a"), name("b"));
        let mut slots = Slots::new(1);
        let mut ran = Vec::new();
        assert!(matches!(slots.admit(&a, 0, "a"), Admit::Start(_)));
        ran.push("a");
        for second in 1..=6 {
            // Both due each second while the slot is taken: a worker that
            // always preferred the first-saved job would starve `b`.
            slots.admit(&a, second * 1000, "a");
            slots.admit(&b, second * 1000, "b");
            ran.push(slots.release().expect("a waiting tick"));
            // The tick that did not run this second is given up.
            slots.expire(second * 1000 + 1);
        }
        let b_runs = ran.iter().filter(|j| **j == "b").count();
        assert_eq!(b_runs, 3, "each job gets every other second: {ran:?}");
    }

    #[test]
    fn late_ticks_expire_and_free_slots_come_back() {
        let a = name("a");
        let mut slots = Slots::new(1);
        assert!(matches!(slots.admit(&a, 0, 0), Admit::Start(0)));
        slots.admit(&a, 1_000, 1);
        slots.admit(&a, 9_000, 2);
        let expired = slots.expire(5_000);
        assert_eq!(expired.iter().map(|e| e.2).collect::<Vec<_>>(), [1]);
        assert_eq!(slots.release(), Some(2));
        assert_eq!(slots.release(), None);
        assert!(matches!(slots.admit(&a, 10_000, 3), Admit::Start(3)));
        assert_eq!(slots.waiting(), 0);
    }
}
