//! `rcronctl`: the command-line client of rcron's REST API.
//!
//! Every command is one or a few REST calls; errors from the API are shown
//! as the API words them. Output is a table for people or JSON (`-o json`)
//! for scripts.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rcron_shared::Labels;
use rcron_shared::placement::{format_labels, parse_labels};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "rcronctl",
    version,
    about = "Manage an rcron cluster through its REST API"
)]
struct Cli {
    /// Base URL of any master.
    #[arg(
        long,
        env = "RCRON_SERVER",
        default_value = "http://127.0.0.1:8070",
        global = true
    )]
    server: String,
    /// API token (sent as a bearer token).
    #[arg(long, env = "RCRON_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Jobs: list, get, save, delete, kill, run, pause, resume.
    #[command(subcommand)]
    Job(JobCommand),
    /// Runs of one job or of all jobs, newest first.
    Logs {
        /// Only this job's runs.
        job: Option<String>,
        /// Only records of this status: runs that ended this way, or the
        /// verdicts on ticks that ran no command (`skipped`, `missed`).
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Keep printing new runs as they are logged.
        #[arg(short, long)]
        follow: bool,
    },
    /// Live workers.
    Workers,
    /// One run: kill it by id (ids are listed by `workers -o json` and in the log).
    #[command(subcommand)]
    Run(RunCommand),
    /// Masters, leader, health, pending alerts.
    Cluster,
    /// Who changed what, newest first (the audit trail).
    Audit {
        /// Only changes of this job.
        #[arg(long)]
        job: Option<String>,
        /// Only changes by this key.
        #[arg(long)]
        key: Option<String>,
        /// How many changes.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// API keys: `key hash` prints the SHA-256 of a secret read from
    /// stdin, for the master's keys file (`RCRON_API_KEYS_FILE`).
    #[command(subcommand)]
    Key(KeyCommand),
    /// The next fire times of a cron expression (and, on stderr, warnings:
    /// daylight-saving changes it runs into, seconds-first look-alikes).
    Preview {
        /// The expression, e.g. "*/5 * * * * * *".
        expr: String,
        /// IANA time zone.
        #[arg(long)]
        timezone: Option<String>,
        /// How many fire times.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
}

/// A run-log status, as the API names it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusArg {
    /// Exit code 0.
    Success,
    /// Non-zero exit, signal, or could not start.
    Failed,
    /// Killed after the job's timeout.
    Timeout,
    /// Killed on request, at a drain, lock lost or replaced.
    Killed,
    /// Its worker died during the run.
    Interrupted,
    /// Not run on purpose: the previous run of a `forbid` job was still going.
    Skipped,
    /// Should have run and did not (late, no free slot, no live worker, …).
    Missed,
}

impl StatusArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Killed => "killed",
            Self::Interrupted => "interrupted",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
        }
    }
}

/// Whether runs of a job may overlap (`concurrency`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConcurrencyArg {
    /// Never two runs at once; a tick that finds one going is logged `skipped`.
    Forbid,
    /// Runs may overlap.
    Allow,
    /// A new tick kills the running run (logged `killed`, reason `replaced`).
    Replace,
}

impl ConcurrencyArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Forbid => "forbid",
            Self::Allow => "allow",
            Self::Replace => "replace",
        }
    }
}

/// What a tick found late does (`misfire`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MisfireArg {
    /// Not run; logged `missed`.
    Skip,
    /// Run once, late, if within `--starting-deadline`.
    RunOnce,
}

impl MisfireArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "runOnce",
        }
    }
}

#[derive(Subcommand)]
enum JobCommand {
    /// Every job.
    List,
    /// One job.
    Get { name: String },
    /// Create or replace a job from a JSON file (`-` = stdin) or from flags;
    /// warnings about its expression go to stderr.
    Save(Box<SaveArgs>),
    /// Delete a job.
    Delete { name: String },
    /// Kill a job's running runs.
    Kill { name: String },
    /// Run a job once, now (paused jobs too).
    Run { name: String },
    /// Pause a job (kept, never fired).
    Pause { name: String },
    /// A job's saved versions, newest first (from the audit trail).
    Versions { name: String },
    /// Save an earlier version of a job back (itself audited).
    Rollback {
        name: String,
        /// The version number, as `job versions` lists it.
        #[arg(long)]
        to: u64,
    },
    /// Resume a paused job.
    Resume { name: String },
}

