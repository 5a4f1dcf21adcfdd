//! `rcronctl job …`: list, get, save, delete, kill, run, pause, resume,
//! versions, rollback.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rcron_shared::placement::{format_labels, parse_labels};
use rcron_shared::{Job, Labels, TargetMode};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::client::types::{JobView, RunBody};
use crate::output::{Printer, or_dash, table, time, warnings};

/// The flags of `job run`.
#[derive(Args)]
pub struct RunArgs {
    /// The job.
    name: String,
    /// An environment variable for this run only, over the job's `env`
    /// (repeatable); recorded in the run's log record.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// How long the request may wait for the job's lock and a free slot,
    /// in seconds (default 600); not started by then, it is logged
    /// `skipped`.
    #[arg(long, value_name = "SECS")]
    deadline: Option<u64>,
}

/// `KEY=VALUE` split at its first `=` (the value may hold more). Only the
/// shape is checked here: the master judges the names and answers 400
/// naming each one it refuses.
fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some(("", _)) => Err(format!("{arg:?} has no name before `=`")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("expected KEY=VALUE, got {arg:?} (no `=`)")),
    }
}

/// `pairs` as a map; a name given twice is refused rather than one value
/// silently dropped.
fn env_map(
    flag: &str,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (key, value) in pairs {
        if env.insert(key.clone(), value).is_some() {
            bail!("{flag}: {key} is given twice");
        }
    }
    Ok(env)
}

