//! The original system's routes (ARCHITECTURE §6), answering as it did
//! wherever a script can tell. Every route takes any method, as Go's
//! `ServeMux` did; form values are read as Go's `Request.ParseForm` reads
//! them ([`Form`]); answers are `{"errno":0,"msg":"success","data":...}`
//! with HTTP 200, errors `errno: -1` with the reason in `msg` and `data:
//! null`.
//!
//! What the original answered (its `master/ApiServer.go`, `JobMgr.go`,
//! `LogMgr.go` and `WorkerMgr.go`), and so what these answer:
//! - `/job/save` (`job=`): data = the job it replaced, or null.
//! - `/job/delete` (`name=`): data = the deleted job, or null when there
//!   was none — deleting nothing is not an error.
//! - `/job/list`: every job, `[]` when none; a document that does not read
//!   as a job is left out.
//! - `/job/kill` (`name=`): null, whether or not the job exists.
//! - `/job/log` (`name`, `skip`, `limit` from the query or the form): runs
//!   of that exact name, newest first; a `skip` or `limit` that is not an
//!   integer falls back to 0 and 20.
//! - `/worker/list`: the key of every registration (the original's workers
//!   register their IP), `[]` when none; rcron workers show their `ip`.
//!
//! Documents the original stored and rcron refuses (a name with a space,
//! an expression croner cannot parse) are listed, returned and deleted as
//! the original read them: their `name`, `command` and `cronExpr`.
//!
//! Deliberate differences, where the original did harm: a job is
//! validated before it is stored (the original stored any JSON); `msg` is
//! rcron's sentence, not Go's; etcd or MongoDB unreachable answers 503
//! (same envelope) so an outage is told apart from a refusal; a log page
//! holds at most [`MAX_PAGE`] records (`limit=0` meant all of them); the
//! log shows runs only, not the verdicts of ticks that ran no command; a
//! kill naming no job rcron could run (empty, or a name it refuses) and a
//! delete of the empty name write nothing; answers are `application/json`
//! (Go sent them as sniffed `text/plain`). Jobs and log records carry
//! rcron's fields beside the original's.

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use rcron_shared::{Job, JobName, ScheduleCache};
use serde::Serialize;
use serde_json::Value;

use crate::Error;
use crate::api::AppState;
use crate::audit::Origin;
use rcron_shared::runlog::{LogQuery, MAX_PAGE};

/// The `errno` of every failed legacy request, as in the original.
const ERRNO_FAILED: i32 = -1;

/// Records per `/job/log` page when `limit` is absent or not an integer.
const DEFAULT_LIMIT: i64 = 20;

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
    // Jobs, records, strings and unit values always serialize.
    let body = serde_json::to_vec(envelope).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
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

/// A request's form values, read as Go's `Request.ParseForm` reads them:
/// the body of a POST, PUT or PATCH, and the query string. Go reads the
/// body only when it is declared `application/x-www-form-urlencoded`; this
/// reads it whatever the declared type, so a client that omits the header
/// is not refused.
struct Form {
    body: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Form {
    async fn read(req: &Request, body: Body) -> Result<Self, Error> {
        let query = serde_urlencoded::from_str(req.uri().query().unwrap_or_default())
            .map_err(|e| Error::BadRequest(format!("query string is not a valid form: {e}")))?;
        let body = if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            let bytes = body
                .into_bytes()
                .await
                .map_err(|e| Error::BadRequest(format!("cannot read body: {e}")))?;
            serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| Error::BadRequest(format!("body is not a valid form: {e}")))?
        } else {
            Vec::new()
        };
        Ok(Self { body, query })
    }

    /// Go's `PostForm.Get`: the body's first value of `field`, or "".
    fn post(&self, field: &str) -> &str {
        first(&self.body, field).unwrap_or_default()
    }

    /// Go's `Form.Get`: the body's first value of `field`, else the
    /// query's, or "".
    fn get(&self, field: &str) -> &str {
        first(&self.body, field)
            .or_else(|| first(&self.query, field))
            .unwrap_or_default()
    }
}

fn first<'a>(pairs: &'a [(String, String)], field: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.as_str())
}

