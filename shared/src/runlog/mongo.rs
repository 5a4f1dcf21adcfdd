//! The run log in MongoDB: the only code that knows its collection
//! (`<db>.log`), its document `_id` and `expireAt`, its indexes, and how
//! documents written by the original Go workers read back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions, InsertManyOptions};
use mongodb::{Collection, Database, IndexModel};
use serde::Deserialize;

use super::{
    COUNT_CAP, LogPage, LogQuery, MAX_PAGE, RunLogError, RunLogReader, RunLogWriter, RunTime, Span,
    Tally, check_boundaries,
};
use crate::config::MongoConfig;
use crate::{LogRecord, RunStatus};

/// The collection of run records, as the original named it.
pub const COLLECTION: &str = "log";
/// How long a request waits for a reachable server before failing (a
/// query answers 503, a write is retried later).
pub const SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// Duplicate key: the record is already stored.
const DUPLICATE_KEY: i32 = 11000;

/// A client for `mongo`'s server, named `app` in its logs. Connects
/// lazily: nothing fails here while the server is down.
pub async fn database(mongo: &MongoConfig, app: &str) -> Result<Database, RunLogError> {
    let mut options = ClientOptions::parse(&mongo.uri)
        .await
        .map_err(|e| RunLogError::Refused(format!("MongoDB: bad uri: {e}")))?;
    options.server_selection_timeout = Some(SELECTION_TIMEOUT);
    options.connect_timeout = Some(SELECTION_TIMEOUT);
    options.app_name = Some(app.to_string());
    let client = mongodb::Client::with_options(options).map_err(classify)?;
    Ok(client.database(&mongo.db))
}

/// The run log in `<db>.log`.
#[derive(Debug)]
pub struct MongoRunLog {
    coll: Collection<Document>,
    /// How long a record is kept after it ended (TTL on `expireAt`).
    retention: Duration,
    indexes_ready: AtomicBool,
}

impl MongoRunLog {
    /// The log in `db`; records written here expire `retention` after
    /// their end.
    pub fn new(db: &Database, retention: Duration) -> Self {
        Self {
            coll: db.collection(COLLECTION),
            retention,
            indexes_ready: AtomicBool::new(false),
        }
    }

    /// The stored form of `record`.
    pub fn document(&self, record: &LogRecord) -> Result<Document, RunLogError> {
        let mut doc = bson::to_document(record)
            .map_err(|e| RunLogError::Refused(format!("cannot encode a run record: {e}")))?;
        doc.insert("_id", record.document_id());
        let expire = record
            .end_time
            .saturating_add(self.retention.as_millis() as i64);
        doc.insert("expireAt", bson::DateTime::from_millis(expire));
        Ok(doc)
    }

    /// The indexes the routes and the TTL rely on (once per process).
    async fn ensure_indexes(&self) -> Result<(), RunLogError> {
        if self.indexes_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Pages are read newest first by (startTime, runId, attempt): one
        // index per way the list is filtered, each in the page order, so a
        // page is an index walk from the cursor. (Not `_id`: nx-27017
        // refuses writes to a collection with `_id` in a compound index.)
        let indexes = [
            IndexModel::builder()
                .keys(doc! {"jobName": 1, "startTime": -1, "runId": -1, "attempt": -1})
                .build(),
            // The log list of every job (the admin's front page).
            IndexModel::builder()
                .keys(doc! {"startTime": -1, "runId": -1, "attempt": -1})
                .build(),
            // One run's attempts, with their output.
            IndexModel::builder().keys(doc! {"runId": 1}).build(),
            // A prefix of the first, for stores that use only single-field
            // indexes (nx-27017, the embedded default, finds a job's
            // records through this one and sorts them itself).
            IndexModel::builder().keys(doc! {"jobName": 1}).build(),
            // The log list filtered by worker (`?worker=`): without it a
            // worker's page walks the whole time index, skipping every
            // other worker's records. The single-field one is what
            // nx-27017 uses (as `{jobName: 1}` above).
            IndexModel::builder()
                .keys(doc! {"worker": 1, "startTime": -1, "runId": -1, "attempt": -1})
                .build(),
            IndexModel::builder().keys(doc! {"worker": 1}).build(),
            IndexModel::builder()
                .keys(doc! {"expireAt": 1})
                .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                .build(),
        ];
        for index in indexes {
            self.coll.create_index(index).await.map_err(classify)?;
        }
        self.indexes_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// How many records match `filter`. The `count` command, not
    /// `count_documents`: the latter is an aggregation that reads every
    /// matching document, the former counts from the index (measured in
    /// BENCHMARKS.md). Exact for a filtered count on a replica set; the
    /// unfiltered total comes from collection metadata, which only an
    /// unclean shutdown can leave off (it is a page total, not a tally).
    async fn count(&self, filter: &Document) -> mongodb::error::Result<u64> {
        // One more than the cap tells "more than the cap" apart.
        let reply = self
            .coll
            .client()
            .database(self.coll.namespace().db.as_str())
            .run_command(doc! {"count": self.coll.name(), "query": filter.clone(),
            "limit": (super::COUNT_CAP + 1) as i64})
            .await?;
        let n = match reply.get("n") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            // A server whose reply has no count: the slow, sure way.
            _ => {
                let options = mongodb::options::CountOptions::builder()
                    .limit(super::COUNT_CAP + 1)
                    .build();
                return self
                    .coll
                    .count_documents(filter.clone())
                    .with_options(options)
                    .await;
            }
        };
        Ok(n.max(0) as u64)
    }
}

