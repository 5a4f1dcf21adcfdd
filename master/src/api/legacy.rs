//! The original system's routes, byte-compatible: form-urlencoded POSTs and
//! answers `{"errno":0,"msg":"success","data":...}`; errors have
//! `errno != 0` and the reason in `msg`, with HTTP 200 as the original —
//! except when etcd is unreachable, which answers 503 with the same
//! envelope so load balancers and scripts can tell an outage apart.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use rcron_shared::{Job, JobName};
use serde::Serialize;

use crate::Error;
use crate::api::AppState;
use crate::audit::Origin;
use rcron_shared::runlog::LogQuery;

/// The `errno` of every failed legacy request, as in the original.
const ERRNO_FAILED: i32 = -1;

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    errno: i32,
    msg: String,
    data: T,
}

fn success<T: Serialize>(data: T) -> Response {
    reply(
        StatusCode::OK,
        &Envelope {
            errno: 0,
            msg: "success".to_string(),
            data,
        },
    )
}

fn failure(err: &Error) -> Response {
    let status = if err.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    reply(
        status,
        &Envelope {
            errno: ERRNO_FAILED,
            msg: err.to_string(),
            data: (),
        },
    )
}

fn reply<T: Serialize>(status: StatusCode, envelope: &Envelope<T>) -> Response {
    // Jobs and unit values always serialize.
    let body = serde_json::to_vec(envelope).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

/// The value of form field `field`, or a clear error.
async fn form_field(body: Body, field: &str) -> Result<String, Error> {
    let bytes = body
        .into_bytes()
        .await
        .map_err(|e| Error::BadRequest(format!("cannot read body: {e}")))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| Error::BadRequest(format!("body is not a valid form: {e}")))?;
    pairs
        .into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
        .ok_or_else(|| Error::BadRequest(format!("form field `{field}` is required")))
}

fn outcome<T: Serialize>(result: Result<T, Error>) -> Response {
    match result {
        Ok(data) => success(data),
        Err(err) => {
            tracing::debug!(error = %err, "legacy request failed");
            failure(&err)
        }
    }
}

/// `POST /job/save` with form field `job` (Job JSON); data = previous job or null.
#[handler]
pub(crate) async fn save(req: &Request, Data(state): Data<&Arc<AppState>>, body: Body) -> Response {
    outcome(
        async {
            let job = Job::from_json(form_field(body, "job").await?.as_bytes())?;
            let previous = state.store.save(&job).await?;
            let action = if previous.is_some() {
                "replace"
            } else {
                "create"
            };
            state.audit.record(
                &Origin::of(req),
                action,
                Some(job.name.as_str()),
                previous.as_ref(),
                Some(&job),
            );
            Ok(previous)
        }
        .await,
    )
}

/// `POST /job/delete` with form field `name`; data = the deleted job.
#[handler]
pub(crate) async fn delete(
    req: &Request,
    Data(state): Data<&Arc<AppState>>,
    body: Body,
) -> Response {
    outcome(
        async {
            let name = JobName::new(form_field(body, "name").await?)?;
            match state.store.delete(&name).await? {
                Some(job) => {
                    state.audit.record(
                        &Origin::of(req),
                        "delete",
                        Some(name.as_str()),
                        Some(&job),
                        None,
                    );
                    Ok(job)
                }
                None => Err(Error::NotFound(name.to_string())),
            }
        }
        .await,
    )
}

/// `GET /job/list`; data = every job.
#[handler]
pub(crate) async fn list(Data(state): Data<&Arc<AppState>>) -> Response {
    outcome(state.store.list().await)
}

/// `POST /job/kill` with form field `name`; data = null.
#[handler]
pub(crate) async fn kill(req: &Request, Data(state): Data<&Arc<AppState>>, body: Body) -> Response {
    outcome(
        async {
            // As the original: no existence check, so a run of a job
            // deleted meanwhile can still be killed.
            let name = JobName::new(form_field(body, "name").await?)?;
            state.store.kill(&name).await?;
            state
                .audit
                .record(&Origin::of(req), "kill", Some(name.as_str()), None, None);
            Ok(())
        }
        .await,
    )
}

/// Query of `GET /job/log`.
#[derive(serde::Deserialize)]
pub(crate) struct LogParams {
    name: Option<String>,
    skip: Option<String>,
    limit: Option<String>,
}

fn number(field: &str, value: Option<&str>, default: u64) -> Result<u64, Error> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::BadRequest(format!(
                "`{field}` must be a non-negative integer, got {v:?}"
            ))
        }),
    }
}

/// `GET /job/log?name=&skip=&limit=`; data = the job's runs, newest first
/// (default limit 20).
#[handler]
pub(crate) async fn log(
    Data(state): Data<&Arc<AppState>>,
    Query(params): Query<LogParams>,
) -> Response {
    outcome(
        async {
            let name = params
                .name
                .ok_or_else(|| Error::BadRequest("query parameter `name` is required".into()))?;
            let name = JobName::new(name)?;
            let query = LogQuery {
                job: Some(name.to_string()),
                status: None,
                skip: number("skip", params.skip.as_deref(), 0)?,
                limit: number("limit", params.limit.as_deref(), 20)?,
            };
            Ok(state.logs.query(&query).await?.records)
        }
        .await,
    )
}

/// `GET /worker/list`; data = the IPs of the live workers, as the original.
#[handler]
pub(crate) async fn workers(Data(state): Data<&Arc<AppState>>) -> Response {
    outcome(
        async {
            Ok(state
                .workers
                .list()
                .await?
                .into_iter()
                .map(|w| w.ip)
                .collect::<Vec<_>>())
        }
        .await,
    )
}
