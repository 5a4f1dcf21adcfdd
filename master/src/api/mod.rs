//! The HTTP surface of a master: the legacy routes of the original
//! ([`legacy`]), the REST API under `/api/v1` with its OpenAPI document and
//! Swagger UI ([`jobs`], [`cron`], [`logs`], [`output`]: runs' output as
//! Server-Sent Events), and health probes ([`health`]).
//!
//! Every route goes through [`origin`] (writes from pages of other
//! origins get 403; an open API answers only loopback hosts) and
//! [`limit_body`] (oversized bodies get 413); a parameter or body the REST
//! framework refuses is explained by [`explain`] (the field, what it
//! accepts, what was sent), and every other error poem itself raises
//! (unknown route) is turned into the same JSON shape the REST handlers
//! use: `{"error": "..."}`.

pub mod audit;
mod auth;
pub mod cluster;
pub mod cron;
pub mod dashboard;
mod explain;
mod health;
pub mod jobs;
mod legacy;
pub mod logs;
mod origin;
pub mod output;
mod payload;
pub mod stats;
mod ui;

use std::sync::Arc;

use chrono_tz::Tz;
use poem::http::StatusCode;
use poem::web::headers::{ContentLength, HeaderMapExt};
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApiService, Tags};
use serde::Serialize;

use crate::Error;
use crate::alerting::AlertStats;
use crate::election::LeaderState;
use crate::registry::WorkerRegistry;
use crate::store::JobStore;
use rcron_shared::runlog::RunLogStore;

/// What every handler shares.
pub struct AppState {
    /// Jobs and kill requests in etcd.
    pub store: JobStore,
    /// Every job in memory, for reads.
    pub jobs: Arc<crate::job_cache::JobCache>,
    /// Stops the state's own tasks (the job cache) when it is dropped.
    pub stop: tokio_util::sync::CancellationToken,
    /// The run log (records and verdicts).
    pub logs: Arc<dyn RunLogStore>,
    /// The worker registry in etcd.
    pub workers: WorkerRegistry,
    /// The audit trail's collection (`<db>.audit`), for reading it.
    pub audit_trail: mongodb::Collection<mongodb::bson::Document>,
    /// Zone of jobs that name none.
    pub timezone: Tz,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// This master's id.
    pub master_id: String,
    /// Whether this master leads.
    pub leader: Arc<LeaderState>,
    /// Alert counters.
    pub alert_stats: Arc<AlertStats>,
    /// The kinds of alert sink configured (`email`, `slack`, `webhook`).
    pub alert_sinks: Vec<String>,
    /// The dashboard, computed at most once per 2 s.
    pub dashboard: crate::console::Memo<dashboard::Dashboard>,
    /// Each job's last run, read moments ago.
    pub last_runs: crate::console::LastRuns,
    /// Time to answer API requests.
    pub api_latency: rcron_shared::metrics::Histogram,
    /// API tokens (none = open API).
    pub tokens: Arc<auth::Tokens>,
    /// Cross-site and DNS-rebinding guard.
    pub origin: Arc<origin::OriginPolicy>,
    /// Records every change in `cron.audit`.
    pub audit: crate::audit::Audit,
    /// The audit writer, awaited at shutdown.
    pub audit_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Reads running runs' output from their workers.
    pub live: Arc<crate::live::LiveOutput>,
}

impl Drop for AppState {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub use auth::{Caller, Role, Tokens, hash_secret};
pub use origin::OriginPolicy;

/// The whole HTTP application of a master.
pub fn routes(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    let api = OpenApiService::new(
        (
            jobs::JobsApi::new(state.clone()),
            logs::LogsApi::new(state.clone()),
            cluster::ClusterApi::new(state.clone()),
            dashboard::DashboardApi::new(state.clone()),
            stats::StatsApi::new(state.clone()),
            cron::CronApi::new(state.clone()),
            audit::AuditApi::new(state.clone()),
            output::OutputApi::new(state.clone()),
        ),
        "rcron",
        rcron_shared::VERSION,
    )
    .description(
        "REST API of rcron, a distributed cron. Every error answers with a JSON body \
         `{\"error\": \"...\"}` (and `problems` listing each issue with a job).",
    );
    let explainer = Arc::new(explain::Explainer::new(&api.spec()));
    let max_body = state.max_body_bytes;
    let timing_state = state.clone();
    let tokens = state.tokens.clone();
    let origin = state.origin.clone();
    Route::new()
        .at("/", get(ui::index))
        .at("/ui/*path", get(ui::asset))
        // Any method, as the original's `ServeMux` routes.
        .at("/job/save", legacy::save)
        .at("/job/delete", legacy::delete)
        .at("/job/list", legacy::list)
        .at("/job/kill", legacy::kill)
        .at("/job/log", legacy::log)
        .at("/worker/list", legacy::workers)
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::metrics))
        .at("/api/v1/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest_no_strip("/api/v1", api)
        .data(state)
        .around(move |ep, req| explain::check(ep, req, explainer.clone()))
        .around(move |ep, req| auth::check(ep, req, tokens.clone()))
        // Outside the token check: a foreign page is refused before it
        // learns whether a token is needed.
        .around(move |ep, req| origin::check(ep, req, origin.clone()))
        .around(move |ep, req| limit_body(ep, req, max_body))
        .around(move |ep, req| timed(ep, req, timing_state.clone()))
        .catch_all_error(|err: poem::Error| async move {
            if err.is_from_response() {
                // Already a complete answer (an `ApiError`): keep its body.
                err.into_response()
            } else {
                error_response(err.status(), &err.to_string())
            }
        })
}

