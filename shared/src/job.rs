//! The job document stored at `/cron/jobs/<name>` (ARCHITECTURE §3).
//!
//! The wire form is the original's `{name, command, cronExpr}` plus optional
//! fields that all have defaults, so a document written by the Go system is
//! a valid job. [`Job::from_json`] decodes and validates in one step and
//! reports every problem it finds at once.

use chrono::Utc;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::cron::{Schedule, ScheduleCache, Timezone, parse_timezone};
use crate::job_env::{self, Env};
use crate::name::name_problem;
use crate::placement::Target;
use crate::{Error, JobName, job_shape};

/// Longest accepted command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest accepted per-run timeout: 30 days.
pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;
/// Most retries of one failed run.
pub const MAX_RETRIES: u32 = 100;
/// Longest accepted backoff between retries: 1 day.
pub const MAX_RETRY_BACKOFF_SECS: u64 = 24 * 3600;
/// Longest accepted `startingDeadlineSecs`: 1 day.
pub const MAX_STARTING_DEADLINE_SECS: u64 = 24 * 3600;
/// Most extra alert recipients per job.
pub const MAX_ALERT_EMAILS: usize = 50;
/// Most jobs one job's end may start (`onSuccess`, `onFailure` each).
pub const MAX_CHAINED_JOBS: usize = 20;

/// Whether runs of a job may overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum Concurrency {
    /// Never two runs of this job at once, cluster-wide (default); a tick
    /// that finds the previous run going is logged `skipped`.
    #[default]
    Forbid,
    /// Runs may overlap; each tick still runs once.
    Allow,
    /// A new tick kills the running run (logged `killed`, reason
    /// `replaced`) and then starts; never two runs at once, like `forbid`.
    Replace,
}

impl Concurrency {
    /// The names the job's JSON accepts, in the order of the docs.
    pub const NAMES: &'static [&'static str] = &["forbid", "allow", "replace"];

    /// Whether a run holds the job's cluster lock (never two at once).
    pub fn exclusive(self) -> bool {
        matches!(self, Self::Forbid | Self::Replace)
    }
}

/// What a tick found late does (ARCHITECTURE §4, "Verdicts").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase"))]
pub enum Misfire {
    /// Not run; logged `missed` (default).
    #[default]
    Skip,
    /// A tick found late, but within `startingDeadlineSecs` of its planned
    /// time, runs once (late); older ones are logged `missed`.
    RunOnce,
}

impl Misfire {
    /// The names the job's JSON accepts.
    pub const NAMES: &'static [&'static str] = &["skip", "runOnce"];
}

