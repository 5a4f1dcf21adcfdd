//! `/api/v1/audit`: the audit trail, newest first (see [`crate::audit`]).

use std::sync::Arc;

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::Error;
use crate::api::{ApiError, ApiTags, AppState};
use crate::audit::{AuditQuery, AuditRecord, MAX_PAGE};

/// REST operations on the audit trail.
pub struct AuditApi {
    state: Arc<AppState>,
}

impl AuditApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// One change.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unique id.
    pub id: String,
    /// When (ms since the epoch).
    pub time: i64,
    /// The key that made it (`anonymous` on an open API).
    pub key: String,
    /// The client's address as the master saw it.
    pub remote: String,
    /// `X-Forwarded-For` as sent, when a proxy set it.
    #[oai(skip_serializing_if_is_none)]
    pub forwarded_for: Option<String>,
    /// Method and path.
    pub route: String,
    /// `create`, `replace`, `update`, `delete`, `pause`, `resume`, `run`, `kill`, `killRun`.
    pub action: String,
    /// The job.
    #[oai(skip_serializing_if_is_none)]
    pub job: Option<String>,
    /// The run, for `killRun`.
    #[oai(skip_serializing_if_is_none)]
    pub run_id: Option<String>,
    /// The job before the change.
    #[oai(skip_serializing_if_is_none)]
    pub before: Option<serde_json::Value>,
    /// The job after the change.
    #[oai(skip_serializing_if_is_none)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            time: r.time,
            key: r.key,
            remote: r.remote,
            forwarded_for: r.forwarded_for,
            route: r.route,
            action: r.action,
            job: r.job,
            run_id: r.run_id,
            before: r.before,
            after: r.after,
        }
    }
}

/// A page of changes.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_before: Option<String>,
}

fn default_limit() -> u64 {
    50
}

/// One saved version of a job.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobVersion {
    /// 1 for the oldest version the audit trail knows, counting up.
    pub version: u64,
    /// When it was saved (ms since the epoch).
    pub time: i64,
    /// Who saved it.
    pub key: String,
    /// How (`create`, `replace`, `update`, `pause`, `resume`).
    pub action: String,
    /// The job as saved.
    pub job: serde_json::Value,
}

/// A job's versions, newest first.
#[derive(Debug, Object)]
pub struct JobVersions {
    /// Newest first.
    pub versions: Vec<JobVersion>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// List a job's versions
    ///
    /// Every version of the job the audit trail recorded (each save, pause
    /// and resume), newest first, numbered from 1 (the oldest). Save one
    /// back with `PUT /jobs/{name}` (`rcronctl job rollback NAME --to N`).
    /// 404 when the trail knows no version of it.
    #[oai(
        path = "/jobs/:name/versions",
        method = "get",
        operation_id = "listJobVersions",
        tag = "ApiTags::Jobs"
    )]
    async fn versions(
        &self,
        name: poem_openapi::param::Path<String>,
    ) -> Result<Json<JobVersions>, ApiError> {
        let name = rcron_shared::JobName::new(name.0).map_err(Error::from)?;
        let mut records = crate::audit::query(
            &self.state.audit_trail,
            &AuditQuery {
                job: Some(name.to_string()),
                limit: MAX_PAGE,
                ..AuditQuery::default()
            },
        )
        .await?;
        records.retain(|r| r.after.is_some());
        if records.is_empty() {
            return Err(Error::NotFound(name.to_string()).into());
        }
        let n = records.len() as u64;
        Ok(Json(JobVersions {
            versions: records
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    Some(JobVersion {
                        version: n - i as u64,
                        time: r.time,
                        key: r.key,
                        action: r.action,
                        job: r.after?,
                    })
                })
                .collect(),
        }))
    }

    /// List changes
    ///
    /// Every change made through the API (legacy routes included), newest
    /// first: who, from where, which route, which job, the job before and
    /// after. 503 while MongoDB is unreachable (changes made meanwhile are
    /// stored once it is back).
    #[oai(path = "/audit", method = "get", operation_id = "listAudit")]
    async fn list(
        &self,
        /// Only changes of this job.
        job: Query<Option<String>>,
        /// Only changes by this key.
        key: Query<Option<String>>,
        /// Only changes older than this id: `nextBefore` of the previous page.
        before: Query<Option<String>>,
        /// Changes per page (1–1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<Json<AuditPage>, ApiError> {
        if limit.0 == 0 || limit.0 > MAX_PAGE {
            return Err(Error::BadRequest(format!(
                "`limit` must be a whole number from 1 to {MAX_PAGE}, got {}",
                limit.0
            ))
            .into());
        }
        let records = crate::audit::query(
            &self.state.audit_trail,
            &AuditQuery {
                job: job.0,
                key: key.0,
                before: before.0,
                limit: limit.0,
            },
        )
        .await?;
        let full = records.len() as u64 == limit.0;
        let next_before = if full {
            records.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Json(AuditPage {
            entries: records.into_iter().map(AuditEntry::from).collect(),
            next_before,
        }))
    }
}