/// A stored job as the legacy routes show it.
#[derive(Serialize)]
#[serde(untagged)]
enum StoredJob {
    /// An rcron job, with all its fields.
    Job(Box<Job>),
    /// A document rcron refuses, as the original read it.
    Original(OriginalJob),
}

/// The original's job: three strings.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct OriginalJob {
    name: String,
    command: String,
    cron_expr: String,
}

fn view(value: &[u8], schedules: &mut ScheduleCache) -> Option<StoredJob> {
    if let Ok(job) = Job::from_stored_cached(value, schedules) {
        return Some(StoredJob::Job(Box::new(job)));
    }
    let original = read_as_original(value);
    if original.is_none() {
        tracing::warn!(
            value = %String::from_utf8_lossy(value),
            "stored job readable neither by rcron nor by the original; left out"
        );
    }
    original.map(StoredJob::Original)
}

/// A job document read as the original read it (Go's `encoding/json` into
/// its three-field struct): `null` is an empty job; field names match
/// whatever their case; an absent or null field is empty; a field of
/// another type, or a document that is not an object, is unreadable.
fn read_as_original(value: &[u8]) -> Option<OriginalJob> {
    let fields = match serde_json::from_slice::<Value>(value).ok()? {
        Value::Null => return Some(OriginalJob::default()),
        Value::Object(fields) => fields,
        _ => return None,
    };
    let mut job = OriginalJob::default();
    for (key, value) in fields {
        let slot = if key.eq_ignore_ascii_case("name") {
            &mut job.name
        } else if key.eq_ignore_ascii_case("command") {
            &mut job.command
        } else if key.eq_ignore_ascii_case("cronExpr") {
            &mut job.cron_expr
        } else {
            continue;
        };
        match value {
            Value::String(s) => *slot = s,
            Value::Null => {}
            _ => return None,
        }
    }
    Some(job)
}

/// `/job/save` with form field `job` (Job JSON); data = the job it
/// replaced, or null.
#[handler]
pub(crate) async fn save(req: &Request, Data(state): Data<&Arc<AppState>>, body: Body) -> Response {
    outcome(
        async {
            let form = Form::read(req, body).await?;
            let job = Job::from_json(form.post("job").as_bytes())?;
            let previous = state.store.save_returning_stored(&job).await?;
            let before = previous.as_deref().and_then(|v| Job::from_stored(v).ok());
            let action = if previous.is_some() {
                "replace"
            } else {
                "create"
            };
            state.audit.record(
                &Origin::of(req),
                action,
                Some(job.name.as_str()),
                before.as_ref(),
                Some(&job),
            );
            Ok(previous
                .as_deref()
                .and_then(|v| view(v, &mut ScheduleCache::default())))
        }
        .await,
    )
}

/// `/job/delete` with form field `name`; data = the deleted job, or null.
#[handler]
pub(crate) async fn delete(
    req: &Request,
    Data(state): Data<&Arc<AppState>>,
    body: Body,
) -> Response {
    outcome(
        async {
            let form = Form::read(req, body).await?;
            let name = form.post("name");
            if name.is_empty() {
                // A GET (no form body) or no `name`: nothing to delete.
                return Ok(None);
            }
            let Some(previous) = state.store.delete_any_name(name).await? else {
                return Ok(None);
            };
            let before = Job::from_stored(&previous).ok();
            state.audit.record(
                &Origin::of(req),
                "delete",
                Some(name),
                before.as_ref(),
                None,
            );
            Ok(view(&previous, &mut ScheduleCache::default()))
        }
        .await,
    )
}

/// `/job/list`; data = every stored job, in name order.
#[handler]
pub(crate) async fn list(Data(state): Data<&Arc<AppState>>) -> Response {
    outcome(
        async {
            let mut schedules = ScheduleCache::default();
            Ok(state
                .store
                .list_stored()
                .await?
                .iter()
                .filter_map(|v| view(v, &mut schedules))
                .collect::<Vec<_>>())
        }
        .await,
    )
}