/// The flags of `job save`.
#[derive(Args)]
struct SaveArgs {
    /// Job JSON file, or `-` for stdin.
    #[arg(long, short, conflicts_with_all = [
        "name", "command", "cron", "target", "all", "concurrency", "misfire",
        "starting_deadline", "no_alert_on_missed", "retry_backoff_max",
    ])]
    file: Option<String>,
    /// Job name.
    #[arg(long, requires_all = ["command", "cron"])]
    name: Option<String>,
    /// Shell command.
    #[arg(long)]
    command: Option<String>,
    /// Cron expression.
    #[arg(long)]
    cron: Option<String>,
    /// Seconds before a run is killed (0 = none).
    #[arg(long)]
    timeout: Option<u64>,
    /// IANA time zone of the expression.
    #[arg(long)]
    timezone: Option<String>,
    /// Let runs overlap (the same as `--concurrency allow`).
    #[arg(long, conflicts_with = "concurrency")]
    allow_overlap: bool,
    /// Whether runs may overlap: `forbid` (the default), `allow`, or
    /// `replace` (a new tick kills the running run).
    #[arg(long, value_enum)]
    concurrency: Option<ConcurrencyArg>,
    /// Retries of a failed run.
    #[arg(long)]
    retries: Option<u32>,
    /// Seconds before the first retry (doubling for each next one).
    #[arg(long)]
    retry_backoff: Option<u64>,
    /// Cap of the doubling delay between retries, in seconds (0 = 1 h).
    #[arg(long, value_name = "SECS")]
    retry_backoff_max: Option<u64>,
    /// A tick found late: `skip` (logged `missed`, the default) or
    /// `run-once` (run once, late, within `--starting-deadline`).
    #[arg(long, value_enum)]
    misfire: Option<MisfireArg>,
    /// How late a tick may still start, in seconds (0 = the worker's
    /// misfire grace).
    #[arg(long, value_name = "SECS")]
    starting_deadline: Option<u64>,
    /// Send no alert when a tick is missed (they are still logged).
    #[arg(long)]
    no_alert_on_missed: bool,
    /// Save it paused.
    #[arg(long)]
    disabled: bool,
    /// Extra alert recipient (repeatable).
    #[arg(long = "alert-email")]
    alert_emails: Vec<String>,
    /// Run only on workers carrying every one of these labels,
    /// `key=value,key=value` (as in the workers' `RCRON_WORKER_LABELS`).
    #[arg(long, value_name = "LABELS", value_parser = parse_labels)]
    target: Option<Labels>,
    /// Every matching worker runs each tick (without `--target`: every
    /// worker); by default one of them does.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the hex SHA-256 of the secret on stdin (its first line,
    /// without the line end): the `sha256` of a `[[key]]` in the keys file.
    Hash,
}

#[derive(Subcommand)]
enum RunCommand {
    /// Kill one run (other runs of its job go on).
    Kill {
        /// The run's id.
        run_id: String,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            let problems: Vec<String> = value["problems"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|x| x.as_str().map(|s| format!("\n  - {s}")))
                        .collect()
                })
                .unwrap_or_default();
            bail!("{method} {path}: {status}: {msg}{}", problems.concat());
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// Labels as the API sends them (`{"role": "db"}`), written `role=db,...`.
fn labels_text(labels: &Value) -> String {
    let labels: Labels = labels
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    format_labels(&labels)
}

/// Where a job runs: `any`, `role=db (one)`, `role=db (all)`, `all workers`.
fn target_text(job: &Value) -> String {
    let labels = labels_text(&job["target"]["labels"]);
    let all = job["target"]["mode"] == "all";
    match (labels.is_empty(), all) {
        (true, false) => "any".into(),
        (true, true) => "all workers".into(),
        (false, _) => format!("{labels} ({})", if all { "all" } else { "one" }),
    }
}

