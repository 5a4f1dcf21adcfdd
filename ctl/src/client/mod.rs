//! The typed client of rcron's REST API (`/api/v1`): one method per
//! operation rcronctl uses, each answering the decoded document and the
//! JSON exactly as the API sent it (what `-o json` prints).
//!
//! Jobs travel as [`rcron_shared::Job`], run records as
//! [`rcron_shared::LogRecord`], workers as [`rcron_shared::WorkerInfo`]:
//! the types the master stores and serves. The API's other documents are
//! in [`types`]. A job written by the user (`job save`) is sent as the
//! JSON document it is, so that the master, not this client, judges it and
//! every refusal is the API's own message.

pub mod stream;
pub mod types;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use self::types::{
    AuditPage, ClusterStatus, ErrorBody, JobList, JobVersions, JobView, KillAccepted,
    KillRunAccepted, LogPage, PatchedJob, Preview, PreviewRequest, RunBody, RunRequested, SavedJob,
    WorkerList,
};
use rcron_shared::{Job, RunStatus};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--server` is not an http(s) URL.
    #[error("invalid server URL {url:?}: {reason}")]
    BadServer {
        /// As given.
        url: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up HTTP: {0}")]
    Setup(#[source] reqwest::Error),
    /// No answer: the master is down, unreachable, or too slow.
    #[error("cannot reach {url}")]
    Unreachable {
        /// The URL of the request.
        url: String,
        /// What the HTTP client says.
        #[source]
        source: reqwest::Error,
    },
    /// The API refused: its message and, for an invalid job, each problem.
    #[error("{method} {path}: {status}: {message}{}", problem_lines(.problems))]
    Api {
        /// The request's method.
        method: Method,
        /// The request's path and query.
        path: String,
        /// The answer's status.
        status: StatusCode,
        /// The API's `error`.
        message: String,
        /// The API's `problems`.
        problems: Vec<String>,
    },
    /// A success answer that is not the document this client expects.
    #[error("{method} {path}: unexpected answer: {reason}")]
    Decode {
        /// The request's method.
        method: Method,
        /// The request's path and query.
        path: String,
        /// Why it does not decode.
        reason: String,
    },
}

fn problem_lines(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// An API answer: the document decoded, and the JSON as sent.
#[derive(Debug)]
pub struct Answer<T> {
    /// The decoded document.
    pub body: T,
    /// The JSON exactly as the API sent it.
    pub document: Value,
}

/// A connection to one master.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client of the master at `server` (`http://host:port`, maybe with
    /// a path prefix), sending `token` as a bearer token.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadServer {
            url: server.to_string(),
            reason,
        };
        let base = Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("expected http://host:port or https://…".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Self { http, base, token })
    }

    /// Every job, sorted by name: the API's pages (at most 1000 jobs each)
    /// followed to the last; `document` is the jobs of every page in one
    /// `{"jobs", "total"}`.
    pub async fn jobs(&self) -> Result<Answer<JobList>, ClientError> {
        let page = |cursor: Option<String>| {
            let mut params = vec![("limit", "1000".to_string())];
            params.extend(cursor.map(|c| ("cursor", c)));
            async move {
                self.call(Method::GET, &["jobs"], &params, None::<&()>)
                    .await
            }
        };
        let mut all: Answer<JobList> = page(None).await?;
        while let Some(cursor) = all.body.next_cursor.take() {
            let next: Answer<JobList> = page(Some(cursor)).await?;
            all.body.jobs.extend(next.body.jobs);
            all.body.next_cursor = next.body.next_cursor;
            if let (Some(Value::Array(to)), Some(Value::Array(from))) =
                (all.document.get_mut("jobs"), next.document.get("jobs"))
            {
                to.extend(from.iter().cloned());
            }
        }
        if let Some(doc) = all.document.as_object_mut() {
            doc.remove("nextCursor");
        }
        Ok(all)
    }

    /// One job.
    pub async fn job(&self, name: &str) -> Result<Answer<JobView>, ClientError> {
        self.call(Method::GET, &["jobs", name], &[], None::<&()>)
            .await
    }

    /// Creates or replaces the job `name` with `document` (a job's JSON,
    /// judged by the master).
    pub async fn put_job(
        &self,
        name: &str,
        document: &Value,
    ) -> Result<Answer<SavedJob>, ClientError> {
        self.call(Method::PUT, &["jobs", name], &[], Some(document))
            .await
    }

    /// Creates or replaces a job already checked here.
    pub async fn save_job(&self, job: &Job) -> Result<Answer<SavedJob>, ClientError> {
        self.call(Method::PUT, &["jobs", job.name.as_str()], &[], Some(job))
            .await
    }

    /// Changes only `fields` of the job `name` (a JSON merge patch).
    pub async fn patch_job(
        &self,
        name: &str,
        fields: &Map<String, Value>,
    ) -> Result<Answer<PatchedJob>, ClientError> {
        self.call(Method::PATCH, &["jobs", name], &[], Some(fields))
            .await
    }

    /// Deletes a job; answers it.
    pub async fn delete_job(&self, name: &str) -> Result<Answer<Job>, ClientError> {
        self.call(Method::DELETE, &["jobs", name], &[], None::<&()>)
            .await
    }

    /// Asks the workers to kill the job's running runs.
    pub async fn kill_job(&self, name: &str) -> Result<Answer<KillAccepted>, ClientError> {
        self.call(Method::POST, &["jobs", name, "kill"], &[], None::<&()>)
            .await
    }

    /// Asks for one run of the job, as soon as its lock and a worker's
    /// slot are free, with `body`'s settings for that run only.
    pub async fn run_job(
        &self,
        name: &str,
        body: &RunBody,
    ) -> Result<Answer<RunRequested>, ClientError> {
        self.call(Method::POST, &["jobs", name, "run"], &[], Some(body))
            .await
    }

    /// The job's versions from the audit trail, newest first.
    pub async fn versions(&self, name: &str) -> Result<Answer<JobVersions>, ClientError> {
        self.call(Method::GET, &["jobs", name, "versions"], &[], None::<&()>)
            .await
    }

    /// Kills one run by id.
    pub async fn kill_run(&self, run_id: &str) -> Result<Answer<KillRunAccepted>, ClientError> {
        self.call(Method::POST, &["runs", run_id, "kill"], &[], None::<&()>)
            .await
    }

    /// A page of run records, newest first.
    pub async fn logs(&self, query: &LogQuery<'_>) -> Result<Answer<LogPage>, ClientError> {
        // The table shows each run's last line of output: asked for.
        let mut params = vec![
            ("limit", query.limit.to_string()),
            ("output", "true".to_string()),
        ];
        if query.skip > 0 {
            params.push(("skip", query.skip.to_string()));
        }
        if let Some(job) = query.job {
            params.push(("job", job.to_string()));
        }
        if let Some(status) = query.status {
            params.push(("status", status.as_str().to_string()));
        }
        self.call(Method::GET, &["logs"], &params, None::<&()>)
            .await
    }

    /// Live workers.
    pub async fn workers(&self) -> Result<Answer<WorkerList>, ClientError> {
        self.call(Method::GET, &["workers"], &[], None::<&()>).await
    }

    /// Masters, leader, health, pending alerts.
    pub async fn cluster(&self) -> Result<Answer<ClusterStatus>, ClientError> {
        self.call(Method::GET, &["cluster"], &[], None::<&()>).await
    }

    /// A page of the audit trail, newest first.
    pub async fn audit(
        &self,
        job: Option<&str>,
        key: Option<&str>,
        limit: u64,
    ) -> Result<Answer<AuditPage>, ClientError> {
        let mut params = vec![("limit", limit.to_string())];
        for (name, value) in [("job", job), ("key", key)] {
            if let Some(value) = value {
                params.push((name, value.to_string()));
            }
        }
        self.call(Method::GET, &["audit"], &params, None::<&()>)
            .await
    }

    /// The next fire times of an expression.
    pub async fn preview(&self, request: &PreviewRequest) -> Result<Answer<Preview>, ClientError> {
        self.call(Method::POST, &["cron", "preview"], &[], Some(request))
            .await
    }

    /// `/api/v1/<segments…>?<params>`, each segment escaped: a job name is
    /// one path segment whatever it holds.
    fn url(&self, segments: &[&str], params: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        url
    }

    async fn call<B, T>(
        &self,
        method: Method,
        segments: &[&str],
        params: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Answer<T>, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = self.url(segments, params);
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let document: Option<Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            let error: Option<ErrorBody> = document
                .as_ref()
                .and_then(|d| serde_json::from_value(d.clone()).ok());
            let (message, problems) = match error {
                Some(e) => (e.error, e.problems),
                None => (text, Vec::new()),
            };
            return Err(ClientError::Api {
                method,
                path,
                status,
                message,
                problems,
            });
        }
        let decode = |reason: String| ClientError::Decode {
            method: method.clone(),
            path: path.clone(),
            reason,
        };
        let document = document.ok_or_else(|| decode(format!("not JSON: {text:.200}")))?;
        let body = serde_json::from_value(document.clone()).map_err(|e| decode(e.to_string()))?;
        Ok(Answer { body, document })
    }
}

/// Which run records to read.
#[derive(Debug, Clone, Copy)]
pub struct LogQuery<'a> {
    /// Only this job's.
    pub job: Option<&'a str>,
    /// Only records of this status.
    pub status: Option<RunStatus>,
    /// Records to skip (newest first).
    pub skip: u64,
    /// Most records.
    pub limit: u64,
}
