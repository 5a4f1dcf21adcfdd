//! `/api/v1/runs/{runId}/output/stream` and
//! `/api/v1/jobs/{name}/output/stream`: the output of a run as it prints,
//! as Server-Sent Events relayed from its worker ([`crate::live`]), or a
//! finished run's stored output.
//!
//! Events: `run` (JSON: which run, `running`), `output` (text; one `data:`
//! line per line), then `end` (JSON `{status, reason?, exitCode?, runId}`)
//! or `error` (JSON `{message}`: the worker died or cannot be reached),
//! after which the stream closes. A comment (`: keep-alive`) comes every
//! 15 s while the run is silent. Errors before the stream starts are JSON
//! with a status code, as everywhere in the API.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use poem::http::header;
use poem::{Body, IntoResponse, Response};
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, OpenApi};
use rcron_shared::live::LiveEvent;
use rcron_shared::runlog::LogQuery;
use rcron_shared::{JobName, RunRef, WorkerInfo};

use crate::Error;
use crate::api::{ApiError, ApiTags, AppState, ErrorBody};
use crate::live::{OpenError, Relay, find_run, newest_run_of, stored_events};

/// How long a run that its worker no longer has is looked for in the run
/// log: its record is on its way (the worker flushes records in batches).
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// How long to look for a run no worker lists and the run log does not
/// hold: a run that has just started is not yet in its worker's
/// registration, and one that has just ended is off it before its record
/// is in the run log, so a run id minted (UUIDv7) in the last ten minutes
/// gets [`RECORD_WAIT`]; any other id is answered at once.
fn in_flight_wait(run_id: &str) -> Duration {
    let minted_ms = uuid::Uuid::parse_str(run_id)
        .ok()
        .filter(|id| id.get_version_num() == 7)
        .and_then(|id| id.get_timestamp())
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        });
    let now = chrono::Utc::now().timestamp_millis();
    match minted_ms {
        Some(ms) if (now - 600_000..=now + 60_000).contains(&ms) => RECORD_WAIT,
        _ => Duration::ZERO,
    }
}

/// How often a run that is not found yet is looked for again.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// The answer for a run found neither on a worker nor in the run log.
fn not_found(run_id: &str) -> StreamResponse {
    StreamResponse::NotFound(body(format!(
        "run {run_id:?} is not running on any live worker and has no record in the run log"
    )))
}

/// Streams of runs' output.
pub struct OutputApi {
    state: Arc<AppState>,
}

impl OutputApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// A `text/event-stream` body, sent as it is produced.
pub struct EventStream(Body);

impl Payload for EventStream {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
            "string",
            "event-stream",
        )))
    }
}

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-cache")
            // Proxies that buffer answers (nginx) pass this one through as it comes.
            .header("X-Accel-Buffering", "no")
            .body(self.0)
    }
}

/// The answers of an output stream.
#[derive(ApiResponse)]
pub enum StreamResponse {
    /// Server-Sent Events: `run`, `output`…, then `end` or `error`.
    #[oai(status = 200)]
    Stream(EventStream),
    /// The run id or job name is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such run (not running on a live worker, no record), or the job
    /// has no run going and none recorded.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The run's worker cannot be read from (unreachable, refuses the
    /// master's credential, or serves no live output).
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// etcd or MongoDB cannot be reached; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// Something stored is broken; the message says what.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn body(message: String) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: message,
        problems: Vec::new(),
    })
}

impl From<Error> for StreamResponse {
    fn from(err: Error) -> Self {
        match ApiError::from(err) {
            ApiError::BadRequest(b) => Self::BadRequest(b),
            ApiError::NotFound(b) => Self::NotFound(b),
            ApiError::Unavailable(b) => Self::Unavailable(b),
            ApiError::Conflict(b)
            | ApiError::PayloadTooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::Internal(b) => Self::Internal(b),
        }
    }
}

/// Where a stream's events come from.
enum Source {
    /// A worker, as its run prints.
    Worker(Box<Relay>),
    /// Known already (a stored run).
    Known(VecDeque<LiveEvent>),
}

fn stream(source: Source) -> StreamResponse {
    let pieces = futures::stream::unfold(source, |mut source| async move {
        let piece = match &mut source {
            Source::Worker(relay) => relay.next_sse().await?,
            Source::Known(events) => events.pop_front()?.to_sse(),
        };
        Some((Ok::<_, std::io::Error>(piece), source))
    });
    StreamResponse::Stream(EventStream(Body::from_bytes_stream(pieces)))
}