#[derive(Subcommand)]
pub enum JobCommand {
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
    /// Run a job once, as soon as its lock and a worker's slot are free
    /// (paused jobs too); prints the request's id and deadline.
    Run(RunArgs),
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

/// Whether runs of a job may overlap (`concurrency`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConcurrencyArg {
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
pub enum MisfireArg {
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

/// The flags of `job save`.
#[derive(Args)]
pub struct SaveArgs {
    /// Job JSON file, or `-` for stdin.
    #[arg(long, short, conflicts_with_all = [
        "name", "command", "cron", "target", "all", "concurrency", "misfire",
        "starting_deadline", "no_alert_on_missed", "retry_backoff_max",
        "on_success", "on_failure", "env", "env_file", "workdir", "user",
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
    /// A job to start once after a run of this one succeeds (its last
    /// attempt; repeatable). A chain that leads back here is refused.
    #[arg(long = "on-success", value_name = "JOB")]
    on_success: Vec<String>,
    /// A job to start once after a run of this one fails, times out or is
    /// killed (its last attempt; repeatable).
    #[arg(long = "on-failure", value_name = "JOB")]
    on_failure: Vec<String>,
    /// An environment variable of every run (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// An environment variable whose value is read from a file on the
    /// worker (an absolute path; repeatable): a secret stays out of the
    /// job. Stored as `{"file": PATH}`.
    #[arg(long = "env-file", value_name = "KEY=PATH", value_parser = key_value)]
    env_file: Vec<(String, String)>,
    /// The command's working directory on the worker (an absolute path).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// The Unix user the command runs as on the worker.
    #[arg(long)]
    user: Option<String>,
}

impl SaveArgs {
    /// The job's JSON as the user wrote it, from the file or the flags.
    /// The master judges it, so a refusal is the API's message.
    fn document(self) -> anyhow::Result<Value> {
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
            on_success,
            on_failure,
            env,
            env_file,
            workdir,
            user,
        } = self;
        let (name, command, cron) = match (file, name) {
            (Some(path), _) => {
                let mut text = String::new();
                if path == "-" {
                    std::io::stdin().read_to_string(&mut text)?;
                } else {
                    text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {path}"))?;
                }
                return serde_json::from_str(&text).with_context(|| format!("{path} is not JSON"));
            }
            (None, Some(name)) => (name, command, cron),
            (None, None) => bail!("give --file, or --name with --command and --cron"),
        };
        let mut job = Map::new();
        job.insert("name".into(), json!(name));
        job.insert("command".into(), json!(command));
        job.insert("cronExpr".into(), json!(cron));
        let mut set = |field: &str, value: Value| {
            job.insert(field.into(), value);
        };
        if let Some(t) = timeout {
            set("timeoutSecs", json!(t));
        }
        if let Some(tz) = timezone {
            set("timezone", json!(tz));
        }
        if allow_overlap {
            set("concurrency", json!("allow"));
        }
        if let Some(c) = concurrency {
            set("concurrency", json!(c.as_str()));
        }
        if let Some(r) = retries {
            set("retries", json!(r));
        }
        if let Some(b) = retry_backoff {
            set("retryBackoffSecs", json!(b));
        }
        if let Some(b) = retry_backoff_max {
            set("retryBackoffMaxSecs", json!(b));
        }
        if let Some(m) = misfire {
            set("misfire", json!(m.as_str()));
        }
        if let Some(d) = starting_deadline {
            set("startingDeadlineSecs", json!(d));
        }
        if no_alert_on_missed {
            set("alertOnMissed", json!(false));
        }
        if disabled {
            set("disabled", json!(true));
        }
        if !alert_emails.is_empty() {
            set("alertEmails", json!(alert_emails));
        }
        if target.is_some() || all {
            set(
                "target",
                json!({
                    "labels": target.unwrap_or_default(),
                    "mode": if all { "all" } else { "one" },
                }),
            );
        }
        if !on_success.is_empty() {
            set("onSuccess", json!(on_success));
        }
        if !on_failure.is_empty() {
            set("onFailure", json!(on_failure));
        }
        // One map for both flags: a name may have one value, inline or
        // from a file.
        let mut vars: Map<String, Value> = Map::new();
        let inline = env.into_iter().map(|(k, v)| (k, json!(v)));
        let files = env_file.into_iter().map(|(k, p)| (k, json!({ "file": p })));
        for (key, value) in inline.chain(files) {
            if vars.insert(key.clone(), value).is_some() {
                bail!("--env/--env-file: {key} is given twice");
            }
        }
        if !vars.is_empty() {
            set("env", Value::Object(vars));
        }
        if let Some(dir) = workdir {
            set("workdir", json!(dir));
        }
        if let Some(u) = user {
            set("user", json!(u));
        }
        Ok(Value::Object(job))
    }
}

/// Runs one `job` command.
pub async fn run(client: &Client, out: Printer, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::List => {
            let answer = client.jobs().await?;
            out.answer(&answer, |list| jobs_table(&list.jobs));
        }
        JobCommand::Get { name } => {
            let answer = client.job(&name).await?;
            out.answer(&answer, |view| job_text(view, &answer.document));
        }
        JobCommand::Save(args) => {
            let document = args.document()?;
            let name = document["name"]
                .as_str()
                .context("the job has no \"name\"")?
                .to_string();
            let answer = client.put_job(&name, &document).await?;
            out.answer(&answer, |saved| {
                let what = if saved.previous.is_some() {
                    "replaced"
                } else {
                    "created"
                };
                let mut human = format!(
                    "job {name} {what}; next run {}",
                    or_dash(saved.job.next_fire_time.as_deref())
                );
                if let Some(why) = unschedulable_reason(&saved.job) {
                    human.push_str(&format!("\nwarning: {why}"));
                }
                human
            });
            warnings(&answer.body.warnings);
        }
        JobCommand::Delete { name } => {
            let answer = client.delete_job(&name).await?;
            out.answer(&answer, |_| format!("job {name} deleted"));
        }
        JobCommand::Kill { name } => {
            let answer = client.kill_job(&name).await?;
            out.answer(&answer, |k| {
                format!("kill sent to the running runs of {}", k.name)
            });
        }
        JobCommand::Run(RunArgs {
            name,
            env,
            deadline,
        }) => {
            let body = RunBody {
                env: env_map("-e", env)?,
                deadline_secs: deadline,
            };
            let answer = client.run_job(&name, &body).await?;
            out.answer(&answer, |r| {
                format!(
                    "{0} will run once, as soon as its lock and a worker's slot are free\n\
                     request: {1}\n\
                     deadline: {2} (logged skipped if not started by then; see `rcronctl logs {0}`)",
                    r.name,
                    r.request_id,
                    time(r.deadline)
                )
            });
        }
        JobCommand::Pause { name } => set_disabled(client, out, &name, true).await?,
        JobCommand::Resume { name } => set_disabled(client, out, &name, false).await?,
        JobCommand::Versions { name } => {
            let answer = client.versions(&name).await?;
            out.answer(&answer, |v| {
                let rows = v
                    .versions
                    .iter()
                    .map(|x| {
                        vec![
                            x.version.to_string(),
                            time(x.time),
                            x.key.clone(),
                            x.action.clone(),
                            x.job.cron_expr.clone(),
                            x.job.command.clone(),
                        ]
                    })
                    .collect();
                table(
                    &["VERSION", "SAVED", "KEY", "ACTION", "CRON", "COMMAND"],
                    rows,
                )
            });
        }
        JobCommand::Rollback { name, to } => {
            let versions = client.versions(&name).await?.body;
            let job = versions
                .versions
                .into_iter()
                .find(|x| x.version == to)
                .map(|x| x.job)
                .with_context(|| {
                    format!("job {name} has no version {to} (see `rcronctl job versions {name}`)")
                })?;
            let answer = client.save_job(&job).await?;
            out.answer(&answer, |_| {
                format!("job {name} saved back as of version {to}")
            });
            warnings(&answer.body.warnings);
        }
    }
    Ok(())
}

