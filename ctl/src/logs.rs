//! `rcronctl logs`: run records, newest first, or with `--follow` the
//! runs logged from now on, as they come; `--follow JOB` prints the
//! output of the job's runs as they print ([`crate::live`]).

use std::collections::HashSet;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rcron_shared::{LogRecord, RunStatus};

use crate::client::{Client, LogQuery};
use crate::output::{Printer, line, or_dash, table, time};

/// How often `--follow` asks for new runs.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How many of the newest records `--follow` reads each time, at least: a
/// run is found as long as fewer runs started after it than this while it
/// ran (records are ordered by start time).
const FOLLOW_WINDOW: u64 = 200;

/// The flags of `logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Only this job's runs.
    job: Option<String>,
    /// Only records of this status: runs that ended this way, or the
    /// verdicts on ticks that ran no command (`skipped`, `missed`).
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// How many runs (with --follow: how many of the newest runs each
    /// poll compares, at least 200).
    #[arg(long, default_value_t = 20)]
    limit: u64,
    /// Print the runs logged from now on, oldest first, as they come (one
    /// JSON record a line with `-o json`), until interrupted. With a JOB:
    /// the output of its runs as they print, a header per run and a last
    /// line saying how it ended (one JSON event a line with `-o json`).
    #[arg(short, long)]
    follow: bool,
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

impl From<StatusArg> for RunStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Success => Self::Success,
            StatusArg::Failed => Self::Failed,
            StatusArg::Timeout => Self::Timeout,
            StatusArg::Killed => Self::Killed,
            StatusArg::Interrupted => Self::Interrupted,
            StatusArg::Skipped => Self::Skipped,
            StatusArg::Missed => Self::Missed,
        }
    }
}

const HEADERS: [&str; 9] = [
    "START",
    "JOB",
    "STATUS",
    "EXIT",
    "DURATION",
    "TRIGGER",
    "WORKER",
    "REASON",
    "LAST OUTPUT LINE",
];

/// Runs `logs`.
pub async fn run(client: &Client, out: Printer, args: LogsArgs) -> anyhow::Result<()> {
    let query = LogQuery {
        job: args.job.as_deref(),
        status: args.status.map(RunStatus::from),
        skip: 0,
        limit: args.limit,
    };
    if args.follow {
        if let Some(job) = args.job.as_deref() {
            if args.status.is_some() {
                anyhow::bail!(
                    "--status does not go with --follow JOB, which prints the output of every run of the job as it prints"
                );
            }
            return crate::live::follow(client, out, job).await;
        }
        return follow(client, out, query).await;
    }
    let answer = client.logs(&query).await?;
    // The API's order: newest first.
    out.answer(&answer, |page| {
        table(&HEADERS, page.logs.iter().map(cells).collect())
    });
    Ok(())
}

/// Prints the runs logged after it starts, oldest first, until killed.
async fn follow(client: &Client, out: Printer, query: LogQuery<'_>) -> anyhow::Result<()> {
    let query = LogQuery {
        limit: query.limit.max(FOLLOW_WINDOW),
        ..query
    };
    // What is logged already is not shown: only what comes.
    let mut seen: HashSet<String> = client
        .logs(&query)
        .await?
        .body
        .logs
        .iter()
        .map(LogRecord::document_id)
        .collect();
    let widths = follow_widths(query.job);
    if !out.is_json() {
        println!("{}", line(&HEADERS.map(str::to_string), &widths));
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let answer = match client.logs(&query).await {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("rcronctl: {e}; retrying");
                continue;
            }
        };
        let documents = answer.document["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let fresh: Vec<usize> = answer
            .body
            .logs
            .iter()
            .enumerate()
            .filter(|(_, r)| !seen.contains(&r.document_id()))
            .map(|(i, _)| i)
            .collect();
        // Oldest first, as a stream reads.
        for &i in fresh.iter().rev() {
            if out.is_json() {
                if let Some(record) = documents.get(i) {
                    println!("{record}");
                }
            } else {
                let cells: Vec<String> = cells(&answer.body.logs[i])
                    .into_iter()
                    .zip(&widths)
                    .map(|(cell, w)| cut(cell, *w))
                    .collect();
                println!("{}", line(&cells, &widths));
            }
        }
        // The window read now holds every record still to be compared with.
        seen = answer
            .body
            .logs
            .iter()
            .map(LogRecord::document_id)
            .collect();
    }
}

/// Column widths of `--follow`, fixed because rows come one by one; the
/// job column fits a followed job's name.
fn follow_widths(job: Option<&str>) -> [usize; 9] {
    let job = job.map_or(0, |j| j.chars().count()).max(24);
    // START is local time `YYYY-MM-DD HH:MM:SS`; TRIGGER fits `schedule`
    // and a chained run's start (its run id is in `-o json`); the last
    // column (0) is free.
    [19, job, 11, 4, 9, 24, 20, 32, 0]
}

/// `cell` cut to `width` characters (0: not cut), the cut marked with `…`.
fn cut(cell: String, width: usize) -> String {
    if width == 0 || cell.chars().count() <= width {
        return cell;
    }
    let mut cut: String = cell.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn cells(r: &LogRecord) -> Vec<String> {
    vec![
        time(r.start_time),
        r.job_name.clone(),
        r.status.as_str().to_string(),
        or_dash(r.exit_code),
        // A verdict ran nothing: it has no duration.
        if r.status.is_verdict() {
            "-".to_string()
        } else {
            format!("{} ms", r.end_time - r.start_time)
        },
        trigger(r),
        r.worker.clone(),
        or_dash(r.reason.as_deref()),
        r.output.lines().last().unwrap_or("").to_string(),
    ]
}

/// What started a run: `schedule`, `manual`, or for a chained run `chain ←
/// job/runId`, the run whose end requested it.
fn trigger(r: &LogRecord) -> String {
    match &r.triggered_by {
        Some(by) => format!("{} ← {}/{}", r.trigger.as_str(), by.job, by.run_id),
        None => r.trigger.as_str().to_string(),
    }
}