#[async_trait::async_trait]
impl RunLogWriter for MongoRunLog {
    async fn write(&self, records: &[LogRecord]) -> Result<(), RunLogError> {
        self.ensure_indexes().await?;
        let mut docs = Vec::with_capacity(records.len());
        for r in records {
            match self.document(r) {
                Ok(doc) => docs.push(doc),
                // Cannot happen for a record rcron built; not worth a retry loop.
                Err(e) => tracing::error!(run_id = %r.run_id, error = %e, "run record dropped"),
            }
        }
        if docs.is_empty() {
            return Ok(());
        }
        let options = InsertManyOptions::builder().ordered(false).build();
        match self.coll.insert_many(docs).with_options(options).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }
}

#[async_trait::async_trait]
impl RunLogReader for MongoRunLog {
    async fn query(&self, query: &LogQuery) -> Result<LogPage, RunLogError> {
        query.check()?;
        let (filter, count_filter) = filters(query);
        // One more than asked tells whether another page follows. A cursor
        // is a range on `startTime` (`$lte`), which every store serves from
        // an index (an `$or` of the three keys is not, on nx-27017); the
        // records of the cursor's own millisecond that are not after it are
        // dropped here, fetching more in the rare case ties eat the page.
        let want = query.limit as usize + 1;
        let page = async {
            let mut extra = if query.before.is_some() { 16 } else { 0 };
            loop {
                let asked = want + extra;
                let mut find = self
                    .coll
                    .find(filter.clone())
                    .sort(page_order())
                    .skip(query.skip)
                    .limit(asked as i64);
                if !query.with_output {
                    find = find.projection(doc! {"output": 0});
                }
                let docs = find.await?.try_collect::<Vec<Document>>().await?;
                let got = docs.len();
                let records: Vec<LogRecord> = decode_all(docs)
                    .into_iter()
                    .filter(|r| query.before.as_ref().is_none_or(|c| c.precedes(r)))
                    .collect();
                if records.len() >= want || got < asked {
                    return Ok::<_, mongodb::error::Error>(records);
                }
                extra = extra.max(16) * 4;
            }
        };
        let (total, records) =
            tokio::try_join!(self.count(&count_filter), page).map_err(classify)?;
        Ok(LogPage::of(records, query.limit, total))
    }

    async fn run(&self, run_id: &str) -> Result<Vec<LogRecord>, RunLogError> {
        let docs = collect(
            self.coll
                .find(doc! {"runId": run_id})
                .sort(doc! {"attempt": 1}),
        )
        .await?;
        Ok(decode_all(docs))
    }

