//! The leader settles ticks nobody took (ARCHITECTURE §4, "Verdicts").
//!
//! Every [`CHECK_EVERY`] the leader reads every job and every fired marker.
//! A tick of an enabled `target.mode: one` job whose deadline has passed
//! (its planned time plus [`SETTLE_AFTER`], plus `startingDeadlineSecs` for
//! `misfire: runOnce` jobs) while the marker is still older was neither run
//! nor given up by any worker: the leader moves the marker to the latest
//! such tick with the same compare-and-swap the workers use (on the value
//! it read, and only while it still leads) and, in the same transaction,
//! stores a `missed` record for each tick it skipped over under
//! `/cron/verdicts/` and, if the job alerts on misses, one warning. A
//! second task moves stored verdicts into the run log and deletes them, so
//! neither a MongoDB outage nor a leader change loses one, and a tick is
//! run or marked missed, never both, never neither.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use rcron_shared::verdict::{self, SETTLED, decode_plan, encode_fired};
use rcron_shared::{
    Job, JobName, Keys, LogRecord, Misfire, RunStatus, ScheduleCache, TargetMode, Warning,
    WarningKind, WorkerInfo, placement,
};

use crate::Error;
use crate::election::Leadership;
use crate::job_cache::JobCache;
use crate::registry::WorkerRegistry;
use crate::store::JobStore;
use rcron_shared::listing::{Read, list_prefix};
use rcron_shared::runlog::RunLogStore;

/// How long after its planned time a tick nobody took is settled, at
/// least: longer than a worker's default `misfire_grace_secs` (5 s) plus
/// the ranking's waits, so that a worker that will still start it (late)
/// gets to. Workers with a longer grace push it out by as much.
pub const SETTLE_AFTER: Duration = Duration::from_secs(10);
/// Added to the longest `misfire_grace_secs` among live workers.
const SETTLE_MARGIN_SECS: u64 = 5;
/// How often the leader checks.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A job that never fired is owed verdicts from this long before the
/// leader took over, at most (its creation time is not known).
const FIRST_LOOK_BACK: Duration = Duration::from_secs(60);

/// The leader's settlement of untaken ticks and the verdict writer.
pub struct Settler {
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
    /// The run log, where verdicts go.
    pub logs: Arc<dyn RunLogStore>,
    /// Zone of jobs that name none.
    pub timezone: Tz,
    /// This master's id (the `worker` of the records it writes).
    pub master_id: String,
}

