//! `/api/v1/jobs`: job CRUD and kill, with real status codes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use rcron_shared::{Job, JobName, RunParams, RunRequest};
use serde_json::{Map, Value};

use crate::Error;
use crate::api::payload::{JobPatchPayload, JobPayload, RunPayload};
use crate::api::{ApiError, ApiTags, AppState};
use crate::audit::Origin;
use crate::job_cache::{Cached, JobCache, JobQuery, page_of};

/// REST operations on jobs.
pub struct JobsApi {
    state: Arc<AppState>,
}

impl JobsApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// A stored job with what the cluster computes about it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    #[oai(flatten)]
    pub job: Job,
    /// The next time it fires (absent when disabled or never again).
    #[oai(skip_serializing_if_is_none)]
    pub next_fire_time: Option<DateTime<Utc>>,
    /// Live workers that may run it (carrying every label of its target,
    /// not draining); absent when the worker registry could not be read.
    #[oai(skip_serializing_if_is_none)]
    pub matching_workers: Option<u32>,
    /// True when it is enabled and no live worker may run it: its ticks
    /// run nowhere (the leader also alerts after a grace period).
    pub unschedulable: bool,
    /// Its newest run (verdicts aside), with `lastRun=true`; absent when
    /// it never ran (or without `lastRun`).
    #[oai(skip_serializing_if_is_none)]
    pub last_run: Option<crate::api::stats::LastRun>,
}

/// A page of jobs.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobList {
    /// Jobs sorted by name.
    pub jobs: Vec<JobView>,
    /// How many jobs match the filters, on every page.
    pub total: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
    /// Why the jobs carry no `lastRun` although it was asked for
    /// (MongoDB unreachable); absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub last_run_error: Option<String>,
}

/// Most jobs on one page of `GET /jobs`.
pub const MAX_JOB_PAGE: u64 = 1000;

fn default_job_limit() -> u64 {
    100
}

/// A job saved with `PUT`, and the one it replaced.
#[derive(Debug, Object)]
pub struct SavedJob {
    /// The job as stored.
    pub job: JobView,
    /// The job it replaced, if any.
    #[oai(skip_serializing_if_is_none)]
    pub previous: Option<Job>,
    /// Where its expression probably does not do what was meant (as in
    /// `POST /cron/preview`); the job is saved all the same.
    pub warnings: Vec<String>,
}

/// A job created with `POST`.
#[derive(Debug, Object)]
pub struct CreatedJob {
    /// The job as stored.
    #[oai(flatten)]
    pub job: JobView,
    /// Where its expression probably does not do what was meant (as in
    /// `POST /cron/preview`); the job is created all the same.
    pub warnings: Vec<String>,
}

/// A job changed with `PATCH`.
#[derive(Debug, Object)]
pub struct PatchedJob {
    /// The job as stored now.
    #[oai(flatten)]
    pub job: JobView,
    /// Where its expression probably does not do what was meant (as in
    /// `POST /cron/preview`); the change is made all the same.
    pub warnings: Vec<String>,
}

/// Outcome of `PUT /jobs/{name}`.
#[derive(Debug, ApiResponse)]
pub enum PutResponse {
    /// An existing job was replaced.
    #[oai(status = 200)]
    Replaced(Json<SavedJob>),
    /// A new job was created.
    #[oai(status = 201)]
    Created(Json<SavedJob>),
}

/// Outcome of `POST /jobs`.
#[derive(Debug, ApiResponse)]
pub enum CreateResponse {
    /// The job was created.
    #[oai(status = 201)]
    Created(Json<CreatedJob>),
}

/// A kill or run request was sent.
#[derive(Debug, Object)]
pub struct KillAccepted {
    /// The job the request is about.
    pub name: String,
}

/// A run request was made.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RunRequested {
    /// The job to run.
    pub name: String,
    /// The request's id (`/cron/run/<name>/<id>`).
    pub request_id: String,
    /// Not started by then (ms since the epoch), it is logged `skipped`.
    pub deadline: i64,
}

