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