/// `/job/kill` with form field `name`; data = null.
#[handler]
pub(crate) async fn kill(req: &Request, Data(state): Data<&Arc<AppState>>, body: Body) -> Response {
    outcome(
        async {
            let form = Form::read(req, body).await?;
            // As the original: no existence check, so a run of a job
            // deleted meanwhile can still be killed. A name rcron refuses
            // (or none) names no run an rcron worker could hold.
            if let Ok(name) = JobName::new(form.post("name")) {
                state.store.kill(&name).await?;
                state
                    .audit
                    .record(&Origin::of(req), "kill", Some(name.as_str()), None, None);
            }
            Ok(())
        }
        .await,
    )
}

/// Go's `strconv.Atoi`, as the original parsed `skip` and `limit`: an
/// optional sign and decimal digits within 64 bits; anything else (empty,
/// a space, `abc`, `1.5`) is `None`.
fn atoi(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// The page size for the original's `limit`: MongoDB read 0 as "no limit"
/// and a negative one as a single batch of that many; a page here holds
/// at most [`MAX_PAGE`] records.
fn page_size(limit: i64) -> u64 {
    match limit.unsigned_abs() {
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// `/job/log?name=&skip=&limit=`; data = that job's runs, newest first.
#[handler]
pub(crate) async fn log(req: &Request, Data(state): Data<&Arc<AppState>>, body: Body) -> Response {
    outcome(
        async {
            let form = Form::read(req, body).await?;
            let skip = atoi(form.get("skip")).unwrap_or(0);
            let limit = atoi(form.get("limit")).unwrap_or(DEFAULT_LIMIT);
            // MongoDB refused a negative skip; so does this.
            let skip = u64::try_from(skip).map_err(|_| {
                Error::BadRequest(format!("`skip` must not be negative, got {skip}"))
            })?;
            let query = LogQuery {
                // Any string, as the original: a filter matches or not.
                job: Some(form.get("name").to_string()),
                status: None,
                worker: None,
                from: None,
                to: None,
                runs_only: true,
                skip,
                before: None,
                limit: page_size(limit),
                // The original's documents carried their output.
                with_output: true,
            };
            Ok(state.logs.query(&query).await?.records)
        }
        .await,
    )
}

/// `/worker/list`; data = the IP of every registered worker.
#[handler]
pub(crate) async fn workers(Data(state): Data<&Arc<AppState>>) -> Response {
    outcome(
        async {
            Ok(state
                .workers
                .registrations()
                .await?
                .into_iter()
                .map(|r| match r.record {
                    Some(w) if !w.ip.is_empty() => w.ip,
                    _ => r.id,
                })
                .collect::<Vec<_>>())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_reads_what_go_reads() {
        assert_eq!(atoi("7"), Some(7));
        assert_eq!(atoi("+7"), Some(7));
        assert_eq!(atoi("-7"), Some(-7));
        assert_eq!(atoi("007"), Some(7));
        for bad in [
            "",
            "abc",
            " 7",
            "7 ",
            "1.5",
            "1e3",
            "9223372036854775808",
            "+",
        ] {
            assert_eq!(atoi(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn page_sizes_follow_mongodb_within_the_cap() {
        assert_eq!(page_size(20), 20);
        assert_eq!(page_size(-5), 5);
        assert_eq!(page_size(0), MAX_PAGE);
        assert_eq!(page_size(i64::MIN), MAX_PAGE);
        assert_eq!(page_size(5000), MAX_PAGE);
    }

    #[test]
    fn documents_read_as_the_original_read_them() {
        let job = |name: &str, command: &str, cron: &str| OriginalJob {
            name: name.into(),
            command: command.into(),
            cron_expr: cron.into(),
        };
        assert_eq!(
            read_as_original(br#"{"name":"my job","command":"x","cronExpr":"61 * * * *"}"#),
            Some(job("my job", "x", "61 * * * *"))
        );
        assert_eq!(
            read_as_original(br#"{"NAME":"a","Command":null,"other":[1]}"#),
            Some(job("a", "", ""))
        );
        assert_eq!(read_as_original(b"null"), Some(job("", "", "")));
        assert_eq!(read_as_original(br#"{"name":5}"#), None);
        assert_eq!(read_as_original(b"[1]"), None);
        assert_eq!(read_as_original(b"{"), None);
        assert_eq!(read_as_original(b""), None);
    }
}
