//! The API's documents rcronctl reads, as the master's OpenAPI document
//! describes them (`/api/v1/openapi.json`). Jobs, run records and workers
//! are the shared types themselves; only the fields rcronctl uses are
//! declared for the rest (unknown fields are ignored, so a newer master
//! still answers this client).

use std::collections::BTreeMap;

use rcron_shared::{Job, LogRecord, WorkerInfo};
use serde::{Deserialize, Serialize};

/// An error answer.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// One sentence.
    pub error: String,
    /// Each problem with a job.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// A stored job with what the cluster computes about it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// The next time it fires, as the API writes it (RFC 3339).
    #[serde(default)]
    pub next_fire_time: Option<String>,
    /// Live workers that may run it; absent when the registry could not be read.
    #[serde(default)]
    pub matching_workers: Option<u32>,
    /// Enabled, and no live worker may run it.
    #[serde(default)]
    pub unschedulable: bool,
}

/// Every job.
#[derive(Debug, Deserialize)]
pub struct JobList {
    /// Sorted by name.
    pub jobs: Vec<JobView>,
    /// The next page's cursor; absent on the last page.
    #[serde(default, rename = "nextCursor")]
    pub next_cursor: Option<String>,
}

/// The answer to a `PUT` of a job.
#[derive(Debug, Deserialize)]
pub struct SavedJob {
    /// The job as stored.
    pub job: JobView,
    /// The job it replaced.
    #[serde(default)]
    pub previous: Option<Job>,
    /// Where its expression probably does not do what was meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The answer to a `PATCH` of a job.
#[derive(Debug, Deserialize)]
pub struct PatchedJob {
    /// The job as stored now.
    #[serde(flatten)]
    pub job: JobView,
    /// Where its expression probably does not do what was meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A kill request was sent.
#[derive(Debug, Deserialize)]
pub struct KillAccepted {
    /// The job.
    pub name: String,
}

/// What `POST /jobs/{name}/run` may set for that run only.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunBody {
    /// Environment variables for this run, over the job's `env`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How long the request may wait for the job's lock and a free slot
    /// (seconds); absent = the master's default (600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
}

/// A run request was made: it waits in etcd until a worker claims it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequested {
    /// The job.
    pub name: String,
    /// The request's id.
    pub request_id: String,
    /// Not started by then (ms since the epoch), it is logged `skipped`.
    pub deadline: i64,
}

/// A kill of one run was sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KillRunAccepted {
    /// The run's job.
    pub job: String,
    /// The worker running it.
    pub worker: String,
}

/// A page of run records, newest first.
#[derive(Debug, Deserialize)]
pub struct LogPage {
    /// The records.
    pub logs: Vec<LogRecord>,
}

/// Every live worker.
#[derive(Debug, Deserialize)]
pub struct WorkerList {
    /// Sorted by id.
    pub workers: Vec<WorkerInfo>,
}

/// A master taking part in the election.
#[derive(Debug, Deserialize)]
pub struct MasterView {
    /// Its id.
    pub id: String,
    /// Where it serves.
    pub url: String,
    /// Whether it leads.
    pub leader: bool,
}

/// Whether a dependency answers.
#[derive(Debug, Deserialize)]
pub struct Health {
    /// It answered.
    pub healthy: bool,
    /// Why not.
    #[serde(default)]
    pub error: Option<String>,
}

/// The cluster as the master sees it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Every master, the leader first.
    pub masters: Vec<MasterView>,
    /// etcd.
    pub etcd: Health,
    /// MongoDB.
    pub mongo: Health,
    /// Live workers.
    pub workers: u64,
    /// Warnings waiting for delivery.
    pub pending_alerts: u64,
    /// The master's zone for jobs without one.
    pub timezone: String,
    /// Which processes use which zone, when they differ.
    #[serde(default)]
    pub zone_mismatch: Option<String>,
}

/// One change in the audit trail.
#[derive(Debug, Deserialize)]
pub struct AuditEntry {
    /// When (ms).
    pub time: i64,
    /// The key that made it.
    pub key: String,
    /// Where from.
    pub remote: String,
    /// Method and path.
    pub route: String,
    /// What was done.
    pub action: String,
    /// The job.
    #[serde(default)]
    pub job: Option<String>,
}

/// A page of the audit trail.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// One saved version of a job.
#[derive(Debug, Deserialize)]
pub struct JobVersion {
    /// 1 = the oldest.
    pub version: u64,
    /// When it was saved (ms).
    pub time: i64,
    /// Who saved it.
    pub key: String,
    /// How.
    pub action: String,
    /// The job as saved.
    pub job: Job,
}

/// A job's versions.
#[derive(Debug, Deserialize)]
pub struct JobVersions {
    /// Newest first.
    pub versions: Vec<JobVersion>,
}

/// An expression to preview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewRequest {
    /// The expression.
    pub cron_expr: String,
    /// IANA zone; absent = the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How many fire times.
    pub count: u32,
}

/// The next fire times of an expression.
#[derive(Debug, Deserialize)]
pub struct Preview {
    /// The zone it was evaluated in.
    pub timezone: String,
    /// The fire times, as the API writes them (RFC 3339).
    pub next: Vec<String>,
    /// What it probably does not do as meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}