/// Observes how long every request takes (errors included).
async fn timed<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    state.api_latency.observe(started.elapsed());
    result
}

/// Reads at most `max` bytes of body before calling `ep`, so no handler
/// ever buffers more than that, whether or not the client sent a length.
async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
) -> poem::Result<Response> {
    if let Some(ContentLength(len)) = req.headers().typed_get::<ContentLength>()
        && len > max as u64
    {
        return Ok(too_large(max));
    }
    let bytes = match req.take_body().into_bytes_limit(max).await {
        Ok(bytes) => bytes,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large(max)),
        Err(e) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
            ));
        }
    };
    req.set_body(Body::from_bytes(bytes));
    Ok(ep.call(req).await?.into_response())
}

fn too_large(max: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than the limit of {max} bytes"),
    )
}

#[derive(Serialize)]
struct PlainError<'a> {
    error: &'a str,
}

/// A JSON error outside the OpenAPI handlers (legacy errors use the
/// original's envelope instead, see [`legacy`]).
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&PlainError { error: message }).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

/// Groups of REST operations in the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// Scheduled jobs: create, change, pause, delete, kill.
    Jobs,
    /// Run logs: what ran, when, how it ended, its output.
    Logs,
    /// Workers registered in the cluster.
    Workers,
    /// Masters, leader, health, pending alerts, the dashboard.
    Cluster,
    /// Cron expression tools.
    Cron,
    /// Who changed what, and the jobs before and after.
    Audit,
}

/// What went wrong, for a human.
#[derive(Debug, Object)]
pub struct ErrorBody {
    /// One sentence saying what is wrong.
    pub error: String,
    /// Each problem found in a job (absent for other errors).
    #[oai(default, skip_serializing_if_is_empty)]
    pub problems: Vec<String>,
}

/// Every error a REST operation can answer with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is invalid (bad job, name, cron expression, zone, field).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The named job does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The job already exists.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the master accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// etcd or MongoDB cannot be reached; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// Something stored is broken; the message says what.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

impl From<rcron_shared::runlog::RunLogError> for ApiError {
    fn from(err: rcron_shared::runlog::RunLogError) -> Self {
        Error::from(err).into()
    }
}

impl From<Error> for ApiError {
    /// The one place that decides the status code of a domain error.
    fn from(err: Error) -> Self {
        let problems = match &err {
            Error::Invalid(rcron_shared::Error::InvalidJob { problems }) => problems.clone(),
            _ => Vec::new(),
        };
        let body = Json(ErrorBody {
            error: err.to_string(),
            problems,
        });
        if err.is_unavailable() {
            tracing::warn!(error = %err, "dependency unavailable");
            return Self::Unavailable(body);
        }
        match err {
            Error::Invalid(_) | Error::BadRequest(_) => Self::BadRequest(body),
            Error::NotFound(_) | Error::RunNotFound(_) | Error::NoRecord(_) => Self::NotFound(body),
            Error::Conflict(_) => Self::Conflict(body),
            Error::EtcdUnavailable(_)
            | Error::MongoUnavailable(_)
            | Error::RunLogUnavailable(_) => Self::Unavailable(body),
            Error::Etcd(_)
            | Error::Mongo(_)
            | Error::RunLog(_)
            | Error::Corrupt { .. }
            | Error::Listen(_) => {
                tracing::error!(error = %body.0.error, "request failed");
                Self::Internal(body)
            }
        }
    }
}
