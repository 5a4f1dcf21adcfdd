//! The audit trail: one record per change made through the API (any route,
//! legacy ones included) in MongoDB `cron.audit`: when, by which key, from
//! where, through which route, to which job, and the job before and after.
//!
//! A change is never refused or held back because MongoDB is down: handlers
//! hand records to [`Audit::record`] (an unbounded queue: changes come at
//! human rate), and one writer task stores them (in batches), retrying with
//! backoff until MongoDB takes them. Each record has its own `_id`, so one
//! written twice (an answer lost after the write) is stored once. Records
//! still queued when the master stops are tried for [`FLUSH_AT_STOP`] more;
//! what is left then is logged as lost (as is the queue of a master killed
//! while MongoDB is down).

use rcron_shared::backoff::Backoff;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::IndexModel;
use mongodb::bson::{self, Document, doc};
use mongodb::options::{IndexOptions, InsertManyOptions};
use rcron_shared::Job;
use rcron_shared::runlog::mongo::only_duplicates;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::Error;

/// Most records stored by one write.
const WRITE_BATCH: usize = 500;
/// Longest wait between two tries while MongoDB is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long queued records are still tried once the master stops.
pub const FLUSH_AT_STOP: Duration = Duration::from_secs(5);
/// Most records a page may hold.
pub const MAX_PAGE: u64 = 1000;
/// The audit trail's collection, beside the run log.
pub const COLLECTION: &str = "audit";

/// One change, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique id (UUIDv7: time-ordered).
    #[serde(rename = "_id")]
    pub id: String,
    /// When the change was made (ms since the epoch).
    pub time: i64,
    /// The key that made it: a key's name, `admin-token`, or `anonymous`
    /// on an open API.
    pub key: String,
    /// The client's address as the master saw it.
    pub remote: String,
    /// The `X-Forwarded-For` header, as sent (set by a proxy in front).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// Method and path, e.g. `POST /job/save`.
    pub route: String,
    /// `create`, `replace`, `update`, `delete`, `pause`, `resume`, `run`, `kill`, `killRun`.
    pub action: String,
    /// The job changed or acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The run killed, for `killRun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The job before the change (as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The job after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// Who made a change and through what, taken from the request.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The caller's key name.
    pub key: String,
    /// Remote address.
    pub remote: String,
    /// `X-Forwarded-For`, if any.
    pub forwarded_for: Option<String>,
    /// `METHOD /path`.
    pub route: String,
}

impl Origin {
    /// What the request says about who sent it.
    pub fn of(req: &poem::Request) -> Self {
        Self {
            key: req
                .extensions()
                .get::<crate::api::Caller>()
                .map(|c| c.0.clone())
                .unwrap_or_else(|| "anonymous".to_string()),
            remote: req
                .remote_addr()
                .as_socket_addr()
                .map_or_else(|| req.remote_addr().to_string(), ToString::to_string),
            forwarded_for: req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            route: format!("{} {}", req.method(), req.uri().path()),
        }
    }
}

fn job_value(job: Option<&Job>) -> Option<serde_json::Value> {
    job.and_then(|j| serde_json::from_str(&j.to_json()).ok())
}

/// Hands change records to the writer.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::UnboundedSender<AuditRecord>,
}

impl Audit {
    /// Queues one record of `action` on `job` (with the job before and after).
    pub fn record(
        &self,
        origin: &Origin,
        action: &str,
        job: Option<&str>,
        before: Option<&Job>,
        after: Option<&Job>,
    ) {
        self.push(origin, action, job, None, before, after);
    }

    /// Queues the record of a kill of one run.
    pub fn record_run_kill(&self, origin: &Origin, job: &str, run_id: &str) {
        self.push(origin, "killRun", Some(job), Some(run_id), None, None);
    }

