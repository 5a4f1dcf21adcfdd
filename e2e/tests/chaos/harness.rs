//! A cluster of real processes for the chaos suite: masters and workers
//! started from `rcron-node` (the code of `rcron-master` and
//! `rcron-worker`), a real webhook receiver for alerts, and what the
//! scenarios measure: ticks run, duplicated and missed, read from MongoDB,
//! and alerts delivered, read from the receiver.

#![allow(unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use rcron_testkit::{self as kit, WebhookReceiver};
use serde_json::Value;

/// One master or worker process; SIGKILLed on drop.
pub struct Node {
    role: &'static str,
    pub name: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_rcron-node"))
            .arg(self.role)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start rcron-node");
        self.child = Some(child);
    }

    /// SIGTERM, as a service manager's stop (or an upgrade) would, and
    /// wait until the process has drained and exited; returns how long that took.
    pub fn terminate(&mut self) -> Duration {
        let asked = std::time::Instant::now();
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        asked.elapsed()
    }

    /// SIGKILL, as a crash or an OOM kill would, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the cluster's services are.
pub struct Services {
    pub etcd: Vec<String>,
    pub mongo_uri: String,
}

impl Services {
    /// The shared etcd and MongoDB-wire server of `deploy/test-env.sh`.
    pub fn shared() -> Self {
        Self {
            etcd: vec![kit::etcd_endpoint()],
            mongo_uri: kit::mongo_uri(),
        }
    }
}

pub struct Cluster {
    pub prefix: String,
    /// etcd endpoints the cluster uses.
    pub etcd: Vec<String>,
    pub db: String,
    pub mongo_uri: String,
    pub masters: Vec<Node>,
    pub master_urls: Vec<String>,
    pub workers: Vec<Node>,
    pub hook: WebhookReceiver,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    /// Each worker's labels, by worker id.
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// Labels of worker `i` (1-based): `node=w<i>`, and `role=db` on odd
/// workers, `role=web` on even ones, so that targeted jobs have workers
/// that must not run them.
pub fn worker_labels(i: usize) -> BTreeMap<String, String> {
    let role = if i % 2 == 1 { "db" } else { "web" };
    BTreeMap::from([
        ("node".to_string(), format!("w{i}")),
        ("role".to_string(), role.to_string()),
    ])
}

/// Placement faults among run records.
#[derive(Debug, Default)]
pub struct Misplaced {
    /// Records of a targeted job from a worker that lacks one of its labels.
    pub wrong_worker: Vec<(String, String)>,
    /// Records beyond the first of a `target.mode: all` job for one
    /// (tick, worker).
    pub twice_on_one_worker: usize,
}

/// Lease of a worker's session (and so of its locks): a SIGKILLed
/// worker's locks stay this long.
pub const WORKER_LEASE_SECS: u64 = 3;
/// Lease of the masters' election.
pub const ELECTION_TTL_SECS: u64 = 2;

/// How the cluster's workers are configured.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTuning {
    pub lease_secs: u64,
    pub max_concurrency: u32,
    pub drain_secs: u64,
    /// `clock_offset_ms` of worker i (the rest run on the true clock).
    pub clock_offsets: &'static [i64],
}

impl Default for WorkerTuning {
    fn default() -> Self {
        Self {
            lease_secs: WORKER_LEASE_SECS,
            max_concurrency: 256,
            drain_secs: 2,
            clock_offsets: &[],
        }
    }
}

/// Runs of one job that overlapped, judged two ways.
#[derive(Debug, Default)]
pub struct Overlaps {
    /// Pairs of records of one job where the later started before the earlier ended.
    pub in_log: usize,
    /// Commands that found the job's host marker taken by another run.
    pub on_host: usize,
    /// The placement probes' faults ([`Cluster::probes`]).
    pub misplaced: Misplaced,
}

impl Cluster {
    /// Starts `masters` masters and `workers` workers and waits until every
    /// master serves and every worker is registered.
    pub async fn start(services: Services, masters: usize, workers: usize) -> Self {
        Self::start_with(services, masters, workers, WorkerTuning::default()).await
    }

