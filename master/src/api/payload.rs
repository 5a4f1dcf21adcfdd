//! The job request body: documented in OpenAPI as [`JobSpec`], decoded by
//! the shared [`Job::from_json`], so REST and legacy routes accept and
//! refuse exactly the same documents and every problem is named (a missing
//! `cronExpr` says so, rather than "expected string, found null").

use poem::{Request, RequestBody};
use poem_openapi::impl_apirequest_for_payload;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use rcron_shared::Job;

use crate::Error;
use crate::api::jobs::JobSpec;

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
        JobSpec::schema_ref()
    }

    fn register(registry: &mut Registry) {
        JobSpec::register(registry);
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
