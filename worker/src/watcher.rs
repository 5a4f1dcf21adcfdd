//! Watches etcd for jobs and kill requests and feeds the scheduler.
//!
//! Jobs: list every job with the store revision, hand the scheduler the
//! full set ([`SchedulerEvent::Snapshot`]), then watch from the next
//! revision. On any watch error or compaction the loop lists again: the
//! scheduler reconciles a snapshot against its plan, so no update is
//! missed and an unchanged job keeps its schedule (nothing is doubled).
//!
//! Kills: watches on `/cron/killer/` and `/cron/killrun/` from "now"; each
//! put kills the named job's runs (or the run with that id) on this worker.
//!
//! Run requests (`/cron/run/<job>/<id>`): listed and watched like jobs,
//! because they wait (durably) until a worker claims them.

use rcron_shared::backoff::Backoff;
use rcron_shared::watch::list_then_watch;

use etcd_client::{Client, EventType, KeyValue, WatchOptions};
use rcron_shared::placement::{self, Labels};
use rcron_shared::{Job, JobName, Keys, RunRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the watchers tell the scheduler.
#[derive(Debug)]
pub enum SchedulerEvent {
    /// Every job that exists, replacing the scheduler's view.
    Snapshot(Vec<Job>),
    /// A job was created or changed (boxed: a job is much larger than the
    /// other events).
    Upsert(Box<Job>),
    /// A job was deleted (or its stored value became unreadable).
    Remove(JobName),
    /// Kill the job's running runs.
    Kill(JobName),
    /// Kill one run, by id (`/cron/killrun/<runId>`).
    KillRun(String),
    /// Kill one run because a newer tick of its `concurrency: replace` job
    /// takes its place (`/cron/killrun/<runId>` = `replaced`).
    ReplaceRun(String),
    /// Every run request that exists, replacing the scheduler's view
    /// (after a start or a broken watch), with each key's mod revision.
    Requests(Vec<(RunRequest, i64)>),
    /// A run request was made or changed (claimed, handed back).
    Request(RunRequest, i64),
    /// A run request is gone (run, or expired).
    RequestGone(JobName, String),
}

/// Keeps the scheduler's job set in step with etcd until `token` is cancelled.
/// Jobs whose `target` does not match `labels` are not this worker's:
/// they reach the scheduler as removed.
pub async fn watch_jobs(
    client: Client,
    keys: Keys,
    labels: Labels,
    tx: mpsc::Sender<SchedulerEvent>,
    token: CancellationToken,
) {
    retry("job watch", &token, || {
        sync_and_watch(&client, &keys, &labels, &tx, &token)
    })
    .await;
}

/// Runs `attempt` until it returns `Ok` or `token` is cancelled, waiting
/// with a growing backoff after each error.
pub(crate) async fn retry<F, Fut>(what: &str, token: &CancellationToken, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), etcd_client::Error>>,
{
    let mut backoff = Backoff::etcd();
    while !token.is_cancelled() {
        match attempt().await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(what, error = %e, retry_in_ms = backoff.current().as_millis() as u64, "etcd watch interrupted; starting again");
                if !backoff.wait_or_cancel(token).await {
                    return;
                }
            }
        }
    }
}

