//! `rcronctl job …`: list, get, save, delete, kill, run, pause, resume,
//! versions, rollback.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rcron_shared::placement::{format_labels, parse_labels};
use rcron_shared::{Job, Labels, TargetMode};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::client::types::JobView;
use crate::output::{Printer, or_dash, table, time, warnings};

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
        JobCommand::Run { name } => {
            let answer = client.run_job(&name).await?;
            out.answer(&answer, |r| {
                format!("{0} will run once, now (see `rcronctl logs {0}`)", r.name)
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

fn jobs_table(jobs: &[JobView]) -> String {
    table(
        &[
            "NAME", "CRON", "TIMEZONE", "NEXT", "STATUS", "TARGET", "COMMAND",
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
    if let Some(why) = unschedulable_reason(view) {
        out.push_str(&format!("\n{why}"));
    }
    out
}