/// Outcome of `POST /jobs/{name}/run`.
#[derive(Debug, ApiResponse)]
pub enum RunResponse {
    /// One worker will run the job once, as soon as its lock and a slot
    /// are free.
    #[oai(status = 202)]
    Accepted(Json<RunRequested>),
}

/// A kill of one run was sent.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct KillRunAccepted {
    /// The run.
    pub run_id: String,
    /// Its job.
    pub job: String,
    /// The worker running it.
    pub worker: String,
}

/// Outcome of `POST /runs/{runId}/kill`.
#[derive(Debug, ApiResponse)]
pub enum KillRunResponse {
    /// The worker running it was asked to kill it.
    #[oai(status = 202)]
    Accepted(Json<KillRunAccepted>),
}

/// Outcome of `POST /jobs/{name}/kill`.
#[derive(Debug, ApiResponse)]
pub enum KillResponse {
    /// Workers were asked to kill the job's running runs.
    #[oai(status = 202)]
    Accepted(Json<KillAccepted>),
}

/// How the audit trail names a patch: `pause` or `resume` when it sets
/// only `disabled`, else `update`.
fn patch_action(fields: &Map<String, Value>) -> &'static str {
    match (fields.len(), fields.get("disabled")) {
        (1, Some(Value::Bool(true))) => "pause",
        (1, Some(Value::Bool(false))) => "resume",
        _ => "update",
    }
}

impl JobsApi {
    async fn view(&self, job: &Job) -> JobView {
        let cached = Cached {
            job: Arc::new(job.clone()),
            schedule: job.schedule(self.state.timezone).ok().map(Arc::new),
        };
        self.views(std::slice::from_ref(&cached))
            .await
            .pop()
            .unwrap_or_else(|| JobView {
                job: job.clone(),
                next_fire_time: None,
                matching_workers: None,
                unschedulable: false,
                last_run: None,
            })
    }

    /// Views of many jobs, with their parsed schedules at hand.
    async fn views(&self, jobs: &[Cached]) -> Vec<JobView> {
        // Placement is extra: a registry that cannot be read leaves it out
        // rather than failing the request.
        let workers = self.state.workers.list().await.ok();
        let now = Utc::now();
        let mut next = std::collections::HashMap::new();
        jobs.iter()
            .map(|c| {
                let job = &*c.job;
                // Jobs sharing a schedule share its next fire time.
                let next_fire_time = match &c.schedule {
                    Some(s) if !job.disabled => *next
                        .entry(Arc::as_ptr(s) as usize)
                        .or_insert_with(|| c.next_fire(now)),
                    _ => None,
                };
                let matching = workers
                    .as_deref()
                    .map(|w| crate::placement::matching_workers(job, w));
                JobView {
                    job: job.clone(),
                    next_fire_time,
                    matching_workers: matching.map(|n| n as u32),
                    unschedulable: !job.disabled && matching == Some(0),
                    last_run: None,
                }
            })
            .collect()
    }

    /// Sets each view's last run, read through the per-master cache.
    async fn add_last_runs(&self, views: &mut [JobView]) -> Result<(), Error> {
        let names: Vec<String> = views.iter().map(|v| v.job.name.to_string()).collect();
        let mut last = self.state.last_runs.of(&*self.state.logs, &names).await?;
        for view in views {
            view.last_run = last
                .remove(view.job.name.as_str())
                .flatten()
                .as_ref()
                .map(crate::api::stats::LastRun::from);
        }
        Ok(())
    }

    /// The job cache, once it has applied every job write this master
    /// made; None when it is out of step or `consistent` asks for etcd's
    /// current revision (the caller then reads etcd).
    async fn cache(&self, consistent: bool) -> Option<&JobCache> {
        let cache = &*self.state.jobs;
        if consistent || cache.revision().is_none() {
            return None;
        }
        cache
            .has_own_writes(&self.state.store)
            .await
            .then_some(cache)
    }

