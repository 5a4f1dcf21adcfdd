//! The etcd key layout (ARCHITECTURE §2). This is the only module that knows the
//! key strings: everything else asks [`Keys`] to build or parse them from
//! typed names.

use crate::{Error, JobName};

/// Builds and parses rcron's etcd keys under a configurable prefix
/// (default `/cron/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

/// The prefix every key lives under unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "/cron/";

impl Keys {
    /// A layout under `prefix`; a missing trailing `/` is added, so
    /// `/cron` and `/cron/` mean the same.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        if !prefix.starts_with('/') || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Config(format!(
                "etcd prefix {prefix:?} must start with `/` and contain no whitespace"
            )));
        }
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self { prefix })
    }

    /// The prefix itself, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `/cron/jobs/`: every saved job.
    pub fn jobs_dir(&self) -> String {
        format!("{}jobs/", self.prefix)
    }

    /// `/cron/jobs/<name>`: one job's JSON.
    pub fn job(&self, name: &JobName) -> String {
        format!("{}{name}", self.jobs_dir())
    }

    /// `/cron/jobs/<name>` for any string, as the original built it. Only
    /// for the legacy delete, which must reach a job another tool stored
    /// under a name rcron refuses. etcd keys are flat strings, so no `name`
    /// (`..`, `/`) reaches a key outside `/cron/jobs/`.
    pub fn job_of_any_name(&self, name: &str) -> String {
        format!("{}{name}", self.jobs_dir())
    }

    /// The job a `/cron/jobs/<name>` key belongs to.
    pub fn parse_job(&self, key: &[u8]) -> Option<JobName> {
        self.name_under(&self.jobs_dir(), key)
    }

    /// `/cron/killer/`: kill requests.
    pub fn killer_dir(&self) -> String {
        format!("{}killer/", self.prefix)
    }

    /// `/cron/killer/<name>`: a short-lived kill request for the job's runs.
    pub fn killer(&self, name: &JobName) -> String {
        format!("{}{name}", self.killer_dir())
    }

    /// The job a `/cron/killer/<name>` key asks to kill.
    pub fn parse_killer(&self, key: &[u8]) -> Option<JobName> {
        self.name_under(&self.killer_dir(), key)
    }

    /// `/cron/killrun/`: requests to kill one run.
    pub fn killrun_dir(&self) -> String {
        format!("{}killrun/", self.prefix)
    }

    /// `/cron/killrun/<runId>`: a short-lived request to kill the run with
    /// that id, wherever it runs and whether or not its job still exists.
    /// `None` for a string that cannot be a run id.
    pub fn killrun(&self, run_id: &str) -> Option<String> {
        is_run_id(run_id).then(|| format!("{}{run_id}", self.killrun_dir()))
    }

    /// The run id a `/cron/killrun/<runId>` key asks to kill.
    pub fn parse_killrun(&self, key: &[u8]) -> Option<String> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.killrun_dir())?;
        is_run_id(rest).then(|| rest.to_string())
    }

    /// `/cron/run/`: run requests (run-now and chained runs).
    pub fn run_dir(&self) -> String {
        format!("{}run/", self.prefix)
    }

    /// `/cron/run/<name>/<id>`: a request to run the job once, waiting
    /// until a worker claims it or its deadline passes (ARCHITECTURE §4,
    /// "Run requests"). `None` for an id that cannot be one.
    pub fn run_request(&self, name: &JobName, id: &str) -> Option<String> {
        is_run_id(id).then(|| format!("{}{name}/{id}", self.run_dir()))
    }

    /// The job and request id of a `/cron/run/<name>/<id>` key.
    pub fn parse_run_request(&self, key: &[u8]) -> Option<(JobName, String)> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.run_dir())?;
        let (name, id) = rest.split_once('/')?;
        let name = JobName::new(name).ok()?;
        is_run_id(id).then(|| (name, id.to_string()))
    }

    /// `/cron/chained/`: which runs' chains were requested.
    pub fn chained_dir(&self) -> String {
        format!("{}chained/", self.prefix)
    }

    /// `/cron/chained/<runId>`: put, in the same transaction as the runs
    /// it chains, by the end of run `run_id`, so they are requested once
    /// however often the worker tries. Run ids are UUID v7, so the keys
    /// sort by time and old ones go in one range delete.
    pub fn chained(&self, run_id: &str) -> Option<String> {
        is_run_id(run_id).then(|| format!("{}{run_id}", self.chained_dir()))
    }

    /// `/cron/lock/<name>`: held by the worker running the job.
    pub fn lock(&self, name: &JobName) -> String {
        format!("{}{name}", self.lock_dir())
    }

    /// `/cron/lock/`: watched by workers to learn, without a write, that a
    /// job is busy (ARCHITECTURE §4, "Placement").
    pub fn lock_dir(&self) -> String {
        format!("{}lock/", self.prefix)
    }

    /// The job of a `/cron/lock/<name>` key (not of a per-worker lock).
    pub fn parse_lock(&self, key: &[u8]) -> Option<JobName> {
        self.name_under(&self.lock_dir(), key)
    }

    /// `/cron/lock/<name>/<worker>`: the lock of a `target.mode: all` job
    /// on one worker (`forbid` applies per worker).
    pub fn lock_on(&self, name: &JobName, worker_id: &str) -> String {
        format!("{}{name}/{worker_id}", self.lock_dir())
    }

    /// `/cron/fired/<name>`: the last plan time (ms) started anywhere in the
    /// cluster, advanced in the same transaction that takes the lock.
    pub fn fired(&self, name: &JobName) -> String {
        format!("{}{name}", self.fired_dir())
    }

    /// `/cron/fired/`: watched by workers to learn that a tick was taken.
    pub fn fired_dir(&self) -> String {
        format!("{}fired/", self.prefix)
    }

    /// The job of a `/cron/fired/<name>` key (not of a per-worker one).
    pub fn parse_fired(&self, key: &[u8]) -> Option<JobName> {
        self.name_under(&self.fired_dir(), key)
    }

    /// `/cron/fired/<name>/<worker>`: the last tick of a `target.mode: all`
    /// job started on one worker (on that worker's session lease).
    pub fn fired_on(&self, name: &JobName, worker_id: &str) -> String {
        format!("{}{name}/{worker_id}", self.fired_dir())
    }

    /// `/cron/unschedulable/`: jobs the leader reported as matching no
    /// live worker (value: since when, ms), until it reports them back.
    pub fn unschedulable_dir(&self) -> String {
        format!("{}unschedulable/", self.prefix)
    }

    /// `/cron/unschedulable/<name>`.
    pub fn unschedulable(&self, name: &JobName) -> String {
        format!("{}{name}", self.unschedulable_dir())
    }

    /// The job of a `/cron/unschedulable/<name>` key.
    pub fn parse_unschedulable(&self, key: &[u8]) -> Option<JobName> {
        self.name_under(&self.unschedulable_dir(), key)
    }

    /// `/cron/verdicts/`: verdict records the leader settled, waiting to
    /// be written to the run log (ARCHITECTURE §4, "Verdicts").
    pub fn verdicts_dir(&self) -> String {
        format!("{}verdicts/", self.prefix)
    }

    /// `/cron/verdicts/<name>/r-<requestId>`: the `skipped` record of a run
    /// request nobody started.
    pub fn request_verdict(&self, name: &JobName, request_id: &str) -> String {
        format!("{}{name}/r-{request_id}", self.verdicts_dir())
    }

    /// `/cron/verdicts/<name>/<planTime>`.
    pub fn verdicts(&self, name: &JobName, plan_ms: i64) -> String {
        format!("{}{name}/{plan_ms}", self.verdicts_dir())
    }

    /// `/cron/clock`: the leader master's time beacon (`{masterId, timeMs}`),
    /// rewritten every second; workers measure their clock against it.
    pub fn clock(&self) -> String {
        format!("{}clock", self.prefix)
    }

    /// `/cron/skewed/`: workers the leader reported for clock skew.
    pub fn skewed_dir(&self) -> String {
        format!("{}skewed/", self.prefix)
    }

    /// `/cron/skewed/<worker>`.
    pub fn skewed(&self, worker_id: &str) -> String {
        format!("{}{worker_id}", self.skewed_dir())
    }

    /// `/cron/workers/`: the worker registry.
    pub fn workers_dir(&self) -> String {
        format!("{}workers/", self.prefix)
    }

    /// `/cron/workers/<id>`: one worker's record, under its lease.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}{worker_id}", self.workers_dir())
    }

    /// The id a `/cron/workers/<id>` key registers; the original's workers
    /// register under their IP address, with an empty value.
    pub fn parse_worker(&self, key: &[u8]) -> Option<String> {
        let key = String::from_utf8_lossy(key);
        key.strip_prefix(&self.workers_dir()).map(str::to_string)
    }

    /// `/cron/master`: the election key masters campaign on.
    pub fn master_election(&self) -> String {
        format!("{}master", self.prefix)
    }

    /// `/cron/warn/`: warnings waiting for the leader to deliver.
    pub fn warn_dir(&self) -> String {
        format!("{}warn/", self.prefix)
    }

    /// `/cron/warn/<name>/<runId>`: one failed or timed-out run.
    pub fn warn(&self, name: &JobName, run_id: &str) -> String {
        format!("{}{name}/{run_id}", self.warn_dir())
    }

    /// The job and run id of a `/cron/warn/<name>/<runId>` key.
    pub fn parse_warn(&self, key: &[u8]) -> Option<(JobName, String)> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.warn_dir())?;
        let (name, run_id) = rest.split_once('/')?;
        if run_id.is_empty() || run_id.contains('/') {
            return None;
        }
        Some((JobName::new(name).ok()?, run_id.to_string()))
    }

    /// The smallest key greater than every key starting with `dir`, for
    /// range reads and watches.
    pub fn range_end(dir: &str) -> Vec<u8> {
        let mut end = dir.as_bytes().to_vec();
        // `dir` always ends in `/`, so incrementing the last byte cannot overflow.
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        end
    }

    fn name_under(&self, dir: &str, key: &[u8]) -> Option<JobName> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(dir)?;
        JobName::new(rest).ok()
    }
}

