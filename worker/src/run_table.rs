//! The scheduler's table of launched runs: a slab indexed by run id, so
//! launching one of 100k runs due together costs a vector write instead of
//! a hash-map insert.
//!
//! An id is reused only after its run reported [`RunEvent::Finished`], and
//! a run reports nothing after that, so a late event never reaches the
//! wrong run.
//!
//! [`RunEvent::Finished`]: crate::scheduler::RunEvent::Finished

use std::sync::Arc;

use crate::kill_switch::KillSwitch;
use crate::run_events::RunId;
use rcron_shared::{Job, JobName};

/// One launched run.
pub struct Entry {
    /// The job, as it was when the tick fired.
    pub job: Arc<Job>,
    /// The run's kill switch.
    pub kill: KillSwitch,
    /// Whether the command really started here (the cluster lock is held).
    pub started: bool,
    /// The scheduler slot (and its owner's incarnation) of the job, for
    /// its count of runs in flight; `None` for a paused job's run-now.
    pub owner: Option<(u32, u32)>,
    /// The run request it tries (job, request id), if it is one.
    pub request: Option<Box<(JobName, String)>>,
}

/// Launched runs by id.
#[derive(Default)]
pub struct RunTable {
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    started: usize,
}

impl RunTable {
    /// Adds a launched run; returns its id.
    pub fn insert(
        &mut self,
        job: Arc<Job>,
        kill: KillSwitch,
        owner: Option<(u32, u32)>,
        request: Option<Box<(JobName, String)>>,
    ) -> RunId {
        let entry = Some(Entry {
            job,
            kill,
            started: false,
            owner,
            request,
        });
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                // Ids count runs alive at once: far below 2^32.
                (self.entries.len() - 1) as RunId
            }
        }
    }

    /// Marks run `id` as started; whether that changed anything.
    pub fn mark_started(&mut self, id: RunId) -> bool {
        match self.entry_mut(id) {
            Some(e) if !e.started => {
                e.started = true;
                self.started += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes run `id` and returns it.
    pub fn remove(&mut self, id: RunId) -> Option<Entry> {
        let e = self.entries.get_mut(id as usize).and_then(Option::take)?;
        self.free.push(id);
        if e.started {
            self.started -= 1;
        }
        Some(e)
    }

    /// Whether no run is in the table.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.entries.len()
    }

    /// Runs whose command started here.
    pub fn started(&self) -> usize {
        self.started
    }

    /// Every launched run.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    fn entry_mut(&mut self, id: RunId) -> Option<&mut Entry> {
        self.entries.get_mut(id as usize)?.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Arc<Job> {
        let json = format!(r#"{{"name":"{name}","command":"true","cronExpr":"* * * * * *"}}"#);
        Arc::new(Job::from_json(json.as_bytes()).expect("valid job"))
    }

    #[test]
    fn ids_are_reused_only_after_removal_and_started_runs_are_counted() {
        let mut table = RunTable::default();
        let kill = KillSwitch::new();
        let a = table.insert(job("a"), kill.clone(), None, None);
        let b = table.insert(job("b"), kill.clone(), Some((1, 0)), None);
        assert_ne!(a, b);
        assert!(table.mark_started(a));
        assert!(!table.mark_started(a), "a second start changes nothing");
        assert_eq!(table.started(), 1);
        assert!(table.remove(a).is_some_and(|e| e.started), "a had started");
        assert!(table.remove(a).is_none(), "a is gone");
        assert_eq!(table.started(), 0);
        assert!(
            !table.mark_started(a),
            "an event for a finished run is ignored"
        );
        let c = table.insert(job("c"), kill, None, None);
        assert_eq!(c, a, "the freed id is reused");
        let names: Vec<String> = table.iter().map(|e| e.job.name.to_string()).collect();
        assert_eq!(names, ["c", "b"]);
        assert!(!table.is_empty());
        let b = table.remove(b).expect("b");
        assert!(!b.started, "b never started");
        assert_eq!(b.owner, Some((1, 0)));
        assert!(table.remove(RunId::MAX).is_none());
        table.remove(c);
        assert!(table.is_empty());
    }
}