    async fn ping(&self) -> Result<(), RunLogError> {
        self.coll
            .client()
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn latest_runs(&self, job: &str, limit: u64) -> Result<Vec<LogRecord>, RunLogError> {
        let docs = self
            .newest(
                latest_filter(job),
                limit.clamp(1, MAX_PAGE),
                doc! {"output": 0},
            )
            .await?;
        Ok(decode_all(docs))
    }

    async fn histogram(
        &self,
        job: Option<&str>,
        tally: Tally,
        boundaries: &[i64],
    ) -> Result<Vec<u64>, RunLogError> {
        check_boundaries(boundaries)?;
        let span = Span {
            from: boundaries[0],
            to: boundaries[boundaries.len() - 1],
        };
        // `$bucket` (MongoDB 3.4+), which nx-27017 runs in SQL over the
        // index range of the `$match`; its `$group` on a computed key does
        // not work there. Empty buckets are left out of the answer.
        let pipeline = [
            doc! {"$match": tally_filter(job, tally, span)},
            doc! {"$bucket": {"groupBy": "$startTime", "boundaries": boundaries.to_vec(),
            "default": "later", "output": {"n": {"$sum": 1}}}},
        ];
        let docs = collect(self.coll.aggregate(pipeline)).await?;
        let mut counts = vec![0; boundaries.len() - 1];
        for d in docs {
            let (Some(lower), Some(n)) = (number(&d, "_id"), number(&d, "n")) else {
                continue;
            };
            if let Ok(i) = boundaries.binary_search(&lower)
                && i < counts.len()
            {
                counts[i] = n.max(0) as u64;
            }
        }
        Ok(counts)
    }

    async fn count_in(
        &self,
        job: Option<&str>,
        tally: Tally,
        span: Span,
    ) -> Result<u64, RunLogError> {
        let n = self
            .count(&tally_filter(job, tally, span))
            .await
            .map_err(classify)?;
        Ok(n.min(COUNT_CAP))
    }

    async fn run_times(
        &self,
        job: &str,
        span: Span,
        limit: u64,
    ) -> Result<Vec<RunTime>, RunLogError> {
        let docs = self
            .newest(
                tally_filter(Some(job), Tally::Runs, span),
                limit,
                doc! {"_id": 0, "startTime": 1, "endTime": 1},
            )
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let start_time = number(d, "startTime")?;
                let end_time = number(d, "endTime").unwrap_or(start_time);
                Some(RunTime {
                    start_time,
                    duration_ms: (end_time - start_time).max(0),
                })
            })
            .collect())
    }

    async fn recent(
        &self,
        tally: Tally,
        span: Span,
        limit: u64,
    ) -> Result<Vec<LogRecord>, RunLogError> {
        let docs = self
            .newest(
                tally_filter(None, tally, span),
                limit.clamp(1, COUNT_CAP),
                doc! {"output": 0},
            )
            .await?;
        Ok(decode_all(docs))
    }

    async fn newest_by_job(
        &self,
        tally: Tally,
        span: Span,
    ) -> Result<std::collections::HashMap<String, i64>, RunLogError> {
        // A `$group` on the field, not `distinct`: nx-27017's `distinct`
        // drops the whole filter when it holds an `$in`.
        let pipeline = [
            doc! {"$match": tally_filter(None, tally, span)},
            doc! {"$group": {"_id": "$jobName", "newest": {"$max": "$startTime"}}},
        ];
        let docs = collect(self.coll.aggregate(pipeline)).await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| match (d.get("_id"), number(&d, "newest")) {
                (Some(Bson::String(job)), Some(t)) => Some((job.clone(), t)),
                _ => None,
            })
            .collect())
    }
}