/// A job. Only `name`, `command` and `cronExpr` are required; a document of
/// the original system is a valid job.
// The one definition of a job (ARCHITECTURE §3). serde gives the document
// stored in etcd (defaults left out, as in the original's documents) and
// the `openapi` feature the REST schema and views (every field shown), so
// a field added here is stored, served and documented alike. Bodies are
// decoded by `Job::from_json`, which names every problem at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase"))]
pub struct Job {
    /// Unique name: 1–128 letters (any script), digits, `.`, `_`, `-`.
    pub name: JobName,
    /// Shell command, run with `sh -c` on a worker.
    pub command: String,
    /// Variables the command sees, on top of the worker's environment:
    /// name → value, or name → `{"file": "/abs/path"}` for a file the
    /// worker reads when the run starts (less one trailing newline; the
    /// content is never stored or shown). Names are ASCII letters, digits
    /// and `_`; `RCRON_…` names are reserved for the run variables.
    #[serde(default, skip_serializing_if = "Env::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub env: Env,
    /// Absolute directory the command runs in; absent = the worker's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub workdir: Option<String>,
    /// Unix user (name or numeric uid) the command runs as; needs a worker
    /// running as root unless it is the worker's own user. Absent = the
    /// worker's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub user: Option<String>,
    /// Cron expression: 5 fields `min hour dom month dow`, 6 (plus year),
    /// 7 (seconds first, then year, e.g. `*/5 * * * * * *`), or a macro
    /// such as `@daily`.
    pub cron_expr: String,
    /// Seconds before a run is killed and logged as `timeout`; 0 = no limit.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub timeout_secs: u64,
    /// Whether runs may overlap.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub concurrency: Concurrency,
    /// How many times a failed run is retried.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub retries: u32,
    /// Seconds before the first retry (doubling for each next one).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub retry_backoff_secs: u64,
    /// IANA time zone of the expression (e.g. `Europe/Berlin`); absent = the
    /// cluster's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub timezone: Option<Timezone>,
    /// Paused jobs are kept but never fired.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub disabled: bool,
    /// Extra recipients of this job's alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub alert_emails: Vec<String>,
    /// Which workers may run it; absent = any worker, one per tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub target: Option<Target>,
    /// What a tick found late does: `skip` (logged `missed`) or `runOnce`.
    #[serde(default, skip_serializing_if = "is_default")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub misfire: Misfire,
    /// How late a tick may still start (seconds); 0 = the worker's
    /// `misfire_grace_secs`.
    #[serde(default, skip_serializing_if = "is_default")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub starting_deadline_secs: u64,
    /// Whether a `missed` tick alerts (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    #[cfg_attr(feature = "openapi", oai(default = "yes"))]
    pub alert_on_missed: bool,
    /// Cap of the doubling delay between retries (seconds); 0 = one hour.
    #[serde(default, skip_serializing_if = "is_default")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub retry_backoff_max_secs: u64,
    /// Jobs requested once after a run's last attempt succeeds (chains;
    /// a job that starts itself through any path is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub on_success: Vec<JobName>,
    /// Jobs requested once after a run's last attempt fails, times out or
    /// is killed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub on_failure: Vec<JobName>,
    /// When a master last stored this version (ms since the epoch), set on
    /// every write; ticks before it are not owed a record. Absent in jobs
    /// written by other tools.
    // Ticks before it belonged to another schedule, or the job was paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(read_only, skip_serializing_if_is_none))]
    pub updated_at: Option<i64>,
}

/// The valid names of a chain list `field`, noting every problem: names
/// that are not job names, repeats, too many, and the job itself.
fn chained_jobs(
    field: &str,
    names: Vec<String>,
    own: Option<&str>,
    problems: &mut Vec<String>,
) -> Vec<JobName> {
    if names.len() > MAX_CHAINED_JOBS {
        problems.push(format!(
            "`{field}` may list at most {MAX_CHAINED_JOBS} jobs, got {}",
            names.len()
        ));
    }
    let mut out: Vec<JobName> = Vec::with_capacity(names.len());
    for n in names {
        match JobName::new(&n) {
            Err(_) => problems.push(format!("`{field}`: {n:?} is not a job name")),
            Ok(_) if own == Some(n.as_str()) => problems.push(format!(
                "`{field}`: a job cannot start itself (cycle {n} → {n})"
            )),
            Ok(job) if out.contains(&job) => {
                problems.push(format!("`{field}` lists {n:?} twice"));
            }
            Ok(job) => out.push(job),
        }
    }
    out
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

/// The decoder's view of a job document before validation: each field of
/// [`Job`] as loosely typed as the JSON allows, so that validation can
/// report all problems together. Not a second definition: `from_raw` builds
/// the `Job` with an exhaustive struct literal (a field added to `Job`
/// does not compile until it is decoded here), and
/// `every_field_survives_a_round_trip` checks that each is read back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawJob {
    name: Option<String>,
    command: Option<String>,
    #[serde(default)]
    env: Option<Env>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    cron_expr: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    concurrency: Option<Concurrency>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_backoff_secs: Option<u64>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    alert_emails: Option<Vec<String>>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    misfire: Option<Misfire>,
    #[serde(default)]
    starting_deadline_secs: Option<u64>,
    #[serde(default)]
    alert_on_missed: Option<bool>,
    #[serde(default)]
    retry_backoff_max_secs: Option<u64>,
    #[serde(default)]
    on_success: Option<Vec<String>>,
    #[serde(default)]
    on_failure: Option<Vec<String>>,
    #[serde(default)]
    updated_at: Option<i64>,
}

