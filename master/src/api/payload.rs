//! Job request bodies, documented in OpenAPI by the schema [`Job`] derives:
//! a whole job ([`JobPayload`]), decoded by the shared [`Job::from_json`],
//! so REST and legacy routes accept and refuse exactly the same documents
//! and every problem is named (a missing `cronExpr` says so, rather than
//! "expected string, found null"); and the fields to change of one
//! ([`JobPatchPayload`]), validated once merged into the stored job.

use poem::{Request, RequestBody};
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use rcron_shared::Job;
use serde_json::{Map, Value};

use crate::Error;

/// A job sent as JSON, already validated (or the reasons it is not valid).
pub(super) struct JobPayload(pub Result<Job, Error>);

impl Payload for JobPayload {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        Job::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Job::register(registry);
    }
}

impl ParsePayload for JobPayload {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body.take()?.into_bytes().await?;
        Ok(Self(Job::from_json(&bytes).map_err(Error::from)))
    }
}

impl_apirequest_for_payload!(JobPayload);

/// The schema name of a patch body: [`Job`]'s, with no field required.
const PATCH_SCHEMA: &str = "JobPatch";

/// The fields of a job to change, as a JSON object (a JSON merge patch), or
/// why the body is not one.
pub(super) struct JobPatchPayload(pub Result<Map<String, Value>, Error>);

impl Payload for JobPatchPayload {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type.split(';').next().is_some_and(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.eq_ignore_ascii_case("application/merge-patch+json")
        })
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(PATCH_SCHEMA.to_string())
    }

    fn register(registry: &mut Registry) {
        // Derived from the job's own schema, so the two cannot differ.
        Job::register(registry);
        let job = registry.create_fake_schema::<Job>();
        registry
            .schemas
            .entry(PATCH_SCHEMA.to_string())
            .or_insert_with(|| {
                let mut patch = job;
                patch.rust_typename = None;
                patch.title = Some(PATCH_SCHEMA.to_string());
                patch.required.clear();
                patch.description = Some(
                    "Any fields of a job, to change only those (a JSON merge patch, RFC 7396): \
                 objects merge, `null` returns a field to its default.",
                );
                patch
            });
    }
}

impl ParsePayload for JobPatchPayload {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body.take()?.into_bytes().await?;
        let fields = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err(Error::BadRequest(
                "the body must be a JSON object of the fields to change, e.g. {\"disabled\": true}"
                    .into(),
            )),
            Err(e) => Err(Error::BadRequest(format!("the body is not JSON: {e}"))),
        };
        Ok(Self(fields))
    }
}

impl_apirequest_for_payload!(JobPatchPayload);

/// What `POST /jobs/{name}/run` may set for that run only.
#[derive(Debug, Default, poem_openapi::Object)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RunBody {
    /// Environment variables for this run, over the job's `env`; recorded
    /// in the run's log record.
    #[oai(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// How long the request may wait for the job's lock and a free slot
    /// before it is recorded `skipped` (seconds, 1–86400; default 600).
    #[oai(validator(minimum(value = "1"), maximum(value = "86400")))]
    pub deadline_secs: Option<u64>,
}

/// An optional [`RunBody`] (no body, or an empty one, sets nothing), or
/// why it is not one, every problem named.
pub(super) struct RunPayload(pub Result<RunBody, Error>);

impl Payload for RunPayload {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        RunBody::schema_ref()
    }

    fn register(registry: &mut Registry) {
        RunBody::register(registry);
    }
}

impl ParsePayload for RunPayload {
    const IS_REQUIRED: bool = false;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body.take()?.into_bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Ok(RunBody::default())));
        }
        let parsed = match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => run_body(value),
            Err(e) => Err(Error::BadRequest(format!("the body is not JSON: {e}"))),
        };
        Ok(Self(parsed))
    }
}

/// Reads a run body, naming every problem with the field it is in.
fn run_body(value: Value) -> Result<RunBody, Error> {
    const SHAPE: &str = "{\"env\": {\"NAME\": \"value\"}, \"deadlineSecs\": 600}";
    let Value::Object(fields) = value else {
        return Err(Error::BadRequest(format!(
            "the body must be a JSON object such as {SHAPE} (both fields optional)"
        )));
    };
    let mut problems = Vec::new();
    let mut body = RunBody::default();
    for (name, value) in fields {
        match name.as_str() {
            "env" => match value {
                Value::Object(vars) => {
                    for (var, v) in vars {
                        match v {
                            Value::String(v) => {
                                body.env.insert(var, v);
                            }
                            other => {
                                problems.push(format!("`env.{var}` must be a string, got {other}"))
                            }
                        }
                    }
                }
                other => problems.push(format!(
                    "`env` must be an object of variable names to string values, got {other}"
                )),
            },
            "deadlineSecs" => match value.as_u64() {
                Some(d) if (1..=rcron_shared::request::MAX_DEADLINE_SECS).contains(&d) => {
                    body.deadline_secs = Some(d);
                }
                _ => problems.push(format!(
                    "`deadlineSecs` must be a whole number from 1 to {}, got {value}",
                    rcron_shared::request::MAX_DEADLINE_SECS
                )),
            },
            other => problems.push(format!(
                "unknown field `{other}`: the body takes `env` and `deadlineSecs`, as in {SHAPE}"
            )),
        }
    }
    problems.extend(
        rcron_shared::RunParams {
            env: body.env.clone(),
        }
        .problems(),
    );
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(Error::BadRequest(problems.join("; ")))
    }
}

impl<'a> poem_openapi::ApiExtractor<'a> for RunPayload {
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<poem_openapi::registry::MetaRequest> {
        Some(poem_openapi::registry::MetaRequest {
            description: None,
            content: vec![poem_openapi::registry::MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: poem_openapi::ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // No content type: no body (or one to ignore the type of, like an
        // empty POST from a form or curl -d '').
        match request.content_type() {
            Some(ct) if !<Self as Payload>::check_content_type(ct) => {
                Err(poem_openapi::error::ContentTypeError::NotSupported {
                    content_type: ct.to_string(),
                }
                .into())
            }
            _ => <Self as ParsePayload>::from_request(request, body).await,
        }
    }
}
