//! Run requests (ARCHITECTURE §4, "Run requests"): a run-now or a chained
//! run waits under `/cron/run/<job>/<id>` until one worker claims it, runs
//! it and deletes it, or until its deadline passes and the leader master
//! records it `skipped`. Requests are plain keys without a lease, so they
//! outlive worker and etcd restarts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::JobName;

/// How long a request waits for a free lock and slot by default.
pub const DEFAULT_DEADLINE_SECS: u64 = 600;
/// The longest deadline a request may ask for: one day.
pub const MAX_DEADLINE_SECS: u64 = 24 * 3600;
/// How many chained runs deep a chain may go. Cycles are refused at save;
/// this stops one that slipped through (two saves racing) from running
/// for ever.
pub const MAX_CHAIN_DEPTH: u32 = 32;

/// What started a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
pub enum Trigger {
    /// Its schedule (also verdicts on scheduled ticks).
    #[default]
    Schedule,
    /// A run-now request (API, CLI, web admin).
    Manual,
    /// Another job's run ended (`onSuccess`, `onFailure`).
    Chain,
}

impl Trigger {
    /// The wire name (also `RCRON_TRIGGER`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Chain => "chain",
        }
    }
}

/// The run whose end requested a chained run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", oai(rename_all = "camelCase"))]
pub struct TriggeredBy {
    /// Its job.
    pub job: String,
    /// Its run id.
    pub run_id: String,
}

/// What a run-now request sets for that run only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(
    feature = "openapi",
    oai(rename_all = "camelCase", deny_unknown_fields)
)]
pub struct RunParams {
    /// Environment variables for this run, over the job's `env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub env: BTreeMap<String, String>,
}

impl RunParams {
    /// Whether it sets nothing.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
    }

    /// Every problem with it, each naming its field (`` `env.NAME`: … ``),
    /// by the rules of a job's `env`.
    pub fn problems(&self) -> Vec<String> {
        let env: crate::job_env::Env = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), crate::EnvValue::Value(v.clone())))
            .collect();
        crate::job_env::env_problems(&env)
    }
}

/// The worker that claimed a request and the run it runs it as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The worker's id.
    pub worker: String,
    /// The run's id (as in its log record).
    pub run_id: String,
    /// When it was claimed (ms).
    pub at: i64,
}

/// A request to run a job once, outside its schedule: the value of
/// `/cron/run/<job>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// Unique id (a UUID v7: ids sort by creation time); the key's last segment.
    pub id: String,
    /// The job to run.
    pub job: JobName,
    /// `manual` or `chain`.
    pub trigger: Trigger,
    /// When it was made (ms).
    pub requested_at: i64,
    /// Not started by then (ms), it is recorded `skipped`.
    pub deadline: i64,
    /// Set for this run only.
    #[serde(default, skip_serializing_if = "RunParams::is_empty")]
    pub params: RunParams,
    /// For a chained run: the run whose end requested it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<TriggeredBy>,
    /// How many chained runs led to it (0 for a run-now request).
    #[serde(default)]
    pub depth: u32,
    /// Set by the worker that claimed it; the request is deleted once that
    /// run's record is on its way, or handed back if it never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<Claim>,
}

impl RunRequest {
    /// A run-now request made at `now_ms`, waiting `deadline_secs`.
    pub fn manual(job: JobName, params: RunParams, now_ms: i64, deadline_secs: u64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            job,
            trigger: Trigger::Manual,
            requested_at: now_ms,
            deadline: now_ms.saturating_add(deadline_secs.saturating_mul(1000) as i64),
            params,
            triggered_by: None,
            depth: 0,
            claimed: None,
        }
    }

    /// The request of `job`, chained from `parent` (itself `parent_depth`
    /// chained runs deep).
    pub fn chained(job: JobName, parent: TriggeredBy, parent_depth: u32, now_ms: i64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            job,
            trigger: Trigger::Chain,
            requested_at: now_ms,
            deadline: now_ms.saturating_add(DEFAULT_DEADLINE_SECS as i64 * 1000),
            params: RunParams::default(),
            triggered_by: Some(parent),
            depth: parent_depth.saturating_add(1),
            claimed: None,
        }
    }

    /// Its stored form.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and maps of strings always encodes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored request; None for one that does not parse.
    pub fn from_stored(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// This request as claimed by `worker` for run `run_id` at `now_ms`.
    pub fn claimed_by(&self, worker: &str, run_id: &str, now_ms: i64) -> Self {
        Self {
            claimed: Some(Claim {
                worker: worker.to_string(),
                run_id: run_id.to_string(),
                at: now_ms,
            }),
            ..self.clone()
        }
    }

    /// This request as it was before it was claimed.
    pub fn unclaimed(&self) -> Self {
        Self {
            claimed: None,
            ..self.clone()
        }
    }
}

/// What a run's record says about how it was started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOrigin {
    /// `schedule`, `manual` or `chain`.
    pub trigger: Trigger,
    /// For a chained run: the run that requested it.
    pub triggered_by: Option<TriggeredBy>,
    /// What the request set for this run.
    pub params: Option<RunParams>,
    /// How many chained runs led to it.
    pub depth: u32,
}

impl RunOrigin {
    /// The origin of a run started by `request`.
    pub fn of(request: &RunRequest) -> Self {
        Self {
            trigger: request.trigger,
            triggered_by: request.triggered_by.clone(),
            params: (!request.params.is_empty()).then(|| request.params.clone()),
            depth: request.depth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_claims_are_reversible() {
        let job = JobName::new("backup").expect("valid");
        let mut params = RunParams::default();
        params.env.insert("TARGET".into(), "s3://b".into());
        let r = RunRequest::manual(job, params, 1_000, 60);
        assert_eq!(r.deadline, 61_000);
        let back = RunRequest::from_stored(r.to_json().as_bytes()).expect("parses");
        assert_eq!(back, r);
        let c = r.claimed_by("w1", "run-1", 2_000);
        assert_eq!(c.claimed.as_ref().map(|c| c.run_id.as_str()), Some("run-1"));
        assert_eq!(c.unclaimed(), r);
    }

    #[test]
    fn params_list_every_problem() {
        let mut params = RunParams::default();
        params.env.insert("1BAD".into(), "x".into());
        params.env.insert("RCRON_JOB".into(), "x".into());
        params.env.insert("OK".into(), "nul\0".into());
        let p = params.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("`env.1BAD`:"), "{p:?}");
        assert!(p.iter().any(|p| p.contains("reserved")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("NUL")), "{p:?}");
    }

    #[test]
    fn chained_requests_count_their_depth() {
        let job = JobName::new("b").expect("valid");
        let parent = TriggeredBy {
            job: "a".into(),
            run_id: "r1".into(),
        };
        let r = RunRequest::chained(job, parent, 2, 0);
        assert_eq!(r.depth, 3);
        assert_eq!(r.trigger, Trigger::Chain);
        assert_eq!(r.deadline, DEFAULT_DEADLINE_SECS as i64 * 1000);
    }
}
