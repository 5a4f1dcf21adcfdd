//! Jobs no live worker can run (ARCHITECTURE §4, "Placement").
//!
//! The API computes, per job, how many live workers carry every label of
//! its `target` ([`matching_workers`]). The leader checks every few seconds
//! and reports a job that stays unschedulable for [`GRACE`] (a rolling
//! restart of the only matching worker is not news) as a warning of kind
//! `unschedulable`, delivered like any other (storm control included),
//! and again, kind `schedulable`, once a matching worker lives. What was
//! reported is kept in etcd (`/cron/unschedulable/<name>`), written in the
//! same transaction as the warning, so a new leader neither repeats an
//! alert nor forgets to send the recovery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use rcron_shared::placement::{self, format_labels};
use rcron_shared::{Job, JobName, Keys, RunStatus, Warning, WarningKind, WorkerInfo};

use crate::Error;
use crate::election::Leadership;
use crate::job_cache::JobCache;
use crate::registry::WorkerRegistry;
use crate::store::JobStore;

/// How long a job must stay unschedulable before it is reported.
pub const GRACE: Duration = Duration::from_secs(10);
/// How often the leader checks.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Live workers that may run `job`: not draining, carrying every label of
/// its target.
pub fn matching_workers(job: &Job, workers: &[WorkerInfo]) -> usize {
    workers
        .iter()
        .filter(|w| {
            !w.draining && !w.clock_skewed && placement::matches(job.target.as_ref(), &w.labels)
        })
        .count()
}

/// Whether `job` would fire but no live worker may run it.
pub fn is_unschedulable(job: &Job, workers: &[WorkerInfo]) -> bool {
    !job.disabled && matching_workers(job, workers) == 0
}

/// Why nothing runs the job, for the alert.
fn why(job: &Job) -> String {
    match job.target.as_ref().filter(|t| !t.labels.is_empty()) {
        Some(t) => format!(
            "no live worker carries {} (target.labels); its ticks run nowhere",
            format_labels(&t.labels)
        ),
        None => "no live worker; its ticks run nowhere".to_string(),
    }
}

/// The leader's check of placement.
pub struct PlacementWatch {
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
}

