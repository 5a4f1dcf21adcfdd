//! `/api/v1/cron/preview`: what an expression means, before saving a job.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use rcron_shared::Schedule;
use rcron_shared::cron::parse_timezone;

use crate::Error;
use crate::api::{ApiError, ApiTags, AppState};

/// Most fire times one preview returns.
pub const MAX_PREVIEW: u32 = 100;

/// REST operations on cron expressions.
pub struct CronApi {
    state: Arc<AppState>,
}

impl CronApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

fn default_count() -> u32 {
    5
}

/// An expression to preview.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PreviewRequest {
    /// Cron expression, in the same syntax as a job's `cronExpr`.
    pub cron_expr: String,
    /// IANA zone to evaluate it in; absent = the cluster's zone.
    #[oai(skip_serializing_if_is_none)]
    pub timezone: Option<String>,
    /// How many fire times to return (1–100, default 5).
    #[oai(
        default = "default_count",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    pub count: u32,
    /// Start after this instant (default: now).
    #[oai(skip_serializing_if_is_none)]
    pub after: Option<DateTime<Utc>>,
}

/// The next fire times of an expression.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Preview {
    /// The expression, as given.
    pub cron_expr: String,
    /// The zone it was evaluated in.
    pub timezone: String,
    /// The next fire times, in order (fewer than asked when it stops firing).
    pub next: Vec<DateTime<Utc>>,
    /// Where the expression probably does not do what was meant, one
    /// sentence each (never a refusal): a daylight-saving change in the
    /// zone within a year after `after` that skips or repeats one of its
    /// wall-clock times ("runs at 03:00 instead of 02:30 on 2027-03-28"),
    /// or 6 fields that look seconds-first (6 fields end with a year here).
    pub warnings: Vec<String>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Cron")]
impl CronApi {
    /// Preview a cron expression
    ///
    /// The next fire times of an expression in a time zone, with warnings
    /// about daylight-saving changes it runs into and seconds-first
    /// look-alikes; 400 with the reason (the field, as written, and what it
    /// accepts) when it does not parse.
    #[oai(path = "/cron/preview", method = "post", operation_id = "previewCron")]
    async fn preview(&self, body: Json<PreviewRequest>) -> Result<Json<Preview>, ApiError> {
        let req = body.0;
        if req.count == 0 || req.count > MAX_PREVIEW {
            return Err(Error::BadRequest(format!(
                "`count` must be a whole number from 1 to {MAX_PREVIEW}, got {}",
                req.count
            ))
            .into());
        }
        let tz = match req.timezone.as_deref() {
            None | Some("") => self.state.timezone,
            Some(name) => parse_timezone(name).map_err(Error::from)?,
        };
        let schedule = Schedule::parse(&req.cron_expr, tz).map_err(Error::from)?;
        let after = req.after.unwrap_or_else(Utc::now);
        let next = schedule.upcoming(after, req.count as usize);
        Ok(Json(Preview {
            cron_expr: req.cron_expr,
            timezone: tz.name().to_string(),
            next,
            warnings: schedule.warnings(after),
        }))
    }
}