/// A worker's clock offset from the leader's beacon (`+3013 ms`; `-` until
/// measured), then `SKEWED` when it is beyond the worker's
/// `max_clock_skew_ms` (it fires nothing).
fn clock_text(worker: &Value) -> String {
    let offset = worker["clockOffsetMs"]
        .as_i64()
        .map_or_else(|| "-".to_string(), |ms| format!("{ms:+} ms"));
    if worker["clockSkewed"] == true {
        format!("{offset} SKEWED")
    } else {
        offset
    }
}

/// Why a job's ticks run nowhere, when the API says they do.
fn unschedulable_reason(job: &Value) -> Option<String> {
    if job["unschedulable"] != true {
        return None;
    }
    let labels = labels_text(&job["target"]["labels"]);
    Some(if labels.is_empty() {
        "unschedulable: no live worker can run it (draining ones do not count)".into()
    } else {
        format!("unschedulable: no live worker carries {labels}")
    })
}

/// `paused`, `UNSCHEDULABLE` (enabled, but no live worker may run it) or
/// `enabled`.
fn job_status(job: &Value) -> &'static str {
    if job["disabled"] == true {
        "paused"
    } else if job["unschedulable"] == true {
        "UNSCHEDULABLE"
    } else {
        "enabled"
    }
}

fn jobs_table(jobs: &[Value]) -> String {
    table(
        &[
            "NAME", "CRON", "TIMEZONE", "NEXT", "STATUS", "TARGET", "COMMAND",
        ],
        jobs.iter()
            .map(|j| {
                vec![
                    s(&j["name"]),
                    s(&j["cronExpr"]),
                    s(&j["timezone"]),
                    s(&j["nextFireTime"]),
                    job_status(j).into(),
                    target_text(j),
                    s(&j["command"]),
                ]
            })
            .collect(),
    )
}

/// One job for people: its document, then where it runs.
fn job_text(job: &Value) -> String {
    let mut out = serde_json::to_string_pretty(job).unwrap_or_default();
    let matching = match job["matchingWorkers"].as_u64() {
        Some(1) => "1 live worker matches".to_string(),
        Some(n) => format!("{n} live workers match"),
        None => "the worker registry could not be read".to_string(),
    };
    out.push_str(&format!("\ntarget: {}; {matching}", target_text(job)));
    if let Some(why) = unschedulable_reason(job) {
        out.push_str(&format!("\n{why}"));
    }
    out
}

/// The API's `warnings` about a cron expression (a save or a preview), on
/// stderr: they never make a command fail, and stdout stays the answer.
fn print_warnings(answer: &Value) {
    for w in answer["warnings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        eprintln!("warning: {}", s(w));
    }
}

/// Whether a log record is a verdict on a tick that ran no command.
fn is_verdict(log: &Value) -> bool {
    matches!(log["status"].as_str(), Some("skipped" | "missed"))
}

