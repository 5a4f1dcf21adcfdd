//! Reading run records from MongoDB `cron.log` (written by workers) and the
//! worker registry from etcd, for the log and worker routes.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use rcron_shared::{Keys, LogRecord, RunStatus, WorkerInfo};
use serde::Deserialize;

use crate::Error;

/// Most records one page may hold.
pub const MAX_PAGE: u64 = 1000;

/// How long a query waits for a reachable MongoDB before answering 503.
const MONGO_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A page of run records.
#[derive(Debug, Clone)]
pub struct LogPage {
    /// Records, newest first.
    pub records: Vec<LogRecord>,
    /// How many match the filter in all.
    pub total: u64,
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this job's records.
    pub job: Option<String>,
    /// Only records with this status.
    pub status: Option<RunStatus>,
    /// Only records of runs: no verdicts (`skipped`, `missed`: ticks that
    /// ran no command), as the original's log held.
    pub runs_only: bool,
    /// Records to skip (newest first).
    pub skip: u64,
    /// Records to return.
    pub limit: u64,
}

/// One key of the worker registry (`/cron/workers/<id>`).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The key's last segment: an rcron worker's id, or the IP address an
    /// original worker registered.
    pub id: String,
    /// The rcron worker's record; `None` for an original worker (empty
    /// value) or a value that does not read as one.
    pub record: Option<WorkerInfo>,
}

/// The run log and the worker registry.
#[derive(Clone)]
pub struct LogStore {
    logs: Collection<Document>,
    audit: Collection<Document>,
    etcd: Client,
    keys: Keys,
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
        }
    }
}

impl LogStore {
    /// Connects lazily: the master starts while MongoDB is down and log
    /// queries answer 503 until it is back.
    pub async fn connect(
        mongo: &rcron_shared::config::MongoConfig,
        etcd: Client,
        keys: Keys,
    ) -> Result<Self, Error> {
        let mut options = ClientOptions::parse(&mongo.uri).await?;
        options.server_selection_timeout = Some(MONGO_SELECTION_TIMEOUT);
        options.connect_timeout = Some(MONGO_SELECTION_TIMEOUT);
        options.app_name = Some("rcron-master".to_string());
        let client = mongodb::Client::with_options(options)?;
        Ok(Self {
            logs: client.database(&mongo.db).collection("log"),
            audit: client.database(&mongo.db).collection("audit"),
            etcd,
            keys,
        })
    }

    /// The audit trail's collection (`cron.audit`).
    pub fn audit_collection(&self) -> Collection<Document> {
        self.audit.clone()
    }

    /// A page of records matching `query`, newest first.
    pub async fn query(&self, query: &LogQuery) -> Result<LogPage, Error> {
        if query.limit == 0 || query.limit > MAX_PAGE {
            return Err(Error::BadRequest(format!(
                "`limit` must be a whole number from 1 to {MAX_PAGE}, got {}",
                query.limit
            )));
        }
        let mut filter = Document::new();
        if let Some(job) = &query.job {
            filter.insert("jobName", job.as_str());
        }
        if let Some(status) = query.status {
            filter.insert("status", status.as_str());
        }
        if query.runs_only && query.status.is_none() {
            // `$nin` also matches the original's documents, which have no status.
            filter.insert(
                "status",
                doc! {"$nin": [RunStatus::Skipped.as_str(), RunStatus::Missed.as_str()]},
            );
        }
        let page = async {
            let cursor = self
                .logs
                .find(filter.clone())
                .sort(doc! {"startTime": -1})
                .skip(query.skip)
                .limit(query.limit as i64)
                .await?;
            cursor.try_collect::<Vec<Document>>().await
        };
        let (total, docs) = tokio::try_join!(self.count(&filter), page)?;
        let records = docs
            .into_iter()
            .filter_map(|d| match mongodb::bson::from_document::<StoredLog>(d) {
                Ok(s) => Some(LogRecord::from(s)),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable log document");
                    None
                }
            })
            .collect();
        Ok(LogPage { records, total })
    }

    /// How many records match `filter`. The `count` command, not
    /// `count_documents`: the latter is an aggregation that reads every
    /// matching document, the former counts from the index (measured in
    /// BENCHMARKS.md). Exact for a filtered count on a replica set; the
    /// unfiltered total comes from collection metadata, which only an
    /// unclean shutdown can leave off (it is a page total, not a tally).
    async fn count(&self, filter: &Document) -> mongodb::error::Result<u64> {
        let reply = self
            .logs
            .client()
            .database(self.logs.namespace().db.as_str())
            .run_command(doc! {"count": self.logs.name(), "query": filter.clone()})
            .await?;
        let n = match reply.get("n") {
            Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
            Some(mongodb::bson::Bson::Int64(n)) => *n,
            Some(mongodb::bson::Bson::Double(n)) => *n as i64,
            // A server whose reply has no count: the slow, sure way.
            _ => return self.logs.count_documents(filter.clone()).await,
        };
        Ok(n.max(0) as u64)
    }

    /// Whether MongoDB answers a ping.
    pub async fn ping(&self) -> Result<(), Error> {
        self.logs
            .client()
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }

    /// Writes run records (the leader's verdicts), each under its own
    /// `_id` like the workers' (`<runId>-<attempt>`), so writing one twice
    /// is harmless; kept for [`VERDICT_RETENTION`].
    pub async fn insert_records(&self, records: &[rcron_shared::LogRecord]) -> Result<(), Error> {
        let mut docs = Vec::with_capacity(records.len());
        for r in records {
            let Ok(mut doc) = mongodb::bson::to_document(r) else {
                continue;
            };
            doc.insert("_id", r.document_id());
            let expire = r
                .end_time
                .saturating_add(VERDICT_RETENTION.as_millis() as i64);
            doc.insert("expireAt", mongodb::bson::DateTime::from_millis(expire));
            docs.push(doc);
        }
        if docs.is_empty() {
            return Ok(());
        }
        let options = mongodb::options::InsertManyOptions::builder()
            .ordered(false)
            .build();
        match self.logs.insert_many(docs).with_options(options).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every registered rcron worker, sorted by id.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        Ok(self
            .registrations()
            .await?
            .into_iter()
            .filter_map(|r| r.record)
            .collect())
    }

    /// Every key of the worker registry, sorted by id, with its record when
    /// it is an rcron worker's. The original's workers register their IP
    /// as the id with an empty value: they run nothing rcron schedules, but
    /// the legacy worker list shows them, as the original did.
    pub async fn registrations(&self) -> Result<Vec<Registration>, Error> {
        let resp = self
            .etcd
            .clone()
            .get(
                self.keys.workers_dir(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let id = self.keys.parse_worker(kv.key())?;
                let record = if kv.value().is_empty() {
                    None
                } else {
                    serde_json::from_slice::<WorkerInfo>(kv.value())
                        .map_err(|e| tracing::warn!(worker = %id, error = %e, "unreadable worker record"))
                        .ok()
                };
                Some(Registration { id, record })
            })
            .collect())
    }
}

/// How long the leader's verdict records are kept: the workers' default
/// `log_retention_days` (the master does not know the workers' setting).
pub const VERDICT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Whether a failed insert only hit records that are already there.
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
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
