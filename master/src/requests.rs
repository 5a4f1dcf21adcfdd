//! The leader ends run requests nobody started (ARCHITECTURE §4, "Run
//! requests").
//!
//! Every [`CHECK_EVERY`] the leader lists `/cron/run/`. A request of a
//! one-per-tick job still unclaimed after its deadline, or whose job is
//! gone, is deleted and, in the same transaction (on the value read, and
//! only while this master leads), its `skipped` record is stored under
//! `/cron/verdicts/`, from where the settler moves it into the run log: a
//! request is run or recorded skipped, never both, never neither. A
//! request of a job on every matching worker is deleted at its deadline
//! (each worker that saw it made has run it). A request claimed by a worker
//! that is gone is deleted at its deadline: the run, if it started, is in
//! that worker's outbox. Chain markers older than [`CHAIN_MARKER_KEPT`]
//! are deleted every [`MARKER_SWEEP_EVERY`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use rcron_shared::{
    Job, JobName, Keys, LogRecord, RunOrigin, RunRequest, RunStatus, TargetMode, WorkerInfo,
    placement, verdict,
};

use crate::Error;
use crate::election::Leadership;
use crate::job_cache::JobCache;
use crate::registry::WorkerRegistry;
use crate::store::JobStore;
use rcron_shared::listing::{Read, list_prefix};

/// How often the leader looks.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long `/cron/chained/<runId>` markers are kept: a worker finishing a
/// run's chain later than this (down for a day with the run in its outbox)
/// could request the chain again.
pub const CHAIN_MARKER_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How often old chain markers are deleted.
const MARKER_SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The leader's sweep of run requests.
pub struct RequestSweeper {
    /// Request client.
    pub client: Client,
    /// Key layout.
    pub keys: Keys,
    /// Jobs in etcd.
    pub jobs: JobStore,
    /// The same jobs in memory (read instead of etcd once in step).
    pub cache: Arc<JobCache>,
    /// The worker registry.
    pub workers: WorkerRegistry,
    /// This master's id (the `worker` of the records it writes).
    pub master_id: String,
}

impl RequestSweeper {
    /// Sweeps until leadership ends.
    pub async fn run(&self, leadership: Leadership) {
        let token = leadership.token().clone();
        let mut markers_swept: Option<tokio::time::Instant> = None;
        loop {
            if let Err(e) = self.sweep(&leadership).await {
                tracing::warn!(error = %e, "cannot check run requests; retrying");
            }
            if markers_swept.is_none_or(|at| at.elapsed() >= MARKER_SWEEP_EVERY) {
                match self.sweep_markers().await {
                    Ok(()) => markers_swept = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot delete old chain markers; retrying")
                    }
                }
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    async fn sweep(&self, leadership: &Leadership) -> Result<(), Error> {
        let listing = list_prefix(&self.client, &self.keys.run_dir(), Read::Values).await?;
        if listing.kvs.is_empty() {
            return Ok(());
        }
        // The jobs as of the requests' read or later: a request for a job
        // created just before it is not taken for one of a deleted job.
        let jobs: HashMap<JobName, Arc<Job>> = self
            .cache
            .jobs_at(listing.revision, &self.jobs)
            .await?
            .into_iter()
            .map(|j| (j.name.clone(), j))
            .collect();
        let workers = self.workers.list().await?;
        let busy = self.busy_jobs().await?;
        let now = chrono::Utc::now().timestamp_millis();
        for kv in &listing.kvs {
            if !leadership.is_valid() {
                return Ok(());
            }
            let Some((name, _)) = self.keys.parse_run_request(kv.key()) else {
                continue;
            };
            let Some(request) = RunRequest::from_stored(kv.value()) else {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "unreadable run request deleted");
                self.delete_if_unchanged(leadership, kv.key(), kv.mod_revision(), None)
                    .await?;
                continue;
            };
            let job = jobs.get(&name);
            let expired = request.deadline <= now;
            let verdict = match (&request.claimed, job) {
                (Some(claim), _) => {
                    let claimer_alive = workers.iter().any(|w| w.id == claim.worker);
                    if expired && !claimer_alive {
                        tracing::warn!(job = %name, request = %request.id, worker = %claim.worker, run_id = %claim.run_id,
                            "run request claimed by a worker that is gone deleted at its deadline (its run, if it started, is in that worker's outbox)");
                        self.delete_if_unchanged(leadership, kv.key(), kv.mod_revision(), None)
                            .await?;
                    }
                    continue;
                }
                (None, None) => "not started: the job was deleted".to_string(),
                (None, Some(_)) if !expired => continue,
                (None, Some(job)) if placement::mode(job.target.as_ref()) == TargetMode::All => {
                    // Run by each worker that saw it: nothing to record.
                    self.delete_if_unchanged(leadership, kv.key(), kv.mod_revision(), None)
                        .await?;
                    continue;
                }
                (None, Some(job)) => why_not_started(job, &request, &workers, busy.contains(&name)),
            };
            let record = skipped_record(&request, job.map(|j| &**j), verdict, &self.master_id, now);
            self.delete_if_unchanged(leadership, kv.key(), kv.mod_revision(), Some(record))
                .await?;
        }
        Ok(())
    }

    /// Deletes request `key` if it is still at `revision` and this master
    /// still leads, storing `record` (its verdict) in the same transaction.
    async fn delete_if_unchanged(
        &self,
        leadership: &Leadership,
        key: &[u8],
        revision: i64,
        record: Option<LogRecord>,
    ) -> Result<(), Error> {
        let mut ops = vec![TxnOp::delete(key.to_vec(), None)];
        if let Some(record) = &record
            && let Ok(job) = JobName::new(record.job_name.as_str())
        {
            ops.push(TxnOp::put(
                self.keys.request_verdict(&job, &record.run_id),
                serde_json::to_string(&[record]).unwrap_or_default(),
                None,
            ));
        }
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.to_vec(), CompareOp::Equal, revision),
                leadership.still_leads(),
            ])
            .and_then(ops);
        if self.client.clone().txn(txn).await?.succeeded()
            && let Some(record) = record
        {
            tracing::warn!(job = %record.job_name, request = %record.run_id,
                reason = record.reason.as_deref().unwrap_or(""), "run request not started; recorded skipped");
        }
        Ok(())
    }

    /// Jobs whose one-per-tick lock is held now.
    async fn busy_jobs(&self) -> Result<std::collections::HashSet<JobName>, Error> {
        let resp = self
            .client
            .clone()
            .get(
                self.keys.lock_dir(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| self.keys.parse_lock(kv.key()))
            .collect())
    }

    /// Deletes chain markers of runs older than [`CHAIN_MARKER_KEPT`]: run
    /// ids are UUID v7, whose text sorts by creation time, so it is one
    /// range delete up to the id of that instant.
    async fn sweep_markers(&self) -> Result<(), Error> {
        let cutoff = chrono::Utc::now() - CHAIN_MARKER_KEPT;
        // The smallest id of that millisecond: every older id sorts below.
        let oldest_kept = uuid::Builder::from_unix_timestamp_millis(
            cutoff.timestamp_millis().max(0) as u64,
            &[0; 10],
        )
        .into_uuid();
        let dir = self.keys.chained_dir();
        let resp = self
            .client
            .clone()
            .delete(
                dir.clone(),
                Some(DeleteOptions::new().with_range(format!("{dir}{oldest_kept}"))),
            )
            .await?;
        if resp.deleted() > 0 {
            tracing::info!(deleted = resp.deleted(), "old chain markers deleted");
        }
        Ok(())
    }
}