    /// [`Self::start`] with workers tuned.
    pub async fn start_with(
        services: Services,
        masters: usize,
        workers: usize,
        tuning: WorkerTuning,
    ) -> Self {
        let prefix = kit::unique_prefix();
        let db = kit::unique_db();
        let dir =
            std::env::temp_dir().join(format!("rcron-chaos-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        let hook = WebhookReceiver::start(0).await;
        let endpoints = services.etcd.join(",");
        let mut cluster = Self {
            prefix: prefix.clone(),
            etcd: services.etcd.clone(),
            db: db.clone(),
            mongo_uri: services.mongo_uri.clone(),
            masters: Vec::new(),
            master_urls: Vec::new(),
            workers: Vec::new(),
            hook,
            dir: dir.clone(),
            http: kit::http_client(),
            labels: BTreeMap::new(),
        };
        for i in 1..=masters {
            let port = kit::free_port();
            let env = [
                ("RCRON_MASTER_ID", format!("m{i}")),
                ("RCRON_LISTEN", format!("127.0.0.1:{port}")),
                ("RCRON_ETCD_ENDPOINTS", endpoints.clone()),
                ("RCRON_ETCD_PREFIX", prefix.clone()),
                ("RCRON_MONGO_URI", services.mongo_uri.clone()),
                ("RCRON_MONGO_DB", db.clone()),
                ("RCRON_ELECTION_TTL_SECS", ELECTION_TTL_SECS.to_string()),
                ("RCRON_ALERT_WINDOW_SECS", "0".to_string()),
                ("RCRON_ALERT_WEBHOOK_URLS", cluster.hook.url.clone()),
            ];
            cluster.masters.push(Node {
                role: "master",
                name: format!("m{i}"),
                env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                log: dir.join(format!("m{i}.log")),
                child: None,
            });
            cluster.master_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for i in 1..=workers {
            let name = format!("w{i}");
            let config = dir.join(format!("{name}.toml"));
            let etcd_list = services
                .etcd
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            std::fs::write(
                &config,
                format!(
                    r#"worker_id = "{name}"
max_concurrency = {max_concurrency}
kill_grace_secs = 1
drain_secs = {drain_secs}
log_flush_interval_ms = 200
lease_ttl_secs = {lease_secs}
clock_offset_ms = {clock_offset}
spill_dir = {spill:?}
metrics_listen = ""

[etcd]
endpoints = [{etcd_list}]
prefix = {prefix:?}
request_timeout_secs = 2

[labels]
{labels}

[mongo]
uri = {mongo:?}
db = {db:?}
"#,
                    labels = worker_labels(i)
                        .iter()
                        .map(|(k, v)| format!("{k} = {v:?}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    spill = dir.join(format!("{name}-state")),
                    mongo = services.mongo_uri,
                    max_concurrency = tuning.max_concurrency,
                    drain_secs = tuning.drain_secs,
                    lease_secs = tuning.lease_secs,
                    clock_offset = tuning.clock_offsets.get(i - 1).copied().unwrap_or(0),
                ),
            )
            .expect("write worker config");
            cluster.labels.insert(name.clone(), worker_labels(i));
            cluster.workers.push(Node {
                role: "worker",
                name: name.clone(),
                env: vec![("RCRON_CONFIG".to_string(), config.display().to_string())],
                log: dir.join(format!("{name}.log")),
                child: None,
            });
        }
        for node in cluster.masters.iter_mut().chain(cluster.workers.iter_mut()) {
            node.start();
        }
        cluster.wait_ready().await;
        // Every scenario also checks placement on these.
        cluster.put_jobs(&cluster.probes()).await;
        cluster
    }

    /// Every master answers and sees every running worker.
    pub async fn wait_ready(&self) {
        let running = self.workers.iter().filter(|w| w.is_running()).count() as u64;
        kit::eventually(
            Duration::from_secs(60),
            "masters to serve and workers to register",
            || async {
                for (i, url) in self.master_urls.iter().enumerate() {
                    if !self.masters[i].is_running() {
                        continue;
                    }
                    let status = self.get_json(&format!("{url}/api/v1/cluster")).await?;
                    (status["workers"].as_u64()? == running && status["leader"].is_string())
                        .then_some(())?;
                }
                Some(())
            },
        )
        .await;
    }

    async fn get_json(&self, url: &str) -> Option<Value> {
        let resp = self.http.get(url).send().await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.json().await.ok()
    }

    /// The URL of a master that is running.
    pub fn api(&self) -> &str {
        let i = self
            .masters
            .iter()
            .position(Node::is_running)
            .expect("a running master");
        &self.master_urls[i]
    }

    /// Creates or replaces jobs through the REST API (PUT), retrying while
    /// the API is unavailable.
    pub async fn put_jobs(&self, jobs: &[Value]) {
        for job in jobs {
            let name = job["name"].as_str().expect("job name");
            kit::eventually(Duration::from_secs(30), "the job to be saved", || async {
                let resp = self
                    .http
                    .put(format!("{}/api/v1/jobs/{name}", self.api()))
                    .json(job)
                    .send()
                    .await
                    .ok()?;
                resp.status().is_success().then_some(())
            })
            .await;
        }
    }

    /// Pauses every job (so no tick after this one's second is planned).
    pub async fn pause(&self, jobs: &[Value]) {
        let paused: Vec<Value> = jobs
            .iter()
            .map(|j| {
                let mut j = j.clone();
                j["disabled"] = Value::Bool(true);
                j
            })
            .collect();
        self.put_jobs(&paused).await;
    }

    /// Index of the master every running master names as leader.
    pub async fn leader(&self) -> usize {
        kit::eventually(
            Duration::from_secs(30),
            "running masters to agree on a running leader",
            || async {
                let mut seen = BTreeSet::new();
                for (i, url) in self.master_urls.iter().enumerate() {
                    if self.masters[i].is_running() {
                        let status = self.get_json(&format!("{url}/api/v1/cluster")).await?;
                        seen.insert(status["leader"].as_str()?.to_string());
                    }
                }
                let name = (seen.len() == 1).then(|| seen.pop_first())??;
                self.masters
                    .iter()
                    .position(|m| m.name == name && m.is_running())
            },
        )
        .await
    }

    /// `jobs` with each command wrapped so that it takes a marker of its
    /// job on this host (`mkdir`, atomic) for as long as it runs and notes
    /// when it finds the marker taken: every node of the cluster runs on
    /// this host, so two runs of a job at once show there, whatever the log
    /// says. The command's exit code is kept; SIGTERM gives the marker back.
    pub fn guarded(&self, jobs: &[Value]) -> Vec<Value> {
        let markers = self.dir.join("markers");
        std::fs::create_dir_all(&markers).expect("create marker dir");
        jobs.iter()
            .map(|job| {
                let mut job = job.clone();
                let name = job["name"].as_str().unwrap_or_default().to_string();
                let command = job["command"].as_str().unwrap_or_default().to_string();
                let marker = markers.join(&name);
                // The command runs in a subshell, so its own `exit` still
                // leaves the wrapper to give the marker back.
                let wrapped = format!(
                    "mkdir {m} 2>/dev/null || echo {name} >> {o}; trap 'rmdir {m} 2>/dev/null; exit 143' TERM; ( {command}\n); rc=$?; rmdir {m} 2>/dev/null; exit $rc",
                    m = marker.display(),
                    o = markers.join("overlaps").display(),
                );
                job["command"] = Value::String(wrapped);
                job
            })
            .collect()
    }

    /// Overlapping runs of any one job among `docs` (all jobs here are
    /// `forbid`), and commands that found their marker taken.
    pub fn overlaps(&self, docs: &[Document]) -> Overlaps {
        // `forbid` holds per worker for jobs that run on every worker.
        let mut by_job: BTreeMap<(&str, &str), Vec<(i64, i64)>> = BTreeMap::new();
        for d in docs {
            // Verdicts ran no command: nothing to overlap.
            if matches!(d.get_str("status"), Ok("skipped" | "missed")) {
                continue;
            }
            let job = d.get_str("jobName").unwrap_or_default();
            let worker = if job.starts_with(EVERY_WORKER_STEM) {
                d.get_str("worker").unwrap_or_default()
            } else {
                ""
            };
            let start = int(d, "startTime");
            let end = int(d, "endTime");
            by_job.entry((job, worker)).or_default().push((start, end));
        }
        let mut in_log = 0;
        for runs in by_job.values_mut() {
            runs.sort();
            let mut latest_end = i64::MIN;
            for &(start, end) in runs.iter() {
                if start < latest_end {
                    in_log += 1;
                }
                latest_end = latest_end.max(end);
            }
        }
        let on_host = std::fs::read_to_string(self.dir.join("markers").join("overlaps"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        Overlaps {
            in_log,
            on_host,
            misplaced: self.misplaced(docs, &self.probes()),
        }
    }

    /// Jobs that probe placement in every scenario: `probe-db` (one
    /// `role=db` worker per tick, guarded like the scenario's jobs) and
    /// `every-db` (every `role=db` worker, each tick).
    pub fn probes(&self) -> Vec<Value> {
        let mut one = self.guarded(&[serde_json::json!({
            "name": "probe-db", "command": "true", "cronExpr": "* * * * * * *",
            "target": {"labels": {"role": "db"}},
        })]);
        one.push(serde_json::json!({
            "name": format!("{EVERY_WORKER_STEM}db"), "command": "true",
            "cronExpr": "* * * * * * *",
            "target": {"labels": {"role": "db"}, "mode": "all"},
        }));
        one
    }

    /// Records of targeted `jobs` that ran where they must not, or more
    /// than once on one worker for one tick (`mode: all`).
    pub fn misplaced(&self, docs: &[Document], jobs: &[Value]) -> Misplaced {
        let targets: BTreeMap<&str, &Value> = jobs
            .iter()
            .filter(|j| j.get("target").is_some())
            .map(|j| (j["name"].as_str().unwrap_or_default(), &j["target"]))
            .collect();
        let mut out = Misplaced::default();
        let mut seen: BTreeSet<(String, i64, String)> = BTreeSet::new();
        for d in docs {
            // Verdicts ran nothing, anywhere.
            if matches!(d.get_str("status"), Ok("skipped" | "missed")) {
                continue;
            }
            let job = d.get_str("jobName").unwrap_or_default();
            let Some(target) = targets.get(job) else {
                continue;
            };
            let worker = d.get_str("worker").unwrap_or_default().to_string();
            let labels = self.labels.get(&worker);
            let wanted = target["labels"].as_object().cloned().unwrap_or_default();
            let fits = labels.is_some_and(|l| {
                wanted
                    .iter()
                    .all(|(k, v)| l.get(k).map(String::as_str) == v.as_str())
            });
            if !fits {
                out.wrong_worker.push((job.to_string(), worker.clone()));
            }
            if target["mode"] == "all" && !seen.insert((job.to_string(), plan_time(d), worker)) {
                out.twice_on_one_worker += 1;
            }
        }
        out
    }

    /// Run records with a plan time in `[from_ms, to_ms)`.
    pub async fn records(&self, from_ms: i64, to_ms: i64) -> Vec<Document> {
        let client = mongodb::Client::with_uri_str(&self.mongo_uri)
            .await
            .expect("mongo client");
        client
            .database(&self.db)
            .collection::<Document>("log")
            .find(doc! {"planTime": {"$gte": from_ms, "$lt": to_ms}})
            .await
            .expect("query the run log")
            .try_collect()
            .await
            .expect("read the run log")
    }

    /// Waits until the log holds at least `want` records in the window.
    pub async fn records_settled(&self, from_ms: i64, to_ms: i64, want: usize) -> Vec<Document> {
        let mut last = 0;
        let mut stable_since = std::time::Instant::now();
        loop {
            let docs = self.records(from_ms, to_ms).await;
            // The scenario's own records: the probes' keep their own pace.
            let theirs = docs.iter().filter(|d| !is_probe(d)).count();
            if theirs >= want {
                return docs;
            }
            // Short of the goal: give buffers and restarts time, but stop
            // once nothing has arrived for a while (the shortfall is the finding).
            if docs.len() != last {
                last = docs.len();
                stable_since = std::time::Instant::now();
            } else if stable_since.elapsed() > Duration::from_secs(15) {
                return docs;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chaos cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    /// Every value `job`'s fired marker took, oldest first, with the one
    /// it replaced: who moved it over which ticks, for a report on ticks
    /// left without a record.
    pub async fn marker_history(&self, job: &str) -> Vec<String> {
        let Ok(name) = rcron_shared::JobName::new(job) else {
            return vec![format!("{job:?} is not a job name")];
        };
        let Ok(keys) = rcron_shared::Keys::new(&self.prefix) else {
            return vec!["bad prefix".to_string()];
        };
        let key = keys.fired(&name);
        let history = async {
            let mut client = etcd_client::Client::connect(&self.etcd, None).await?;
            let now = client.get(key.clone(), None).await?;
            let Some(last) = now.kvs().first().map(|kv| kv.mod_revision()) else {
                return Ok(Vec::new());
            };
            let options = etcd_client::WatchOptions::new()
                .with_start_revision(1)
                .with_prev_key();
            let mut stream = client.watch(key, Some(options)).await?;
            let mut lines = Vec::new();
            while let Some(resp) = stream.message().await? {
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    let prev = event
                        .prev_kv()
                        .map(|p| String::from_utf8_lossy(p.value()).into_owned());
                    lines.push(format!(
                        "rev {}: {} (replaced {})",
                        kv.mod_revision(),
                        String::from_utf8_lossy(kv.value()),
                        prev.as_deref().unwrap_or("nothing")
                    ));
                    if kv.mod_revision() >= last {
                        return Ok::<_, etcd_client::Error>(lines);
                    }
                }
            }
            Ok(lines)
        };
        match tokio::time::timeout(Duration::from_secs(10), history).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => vec![format!("cannot read the marker's history: {e}")],
            Err(_) => vec!["the marker's history did not come in 10 s".to_string()],
        }
    }
}

/// Name stem of jobs that run on every matching worker (`target.mode: all`).
pub const EVERY_WORKER_STEM: &str = "every-";

/// Whether a record is of a placement probe ([`Cluster::probes`]).
pub fn is_probe(d: &Document) -> bool {
    d.get_str("jobName")
        .is_ok_and(|j| j == "probe-db" || j == "every-db")
}

/// Ticks of jobs firing every second, read from the run log.
#[derive(Debug, Default)]
pub struct Ticks {
    pub expected: usize,
    /// Ticks with a record: a run, or a verdict (`skipped`, `missed`).
    pub ran: usize,
    /// Of those, verdicts: ticks that ran no command, on purpose or not.
    pub skipped: usize,
    pub missed_verdicts: usize,
    /// Records beyond the first for one (job, planTime).
    pub duplicates: usize,
    /// The first ticks with more than one record: what each record says.
    pub doubled: Vec<String>,
    /// (job, planTime) with no record.
    pub missed: Vec<(String, i64)>,
    /// Records with each status.
    pub statuses: BTreeMap<String, usize>,
}

impl Ticks {
    /// Every whole second in `[from_ms, to_ms)` of each of `jobs`.
    pub fn count(docs: &[Document], jobs: &[String], from_ms: i64, to_ms: i64) -> Self {
        let mut seen: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
        let mut ticks = Self::default();
        for d in docs {
            let job = d.get_str("jobName").unwrap_or_default().to_string();
            let plan = plan_time(d);
            seen.entry((job, plan)).or_default().push(format!(
                "{} ({}) by {}, runId {}",
                d.get_str("status").unwrap_or("?"),
                d.get_str("reason").unwrap_or(""),
                d.get_str("worker").unwrap_or("?"),
                d.get_str("runId").unwrap_or("?"),
            ));
            let status = d.get_str("status").unwrap_or_default().to_string();
            *ticks.statuses.entry(status).or_default() += 1;
        }
        let first = (from_ms + 999) / 1000 * 1000;
        for d in docs {
            let job = d.get_str("jobName").unwrap_or_default();
            let plan = plan_time(d);
            if !jobs.iter().any(|j| j == job) || plan < first || plan >= to_ms {
                continue;
            }
            match d.get_str("status") {
                Ok("skipped") => ticks.skipped += 1,
                Ok("missed") => ticks.missed_verdicts += 1,
                _ => {}
            }
        }
        for job in jobs {
            for plan in (first..to_ms).step_by(1000) {
                ticks.expected += 1;
                match seen.get(&(job.clone(), plan)) {
                    Some(records) => {
                        ticks.ran += 1;
                        ticks.duplicates += records.len() - 1;
                        if records.len() > 1 && ticks.doubled.len() < 3 {
                            ticks
                                .doubled
                                .push(format!("{job} at {plan}: {}", records.join("; ")));
                        }
                    }
                    None => ticks.missed.push((job.clone(), plan)),
                }
            }
        }
        ticks
    }
}

impl Ticks {
    /// "planned = ran + skipped + missed, unaccounted" for the report.
    pub fn accounting(&self) -> String {
        format!(
            "ticks planned {} = ran {} + skipped {} + missed {}; unaccounted {}{}",
            self.expected,
            self.ran - self.skipped - self.missed_verdicts,
            self.skipped,
            self.missed_verdicts,
            self.missed.len(),
            match self.missed.first() {
                Some((job, plan)) => format!(" (first: {job} at {plan})"),
                None => String::new(),
            }
        ) + &match self.doubled.is_empty() {
            true => String::new(),
            false => format!(
                "; {} records beyond one a tick, e.g. {}",
                self.duplicates,
                self.doubled.join(" | ")
            ),
        }
    }
}

pub fn plan_time(d: &Document) -> i64 {
    int(d, "planTime")
}

/// An integer field (stored as int64 or int32), 0 when absent.
pub fn int(d: &Document, field: &str) -> i64 {
    d.get_i64(field)
        .or_else(|_| d.get_i32(field).map(i64::from))
        .unwrap_or_default()
}

/// Webhook deliveries by run id.
pub fn deliveries(hook: &WebhookReceiver) -> BTreeMap<String, usize> {
    let mut by_run = BTreeMap::new();
    for body in hook.accepted() {
        if let Some(run) = body["runId"].as_str() {
            *by_run.entry(run.to_string()).or_default() += 1;
        }
    }
    by_run
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `n` jobs named `<stem>-<i>` running `command` every second.
pub fn every_second(stem: &str, n: usize, command: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("{stem}-{i}"),
                "command": command,
                "cronExpr": "* * * * * * *",
            })
        })
        .collect()
}

pub fn names(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["name"].as_str().unwrap_or_default().to_string())
        .collect()
}