impl Job {
    /// Decodes a job document and validates it. Unknown fields are ignored
    /// (forward compatibility); every problem found is listed in the error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        Self::decode(bytes, true, &mut ScheduleCache::default())
    }

    /// Decodes a job read back from etcd. The same rules as
    /// [`Job::from_json`] except the time-dependent one: a stored job whose
    /// expression no longer fires is still a job (it just never runs).
    pub fn from_stored(bytes: &[u8]) -> Result<Self, Error> {
        Self::decode(bytes, false, &mut ScheduleCache::default())
    }

    /// [`Job::from_stored`] for one of many jobs read together: `cache`
    /// parses each distinct expression once.
    pub fn from_stored_cached(bytes: &[u8], cache: &mut ScheduleCache) -> Result<Self, Error> {
        Self::decode(bytes, false, cache)
    }

    /// Decodes the wire form and checks it. A document that is JSON but not
    /// of the job's shape (a string for a number, an unknown `concurrency`)
    /// is explained field by field ([`crate::job_shape`]), and the rules are
    /// then checked on the fields that did decode, so every problem is
    /// reported at once.
    fn decode(
        bytes: &[u8],
        must_fire_again: bool,
        schedules: &mut ScheduleCache,
    ) -> Result<Self, Error> {
        let err = match serde_json::from_slice::<RawJob>(bytes) {
            Ok(raw) => return Self::from_raw(raw, must_fire_again, schedules),
            Err(e) => e,
        };
        let invalid_json = || Error::InvalidJson {
            reason: err.to_string(),
        };
        if !err.is_data() {
            return Err(invalid_json());
        }
        let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return Err(invalid_json());
        };
        let Some(fields) = document.as_object_mut() else {
            return Err(Error::InvalidJob {
                problems: vec![format!(
                    "a job must be a JSON object, got {}",
                    job_shape::kind_of(&document)
                )],
            });
        };
        let shape = job_shape::field_problems(fields);
        if shape.is_empty() {
            return Err(invalid_json());
        }
        for (field, _) in &shape {
            fields.remove(*field);
        }
        let unexplained = |p: &String| {
            !shape
                .iter()
                .any(|(f, _)| *p == format!("`{f}` is required"))
        };
        let mut problems: Vec<String> = shape.iter().map(|(_, p)| p.clone()).collect();
        if let Ok(raw) = serde_json::from_value::<RawJob>(document)
            && let Err(Error::InvalidJob { problems: rules }) =
                Self::from_raw(raw, must_fire_again, schedules)
        {
            problems.extend(rules.into_iter().filter(unexplained));
        }
        Err(Error::InvalidJob { problems })
    }

    /// The job's schedule, in its own zone or in `default_tz`.
    pub fn schedule(&self, default_tz: Tz) -> Result<Schedule, Error> {
        Schedule::parse(&self.cron_expr, self.zone(default_tz))
    }

    /// Checks a job built or changed in code against the same rules as
    /// [`Job::from_json`].
    pub fn validate(&self) -> Result<(), Error> {
        Self::from_json(self.to_json().as_bytes()).map(|_| ())
    }

    /// The zone its expression is evaluated in: its own, or `default_tz`
    /// (the cluster's) when it names none.
    pub fn zone(&self, default_tz: Tz) -> Tz {
        self.timezone.map_or(default_tz, |tz| tz.0)
    }

    fn from_raw(
        raw: RawJob,
        must_fire_again: bool,
        schedules: &mut ScheduleCache,
    ) -> Result<Self, Error> {
        let mut problems = Vec::new();

        let name = match raw.name {
            None => {
                problems.push("`name` is required".to_string());
                None
            }
            Some(n) => match name_problem(&n) {
                Some(reason) => {
                    problems.push(format!("`name` {reason}"));
                    None
                }
                None => Some(n),
            },
        };

        let command = match raw.command {
            None => {
                problems.push("`command` is required".to_string());
                None
            }
            Some(c) if c.trim().is_empty() => {
                problems.push("`command` must not be empty".to_string());
                None
            }
            Some(c) if c.len() > MAX_COMMAND_BYTES => {
                problems.push(format!(
                    "`command` must be at most {MAX_COMMAND_BYTES} bytes"
                ));
                None
            }
            Some(c) if c.contains('\0') => {
                problems.push("`command` must not contain a NUL character".to_string());
                None
            }
            Some(c) => Some(c),
        };

        let env = raw.env.unwrap_or_default();
        problems.extend(job_env::env_problems(&env));
        // An empty string is no value, as for `timezone` (a cleared form field).
        let workdir = raw.workdir.filter(|w| !w.is_empty());
        problems.extend(workdir.as_deref().and_then(job_env::workdir_problem));
        let user = raw.user.filter(|u| !u.is_empty());
        problems.extend(user.as_deref().and_then(job_env::user_problem));

        let timezone = match raw.timezone.as_deref() {
            None | Some("") => None,
            Some(tz) => match parse_timezone(tz) {
                Ok(tz) => Some(tz),
                Err(e) => {
                    problems.push(format!("`timezone`: {e}"));
                    None
                }
            },
        };

        let cron_expr = match raw.cron_expr {
            None => {
                problems.push("`cronExpr` is required".to_string());
                None
            }
            Some(expr) => match schedules.parse(&expr, timezone.unwrap_or(Tz::UTC)) {
                Err(e) => {
                    problems.push(format!("`cronExpr`: {e}"));
                    None
                }
                Ok(s) if must_fire_again && s.next_after(Utc::now()).is_none() => {
                    problems.push(format!("`cronExpr`: {expr:?} never fires again"));
                    None
                }
                Ok(_) => Some(expr),
            },
        };

        let timeout_secs = raw.timeout_secs.unwrap_or(0);
        if timeout_secs > MAX_TIMEOUT_SECS {
            problems.push(job_shape::whole_number(
                "timeoutSecs",
                MAX_TIMEOUT_SECS,
                &timeout_secs.into(),
            ));
        }
        let retries = raw.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            problems.push(job_shape::whole_number(
                "retries",
                MAX_RETRIES.into(),
                &retries.into(),
            ));
        }
        let retry_backoff_secs = raw.retry_backoff_secs.unwrap_or(0);
        if retry_backoff_secs > MAX_RETRY_BACKOFF_SECS {
            problems.push(job_shape::whole_number(
                "retryBackoffSecs",
                MAX_RETRY_BACKOFF_SECS,
                &retry_backoff_secs.into(),
            ));
        }
        let alert_emails = raw.alert_emails.unwrap_or_default();
        if alert_emails.len() > MAX_ALERT_EMAILS {
            problems.push(format!(
                "`alertEmails` may list at most {MAX_ALERT_EMAILS} addresses"
            ));
        }
        for email in &alert_emails {
            if !looks_like_email(email) {
                problems.push(format!("`alertEmails`: {email:?} is not an email address"));
            }
        }

        if let Some(target) = &raw.target {
            problems.extend(target.problems());
        }
        let starting_deadline_secs = raw.starting_deadline_secs.unwrap_or(0);
        if starting_deadline_secs > MAX_STARTING_DEADLINE_SECS {
            problems.push(job_shape::whole_number(
                "startingDeadlineSecs",
                MAX_STARTING_DEADLINE_SECS,
                &starting_deadline_secs.into(),
            ));
        }
        let retry_backoff_max_secs = raw.retry_backoff_max_secs.unwrap_or(0);
        if retry_backoff_max_secs > MAX_RETRY_BACKOFF_SECS {
            problems.push(job_shape::whole_number(
                "retryBackoffMaxSecs",
                MAX_RETRY_BACKOFF_SECS,
                &retry_backoff_max_secs.into(),
            ));
        }
        // An empty selector in mode `one` is the same as none: stored as none.
        let target = raw.target.filter(|t| !t.is_any());
        let on_success = chained_jobs(
            "onSuccess",
            raw.on_success.unwrap_or_default(),
            name.as_deref(),
            &mut problems,
        );
        let on_failure = chained_jobs(
            "onFailure",
            raw.on_failure.unwrap_or_default(),
            name.as_deref(),
            &mut problems,
        );

        match (name, command, cron_expr) {
            (Some(name), Some(command), Some(cron_expr)) if problems.is_empty() => Ok(Job {
                // Checked by `name_problem` above.
                name: JobName::new(name)?,
                command,
                env,
                workdir,
                user,
                cron_expr,
                timeout_secs,
                concurrency: raw.concurrency.unwrap_or_default(),
                retries,
                retry_backoff_secs,
                timezone: timezone.map(Timezone),
                disabled: raw.disabled.unwrap_or(false),
                alert_emails,
                target,
                misfire: raw.misfire.unwrap_or_default(),
                starting_deadline_secs,
                alert_on_missed: raw.alert_on_missed.unwrap_or(true),
                retry_backoff_max_secs,
                on_success,
                on_failure,
                updated_at: raw.updated_at,
            }),
            _ => Err(Error::InvalidJob { problems }),
        }
    }

    /// The job stamped with the time it is stored (see `updated_at`).
    pub fn stamped(&self, now_ms: i64) -> Self {
        Self {
            updated_at: Some(now_ms),
            ..self.clone()
        }
    }

    /// The job as the JSON stored in etcd.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A deliberately loose check: one `@`, something on each side, no spaces.