/// Run ids are UUIDs; anything of letters, digits and `-` (at most 64) is
/// accepted so ids from other writers still parse, nothing that could
/// reach another key.
pub fn is_run_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> JobName {
        JobName::new(s).expect("valid")
    }

    #[test]
    fn default_layout_matches_the_original() {
        let k = Keys::default();
        assert_eq!(k.job(&name("job1")), "/cron/jobs/job1");
        assert_eq!(k.killer(&name("job1")), "/cron/killer/job1");
        assert_eq!(k.lock(&name("job1")), "/cron/lock/job1");
        assert_eq!(k.fired(&name("job1")), "/cron/fired/job1");
        assert_eq!(k.worker("w1"), "/cron/workers/w1");
        assert_eq!(
            k.parse_worker(b"/cron/workers/10.0.0.7").as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(k.parse_worker(b"/cron/jobs/x"), None);
        assert_eq!(k.job_of_any_name("my job"), "/cron/jobs/my job");
        assert_eq!(k.lock_on(&name("job1"), "w1"), "/cron/lock/job1/w1");
        assert_eq!(k.fired_on(&name("job1"), "w1"), "/cron/fired/job1/w1");
        assert_eq!(k.parse_fired(b"/cron/fired/job1"), Some(name("job1")));
        assert_eq!(k.parse_fired(b"/cron/fired/job1/w1"), None);
        assert_eq!(k.parse_lock(b"/cron/lock/job1"), Some(name("job1")));
        assert_eq!(k.parse_lock(b"/cron/lock/job1/w1"), None);
        assert_eq!(k.master_election(), "/cron/master");
        assert_eq!(k.warn(&name("job1"), "r1"), "/cron/warn/job1/r1");
    }

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/t/x").expect("prefix");
        assert_eq!(k.prefix(), "/t/x/");
        assert_eq!(
            k.parse_job(k.job(&name("a.b")).as_bytes()),
            Some(name("a.b"))
        );
        assert_eq!(
            k.parse_killer(k.killer(&name("z")).as_bytes()),
            Some(name("z"))
        );
        let kill = k.killrun("0190-ab").expect("a run id");
        assert_eq!(kill, "/t/x/killrun/0190-ab");
        assert_eq!(
            k.parse_killrun(kill.as_bytes()),
            Some("0190-ab".to_string())
        );
        assert_eq!(k.killrun("../jobs/a"), None);
        assert_eq!(k.killrun(""), None);
        assert_eq!(
            k.parse_warn(k.warn(&name("j"), "run-1").as_bytes()),
            Some((name("j"), "run-1".to_string()))
        );
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        let k = Keys::default();
        assert_eq!(k.parse_job(b"/cron/killer/job1"), None);
        assert_eq!(k.parse_job(b"/cron/jobs/"), None);
        assert_eq!(k.parse_job(b"/cron/jobs/a/b"), None);
        assert_eq!(k.parse_warn(b"/cron/warn/job1"), None);
        assert_eq!(k.parse_warn(b"/cron/warn/job1/"), None);
        assert_eq!(k.parse_job(&[0xff, 0xfe]), None);
    }

    #[test]
    fn range_end_covers_the_directory() {
        assert_eq!(Keys::range_end("/cron/jobs/"), b"/cron/jobs0".to_vec());
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        assert!(Keys::new("cron/").is_err());
        assert!(Keys::new("/cr on/").is_err());
    }
}