/// Pause or resume: a patch of `disabled` alone, so nothing else of the
/// job is rewritten (and operator keys may do it).
async fn set_disabled(
    client: &Client,
    out: Printer,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let mut fields = Map::new();
    fields.insert("disabled".into(), Value::Bool(disabled));
    let answer = client.patch_job(name, &fields).await?;
    out.answer(&answer, |patched| {
        let done = if disabled { "paused" } else { "resumed" };
        let mut human = format!("job {name} {done}");
        if let Some(why) = unschedulable_reason(&patched.job) {
            human.push_str(&format!("\nwarning: {why}"));
        }
        human
    });
    Ok(())
}

/// Where a job runs: `any`, `role=db (one)`, `role=db (all)`, `all workers`.
pub fn target_text(job: &Job) -> String {
    let (labels, all) = match &job.target {
        Some(t) => (format_labels(&t.labels), t.mode == TargetMode::All),
        None => (String::new(), false),
    };
    match (labels.is_empty(), all) {
        (true, false) => "any".into(),
        (true, true) => "all workers".into(),
        (false, _) => format!("{labels} ({})", if all { "all" } else { "one" }),
    }
}

/// Why a job's ticks run nowhere, when the API says they do.
fn unschedulable_reason(view: &JobView) -> Option<String> {
    if !view.unschedulable {
        return None;
    }
    let labels = view
        .job
        .target
        .as_ref()
        .map(|t| format_labels(&t.labels))
        .unwrap_or_default();
    Some(if labels.is_empty() {
        "unschedulable: no live worker can run it (draining ones do not count)".into()
    } else {
        format!("unschedulable: no live worker carries {labels}")
    })
}

/// `paused`, `UNSCHEDULABLE` (enabled, but no live worker may run it) or
/// `enabled`.
fn job_status(view: &JobView) -> &'static str {
    if view.job.disabled {
        "paused"
    } else if view.unschedulable {
        "UNSCHEDULABLE"
    } else {
        "enabled"
    }
}