    async fn set_disabled(
        &self,
        req: &Request,
        name: String,
        disabled: bool,
    ) -> Result<Json<JobView>, ApiError> {
        let name = JobName::new(name).map_err(Error::from)?;
        let mut fields = Map::new();
        fields.insert("disabled".into(), Value::Bool(disabled));
        let patched = self
            .state
            .store
            .patch(&name, &fields)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        self.state.audit.record(
            &Origin::of(req),
            if disabled { "pause" } else { "resume" },
            Some(name.as_str()),
            Some(&patched.before),
            Some(&patched.after),
        );
        Ok(Json(self.view(&patched.after).await))
    }

    /// What a save answers about the job's expression, from now on.
    fn warnings(&self, job: &Job) -> Vec<String> {
        job.schedule(self.state.timezone)
            .map(|s| s.warnings(Utc::now()))
            .unwrap_or_default()
    }

    async fn existing(&self, name: &JobName) -> Result<Job, Error> {
        if let Some(cache) = self.cache(false).await {
            return cache
                .get(name)
                .map(|c| (*c.job).clone())
                .ok_or_else(|| Error::NotFound(name.to_string()));
        }
        self.state
            .store
            .get(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Jobs")]
impl JobsApi {
    /// List jobs
    ///
    /// A page of jobs, sorted by name, with their next fire time, and how
    /// many match in all. Follow `nextCursor` for the next page. Served
    /// from the master's in-memory copy of the jobs (a write through this
    /// master is in its next read); `consistent=true` reads etcd instead.
    #[oai(path = "/jobs", method = "get", operation_id = "listJobs")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        /// Most jobs on the page.
        #[oai(
            default = "default_job_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
        /// The previous page's `nextCursor`.
        cursor: Query<Option<String>>,
        /// Only jobs whose name or command contains this (any case).
        #[oai(validator(max_length = 256))]
        q: Query<Option<String>>,
        /// Only enabled (`true`) or paused (`false`) jobs.
        enabled: Query<Option<bool>>,
        /// Only jobs whose target asks for this label, as `key=value`.
        label: Query<Option<String>>,
        /// Only jobs that start this job when a run ends: it is in their
        /// `onSuccess` or `onFailure` (a whole job name).
        #[oai(name = "chainsTo")]
        chains_to: Query<Option<String>>,
        /// Read etcd's current revision rather than this master's copy.
        #[oai(default)]
        consistent: Query<bool>,
        /// Add each job's newest run (`lastRun`): one indexed read per job
        /// of the page (each kept 2 s by this master).
        #[oai(name = "lastRun", default)]
        last_run: Query<bool>,
    ) -> Result<Json<JobList>, ApiError> {
        let chains_to = chains_to
            .0
            .map(|name| {
                JobName::new(&name)
                    .map_err(|e| Error::BadRequest(format!("`chainsTo` must be a job name: {e}")))
            })
            .transpose()?;
        let label = match label.0 {
            Some(l) => match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
                _ => {
                    return Err(
                        Error::BadRequest(format!("`label` must be key=value, got {l:?}")).into(),
                    );
                }
            },
            None => None,
        };
        let query = JobQuery {
            q: q.0.filter(|q| !q.is_empty()),
            enabled: enabled.0,
            label,
            chains_to,
            after: cursor.0,
            limit: limit.0.clamp(1, MAX_JOB_PAGE) as usize,
        };
        let page = match self.cache(consistent.0).await {
            Some(cache) => cache.page(&query),
            None => {
                let jobs = self.state.store.list().await?;
                page_of(&self.state.jobs.index(jobs), &query)
            }
        };
        let mut jobs = self.views(&page.jobs).await;
        let mut last_run_error = None;
        if last_run.0
            && let Err(e) = self.add_last_runs(&mut jobs).await
        {
            // The jobs are still worth showing.
            last_run_error = Some(e.to_string());
        }
        Ok(Json(JobList {
            jobs,
            total: page.total,
            next_cursor: page.next,
            last_run_error,
        }))
    }

    /// Create a job
    ///
    /// Fails with 409 when a job of that name exists (use `PUT` to replace).
    /// `warnings` says where the expression probably does not do what was
    /// meant (daylight-saving changes within a year, seconds-first look-alikes).
    #[oai(path = "/jobs", method = "post", operation_id = "createJob")]
    async fn create(&self, req: &Request, body: JobPayload) -> Result<CreateResponse, ApiError> {
        let job = body.0?;
        self.state.store.create(&job).await?;
        self.state.audit.record(
            &Origin::of(req),
            "create",
            Some(job.name.as_str()),
            None,
            Some(&job),
        );
        Ok(CreateResponse::Created(Json(CreatedJob {
            job: self.view(&job).await,
            warnings: self.warnings(&job),
        })))
    }

    /// Get a job
    #[oai(path = "/jobs/:name", method = "get", operation_id = "getJob")]
    async fn get(
        &self,
        name: Path<String>,
        /// Read etcd's current revision rather than this master's copy.
        #[oai(default)]
        consistent: Query<bool>,
        /// Add the job's newest run (`lastRun`); 503 while MongoDB is
        /// unreachable.
        #[oai(name = "lastRun", default)]
        last_run: Query<bool>,
    ) -> Result<Json<JobView>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        let cached = match self.cache(consistent.0).await {
            Some(cache) => cache.get(&name),
            None => self.state.store.get(&name).await?.map(|job| Cached {
                schedule: job.schedule(self.state.timezone).ok().map(Arc::new),
                job: Arc::new(job),
            }),
        };
        let cached = cached.ok_or_else(|| Error::NotFound(name.to_string()))?;
        let mut views = self.views(std::slice::from_ref(&cached)).await;
        if last_run.0 {
            self.add_last_runs(&mut views).await?;
        }
        views
            .pop()
            .map(Json)
            .ok_or_else(|| Error::NotFound(name.to_string()).into())
    }