impl PlacementWatch {
    /// Checks until leadership ends.
    pub async fn run(self: Arc<Self>, leadership: Leadership) {
        // When each job was first seen unschedulable by this leader.
        let mut since: HashMap<JobName, i64> = HashMap::new();
        let token = leadership.token().clone();
        loop {
            if let Err(e) = self.check(&leadership, &mut since).await {
                tracing::warn!(error = %e, "cannot check job placement; retrying");
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    async fn check(
        &self,
        leadership: &Leadership,
        since: &mut HashMap<JobName, i64>,
    ) -> Result<(), Error> {
        // Whatever revision the cache is in step with: an unschedulable
        // job is reported after a grace of seconds anyway.
        let jobs = self.cache.jobs_at(0, &self.jobs).await?;
        let workers = self.workers.list().await?;
        let reported = self.reported().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let stuck: HashMap<&JobName, &Job> = jobs
            .iter()
            .filter(|j| is_unschedulable(j, &workers))
            .map(|j| (&j.name, &**j))
            .collect();
        since.retain(|name, _| stuck.contains_key(name));
        for (name, job) in &stuck {
            let first = *since.entry((*name).clone()).or_insert(now);
            let due = now - first >= GRACE.as_millis() as i64;
            if due && !reported.contains(*name) && leadership.is_valid() {
                self.report(leadership, job, WarningKind::Unschedulable, why(job), first)
                    .await?;
                tracing::warn!(job = %name, "job unschedulable: no live worker matches its target");
            }
        }
        self.check_clocks(leadership, &workers).await?;
        let by_name: HashMap<&JobName, &Job> = jobs.iter().map(|j| (&j.name, &**j)).collect();
        for name in reported.iter().filter(|n| !stuck.contains_key(n)) {
            if !leadership.is_valid() {
                break;
            }
            match by_name.get(name) {
                // Deleted or paused: nothing to recover, just forget it.
                None => self.forget(leadership, name).await?,
                Some(job) if job.disabled => self.forget(leadership, name).await?,
                Some(job) => {
                    let n = matching_workers(job, &workers);
                    let text = format!("{n} live worker(s) match its target again");
                    self.report(leadership, job, WarningKind::Schedulable, text, now)
                        .await?;
                    tracing::info!(job = %name, workers = n, "job schedulable again");
                }
            }
        }
        Ok(())
    }

    /// One alert when a worker's clock goes off beyond its bound (it stops
    /// firing), one when it is back; kept in `/cron/skewed/<worker>`.
    async fn check_clocks(
        &self,
        leadership: &Leadership,
        workers: &[WorkerInfo],
    ) -> Result<(), Error> {
        let resp = self
            .client
            .clone()
            .get(
                self.keys.skewed_dir(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        let dir = self.keys.skewed_dir();
        let reported: HashSet<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                std::str::from_utf8(kv.key())
                    .ok()?
                    .strip_prefix(dir.as_str())
                    .map(str::to_string)
            })
            .collect();
        for w in workers {
            if !leadership.is_valid() {
                return Ok(());
            }
            let marked = reported.contains(&w.id);
            if w.clock_skewed == marked {
                continue;
            }
            let offset = w.clock_offset_ms.unwrap_or_default();
            let (kind, text) = if w.clock_skewed {
                (
                    WarningKind::ClockSkew,
                    format!(
                        "worker {} clock is {:+.1} s off the leader's; it fires nothing until its clock is corrected (NTP)",
                        w.id,
                        offset as f64 / 1000.0
                    ),
                )
            } else {
                (
                    WarningKind::ClockOk,
                    format!(
                        "worker {} clock is back within bounds ({offset:+} ms); it fires again",
                        w.id
                    ),
                )
            };
            let marker = self.keys.skewed(&w.id);
            let mark = if w.clock_skewed {
                TxnOp::put(marker, offset.to_string(), None)
            } else {
                TxnOp::delete(marker, None)
            };
            // Warnings are filed under a job name: the worker's id when it
            // is one, else `worker`.
            let subject = JobName::new(w.id.clone())
                .or_else(|_| JobName::new("worker"))
                .map_err(Error::from)?;
            let event_id = uuid::Uuid::now_v7().to_string();
            let now = chrono::Utc::now().timestamp_millis();
            let warning = Warning {
                job_name: subject.clone(),
                run_id: event_id.clone(),
                status: if w.clock_skewed {
                    RunStatus::Failed
                } else {
                    RunStatus::Success
                },
                command: String::new(),
                exit_code: None,
                err: text,
                output_tail: String::new(),
                plan_time: now,
                start_time: now,
                end_time: now,
                worker: w.id.clone(),
                attempt: 0,
                kind,
            };
            let put = TxnOp::put(
                self.keys.warn(&subject, &event_id),
                serde_json::to_string(&warning).unwrap_or_default(),
                None,
            );
            self.as_leader(leadership, vec![mark, put]).await?;
            tracing::warn!(worker = %w.id, offset_ms = offset, skewed = w.clock_skewed, "worker clock state reported");
        }
        Ok(())
    }

    /// Jobs reported unschedulable and not yet recovered.
    async fn reported(&self) -> Result<HashSet<JobName>, Error> {
        let dir = self.keys.unschedulable_dir();
        let resp = self
            .client
            .clone()
            .get(dir, Some(GetOptions::new().with_prefix().with_keys_only()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| self.keys.parse_unschedulable(kv.key()))
            .collect())
    }

    /// Puts the warning and sets (or clears) the marker in one
    /// transaction, only while this master leads.
    async fn report(
        &self,
        leadership: &Leadership,
        job: &Job,
        kind: WarningKind,
        text: String,
        since_ms: i64,
    ) -> Result<(), Error> {
        let event_id = uuid::Uuid::now_v7().to_string();
        let warning = Warning {
            job_name: job.name.clone(),
            run_id: event_id.clone(),
            status: if kind == WarningKind::Schedulable {
                RunStatus::Success
            } else {
                RunStatus::Failed
            },
            command: job.command.clone(),
            exit_code: None,
            err: text,
            output_tail: String::new(),
            plan_time: since_ms,
            start_time: since_ms,
            end_time: since_ms,
            worker: String::new(),
            attempt: 0,
            kind,
        };
        let marker = self.keys.unschedulable(&job.name);
        let mark = if kind == WarningKind::Unschedulable {
            TxnOp::put(marker, since_ms.to_string(), None)
        } else {
            TxnOp::delete(marker, None)
        };
        let put = TxnOp::put(
            self.keys.warn(&job.name, &event_id),
            serde_json::to_string(&warning).unwrap_or_default(),
            None,
        );
        self.as_leader(leadership, vec![mark, put]).await
    }

    async fn forget(&self, leadership: &Leadership, name: &JobName) -> Result<(), Error> {
        let marker = self.keys.unschedulable(name);
        self.as_leader(leadership, vec![TxnOp::delete(marker, None)])
            .await
    }

    async fn as_leader(&self, leadership: &Leadership, ops: Vec<TxnOp>) -> Result<(), Error> {
        let txn = Txn::new().when([leadership.still_leads()]).and_then(ops);
        self.client.clone().txn(txn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(labels: &str, draining: bool) -> WorkerInfo {
        serde_json::from_value(serde_json::json!({
            "id": "w", "hostname": "h", "ip": "127.0.0.1", "pid": 1, "version": "x",
            "startTime": 0, "capacity": 4, "running": [], "draining": draining,
            "labels": placement::parse_labels(labels).expect("labels"),
        }))
        .expect("worker")
    }

    #[test]
    fn a_job_is_unschedulable_when_no_live_worker_carries_its_labels() {
        let job = Job::from_json(
            br#"{"name":"b","command":"true","cronExpr":"@daily","target":{"labels":{"role":"db"}}}"#,
        )
        .expect("job");
        assert!(is_unschedulable(&job, &[worker("role=web", false)]));
        assert!(is_unschedulable(&job, &[worker("role=db", true)]));
        assert!(!is_unschedulable(&job, &[worker("role=db,zone=x", false)]));
        assert_eq!(
            matching_workers(&job, &[worker("role=db", false), worker("role=db", false)]),
            2
        );
        let mut paused = job.clone();
        paused.disabled = true;
        assert!(!is_unschedulable(&paused, &[]));
        assert!(why(&job).contains("role=db"));
    }
}