/// The jobs a job starts when a run ends, `onSuccess: b, c` and
/// `onFailure: d`, those it has.
pub fn chains(job: &Job) -> Vec<String> {
    let list = |names: &[rcron_shared::JobName]| {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if !job.on_success.is_empty() {
        out.push(format!("onSuccess: {}", list(&job.on_success)));
    }
    if !job.on_failure.is_empty() {
        out.push(format!("onFailure: {}", list(&job.on_failure)));
    }
    out
}

fn jobs_table(jobs: &[JobView]) -> String {
    table(
        &[
            "NAME", "CRON", "TIMEZONE", "NEXT", "STATUS", "TARGET", "CHAINS", "COMMAND",
        ],
        jobs.iter()
            .map(|v| {
                vec![
                    v.job.name.to_string(),
                    v.job.cron_expr.clone(),
                    or_dash(v.job.timezone.map(|tz| tz.name())),
                    or_dash(v.next_fire_time.as_deref()),
                    job_status(v).into(),
                    target_text(&v.job),
                    match chains(&v.job) {
                        c if c.is_empty() => "-".to_string(),
                        c => c.join("; "),
                    },
                    v.job.command.clone(),
                ]
            })
            .collect(),
    )
}

/// One job for people: its document, then where it runs.
fn job_text(view: &JobView, document: &Value) -> String {
    let mut out = serde_json::to_string_pretty(document).unwrap_or_default();
    let matching = match view.matching_workers {
        Some(1) => "1 live worker matches".to_string(),
        Some(n) => format!("{n} live workers match"),
        None => "the worker registry could not be read".to_string(),
    };
    out.push_str(&format!("\ntarget: {}; {matching}", target_text(&view.job)));
    for chain in chains(&view.job) {
        out.push_str(&format!("\n{chain}"));
    }
    if let Some(why) = unschedulable_reason(view) {
        out.push_str(&format!("\n{why}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    /// The job document `job save --name j --command true --cron @daily
    /// <extra>` sends.
    fn saved(extra: &[&str]) -> anyhow::Result<Value> {
        let base = [
            "rcronctl",
            "job",
            "save",
            "--name",
            "j",
            "--command",
            "true",
            "--cron",
            "@daily",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        match cli.command {
            Command::Job(JobCommand::Save(args)) => args.document(),
            _ => panic!("not a save"),
        }
    }

    #[test]
    fn save_flags_set_chains_env_workdir_and_user() {
        let doc = saved(&[
            "--on-success",
            "b",
            "--on-success",
            "c",
            "--on-failure",
            "d",
            "--env",
            "MODE=full=yes",
            "-e",
            "EMPTY=",
            "--env-file",
            "TOKEN=/run/secrets/token",
            "--workdir",
            "/srv/app",
            "--user",
            "backup",
        ])
        .expect("document");
        assert_eq!(doc["onSuccess"], json!(["b", "c"]));
        assert_eq!(doc["onFailure"], json!(["d"]));
        assert_eq!(
            doc["env"],
            json!({"MODE": "full=yes", "EMPTY": "", "TOKEN": {"file": "/run/secrets/token"}})
        );
        assert_eq!(doc["workdir"], "/srv/app");
        assert_eq!(doc["user"], "backup");
    }

    #[test]
    fn a_job_saved_without_the_new_flags_does_not_gain_their_fields() {
        let doc = saved(&[]).expect("document");
        for absent in ["onSuccess", "onFailure", "env", "workdir", "user"] {
            assert!(doc.get(absent).is_none(), "{absent} in {doc}");
        }
    }

    #[test]
    fn malformed_or_repeated_variables_are_refused_before_anything_is_sent() {
        let err = saved(&["--env", "NOEQUALS"]).expect_err("no `=`");
        assert!(
            err.to_string()
                .contains("expected KEY=VALUE, got \"NOEQUALS\""),
            "{err}"
        );
        let err = saved(&["--env-file", "=/x"]).expect_err("no name");
        assert!(err.to_string().contains("no name before `=`"), "{err}");
        let err = saved(&["--env", "A=1", "--env-file", "A=/x"]).expect_err("twice");
        assert!(err.to_string().contains("A is given twice"), "{err}");
        let err = Cli::try_parse_from(["rcronctl", "job", "save", "--file", "-", "--user", "x"])
            .err()
            .expect("--file takes the whole job");
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }

    #[test]
    fn run_flags_split_at_the_first_equals_sign() {
        let cli = Cli::try_parse_from([
            "rcronctl",
            "job",
            "run",
            "x",
            "-e",
            "URL=a=b",
            "--env",
            "N=1",
            "--deadline",
            "30",
        ])
        .expect("parses");
        let Command::Job(JobCommand::Run(args)) = cli.command else {
            panic!("not a run");
        };
        assert_eq!(
            args.env,
            [
                ("URL".to_string(), "a=b".to_string()),
                ("N".into(), "1".into())
            ]
        );
        assert_eq!(args.deadline, Some(30));
        let err =
            env_map("-e", [("A".into(), "1".into()), ("A".into(), "2".into())]).expect_err("twice");
        assert_eq!(err.to_string(), "-e: A is given twice");
    }
}