    /// Create or replace a job
    ///
    /// The body's `name` must match the path. Answers 201 for a new job and
    /// 200 with the replaced job in `previous` otherwise. To change some
    /// fields only (pause, resume), use `PATCH`. `warnings` says where the
    /// expression probably does not do what was meant.
    #[oai(path = "/jobs/:name", method = "put", operation_id = "putJob")]
    async fn put(
        &self,
        req: &Request,
        name: Path<String>,
        body: JobPayload,
    ) -> Result<PutResponse, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        let job = body.0?;
        if job.name != name {
            return Err(Error::BadRequest(format!(
                "the body's name {:?} does not match the path's {:?}",
                job.name.as_str(),
                name.as_str()
            ))
            .into());
        }
        let previous = self.state.store.save(&job).await?;
        let action = if previous.is_some() {
            "replace"
        } else {
            "create"
        };
        self.state.audit.record(
            &Origin::of(req),
            action,
            Some(job.name.as_str()),
            previous.as_ref(),
            Some(&job),
        );
        let saved = SavedJob {
            job: self.view(&job).await,
            previous: previous.clone(),
            warnings: self.warnings(&job),
        };
        Ok(match previous {
            Some(_) => PutResponse::Replaced(Json(saved)),
            None => PutResponse::Created(Json(saved)),
        })
    }

    /// Change some fields of a job
    ///
    /// The body holds only the fields to change, e.g. `{"disabled": true}`
    /// (a JSON merge patch, RFC 7396: objects such as `target` merge field
    /// by field, `null` returns a field to its default, anything else
    /// replaces it). The job that results is checked as a `PUT` would check
    /// it (400 naming each problem; its `name` cannot change), 404 when
    /// there is no such job. Fields of the stored job this master does not
    /// know are kept. A body that changes nothing writes nothing. A body of
    /// `disabled` alone (pause, resume) is allowed to `operator` keys; any
    /// other field needs `admin`.
    #[oai(path = "/jobs/:name", method = "patch", operation_id = "patchJob")]
    async fn patch(
        &self,
        req: &Request,
        name: Path<String>,
        body: JobPatchPayload,
    ) -> Result<Json<PatchedJob>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        let fields = body.0?;
        let patched = self
            .state
            .store
            .patch(&name, &fields)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        if patched.changed {
            self.state.audit.record(
                &Origin::of(req),
                patch_action(&fields),
                Some(name.as_str()),
                Some(&patched.before),
                Some(&patched.after),
            );
        }
        Ok(Json(PatchedJob {
            job: self.view(&patched.after).await,
            warnings: self.warnings(&patched.after),
        }))
    }

    /// Delete a job
    ///
    /// Answers with the deleted job. A run in progress is not killed (use
    /// the kill operation first).
    #[oai(path = "/jobs/:name", method = "delete", operation_id = "deleteJob")]
    async fn delete(&self, req: &Request, name: Path<String>) -> Result<Json<Job>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        match self.state.store.delete(&name).await? {
            Some(job) => {
                self.state.audit.record(
                    &Origin::of(req),
                    "delete",
                    Some(name.as_str()),
                    Some(&job),
                    None,
                );
                Ok(Json(job))
            }
            None => Err(Error::NotFound(name.to_string()).into()),
        }
    }

    /// Run a job now
    ///
    /// One worker runs the job once, outside its schedule (paused jobs too),
    /// as soon as it can: a `forbid` job's request waits for the running run
    /// to end, and every request waits for a free slot. The request is kept
    /// in etcd (it survives worker and etcd restarts); not started within
    /// `deadlineSecs` (default 600) it is logged `skipped` with the reason.
    /// The optional body sets environment variables for this run only;
    /// they are recorded in its log record (`params`). The run's record has
    /// `trigger: manual`.
    #[oai(path = "/jobs/:name/run", method = "post", operation_id = "runJob")]
    async fn run_now(
        &self,
        req: &Request,
        name: Path<String>,
        body: RunPayload,
    ) -> Result<RunResponse, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        let body = body.0?;
        self.existing(&name).await?;
        let request = RunRequest::manual(
            name.clone(),
            RunParams { env: body.env },
            chrono::Utc::now().timestamp_millis(),
            body.deadline_secs
                .unwrap_or(rcron_shared::request::DEFAULT_DEADLINE_SECS),
        );
        self.state.store.request_run(&request).await?;
        self.state
            .audit
            .record(&Origin::of(req), "run", Some(name.as_str()), None, None);
        Ok(RunResponse::Accepted(Json(RunRequested {
            name: name.to_string(),
            request_id: request.id,
            deadline: request.deadline,
        })))
    }

    /// Pause a job
    ///
    /// The job is kept but no longer fired (a run in progress goes on);
    /// nothing else in it changes. Allowed to `operator` keys.
    #[oai(path = "/jobs/:name/pause", method = "post", operation_id = "pauseJob")]
    async fn pause(&self, req: &Request, name: Path<String>) -> Result<Json<JobView>, ApiError> {
        self.set_disabled(req, name.0, true).await
    }

    /// Resume a paused job
    ///
    /// Allowed to `operator` keys.
    #[oai(
        path = "/jobs/:name/resume",
        method = "post",
        operation_id = "resumeJob"
    )]
    async fn resume(&self, req: &Request, name: Path<String>) -> Result<Json<JobView>, ApiError> {
        self.set_disabled(req, name.0, false).await
    }

    /// Kill a job's running runs
    ///
    /// Every worker running the job kills the run's whole process group;
    /// the run is logged with status `killed`. Works for a job deleted while
    /// it ran; 404 only when the job does not exist and no worker runs it.
    #[oai(path = "/jobs/:name/kill", method = "post", operation_id = "killJob")]
    async fn kill(&self, req: &Request, name: Path<String>) -> Result<KillResponse, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        if self.state.store.get(&name).await?.is_none() {
            let workers = self.state.workers.list().await?;
            let running = workers
                .iter()
                .any(|w| w.running.iter().any(|j| *j == name.as_str()));
            if !running {
                return Err(Error::NotFound(name.to_string()).into());
            }
        }
        self.state.store.kill(&name).await?;
        self.state
            .audit
            .record(&Origin::of(req), "kill", Some(name.as_str()), None, None);
        Ok(KillResponse::Accepted(Json(KillAccepted {
            name: name.to_string(),
        })))
    }

    /// Kill one run
    ///
    /// The worker running the run with this id (from `GET /workers` or the
    /// run's log record) kills its whole process group; the run is logged
    /// with status `killed`. Other runs of the job go on.
    #[oai(path = "/runs/:run_id/kill", method = "post", operation_id = "killRun")]
    async fn kill_run(
        &self,
        req: &Request,
        run_id: Path<String>,
    ) -> Result<KillRunResponse, ApiError> {
        let run_id = run_id.0;
        if !rcron_shared::keys::is_run_id(&run_id) {
            return Err(Error::BadRequest(format!(
                "{run_id:?} is not a run id (letters, digits and '-', at most 64)"
            ))
            .into());
        }
        let workers = self.state.workers.list().await?;
        let Some((worker, run)) = workers.iter().find_map(|w| {
            w.runs
                .iter()
                .find(|r| r.run_id == run_id)
                .map(|r| (w.id.clone(), r.clone()))
        }) else {
            return Err(Error::RunNotFound(run_id).into());
        };
        self.state.store.kill_run(&run_id).await?;
        self.state
            .audit
            .record_run_kill(&Origin::of(req), &run.job, &run_id);
        Ok(KillRunResponse::Accepted(Json(KillRunAccepted {
            run_id,
            job: run.job,
            worker,
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use poem_openapi::registry::Registry;
    use poem_openapi::types::{ToJSON, Type};
    use rcron_shared::Job;

    /// A job with every field away from its default, so that the stored
    /// document leaves none out. A field added to `Job` and not set here
    /// fails the test below: set it.
    const EVERY_FIELD: &[u8] = br#"{"name":"all","command":"true","cronExpr":"@daily",
        "env":{"A":"1","TOKEN":{"file":"/run/secrets/token"}},"workdir":"/srv","user":"nobody",
        "timeoutSecs":30,"concurrency":"replace","retries":2,"retryBackoffSecs":5,
        "timezone":"Europe/Paris","disabled":true,"alertEmails":["ops@example.com"],
        "target":{"labels":{"role":"db"},"mode":"all"},"misfire":"runOnce",
        "startingDeadlineSecs":60,"alertOnMissed":false,"retryBackoffMaxSecs":600,
        "onSuccess":["next"],"onFailure":["cleanup"],"updatedAt":1700000000000}"#;

    #[test]
    fn the_rest_schema_views_and_stored_jobs_have_the_same_fields() {
        let mut registry = Registry::new();
        Job::register(&mut registry);
        let schema = &registry.schemas["Job"];
        let documented: BTreeSet<&str> = schema.properties.iter().map(|(name, _)| *name).collect();

        let job = Job::from_json(EVERY_FIELD).expect("valid job");
        let stored: serde_json::Value = serde_json::from_str(&job.to_json()).expect("json");
        let stored_fields: BTreeSet<&str> = stored
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(documented, stored_fields, "schema vs stored document");

        // A REST view spells every value as the stored document does.
        let view = ToJSON::to_json(&job)
            .and_then(|v| v.as_object().cloned())
            .expect("view");
        for field in &documented {
            assert_eq!(view.get(*field), stored.get(*field), "{field}");
        }
        assert_eq!(view.len(), documented.len());
        let required: BTreeSet<&str> = schema.required.iter().copied().collect();
        assert_eq!(required, BTreeSet::from(["name", "command", "cronExpr"]));
    }
}