async fn sync_and_watch(
    client: &Client,
    keys: &Keys,
    labels: &Labels,
    tx: &mpsc::Sender<SchedulerEvent>,
    token: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let (listed, mut watch) = list_then_watch(client, &keys.jobs_dir()).await?;
    let revision = listed.revision;
    let jobs: Vec<Job> = listed
        .kvs
        .iter()
        .filter_map(|kv| decode(keys, kv.key(), kv.value()))
        .filter(|job| placement::matches(job.target.as_ref(), labels))
        .collect();
    tracing::info!(jobs = jobs.len(), revision, "job list loaded");
    if tx.send(SchedulerEvent::Snapshot(jobs)).await.is_err() {
        return Ok(());
    }
    while let Some(resp) = watch.next(token).await? {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(name) = keys.parse_job(kv.key()) else {
                continue;
            };
            let ev = match event.event_type() {
                EventType::Put => match decode(keys, kv.key(), kv.value()) {
                    Some(job) if placement::matches(job.target.as_ref(), labels) => {
                        SchedulerEvent::Upsert(Box::new(job))
                    }
                    Some(_) | None => SchedulerEvent::Remove(name),
                },
                EventType::Delete => SchedulerEvent::Remove(name),
            };
            if tx.send(ev).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn decode(keys: &Keys, key: &[u8], value: &[u8]) -> Option<Job> {
    let name = keys.parse_job(key)?;
    match Job::from_stored(value) {
        Ok(job) if job.name == name => Some(job),
        Ok(job) => {
            tracing::warn!(key = %name, inner = %job.name, "job stored under another name's key; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(job = %name, error = %e, "stored job is not valid; not scheduled");
            None
        }
    }
}

/// Forwards kill requests until `token` is cancelled. Kills sent while the
/// watch is down are lost with it, as they would be for a worker that is
/// down; the killer key lives only ≈2 s anyway.
pub async fn watch_kills(
    client: Client,
    keys: Keys,
    tx: mpsc::Sender<SchedulerEvent>,
    token: CancellationToken,
) {
    let dir = keys.killer_dir();
    let event = |kv: &KeyValue| keys.parse_killer(kv.key()).map(SchedulerEvent::Kill);
    retry("kill watch", &token, || {
        watch_requests(&client, &dir, &event, &tx, &token)
    })
    .await;
}

/// The value of a `/cron/killrun/<runId>` put by a worker replacing the run.
pub const REPLACED: &str = "replaced";

/// Forwards kills of single runs (`/cron/killrun/<runId>`) until `token`
/// is cancelled; like job kills, they live ≈2 s.
pub async fn watch_run_kills(
    client: Client,
    keys: Keys,
    tx: mpsc::Sender<SchedulerEvent>,
    token: CancellationToken,
) {
    let dir = keys.killrun_dir();
    let event = |kv: &KeyValue| {
        let run_id = keys.parse_killrun(kv.key())?;
        Some(if kv.value() == REPLACED.as_bytes() {
            SchedulerEvent::ReplaceRun(run_id)
        } else {
            SchedulerEvent::KillRun(run_id)
        })
    };
    retry("run kill watch", &token, || {
        watch_requests(&client, &dir, &event, &tx, &token)
    })
    .await;
}

/// Keeps the scheduler's set of run requests (`/cron/run/<job>/<id>`) in
/// step with etcd until `token` is cancelled: listed, then watched from
/// that revision, listed again after any watch error. Requests are durable,
/// so one made while this worker or its watch was down is still seen.
pub async fn watch_run_requests(
    client: Client,
    keys: Keys,
    tx: mpsc::Sender<SchedulerEvent>,
    token: CancellationToken,
) {
    retry("run request watch", &token, || {
        sync_and_watch_requests(&client, &keys, &tx, &token)
    })
    .await;
}

async fn sync_and_watch_requests(
    client: &Client,
    keys: &Keys,
    tx: &mpsc::Sender<SchedulerEvent>,
    token: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let (listed, mut watch) = list_then_watch(client, &keys.run_dir()).await?;
    let requests: Vec<(RunRequest, i64)> = listed
        .kvs
        .iter()
        .filter_map(|kv| Some((decode_request(keys, kv)?, kv.mod_revision())))
        .collect();
    if tx.send(SchedulerEvent::Requests(requests)).await.is_err() {
        return Ok(());
    }
    while let Some(resp) = watch.next(token).await? {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let Some((job, id)) = keys.parse_run_request(kv.key()) else {
                continue;
            };
            let ev = match event.event_type() {
                EventType::Put => match decode_request(keys, kv) {
                    Some(request) => SchedulerEvent::Request(request, kv.mod_revision()),
                    None => SchedulerEvent::RequestGone(job, id),
                },
                EventType::Delete => SchedulerEvent::RequestGone(job, id),
            };
            if tx.send(ev).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A stored request whose value agrees with its key; others are ignored
/// (the leader master expires them).
fn decode_request(keys: &Keys, kv: &KeyValue) -> Option<RunRequest> {
    let (job, id) = keys.parse_run_request(kv.key())?;
    let request = RunRequest::from_stored(kv.value())?;
    (request.job == job && request.id == id).then_some(request)
}

/// Turns every put under `dir` into a scheduler event, from now on.
async fn watch_requests(
    client: &Client,
    dir: &str,
    event: &impl Fn(&KeyValue) -> Option<SchedulerEvent>,
    tx: &mpsc::Sender<SchedulerEvent>,
    token: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let mut stream = client
        .clone()
        .watch(dir, Some(WatchOptions::new().with_prefix()))
        .await?;
    loop {
        let msg = tokio::select! {
            () = token.cancelled() => return Ok(()),
            msg = stream.message() => msg?,
        };
        let Some(resp) = msg else {
            return Err(etcd_client::Error::WatchError("watch stream ended".into()));
        };
        for ev in resp.events() {
            if ev.event_type() != EventType::Put {
                continue;
            }
            if let Some(ev) = ev.kv().and_then(event)
                && tx.send(ev).await.is_err()
            {
                return Ok(());
            }
        }
    }
}