    fn push(
        &self,
        origin: &Origin,
        action: &str,
        job: Option<&str>,
        run_id: Option<&str>,
        before: Option<&Job>,
        after: Option<&Job>,
    ) {
        let record = AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            time: chrono::Utc::now().timestamp_millis(),
            key: origin.key.clone(),
            remote: origin.remote.clone(),
            forwarded_for: origin.forwarded_for.clone(),
            route: origin.route.clone(),
            action: action.to_string(),
            job: job.map(str::to_string),
            run_id: run_id.map(str::to_string),
            before: job_value(before),
            after: job_value(after),
        };
        tracing::info!(key = %record.key, action, job = ?record.job, route = %record.route, "change");
        if self.tx.send(record).is_err() {
            tracing::error!("audit writer stopped; a change record is lost");
        }
    }
}

/// A connected pair: the handle handlers use and the writer's queue.
pub fn channel() -> (Audit, mpsc::UnboundedReceiver<AuditRecord>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Audit { tx }, rx)
}

/// Stores queued records until every [`Audit`] handle is gone and the
/// queue is empty (the master bounds that wait by [`FLUSH_AT_STOP`]).
/// Records waiting together are stored by one `insert_many` of up to
/// [`WRITE_BATCH`]: a burst of saves (`rcronctl apply` of thousands of
/// jobs) is written as fast as it comes instead of queueing up in memory.
pub async fn write(coll: Collection<Document>, mut rx: mpsc::UnboundedReceiver<AuditRecord>) {
    ensure_indexes(&coll).await;
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let docs: Vec<Document> = batch
            .iter()
            .filter_map(|record| match bson::to_document(record) {
                Ok(doc) => Some(doc),
                Err(e) => {
                    tracing::error!(id = %record.id, error = %e, "cannot encode an audit record");
                    None
                }
            })
            .collect();
        drop(batch);
        if docs.is_empty() {
            continue;
        }
        loop {
            match store(&coll, &docs).await {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = rx.len() + docs.len(), retry_in_ms = backoff.current().as_millis() as u64,
                        "cannot store audit records; will retry");
                    backoff.wait().await;
                }
            }
        }
    }
}

/// Stores `docs`; records stored already (an answer lost after a write)
/// are not an error. Unordered, so one duplicate does not stop the rest;
/// readers sort by `time`.
async fn store(coll: &Collection<Document>, docs: &[Document]) -> mongodb::error::Result<()> {
    let options = InsertManyOptions::builder().ordered(false).build();
    match coll.insert_many(docs).with_options(options).await {
        Ok(_) => Ok(()),
        Err(e) if only_duplicates(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn ensure_indexes(coll: &Collection<Document>) {
    for keys in [
        doc! {"time": -1},
        doc! {"job": 1, "time": -1},
        doc! {"key": 1, "time": -1},
    ] {
        let index = IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().build())
            .build();
        if let Err(e) = coll.create_index(index).await {
            tracing::debug!(error = %e, "audit index not created yet (MongoDB down?)");
        }
    }
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only changes of this job.
    pub job: Option<String>,
    /// Only changes by this key.
    pub key: Option<String>,
    /// Only changes older than the one with this id: the cursor of the next page.
    pub before: Option<String>,
    /// At most this many.
    pub limit: u64,
}

/// Changes, newest first.
pub async fn query(coll: &Collection<Document>, q: &AuditQuery) -> Result<Vec<AuditRecord>, Error> {
    let mut filter = Document::new();
    if let Some(job) = &q.job {
        filter.insert("job", job);
    }
    if let Some(key) = &q.key {
        filter.insert("key", key);
    }
    if let Some(before) = &q.before {
        filter.insert("_id", doc! {"$lt": before});
    }
    let docs: Vec<Document> = coll
        .find(filter)
        // `_id` is a UUIDv7: within one millisecond it orders like time.
        .sort(doc! {"time": -1, "_id": -1})
        .limit(q.limit.clamp(1, MAX_PAGE) as i64)
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| match bson::from_document(d) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable audit record");
                None
            }
        })
        .collect())
}