fn logs_rows(logs: &[Value]) -> Vec<Vec<String>> {
    logs.iter()
        .map(|l| {
            let dur = l["endTime"].as_i64().unwrap_or(0) - l["startTime"].as_i64().unwrap_or(0);
            vec![
                time(&l["startTime"]),
                s(&l["jobName"]),
                s(&l["status"]),
                s(&l["exitCode"]),
                // A verdict ran nothing: it has no duration.
                if is_verdict(l) {
                    "-".to_string()
                } else {
                    format!("{dur} ms")
                },
                s(&l["worker"]),
                s(&l["reason"]),
                l["output"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string(),
            ]
        })
        .collect()
}

const LOG_HEADERS: &[&str] = &[
    "START",
    "JOB",
    "STATUS",
    "EXIT",
    "DURATION",
    "WORKER",
    "REASON",
    "LAST OUTPUT LINE",
];

async fn run(cli: Cli) -> anyhow::Result<()> {
    // reqwest is built without a crypto provider; use the project's one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: cli.server.clone(),
        token: cli.token.clone(),
    };
    let json_out = cli.output == Output::Json;
    let print = |v: &Value, human: String| {
        if json_out {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{human}");
        }
    };
    if let Command::Key(KeyCommand::Hash) = cli.command {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let secret = line.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(
            secret.len() >= 16,
            "the secret must be at least 16 characters (it was {})",
            secret.len()
        );
        println!("{}", rcron_shared::secret::hash_secret(secret));
        return Ok(());
    }
    match cli.command {
        Command::Job(cmd) => {
            match cmd {
                JobCommand::List => {
                    let v = api.get("/api/v1/jobs").await?;
                    print(
                        &v,
                        jobs_table(v["jobs"].as_array().map(Vec::as_slice).unwrap_or_default()),
                    );
                }
                JobCommand::Get { name } => {
                    let v = api.get(&format!("/api/v1/jobs/{name}")).await?;
                    print(&v, job_text(&v));
                }
                JobCommand::Save(args) => {
                    let SaveArgs {
                        file,
                        name,
                        command,
                        cron,
                        timeout,
                        timezone,
                        allow_overlap,
                        concurrency,
                        retries,
                        retry_backoff,
                        retry_backoff_max,
                        misfire,
                        starting_deadline,
                        no_alert_on_missed,
                        disabled,
                        alert_emails,
                        target,
                        all,
                    } = *args;
                    let job: Value = match (file, name) {
                        (Some(path), _) => {
                            let mut text = String::new();
                            if path == "-" {
                                std::io::stdin().read_to_string(&mut text)?;
                            } else {
                                text = std::fs::read_to_string(&path)
                                    .with_context(|| format!("cannot read {path}"))?;
                            }
                            serde_json::from_str(&text)
                                .with_context(|| format!("{path} is not JSON"))?
                        }
                        (None, Some(name)) => {
                            let mut j = json!({"name": name, "command": command, "cronExpr": cron});
                            if let Some(t) = timeout {
                                j["timeoutSecs"] = json!(t);
                            }
                            if let Some(tz) = timezone {
                                j["timezone"] = json!(tz);
                            }
                            if allow_overlap {
                                j["concurrency"] = json!("allow");
                            }
                            if let Some(c) = concurrency {
                                j["concurrency"] = json!(c.as_str());
                            }
                            if let Some(r) = retries {
                                j["retries"] = json!(r);
                            }
                            if let Some(b) = retry_backoff {
                                j["retryBackoffSecs"] = json!(b);
                            }
                            if let Some(b) = retry_backoff_max {
                                j["retryBackoffMaxSecs"] = json!(b);
                            }
                            if let Some(m) = misfire {
                                j["misfire"] = json!(m.as_str());
                            }
                            if let Some(d) = starting_deadline {
                                j["startingDeadlineSecs"] = json!(d);
                            }
                            if no_alert_on_missed {
                                j["alertOnMissed"] = json!(false);
                            }
                            if disabled {
                                j["disabled"] = json!(true);
                            }
                            if !alert_emails.is_empty() {
                                j["alertEmails"] = json!(alert_emails);
                            }
                            if target.is_some() || all {
                                j["target"] = json!({
                                    "labels": target.unwrap_or_default(),
                                    "mode": if all { "all" } else { "one" },
                                });
                            }
                            j
                        }
                        (None, None) => bail!("give --file, or --name with --command and --cron"),
                    };
                    let name = job["name"]
                        .as_str()
                        .context("the job has no \"name\"")?
                        .to_string();
                    let v = api
                        .call(
                            reqwest::Method::PUT,
                            &format!("/api/v1/jobs/{name}"),
                            Some(&job),
                        )
                        .await?;
                    let what = if v["previous"].is_null() {
                        "created"
                    } else {
                        "replaced"
                    };
                    let mut human = format!(
                        "job {name} {what}; next run {}",
                        s(&v["job"]["nextFireTime"])
                    );
                    if let Some(why) = unschedulable_reason(&v["job"]) {
                        human.push_str(&format!("\nwarning: {why}"));
                    }
                    print(&v, human);
                    print_warnings(&v);
                }
                JobCommand::Delete { name } => {
                    let v = api
                        .call(
                            reqwest::Method::DELETE,
                            &format!("/api/v1/jobs/{name}"),
                            None,
                        )
                        .await?;
                    print(&v, format!("job {name} deleted"));
                }
                JobCommand::Kill { name } => {
                    let v = api
                        .call(
                            reqwest::Method::POST,
                            &format!("/api/v1/jobs/{name}/kill"),
                            None,
                        )
                        .await?;
                    print(&v, format!("kill sent to the running runs of {name}"));
                }
                JobCommand::Run { name } => {
                    let v = api
                        .call(
                            reqwest::Method::POST,
                            &format!("/api/v1/jobs/{name}/run"),
                            None,
                        )
                        .await?;
                    print(
                        &v,
                        format!("{name} will run once, now (see `rcronctl logs {name}`)"),
                    );
                }
                JobCommand::Pause { name } => set_disabled(&api, &name, true, &print).await?,
                JobCommand::Versions { name } => {
                    let v = api.get(&format!("/api/v1/jobs/{name}/versions")).await?;
                    let rows = v["versions"]
                        .as_array()
                        .map(|vs| {
                            vs.iter()
                                .map(|x| {
                                    vec![
                                        s(&x["version"]),
                                        time(&x["time"]),
                                        s(&x["key"]),
                                        s(&x["action"]),
                                        s(&x["job"]["cronExpr"]),
                                        s(&x["job"]["command"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    print(
                        &v,
                        table(
                            &["VERSION", "SAVED", "KEY", "ACTION", "CRON", "COMMAND"],
                            rows,
                        ),
                    );
                }
                JobCommand::Rollback { name, to } => {
                    let v = api.get(&format!("/api/v1/jobs/{name}/versions")).await?;
                    let job = v["versions"]
                    .as_array()
                    .and_then(|vs| vs.iter().find(|x| x["version"] == to))
                    .map(|x| x["job"].clone())
                    .ok_or_else(|| anyhow::anyhow!("job {name} has no version {to} (see `rcronctl job versions {name}`)"))?;
                    let v = api
                        .call(
                            reqwest::Method::PUT,
                            &format!("/api/v1/jobs/{name}"),
                            Some(&job),
                        )
                        .await?;
                    print(&v, format!("job {name} saved back as of version {to}"));
                    print_warnings(&v);
                }
                JobCommand::Resume { name } => set_disabled(&api, &name, false, &print).await?,
            }
        }
        Command::Logs {
            job,
            status,
            limit,
            follow,
        } => {
            let mut query = format!("?limit={limit}");
            if let Some(j) = &job {
                query.push_str(&format!("&job={j}"));
            }
            if let Some(st) = status {
                query.push_str(&format!("&status={}", st.as_str()));
            }
            let v = api.get(&format!("/api/v1/logs{query}")).await?;
            let mut logs: Vec<Value> = v["logs"].as_array().cloned().unwrap_or_default();
            logs.reverse(); // oldest first, so the newest is at the bottom as with `tail`
            if json_out {
                for l in &logs {
                    println!("{l}");
                }
            } else {
                println!("{}", table(LOG_HEADERS, logs_rows(&logs)));
            }
            if follow {
                let mut seen: std::collections::HashSet<String> = logs
                    .iter()
                    .map(|l| format!("{}-{}", s(&l["runId"]), s(&l["attempt"])))
                    .collect();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let v = match api.get(&format!("/api/v1/logs{query}")).await {
                        Ok(v) => v,
                        Err(e) => {
                            eprintln!("rcronctl: {e:#}; retrying");
                            continue;
                        }
                    };
                    let mut fresh: Vec<Value> = v["logs"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|l| seen.insert(format!("{}-{}", s(&l["runId"]), s(&l["attempt"]))))
                        .collect();
                    fresh.reverse();
                    for l in &fresh {
                        if json_out {
                            println!("{l}");
                        } else {
                            let rows = logs_rows(std::slice::from_ref(l));
                            println!("{}", rows[0].join("  "));
                        }
                    }
                }
            }
        }
        // Answered above, without the server.
        Command::Key(_) => {}
        Command::Audit { job, key, limit } => {
            let mut query = format!("?limit={limit}");
            for (name, value) in [("job", &job), ("key", &key)] {
                if let Some(v) = value {
                    query.push_str(&format!("&{name}={v}"));
                }
            }
            let v = api.get(&format!("/api/v1/audit{query}")).await?;
            let rows = v["entries"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .map(|e| {
                            vec![
                                time(&e["time"]),
                                s(&e["key"]),
                                s(&e["action"]),
                                s(&e["job"]),
                                s(&e["route"]),
                                s(&e["remote"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print(
                &v,
                table(&["TIME", "KEY", "ACTION", "JOB", "ROUTE", "FROM"], rows),
            );
        }
        Command::Workers => {
            let v = api.get("/api/v1/workers").await?;
            let rows = v["workers"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .map(|w| {
                            let running = w["runs"].as_array().map(|r| r.len()).unwrap_or(0);
                            let state = if w["draining"] == true {
                                "draining"
                            } else {
                                "up"
                            };
                            vec![
                                s(&w["id"]),
                                s(&w["ip"]),
                                s(&w["hostname"]),
                                s(&w["version"]),
                                time(&w["startTime"]),
                                format!("{running}/{}", s(&w["capacity"])),
                                state.to_string(),
                                s(&w["timezone"]),
                                clock_text(w),
                                match labels_text(&w["labels"]) {
                                    l if l.is_empty() => "-".to_string(),
                                    l => l,
                                },
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print(
                &v,
                table(
                    &[
                        "ID", "IP", "HOST", "VERSION", "STARTED", "RUNNING", "STATE", "ZONE",
                        "CLOCK", "LABELS",
                    ],
                    rows,
                ),
            );
        }
        Command::Run(RunCommand::Kill { run_id }) => {
            let v = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/runs/{run_id}/kill"),
                    None,
                )
                .await?;
            print(
                &v,
                format!(
                    "kill sent to run {run_id} of {} on {}",
                    s(&v["job"]),
                    s(&v["worker"])
                ),
            );
        }
        Command::Cluster => {
            let v = api.get("/api/v1/cluster").await?;
            let mut human = String::new();
            for m in v["masters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let role = if m["leader"] == true {
                    "leader"
                } else {
                    "follower"
                };
                human.push_str(&format!(
                    "master {} ({role}) {}\n",
                    s(&m["id"]),
                    s(&m["url"])
                ));
            }
            let health = |h: &Value| {
                if h["healthy"] == true {
                    "ok".to_string()
                } else {
                    format!("DOWN: {}", s(&h["error"]))
                }
            };
            human.push_str(&format!(
                "etcd: {}\nmongodb: {}\n",
                health(&v["etcd"]),
                health(&v["mongo"])
            ));
            human.push_str(&format!(
                "workers: {}\npending alerts: {}\nzone: {}",
                s(&v["workers"]),
                s(&v["pendingAlerts"]),
                s(&v["timezone"])
            ));
            if let Some(mismatch) = v["zoneMismatch"].as_str() {
                human.push_str(&format!("\nERROR: {mismatch}"));
            }
            print(&v, human);
        }
        Command::Preview {
            expr,
            timezone,
            count,
        } => {
            let body = json!({"cronExpr": expr, "timezone": timezone, "count": count});
            let v = api
                .call(reqwest::Method::POST, "/api/v1/cron/preview", Some(&body))
                .await?;
            let times: Vec<String> = v["next"]
                .as_array()
                .map(|n| n.iter().map(s).collect())
                .unwrap_or_default();
            print(
                &v,
                format!("{} in {}:\n{}", expr, s(&v["timezone"]), times.join("\n")),
            );
            print_warnings(&v);
        }
    }
    Ok(())
}

async fn set_disabled(
    api: &Api,
    name: &str,
    disabled: bool,
    print: &impl Fn(&Value, String),
) -> anyhow::Result<()> {
    // One field changed on the server (not read-then-replace, which would
    // drop what this client does not know of the job).
    let action = if disabled { "pause" } else { "resume" };
    let v = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{name}/{action}"),
            None,
        )
        .await?;
    let mut human = format!("job {name} {}", if disabled { "paused" } else { "resumed" });
    if let Some(why) = unschedulable_reason(&v) {
        human.push_str(&format!("\nwarning: {why}"));
    }
    print(&v, human);
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("rcronctl: {e:#}");
        std::process::exit(1);
    }
}