/// Why an unclaimed request of `job` did not start before its deadline,
/// as far as the leader can tell now.
fn why_not_started(job: &Job, request: &RunRequest, workers: &[WorkerInfo], busy: bool) -> String {
    let waited = (request.deadline - request.requested_at).max(0) / 1000;
    let within = format!("not started within {waited} s");
    let matching: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| !w.draining && placement::matches(job.target.as_ref(), &w.labels))
        .collect();
    if matching.is_empty() {
        return match job.target.as_ref().filter(|t| !t.labels.is_empty()) {
            Some(t) => format!(
                "{within}: no live worker carries {}",
                placement::format_labels(&t.labels)
            ),
            None => format!("{within}: no live worker"),
        };
    }
    if busy && job.concurrency.exclusive() {
        return format!("{within}: the previous run still held the job's lock");
    }
    if matching.iter().all(|w| w.runs.len() as u32 >= w.capacity) {
        return format!("{within}: every matching worker was full");
    }
    format!("{within}: no worker claimed it")
}

/// The `skipped` record of a request that never ran.
fn skipped_record(
    request: &RunRequest,
    job: Option<&Job>,
    reason: String,
    master_id: &str,
    now: i64,
) -> LogRecord {
    let command = job.map(|j| j.command.as_str()).unwrap_or("");
    let mut record = verdict::record_of(
        request.job.as_str(),
        command,
        request.requested_at,
        RunStatus::Skipped,
        reason,
        master_id,
        now,
    );
    // The request's id: recording it twice (a lost answer) stores one.
    record.run_id = request.id.clone();
    let origin = RunOrigin::of(request);
    record.trigger = origin.trigger;
    record.triggered_by = origin.triggered_by;
    record.params = origin.params;
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunParams;

    fn job(doc: serde_json::Value) -> Job {
        Job::from_json(doc.to_string().as_bytes()).expect("valid")
    }

    fn worker(id: &str, capacity: u32, running: usize) -> WorkerInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "hostname": "h", "ip": "127.0.0.1", "pid": 1, "version": "x",
            "startTime": 0, "capacity": capacity, "running": [],
            "runs": (0..running).map(|i| serde_json::json!({"job": "j", "runId": format!("r{i}"),
                "planTime": 0, "startTime": 0})).collect::<Vec<_>>(),
        }))
        .expect("worker")
    }

    #[test]
    fn the_reason_says_what_held_the_request_back() {
        let j = job(serde_json::json!({"name": "a", "command": "true", "cronExpr": "@daily"}));
        let r = RunRequest::manual(j.name.clone(), RunParams::default(), 0, 600);
        assert_eq!(
            why_not_started(&j, &r, &[], false),
            "not started within 600 s: no live worker"
        );
        let w = [worker("w1", 1, 0)];
        assert!(
            why_not_started(&j, &r, &w, true)
                .ends_with("the previous run still held the job's lock")
        );
        let full = [worker("w1", 1, 1)];
        assert!(why_not_started(&j, &r, &full, false).ends_with("every matching worker was full"));
        let record = skipped_record(&r, Some(&j), "x".into(), "m1", 5);
        assert_eq!(record.status, RunStatus::Skipped);
        assert_eq!(record.run_id, r.id);
        assert_eq!(record.trigger, rcron_shared::Trigger::Manual);
    }
}