/// A read of the run log, for [`MongoRunLog::explain_read`].
#[derive(Debug, Clone, Copy)]
pub enum Read<'a> {
    /// A page of [`RunLogReader::query`].
    Page(&'a LogQuery),
    /// The attempts of one run ([`RunLogReader::run`]).
    Run(&'a str),
    /// A job's newest runs ([`RunLogReader::latest_runs`]).
    LatestRuns(&'a str),
    /// The records a histogram, count or job list of `tally` reads
    /// ([`RunLogReader::histogram`], [`RunLogReader::count_in`],
    /// [`RunLogReader::recent`], [`RunLogReader::newest_by_job`]: all
    /// filter alike).
    Tally {
        /// Of one job, or of all.
        job: Option<&'a str>,
        /// Which records.
        tally: Tally,
        /// When they started.
        span: Span,
    },
    /// A job's run times ([`RunLogReader::run_times`]).
    RunTimes {
        /// The job.
        job: &'a str,
        /// When they started.
        span: Span,
    },
}

impl MongoRunLog {
    /// The store's query plan (`explain`, `queryPlanner`) of the page
    /// `query` reads, and of one run's read when `run_id` is given: how a
    /// test proves each is served by an index.
    pub async fn explain(
        &self,
        query: &LogQuery,
        run_id: Option<&str>,
    ) -> Result<Document, RunLogError> {
        match run_id {
            Some(id) => self.explain_read(Read::Run(id)).await,
            None => self.explain_read(Read::Page(query)).await,
        }
    }

    /// The store's query plan of `read`, as a `find` of its filter in its
    /// order: aggregations, counts and `distinct` begin with the same
    /// filter (their `$match`), and nx-27017 explains only `find`.
    pub async fn explain_read(&self, read: Read<'_>) -> Result<Document, RunLogError> {
        let (filter, sort, limit) = match read {
            Read::Page(query) => (filters(query).0, page_order(), query.limit as i64 + 1),
            Read::Run(id) => (doc! {"runId": id}, doc! {"attempt": 1}, 100),
            Read::LatestRuns(job) => (latest_filter(job), page_order(), MAX_PAGE as i64),
            Read::Tally { job, tally, span } => (
                tally_filter(job, tally, span),
                page_order(),
                COUNT_CAP as i64,
            ),
            Read::RunTimes { job, span } => (
                tally_filter(Some(job), Tally::Runs, span),
                page_order(),
                COUNT_CAP as i64,
            ),
        };
        self.coll
            .client()
            .database(self.coll.namespace().db.as_str())
            .run_command(doc! {
                "explain": {"find": self.coll.name(), "filter": filter, "sort": sort,
                    "limit": limit, "projection": {"output": 0}},
                "verbosity": "queryPlanner",
            })
            .await
            .map_err(classify)
    }
}

/// A job's runs: every record but the verdicts.
fn latest_filter(job: &str) -> Document {
    doc! {"jobName": job, "status": runs_only()}
}

/// `$nin` also matches the original's documents, which have no status.
fn runs_only() -> Document {
    doc! {"$nin": [RunStatus::Skipped.as_str(), RunStatus::Missed.as_str()]}
}

/// Records of `tally` (of `job`) started in `span`.
fn tally_filter(job: Option<&str>, tally: Tally, span: Span) -> Document {
    let mut filter = Document::new();
    if let Some(job) = job {
        filter.insert("jobName", job);
    }
    filter.insert("startTime", doc! {"$gte": span.from, "$lt": span.to});
    let status = match tally {
        Tally::Runs => Bson::Document(runs_only()),
        Tally::Succeeded => Bson::from(RunStatus::Success.as_str()),
        Tally::Failed => {
            let failed: Vec<&str> = Tally::FAILED.iter().map(|s| s.as_str()).collect();
            Bson::Document(doc! {"$in": failed})
        }
        Tally::Skipped => Bson::from(RunStatus::Skipped.as_str()),
        Tally::Missed => Bson::from(RunStatus::Missed.as_str()),
    };
    filter.insert("status", status);
    filter
}

/// An integer field however the server typed it.
fn number(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// Newest first: the order of pages and of their cursor.
fn page_order() -> Document {
    doc! {"startTime": -1, "runId": -1, "attempt": -1}
}

/// The filter of `query`'s page (with its cursor) and of its count.
fn filters(query: &LogQuery) -> (Document, Document) {
    let mut filter = Document::new();
    if let Some(job) = &query.job {
        filter.insert("jobName", job.as_str());
    }
    if let Some(worker) = &query.worker {
        filter.insert("worker", worker.as_str());
    }
    if let Some(status) = query.status {
        filter.insert("status", status.as_str());
    }
    if query.runs_only && query.status.is_none() {
        filter.insert("status", runs_only());
    }
    let mut range = Document::new();
    if let Some(from) = query.from {
        range.insert("$gte", from);
    }
    if let Some(to) = query.to {
        range.insert("$lt", to);
    }
    let mut count_filter = filter.clone();
    if !range.is_empty() {
        count_filter.insert("startTime", range.clone());
    }
    // The cursor narrows the same range: one `startTime` condition, which
    // every store serves from the index in page order.
    if let Some(c) = &query.before {
        range.insert("$lte", c.start_time);
    }
    if !range.is_empty() {
        filter.insert("startTime", range);
    }
    (filter, count_filter)
}

impl MongoRunLog {
    /// The newest `limit` documents that match `filter`, with `projection`.
    async fn newest(
        &self,
        filter: Document,
        limit: u64,
        projection: Document,
    ) -> Result<Vec<Document>, RunLogError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        collect(
            self.coll
                .find(filter)
                .sort(page_order())
                .limit(limit)
                .projection(projection),
        )
        .await
    }
}

/// Every document a find or an aggregation answers, its failures
/// classified.
async fn collect<R>(read: R) -> Result<Vec<Document>, RunLogError>
where
    R: std::future::IntoFuture<Output = mongodb::error::Result<mongodb::Cursor<Document>>>,
{
    read.await
        .map_err(classify)?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(classify)
}

/// The records of `docs`; documents that do not read as one are skipped.
fn decode_all(docs: Vec<Document>) -> Vec<LogRecord> {
    docs.into_iter()
        .filter_map(|d| match bson::from_document::<StoredLog>(d) {
            Ok(s) => Some(LogRecord::from(s)),
            Err(e) => {
                tracing::warn!(error = %e, "skipping unreadable log document");
                None
            }
        })
        .collect()
}

/// Whether a failed insert only hit records that are already there.
pub fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(ime) => {
            ime.write_concern_error.is_none()
                && ime
                    .write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

/// Unreachable (worth retrying as is) or refused.
pub fn classify(e: mongodb::error::Error) -> RunLogError {
    use mongodb::error::ErrorKind;
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => {
            RunLogError::Unavailable(format!("MongoDB is unavailable: {e}"))
        }
        _ => RunLogError::Refused(format!("MongoDB: {e}")),
    }
}

/// A stored record as read back. Documents written by the original Go
/// system lack the fields rcron added; they read with defaults.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLog {
    job_name: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    err: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    plan_time: i64,
    #[serde(default)]
    schedule_time: i64,
    #[serde(default)]
    start_time: i64,
    #[serde(default)]
    end_time: i64,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    status: Option<RunStatus>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    output_truncated: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    trigger: crate::Trigger,
    #[serde(default)]
    triggered_by: Option<crate::TriggeredBy>,
    #[serde(default)]
    params: Option<crate::RunParams>,
}

impl From<StoredLog> for LogRecord {
    fn from(s: StoredLog) -> Self {
        let status = s.status.unwrap_or(if s.err.is_empty() {
            RunStatus::Success
        } else {
            RunStatus::Failed
        });
        LogRecord {
            job_name: s.job_name,
            command: s.command,
            err: s.err,
            output: s.output,
            plan_time: s.plan_time,
            schedule_time: s.schedule_time,
            start_time: s.start_time,
            end_time: s.end_time,
            run_id: s.run_id,
            worker: s.worker,
            exit_code: s.exit_code,
            status,
            attempt: s.attempt.unwrap_or(1),
            output_truncated: s.output_truncated,
            reason: s.reason,
            trigger: s.trigger,
            triggered_by: s.triggered_by,
            params: s.params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_by_the_original_reads_with_defaults() {
        let doc = doc! {"jobName": "job1", "command": "echo", "err": "exit status 1",
        "output": "", "planTime": 1_i64, "scheduleTime": 2_i64, "startTime": 3_i64, "endTime": 4_i64};
        let stored: StoredLog = bson::from_document(doc).expect("reads");
        let r = LogRecord::from(stored);
        assert_eq!(r.status, RunStatus::Failed);
        assert_eq!(r.attempt, 1);
    }
}