/// Real validation happens when the SMTP server accepts or refuses it.
fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && s.len() <= 254
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_three_field_document_is_a_valid_job_with_defaults() {
        let job = Job::from_json(
            br#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#,
        )
        .expect("valid");
        assert_eq!(job.name.as_str(), "job1");
        assert_eq!(job.command, "echo hello");
        assert_eq!(job.cron_expr, "*/5 * * * * * *");
        assert_eq!(job.timeout_secs, 0);
        assert_eq!(job.concurrency, Concurrency::Forbid);
        assert_eq!(job.retries, 0);
        assert_eq!(job.timezone, None);
        assert!(!job.disabled);
        assert!(job.alert_emails.is_empty());
    }

    #[test]
    fn all_fields_round_trip_and_unknown_fields_are_ignored() {
        let json = br#"{"name":"j","command":"true","cronExpr":"@daily","timeoutSecs":30,
            "concurrency":"allow","retries":2,"retryBackoffSecs":5,"timezone":"Europe/Paris",
            "disabled":true,"alertEmails":["ops@example.com"],"futureField":{"x":1}}"#;
        let job = Job::from_json(json).expect("valid");
        assert_eq!(job.concurrency, Concurrency::Allow);
        assert_eq!(job.timezone, Some(Timezone(chrono_tz::Europe::Paris)));
        let again = Job::from_json(job.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, job);
        let v: serde_json::Value = serde_json::from_str(&job.to_json()).expect("json");
        assert_eq!(v["cronExpr"], "@daily");
        assert_eq!(v["timeoutSecs"], 30);
        assert_eq!(v["timezone"], "Europe/Paris");
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        // Every field away from its default, so none is left out when stored.
        let json = br#"{"name":"all","command":"true","cronExpr":"@daily","timeoutSecs":30,
            "env":{"A":"1","TOKEN":{"file":"/run/secrets/token"}},"workdir":"/srv","user":"nobody",
            "concurrency":"replace","retries":2,"retryBackoffSecs":5,"timezone":"Europe/Paris",
            "disabled":true,"alertEmails":["ops@example.com"],
            "target":{"labels":{"role":"db"},"mode":"all"},"misfire":"runOnce",
            "startingDeadlineSecs":60,"alertOnMissed":false,"retryBackoffMaxSecs":600,
            "updatedAt":1700000000000}"#;
        let job = Job::from_json(json).expect("valid");
        let stored: serde_json::Value = serde_json::from_str(&job.to_json()).expect("json");
        let sent: serde_json::Value = serde_json::from_slice(json).expect("json");
        assert_eq!(stored, sent, "a field is not decoded or not stored");
        assert_eq!(
            Job::from_json(job.to_json().as_bytes()).expect("again"),
            job
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Job::from_json(
            br#"{"name":"a/b","command":" ","cronExpr":"nope","timezone":"Nowhere/City",
            "timeoutSecs":99999999,"alertEmails":["not-an-email"]}"#,
        )
        .expect_err("invalid");
        let Error::InvalidJob { problems } = &err else {
            panic!("unexpected {err:?}");
        };
        let all = problems.join("\n");
        for needle in [
            "`name`",
            "`command`",
            "`cronExpr`",
            "`timezone`",
            "`timeoutSecs`",
            "`alertEmails`",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
        assert!(err.to_string().starts_with("invalid job: "), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = Job::from_json(br#"{"name":"x"}"#)
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("`command` is required") && err.contains("`cronExpr` is required"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_and_wrong_types_are_clear() {
        let err = Job::from_json(b"{not json").expect_err("bad").to_string();
        assert!(err.starts_with("invalid job JSON"), "{err}");
        let err =
            Job::from_json(br#"{"name":"x","command":"y","cronExpr":"@daily","timeoutSecs":-1}"#)
                .expect_err("negative")
                .to_string();
        assert!(
            err.contains("`timeoutSecs` must be a whole number from 0 to 2592000, got -1"),
            "{err}"
        );
        assert!(!err.contains("u64"), "no type names: {err}");
        for (doc, kind) in [
            (&b"[1,2]"[..], "a list"),
            (b"null", "null"),
            (b"5", "a number"),
        ] {
            let err = Job::from_json(doc).expect_err("not an object").to_string();
            assert!(
                err.contains(&format!("a job must be a JSON object, got {kind}")),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_types_and_broken_rules_are_reported_together_without_type_names() {
        let err = Job::from_json(
            br#"{"name":5,"timeoutSecs":"abc","concurrency":"sometimes","timezone":"Nowhere/City"}"#,
        )
        .expect_err("invalid");
        let Error::InvalidJob { problems } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(
            problems,
            &[
                "`name` must be a string, got 5",
                "`timeoutSecs` must be a whole number from 0 to 2592000, got \"abc\"",
                "`concurrency` must be one of forbid, allow, replace, got \"sometimes\"",
                "`command` is required",
                "`timezone`: unknown time zone \"Nowhere/City\" (expected an IANA name such as Europe/Berlin or UTC)",
                "`cronExpr` is required",
            ]
        );
        for internal in ["u64", "u32", "RawJob", "variant", "struct"] {
            assert!(!err.to_string().contains(internal), "{internal}: {err}");
        }
    }

    #[test]
    fn expression_that_never_fires_again_is_rejected() {
        let err = Job::from_json(br#"{"name":"x","command":"y","cronExpr":"0 0 1 1 * 2001"}"#)
            .expect_err("past")
            .to_string();
        assert!(err.contains("never fires again"), "{err}");
        let stored = Job::from_stored(br#"{"name":"x","command":"y","cronExpr":"0 0 1 1 * 2001"}"#);
        assert!(stored.is_ok(), "a stored job stays readable: {stored:?}");
    }

    #[test]
    fn targets_are_checked_and_an_empty_one_is_none() {
        let job = Job::from_json(
            br#"{"name":"b","command":"y","cronExpr":"@daily","target":{"labels":{"role":"db"},"mode":"all"}}"#,
        )
        .expect("valid");
        let target = job.target.clone().expect("target");
        assert_eq!(target.mode, crate::placement::TargetMode::All);
        assert_eq!(
            Job::from_json(job.to_json().as_bytes()).expect("again"),
            job
        );
        let none = Job::from_json(
            br#"{"name":"b","command":"y","cronExpr":"@daily","target":{"labels":{}}}"#,
        )
        .expect("valid");
        assert_eq!(none.target, None);
        assert!(!none.to_json().contains("target"));
        let err = Job::from_json(
            br#"{"name":"b","command":"y","cronExpr":"@daily","target":{"labels":{"role":"d b"}}}"#,
        )
        .expect_err("bad label")
        .to_string();
        assert!(err.contains("`target.labels`"), "{err}");
        let err = Job::from_json(
            br#"{"name":"b","command":"y","cronExpr":"@daily","target":{"mode":"some"}}"#,
        )
        .expect_err("bad mode")
        .to_string();
        assert!(
            err.contains("`target.mode` must be one of one, all, got \"some\""),
            "{err}"
        );
        let err = Job::from_json(
            br#"{"name":"b","command":"y","cronExpr":"@daily","target":{"lables":{"role":"db"}}}"#,
        )
        .expect_err("typo")
        .to_string();
        assert!(err.contains("lables"), "{err}");
    }

    #[test]
    fn tick_policies_default_to_todays_behaviour_and_round_trip() {
        let job =
            Job::from_json(br#"{"name":"p","command":"y","cronExpr":"@daily"}"#).expect("valid");
        assert_eq!(job.misfire, Misfire::Skip);
        assert!(job.alert_on_missed);
        let json = job.to_json();
        for absent in [
            "misfire",
            "startingDeadlineSecs",
            "alertOnMissed",
            "retryBackoffMaxSecs",
        ] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
        let job = Job::from_json(
            br#"{"name":"p","command":"y","cronExpr":"@daily","concurrency":"replace","misfire":"runOnce",
            "startingDeadlineSecs":120,"alertOnMissed":false,"retryBackoffMaxSecs":600}"#,
        )
        .expect("valid");
        assert_eq!(job.concurrency, Concurrency::Replace);
        assert!(job.concurrency.exclusive());
        assert_eq!(job.misfire, Misfire::RunOnce);
        assert_eq!(
            Job::from_json(job.to_json().as_bytes()).expect("again"),
            job
        );
        let err = Job::from_json(
            br#"{"name":"p","command":"y","cronExpr":"@daily","startingDeadlineSecs":999999999}"#,
        )
        .expect_err("too long")
        .to_string();
        assert!(err.contains("`startingDeadlineSecs`"), "{err}");
    }

    #[test]
    fn validate_applies_the_same_rules() {
        let mut job =
            Job::from_json(br#"{"name":"x","command":"y","cronExpr":"@daily"}"#).expect("valid");
        assert!(job.validate().is_ok());
        job.cron_expr = "bad".into();
        assert!(job.validate().is_err());
    }

    #[test]
    fn run_context_fields_default_to_none_and_are_left_out_when_stored() {
        let job = Job::from_json(
            br#"{"name":"c","command":"y","cronExpr":"@daily","workdir":"","user":""}"#,
        )
        .expect("valid");
        assert!(job.env.is_empty());
        assert_eq!((job.workdir.as_deref(), job.user.as_deref()), (None, None));
        let json = job.to_json();
        for absent in ["env", "workdir", "user"] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
        let job = Job::from_json(
            br#"{"name":"c","command":"y","cronExpr":"@daily","user":"1000",
            "env":{"A":"x","S":{"file":"/run/s"}},"workdir":"/tmp"}"#,
        )
        .expect("valid");
        assert_eq!(
            job.env["S"],
            crate::EnvValue::File {
                file: "/run/s".into()
            }
        );
        assert_eq!(
            crate::RunAs::of(job.user.as_deref().expect("user")),
            crate::RunAs::Uid(1000)
        );
    }

    #[test]
    fn run_context_problems_are_all_reported_with_the_others() {
        let err = Job::from_json(
            br#"{"name":"c","command":"y","cronExpr":"nope","workdir":"rel","user":"Bob",
            "env":{"1A":"x","B-C":"y","S":{"file":"secrets/s"},"OK":"z"}}"#,
        )
        .expect_err("invalid");
        let Error::InvalidJob { problems } = &err else {
            panic!("unexpected {err:?}");
        };
        let all = problems.join("\n");
        assert_eq!(problems.len(), 6, "{all}");
        for needle in [
            "`env.1A`",
            "`env.B-C`",
            "`env.S`: the file must be an absolute path",
            "`workdir`",
            "`user`",
            "`cronExpr`",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
        let err = Job::from_json(
            br#"{"name":"c","command":"y","cronExpr":"@daily","env":{"S":{"file":"/x","mode":1}}}"#,
        )
        .expect_err("unknown field")
        .to_string();
        assert!(err.contains("`env.S` has no field `mode`"), "{err}");
    }
}