impl Settler {
    /// Settles and writes verdicts until leadership ends.
    pub async fn run(self: Arc<Self>, leadership: Leadership) {
        let token = leadership.token().clone();
        let took_over = chrono::Utc::now().timestamp_millis();
        let mut schedules = ScheduleCache::default();
        loop {
            if let Err(e) = self.settle(&leadership, took_over, &mut schedules).await {
                tracing::warn!(error = %e, "cannot settle untaken ticks; retrying");
            }
            if let Err(e) = self.write_verdicts().await {
                tracing::warn!(error = %e, "cannot move settled verdicts to the run log; retrying");
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    async fn settle(
        &self,
        leadership: &Leadership,
        took_over: i64,
        schedules: &mut ScheduleCache,
    ) -> Result<(), Error> {
        let (fired, revision) = self.fired().await?;
        // The jobs as of the markers' read or later: what a fresh read of
        // etcd would give, without reading every job again.
        let jobs = self.cache.jobs_at(revision, &self.jobs).await?;
        let workers = self.workers.list().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let grace = workers
            .iter()
            .map(|w| w.misfire_grace_secs + SETTLE_MARGIN_SECS)
            .max()
            .unwrap_or(0)
            .max(SETTLE_AFTER.as_secs());
        for job in jobs.iter().filter(|j| !j.disabled) {
            if placement::mode(job.target.as_ref()) == TargetMode::All || !leadership.is_valid() {
                continue;
            }
            let Ok(schedule) = schedules.parse(&job.cron_expr, job.zone(self.timezone)) else {
                continue;
            };
            let marker = fired.get(&job.name).cloned();
            let settle_after = grace as i64 * 1000
                + if job.misfire == Misfire::RunOnce {
                    job.starting_deadline_secs as i64 * 1000
                } else {
                    0
                };
            let before = now - settle_after + 1;
            let previous = marker.as_ref().and_then(|(_, plan)| *plan);
            let from = previous
                .unwrap_or(took_over - FIRST_LOOK_BACK.as_millis() as i64)
                .max(job.updated_at.unwrap_or(i64::MIN));
            // At most a thousand a round: a longer backlog (a day-long
            // outage of a job due every second) is settled over the next
            // rounds, from where this one leaves the marker.
            let (ticks, _) = verdict::ticks_between(&schedule, from, before);
            let Some(&last) = ticks.last() else {
                continue;
            };
            let reason = why_not_run(job, &workers);
            let records: Vec<LogRecord> = ticks
                .iter()
                .map(|t| {
                    verdict::record(
                        job,
                        *t,
                        RunStatus::Missed,
                        reason.clone(),
                        &self.master_id,
                        now,
                    )
                })
                .collect();
            self.store(leadership, job, marker, last, records).await?;
        }
        Ok(())
    }

    /// Moves the job's marker from what was read (`marker`: None = no key,
    /// else its raw value) to `last`, storing `records` and a warning, in
    /// one transaction; nothing if a worker moved it meanwhile.
    async fn store(
        &self,
        leadership: &Leadership,
        job: &Job,
        marker: Option<(Vec<u8>, Option<i64>)>,
        last: i64,
        records: Vec<LogRecord>,
    ) -> Result<(), Error> {
        let key = self.keys.fired(&job.name);
        let unchanged = match marker {
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Some((raw, _)) => Compare::value(key.clone(), CompareOp::Equal, raw),
        };
        let mut ops = vec![
            TxnOp::put(key, encode_fired(last, SETTLED), None),
            TxnOp::put(
                self.keys.verdicts(&job.name, last),
                serde_json::to_string(&records).unwrap_or_default(),
                None,
            ),
        ];
        if job.alert_on_missed
            && let Some(latest) = records.last()
        {
            let warning = Warning {
                job_name: job.name.clone(),
                run_id: latest.run_id.clone(),
                status: RunStatus::Missed,
                command: job.command.clone(),
                exit_code: None,
                err: if records.len() > 1 {
                    format!("{} ticks missed; the last: {}", records.len(), latest.err)
                } else {
                    latest.err.clone()
                },
                output_tail: String::new(),
                plan_time: latest.plan_time,
                start_time: latest.start_time,
                end_time: latest.end_time,
                worker: self.master_id.clone(),
                attempt: 1,
                kind: WarningKind::Run,
            };
            ops.push(TxnOp::put(
                self.keys.warn(&job.name, &latest.run_id),
                serde_json::to_string(&warning).unwrap_or_default(),
                None,
            ));
        }
        let txn = Txn::new()
            .when([unchanged, leadership.still_leads()])
            .and_then(ops);
        if self.client.clone().txn(txn).await?.succeeded() {
            tracing::warn!(job = %job.name, ticks = records.len(), last, "ticks nobody took settled as missed");
        }
        Ok(())
    }

    /// Every one-per-tick job's fired marker: its raw value and plan time
    /// (None for `-`).
    /// Also the revision they were read at.
    async fn fired(&self) -> Result<(HashMap<JobName, (Vec<u8>, Option<i64>)>, i64), Error> {
        let listing = list_prefix(&self.client, &self.keys.fired_dir(), Read::Values).await?;
        let markers = listing
            .kvs
            .iter()
            .filter_map(|kv| {
                let job = self.keys.parse_fired(kv.key())?;
                Some((job, (kv.value().to_vec(), decode_plan(kv.value()))))
            })
            .collect();
        Ok((markers, listing.revision))
    }

    /// Writes stored verdicts to the run log, then deletes them (only if
    /// unchanged). Records keep their ids, so writing twice is harmless.
    async fn write_verdicts(&self) -> Result<(), Error> {
        let resp = self
            .client
            .clone()
            .get(
                self.keys.verdicts_dir(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        for kv in resp.kvs() {
            let records: Vec<LogRecord> = match serde_json::from_slice(kv.value()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(kv.key()), error = %e, "unreadable stored verdicts; dropped");
                    Vec::new()
                }
            };
            self.logs.write(&records).await?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key().to_vec(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(kv.key().to_vec(), None)]);
            self.client.clone().txn(txn).await?;
        }
        Ok(())
    }
}

/// How long the leader's verdict records are kept: the workers' default
/// `log_retention_days` (the master does not know the workers' setting).
pub const VERDICT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Why nobody ran a tick of `job`, as far as the leader can tell now.
fn why_not_run(job: &Job, workers: &[WorkerInfo]) -> String {
    if crate::placement::matching_workers(job, workers) > 0 {
        return "not started: no worker took the tick before its deadline".to_string();
    }
    match job.target.as_ref().filter(|t| !t.labels.is_empty()) {
        Some(t) => format!(
            "unschedulable: no live worker carries {}",
            placement::format_labels(&t.labels)
        ),
        None => "no live worker".to_string(),
    }
}