impl OutputApi {
    /// Follows `run` on `worker`; its stored output if the worker no
    /// longer has it.
    async fn follow(&self, worker: WorkerInfo, run: RunRef) -> StreamResponse {
        match self.state.live.open(&worker, &run).await {
            Ok(relay) => {
                tracing::debug!(worker = %worker.id, run_id = %run.run_id, "relaying live output");
                stream(Source::Worker(Box::new(relay)))
            }
            Err(OpenError::NotThere(_)) => self.stored(&run.run_id, RECORD_WAIT).await,
            Err(e) => {
                tracing::warn!(worker = %worker.id, run_id = %run.run_id, error = %e, "cannot relay live output");
                StreamResponse::BadGateway(body(e.to_string()))
            }
        }
    }

    /// The stored output of run `run_id`, waiting up to `wait` for its
    /// record to arrive.
    async fn stored(&self, run_id: &str, wait: Duration) -> StreamResponse {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(found) = self.record_of(run_id).await {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                return not_found(run_id);
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
    }

    /// The stored output of `run_id` (or the run log's failure); None
    /// while it has no record.
    async fn record_of(&self, run_id: &str) -> Option<StreamResponse> {
        match self.state.logs.run(run_id).await {
            Ok(attempts) if attempts.is_empty() => None,
            Ok(attempts) => Some(stream(Source::Known(stored_events(&attempts).into()))),
            Err(e) => Some(Error::from(e).into()),
        }
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, StreamResponse> {
        self.state
            .workers
            .list()
            .await
            .map_err(StreamResponse::from)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Logs")]
impl OutputApi {
    /// Stream a run's output
    ///
    /// Server-Sent Events (`text/event-stream`). For a running run: what it
    /// printed so far, then its output as it prints, relayed from its
    /// worker (any master serves this), until it ends. For a finished run:
    /// its stored output. Events: `run` (JSON `{runId, job, worker,
    /// startTime, running}`), `output` (the text; one `data:` line per
    /// line), then `end` (JSON `{status, reason?, exitCode?, runId}`) or
    /// `error` (JSON `{message}`, when the worker died or cannot be reached
    /// mid-stream); then the stream closes. A `: keep-alive` comment comes
    /// every 15 s of silence.
    #[oai(
        path = "/runs/:run_id/output/stream",
        method = "get",
        operation_id = "streamRunOutput"
    )]
    async fn run_stream(&self, run_id: Path<String>) -> StreamResponse {
        let run_id = run_id.0;
        if !rcron_shared::keys::is_run_id(&run_id) {
            return StreamResponse::BadRequest(body(format!(
                "`runId` is letters, digits and `-` (at most 64), got {run_id:?}"
            )));
        }
        let workers = match self.workers().await {
            Ok(w) => w,
            Err(refused) => return refused,
        };
        // A run id minted a moment ago may be on neither yet: its worker
        // registers a run a few hundred ms after it starts, and writes
        // its record after it ends. Both are looked at again until then.
        let deadline = tokio::time::Instant::now() + in_flight_wait(&run_id);
        let mut workers = workers;
        loop {
            if let Some((worker, run)) = find_run(workers, &run_id) {
                return self.follow(worker, run).await;
            }
            if let Some(found) = self.record_of(&run_id).await {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                return not_found(&run_id);
            }
            tokio::time::sleep(LOOK_AGAIN).await;
            workers = match self.workers().await {
                Ok(w) => w,
                Err(refused) => return refused,
            };
        }
    }

    /// Stream a job's running output
    ///
    /// As `GET /runs/{runId}/output/stream`, for the job's newest run going
    /// now (the `run` event names it); when none is going, the stored
    /// output of its newest recorded run. 404 when the job has neither
    /// (or does not exist). The stream follows that one run: to follow
    /// the next runs too, open it again after `end` (as `rcronctl logs
    /// --follow JOB` does).
    #[oai(
        path = "/jobs/:name/output/stream",
        method = "get",
        operation_id = "streamJobOutput"
    )]
    async fn job_stream(&self, name: Path<String>) -> StreamResponse {
        let name = match JobName::new(name.0) {
            Ok(name) => name,
            Err(e) => return Error::from(e).into(),
        };
        let workers = match self.workers().await {
            Ok(w) => w,
            Err(refused) => return refused,
        };
        if let Some((worker, run)) = newest_run_of(workers, name.as_str()) {
            return self.follow(worker, run).await;
        }
        let newest = self
            .state
            .logs
            .query(&LogQuery {
                job: Some(name.to_string()),
                status: None,
                worker: None,
                from: None,
                to: None,
                runs_only: true,
                skip: 0,
                before: None,
                limit: 1,
                with_output: false,
            })
            .await;
        match newest {
            Ok(page) => match page.records.first() {
                Some(record) => self.stored(&record.run_id, Duration::ZERO).await,
                None => match self.state.jobs.job(&name, &self.state.store).await {
                    Ok(Some(_)) => StreamResponse::NotFound(body(format!(
                        "job {name:?} has no run going and none recorded"
                    ))),
                    Ok(None) => Error::NotFound(name.to_string()).into(),
                    Err(e) => e.into(),
                },
            },
            Err(e) => Error::from(e).into(),
        }
    }
}
